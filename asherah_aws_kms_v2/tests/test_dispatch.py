"""The dispatcher's rules, stated with an injected clock instead of wall-clock windows: where
work runs, when the caller stops waiting, and how close() ends it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from asherah_aws_kms_v2.deadline import Deadline
from asherah_aws_kms_v2.dispatch import Dispatcher, Gate
from asherah_aws_kms_v2.errors import ClosedError
from asherah_aws_kms_v2.retry import RetryState

from .fakes import FakeClock

BUDGET = 2.0  # one attempt: connect and read timeouts


class Expired(Exception):
    pass


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    made = Dispatcher(max_workers=2, attempt_budget=BUDGET)
    yield made
    made.close(lambda: None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_work_runs_in_the_callers_thread_while_an_attempt_fits(
    dispatcher: Dispatcher, clock: FakeClock
) -> None:
    seen: list[tuple[int, float]] = []

    def work(state: RetryState, budget: float) -> str:
        seen.append((threading.get_ident(), budget))
        return "done"

    assert dispatcher.run(work, Deadline(clock() + BUDGET, clock), Expired) == "done"
    assert seen == [(threading.get_ident(), BUDGET)]


def test_work_goes_to_the_pool_when_an_attempt_might_overrun_the_deadline(
    dispatcher: Dispatcher, clock: FakeClock
) -> None:
    seen: list[tuple[int, float]] = []

    def work(state: RetryState, budget: float) -> str:
        seen.append((threading.get_ident(), budget))
        return "done"

    assert dispatcher.run(work, Deadline(clock() + BUDGET - 0.001, clock), Expired) == "done"
    ((thread, budget),) = seen
    assert thread != threading.get_ident()
    assert budget == 0.0  # on the pool nothing stops early: the caller leaves at the deadline


def test_the_retry_state_handed_back_is_where_the_pool_goes_on(
    dispatcher: Dispatcher, clock: FakeClock
) -> None:
    states: list[RetryState] = []

    def work(state: RetryState, budget: float) -> str | RetryState:
        states.append(state)
        return RetryState(2) if budget else "done"

    assert dispatcher.run(work, Deadline(clock() + 10, clock), Expired) == "done"
    assert states == [RetryState(0), RetryState(2)]


def test_the_caller_stops_waiting_at_the_deadline(dispatcher: Dispatcher, clock: FakeClock) -> None:
    release = threading.Event()

    def work(state: RetryState, budget: float) -> str:
        release.wait(10)
        return "too late"

    try:
        with pytest.raises(Expired):
            dispatcher.run(work, Deadline(clock(), clock), Expired)  # nothing left to wait
    finally:
        release.set()


def test_gather_cancels_what_the_deadline_cut_short(
    dispatcher: Dispatcher, clock: FakeClock
) -> None:
    release = threading.Event()
    slow = [dispatcher.submit(release.wait, 10) for _ in range(3)]  # 2 workers: 1 queued
    try:
        done, not_done = dispatcher.gather(slow, Deadline(clock(), clock))
        assert (done, set(slow)) == (set(), not_done)
        assert slow[2].cancelled()
    finally:
        release.set()


def test_first_completed_waits_no_longer_than_the_cap(
    dispatcher: Dispatcher, clock: FakeClock
) -> None:
    release = threading.Event()
    slow = dispatcher.submit(release.wait, 10)
    try:
        assert dispatcher.first_completed([slow], Deadline(clock() + 1e9, clock), cap=0.0) == set()
    finally:
        release.set()
    assert dispatcher.first_completed([slow], Deadline(clock() + 10, clock)) == {slow}


def test_after_close_no_work_is_accepted_and_queued_work_ends_as_closed(clock: FakeClock) -> None:
    dispatcher = Dispatcher(max_workers=1, attempt_budget=BUDGET)
    release = threading.Event()
    running = dispatcher.submit(release.wait, 10)
    queued = dispatcher.submit(lambda: "never")

    dispatcher.close(lambda: None)
    release.set()

    with pytest.raises(ClosedError):
        dispatcher.result(queued)
    with pytest.raises(ClosedError):
        dispatcher.submit(lambda: "late")
    assert running.result() is True


def test_the_gate_closes_the_clients_only_when_the_last_attempt_ends() -> None:
    gate = Gate()
    closed: list[str] = []
    gate.enter()
    gate.enter()

    assert gate.close(lambda: closed.append("clients")) is True
    with pytest.raises(ClosedError):
        gate.enter()
    gate.leave()
    assert closed == []
    gate.leave()
    assert closed == ["clients"]
    assert gate.close(lambda: closed.append("again")) is False
    assert closed == ["clients"]


def test_an_idle_gate_closes_the_clients_at_once() -> None:
    gate = Gate()
    closed: list[str] = []

    gate.close(lambda: closed.append("clients"))

    assert closed == ["clients"]
