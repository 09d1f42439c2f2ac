"""`PerProcess`: one value per process, made again in a forked child, the parent's untouched;
`reset_in_child`: what a forked child does first to objects that live, and only to those."""

from __future__ import annotations

import gc
import itertools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from asherah_core.forksafe import Lock, PerProcess, reset_in_child

ForkedChild = Callable[[Callable[[], str]], str]
"""The ``in_forked_child`` fixture (conftest.py at the root)."""


class Thing:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False


def counting() -> Callable[[], Thing]:
    numbers = itertools.count(1)
    return lambda: Thing(next(numbers))


def test_a_process_makes_its_value_once() -> None:
    values = PerProcess(counting())
    first = values.get()
    assert [values.get() for _ in range(3)] == [first] * 3
    assert values.mine() is first
    assert first.number == 1


def test_a_value_made_already_is_taken_as_this_processs() -> None:
    given = Thing(0)
    values = PerProcess(counting(), first=given)
    assert values.get() is given
    assert values.mine() is given


def test_a_forked_child_makes_its_own_and_never_hands_out_the_parents(
    in_forked_child: ForkedChild,
) -> None:
    values = PerProcess(counting())
    parents = values.get()

    def child() -> str:
        before = values.mine()  # nothing of this process's yet: not the parent's
        mine = values.get()
        return f"{before is None} {mine is not parents} {mine.number} {values.get() is mine}"

    assert in_forked_child(child) == "True True 2 True"
    assert values.get() is parents  # the parent's own, untouched


def test_threads_of_a_child_all_get_values_of_the_child(in_forked_child: ForkedChild) -> None:
    values = PerProcess(counting())
    parents = values.get()

    def child() -> str:
        together = threading.Barrier(16)  # all 16 ask at once, before any has a value

        def take(_: int) -> Thing:
            together.wait()
            return values.get()

        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(take, range(16)))
        return f"{len(got)} {any(v is parents for v in got)} {values.get() in got}"

    assert in_forked_child(child) == "16 False True"


class Resettable:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        reset_in_child(self, Resettable.reset)

    def reset(self) -> None:
        self.log.append(self.name)


def test_a_forked_child_resets_each_live_object_once_in_order(
    in_forked_child: ForkedChild,
) -> None:
    log: list[str] = []
    first, second = Resettable("first", log), Resettable("second", log)

    def child() -> str:
        return " ".join(log)  # the resets ran before this, in the child only

    assert in_forked_child(child) == "first second"
    assert log == []  # never in the parent
    assert (first.name, second.name) == ("first", "second")


def test_registering_an_object_does_not_keep_it_alive(in_forked_child: ForkedChild) -> None:
    log: list[str] = []
    gone = Resettable("gone", log)
    kept = Resettable("kept", log)
    collected = weakref.ref(gone)
    del gone
    gc.collect()
    assert collected() is None

    def child() -> str:
        return " ".join(log)

    assert in_forked_child(child) == "kept"
    assert kept.name == "kept"


def test_a_lock_another_thread_held_at_the_fork_is_free_in_the_child(
    in_forked_child: ForkedChild,
) -> None:
    lock = Lock()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)

    def child() -> str:
        took = threading.Event()

        def take() -> None:
            with lock:
                took.set()

        threading.Thread(target=take, daemon=True).start()
        return "taken" if took.wait(5) else "still held"

    try:
        assert in_forked_child(child) == "taken"
    finally:
        release.set()
        holder.join()
    with lock:  # the parent's own lock works as before once its holder let go
        assert held.is_set()
