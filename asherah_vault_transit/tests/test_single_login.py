"""One login at a time per cluster: callers that need a new token while a login is under way
wait for it (16 threads, or 16 tasks), whether Vault denied their token, there was none yet, or
it expired; a failed login is reported to the waiters; a wait ends with the caller's timeout;
a login its caller gave up lets a waiter log in. And the `Wait` step of both drivers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import cast

import httpx
import pytest

from asherah_core import KmsError, PluginConfig
from asherah_vault_transit import Credentials, VaultTransitKms, settings_from_config
from asherah_vault_transit.auth import ClusterError
from asherah_vault_transit.latch import Latch
from asherah_vault_transit.protocol import Call, Flow, Reply, Step, Wait
from asherah_vault_transit.settings import AuthSettings
from asherah_vault_transit.transport import HttpTransport

from .conftest import MakeKms
from .fakes import FakeClock, FakeVault
from .test_credentials import APPROLE, finish, login_reply

CALLERS = 16
HOLD = 0.3
"""Seconds a login is held open: every caller of a burst needs its token meanwhile."""
LOGIN = "auth/approle/login"
SCENARIOS = ["denied", "first use", "expired"]
DRIVERS = ["threads", "tasks"]


async def tick(ticks: list[int]) -> None:
    """Append to `ticks` every 10 ms until cancelled: a loop that a wait blocked ticks no more."""
    while True:
        ticks.append(1)
        await asyncio.sleep(0.01)


def approle_kms(make_kms: MakeKms, **settings: object) -> VaultTransitKms:
    return make_kms(
        auth_method="approle", approle_role_id="role-1", approle_secret_id="secret-1", **settings
    )


def hold_logins(vault: FakeVault, driver: str, seconds: float = HOLD) -> None:
    """Make each login take `seconds` (a blocking wait for threads, an await for tasks)."""

    def held(request: httpx.Request) -> None:
        if request.url.path.endswith("/login"):
            time.sleep(seconds)

    async def held_async(request: httpx.Request) -> None:
        if request.url.path.endswith("/login"):
            await asyncio.sleep(seconds)

    if driver == "threads":
        vault.on_request = held
    else:
        vault.on_request_async = held_async


def prepare(scenario: str, kms: VaultTransitKms, vault: FakeVault, clock: FakeClock) -> None:
    """Leave `kms` needing a new token: none yet, a revoked one, or an expired one."""
    if scenario == "first use":
        return
    vault.login_ttl = 10
    kms.encrypt_key(b"k" * 32)
    lease = kms.credentials[0].lease()
    assert lease is not None
    if scenario == "denied":
        del vault.tokens[lease.token]  # revoked: Transit answers 403
    else:
        clock.now += 11  # expired, on our side and on Vault's


def burst(kms: VaultTransitKms, driver: str, n: int = CALLERS) -> list[bytes | BaseException]:
    """Run `n` round trips at once, on threads or as tasks of one loop; what each returned or
    raised."""
    keys = [bytes([i]) * 32 for i in range(n)]

    def round_trip(key: bytes) -> bytes:
        return kms.decrypt_key(kms.encrypt_key(key))

    async def round_trip_async(key: bytes) -> bytes:
        return await kms.decrypt_key_async(await kms.encrypt_key_async(key))

    if driver == "tasks":

        async def all_of_them() -> list[bytes | BaseException]:
            tried = [round_trip_async(key) for key in keys]
            return list(await asyncio.gather(*tried, return_exceptions=True))

        return asyncio.run(all_of_them())
    results: list[bytes | BaseException] = [b""] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = round_trip(keys[i])
        except Exception as e:  # reported to the test
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_burst_that_needs_a_new_token_logs_in_once(
    make_kms: MakeKms, vault: FakeVault, clock: FakeClock, scenario: str, driver: str
) -> None:
    kms = approle_kms(make_kms)
    prepare(scenario, kms, vault, clock)
    before = vault.calls[LOGIN]
    hold_logins(vault, driver)
    results = burst(kms, driver)
    assert results == [bytes([i]) * 32 for i in range(CALLERS)]
    assert vault.calls[LOGIN] - before == 1
    assert kms.credentials[0].logins == vault.calls[LOGIN]


def test_tasks_on_several_loops_and_threads_wait_for_one_login(
    make_kms: MakeKms, vault: FakeVault
) -> None:
    """4 threads, each running a loop of 4 tasks: a login ending on one wakes the others."""
    kms = approle_kms(make_kms)
    hold_logins(vault, "tasks")
    start = threading.Barrier(4)
    outcomes: list[object] = []

    async def four() -> list[bytes | BaseException]:
        tried = [kms.encrypt_key_async(bytes([i]) * 32) for i in range(4)]
        return list(await asyncio.gather(*tried, return_exceptions=True))

    def loop() -> None:
        start.wait()
        outcomes.extend(asyncio.run(four()))

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 16
    assert all(isinstance(outcome, bytes) for outcome in outcomes), outcomes
    assert vault.calls[LOGIN] == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_failed_login_is_reported_to_its_waiters_and_the_next_call_tries_again(
    make_kms: MakeKms, vault: FakeVault, driver: str
) -> None:
    kms = approle_kms(make_kms)
    vault.secret_id = "rotated"  # the login is refused
    hold_logins(vault, driver)
    results = burst(kms, driver)
    assert all(isinstance(result, KmsError) for result in results), results
    assert all("approle login at auth/approle/login: HTTP 400" in str(r) for r in results)
    assert vault.calls[LOGIN] == 1
    vault.secret_id = "secret-1"
    assert kms.encrypt_key(b"k" * 32).startswith(b"vault:v1:")  # no failure remembered
    assert vault.calls[LOGIN] == 2
    assert kms.credentials[0].logins == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_waiters_retry_a_login_that_failed_for_now_one_login_a_round(
    make_kms: MakeKms, vault: FakeVault, driver: str
) -> None:
    kms = approle_kms(make_kms, max_retries=2)
    vault.cluster("a").forced = [503]  # the first login: sealed for now
    hold_logins(vault, driver)
    results = burst(kms, driver)
    assert results == [bytes([i]) * 32 for i in range(CALLERS)]
    assert vault.calls[LOGIN] == 2  # the failed one, and one for every retry
    assert kms.credentials[0].logins == 1


class HeldLogin:
    """The first login blocks (in its thread) from `held` until `release`; later ones pass."""

    def __init__(self) -> None:
        self.held, self.release = threading.Event(), threading.Event()

    def __call__(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/login") and not self.held.is_set():
            self.held.set()
            self.release.wait(30)


@pytest.fixture
def held_login(vault: FakeVault) -> Iterator[HeldLogin]:
    held = vault.on_request = HeldLogin()
    yield held
    held.release.set()


def lead_in_a_thread(kms: VaultTransitKms, held: HeldLogin) -> tuple[threading.Thread, list[bytes]]:
    """Start a call in a thread whose login is the held one; return once it is held."""
    done: list[bytes] = []
    leader = threading.Thread(target=lambda: done.append(kms.encrypt_key(b"l" * 32)))
    leader.start()
    assert held.held.wait(10)
    return leader, done


def test_a_thread_waits_no_longer_than_its_timeout(
    make_kms: MakeKms, vault: FakeVault, held_login: HeldLogin
) -> None:
    kms = approle_kms(make_kms, timeout=0.3, max_retries=0)
    leader, done = lead_in_a_thread(kms, held_login)
    began = time.monotonic()
    with pytest.raises(KmsError, match=r"another caller's login to this cluster did not end "):
        kms.encrypt_key(b"w" * 32)
    assert 0.25 <= time.monotonic() - began < 5
    held_login.release.set()
    leader.join(10)
    assert done[0].startswith(b"vault:v1:")
    assert vault.calls[LOGIN] == 1


def test_a_task_waits_no_longer_than_its_timeout_and_its_loop_runs_meanwhile(
    make_kms: MakeKms, vault: FakeVault, held_login: HeldLogin
) -> None:
    kms = approle_kms(make_kms, timeout=0.3, max_retries=0)
    leader, done = lead_in_a_thread(kms, held_login)
    ticks: list[int] = []

    async def wait() -> None:
        ticker = asyncio.create_task(tick(ticks))
        try:
            await kms.encrypt_key_async(b"w" * 32)
        finally:
            ticker.cancel()

    began = time.monotonic()
    with pytest.raises(KmsError, match=r"another caller's login to this cluster did not end "):
        asyncio.run(wait())
    assert 0.25 <= time.monotonic() - began < 5
    assert len(ticks) >= 5  # the loop was not blocked by the wait
    held_login.release.set()
    leader.join(10)
    assert done
    assert vault.calls[LOGIN] == 1


def test_a_task_waiting_for_a_threads_login_takes_its_token(
    make_kms: MakeKms, vault: FakeVault, held_login: HeldLogin
) -> None:
    kms = approle_kms(make_kms, timeout=5)
    leader, _ = lead_in_a_thread(kms, held_login)
    threading.Timer(0.2, held_login.release.set).start()
    assert asyncio.run(kms.encrypt_key_async(b"w" * 32)).startswith(b"vault:v1:")
    leader.join(10)
    assert vault.calls[LOGIN] == 1


# The flows, step by step -------------------------------------------------------------------


def path_of(step: Step) -> str:
    assert isinstance(step, Call)
    return step.path


def approle(clock: FakeClock) -> Credentials:
    return Credentials(0, APPROLE, timeout=1, renew_fraction=0.5, clock=clock)


def test_a_waiter_takes_the_token_of_the_login_it_waited_for() -> None:
    credentials = approle(FakeClock())
    leading, waiting = credentials.token(1), credentials.token(1)
    assert path_of(next(leading)) == LOGIN
    step = next(waiting)
    assert isinstance(step, Wait)
    assert step.seconds == 1
    assert finish(leading, login_reply("t1", 60)) == "t1"
    assert step.latch.is_open()
    assert finish(waiting, Reply(0, problem="waited")) == "t1"
    assert credentials.logins == 1


def test_a_denied_waiter_takes_the_new_token_and_a_late_one_logs_in_no_more() -> None:
    credentials = approle(FakeClock())
    first = credentials.token(1)
    next(first)
    finish(first, login_reply("t1", 60))
    leading, waiting = credentials.after_denied("t1", 1), credentials.after_denied("t1", 1)
    assert path_of(next(leading)) == LOGIN
    assert isinstance(next(waiting), Wait)
    assert finish(cast(Flow[str], leading), login_reply("t2", 60)) == "t2"
    assert finish(cast(Flow[str], waiting), Reply(0)) == "t2"
    late = credentials.after_denied("t1", 1)  # its 403 came after the new login
    with pytest.raises(StopIteration) as done:
        next(late)
    assert done.value.value == "t2"
    assert credentials.logins == 2


def test_waiters_get_the_error_of_a_failed_login_as_their_own() -> None:
    credentials = approle(FakeClock())
    leading, waiting = credentials.token(1), credentials.token(1)
    next(leading)
    next(waiting)
    with pytest.raises(ClusterError) as led:
        leading.send(Reply(503, problem="Vault is sealed"))
    with pytest.raises(ClusterError) as waited:
        waiting.send(Reply(0))
    assert waited.value is not led.value
    assert waited.value.problem == led.value.problem
    assert (waited.value.retryable, waited.value.final) == (True, False)
    assert isinstance(next(credentials.token(1)), Call)  # the next caller tries again


def test_a_wait_that_ends_before_the_login_raises_a_retryable_error() -> None:
    credentials = approle(FakeClock())
    leading, waiting = credentials.token(1), credentials.token(0.5)
    next(leading)
    step = next(waiting)
    assert isinstance(step, Wait)
    assert step.seconds == 0.5
    with pytest.raises(ClusterError, match=r"did not end within 0\.5s") as caught:
        waiting.send(Reply(0, problem="waited"))  # the driver's time was up, latch closed
    assert caught.value.retryable
    assert finish(leading, login_reply("t1", 60)) == "t1"


def test_a_login_its_caller_gave_up_lets_a_waiter_log_in() -> None:
    credentials = approle(FakeClock())
    leading, waiting = credentials.token(1), credentials.token(1)
    next(leading)
    assert isinstance(next(waiting), Wait)
    leading.close()  # its task was cancelled during the login
    step = waiting.send(Reply(0))
    assert isinstance(step, Call)
    assert step.path == LOGIN
    assert finish(waiting, login_reply("t2", 60)) == "t2"


def test_a_login_still_under_way_after_its_callers_timeout_counts_as_abandoned() -> None:
    clock = FakeClock()
    credentials = approle(clock)
    leading = credentials.token(1)
    next(leading)
    clock.now += 0.5
    assert isinstance(next(credentials.token(1)), Wait)  # still within its caller's timeout
    clock.now += 1
    taking_over = credentials.token(1)
    assert isinstance(next(taking_over), Call)
    assert finish(taking_over, login_reply("t2", 60)) == "t2"
    assert finish(leading, login_reply("t1", 60)) == "t1"  # the late answer: a valid token
    assert credentials._under_way is None


def test_a_given_token_is_looked_up_once_for_a_burst() -> None:
    given = Credentials(
        0,
        AuthSettings(method="token", token="s.T"),
        timeout=1,
        renew_fraction=0.5,
        clock=FakeClock(),
    )
    leading, waiting = given.token(1), given.token(1)
    assert path_of(next(leading)) == "auth/token/lookup-self"
    assert isinstance(next(waiting), Wait)
    assert finish(leading, Reply(200, data={"ttl": 0, "renewable": False})) == "s.T"
    assert finish(waiting, Reply(0)) == "s.T"


# The drivers --------------------------------------------------------------------------------


@pytest.fixture
def transport() -> Iterator[HttpTransport]:
    config = PluginConfig({"address": "http://a:8200", "transit_key": "k", "token": "t"}, path="v")
    http = HttpTransport(
        settings_from_config(config, {}),
        transport=httpx.MockTransport(lambda r: httpx.Response(500)),
    )
    yield http
    http.close()


def waits(latch: Latch, seconds: float) -> Flow[bool]:
    yield Wait(latch, seconds)
    return latch.is_open()


def open_later(latch: Latch, seconds: float) -> None:
    threading.Timer(seconds, latch.open).start()


def test_the_blocking_driver_waits_until_the_latch_opens_or_the_time_is_up(
    transport: HttpTransport,
) -> None:
    latch = Latch()
    began = time.monotonic()
    assert transport.run(waits(latch, 0.1)) is False
    assert time.monotonic() - began >= 0.09
    open_later(latch, 0.05)
    began = time.monotonic()
    assert transport.run(waits(latch, 10)) is True
    assert time.monotonic() - began < 5


def test_the_async_driver_waits_without_blocking_its_loop(transport: HttpTransport) -> None:
    latch = Latch()

    async def main() -> tuple[bool, bool, int]:
        ticks: list[int] = []
        ticker = asyncio.create_task(tick(ticks))
        timed_out = await transport.run_async(waits(latch, 0.1))
        open_later(latch, 0.1)  # from another thread
        opened = await transport.run_async(waits(latch, 10))
        ticker.cancel()
        return timed_out, opened, len(ticks)

    began = time.monotonic()
    timed_out, opened, ticks = asyncio.run(main())
    assert (timed_out, opened) == (False, True)
    assert ticks >= 10
    assert time.monotonic() - began < 5
    assert latch._waiters == {}  # each wait took its future away


def test_a_latch_wakes_tasks_of_every_loop_and_threads_at_once() -> None:
    latch = Latch()
    woken: list[bool] = []
    lock = threading.Lock()

    def in_a_loop() -> None:
        async def wait() -> None:
            opened = await latch.wait_async(10)
            with lock:
                woken.append(opened)

        async def three() -> None:
            await asyncio.gather(wait(), wait(), wait())

        asyncio.run(three())

    def in_a_thread() -> None:
        opened = latch.wait(10)
        with lock:
            woken.append(opened)

    threads: list[threading.Thread] = [threading.Thread(target=in_a_loop) for _ in range(3)]
    threads += [threading.Thread(target=in_a_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    began = time.monotonic()
    latch.open()
    for thread in threads:
        thread.join(10)
    assert woken == [True] * 12
    assert time.monotonic() - began < 5
