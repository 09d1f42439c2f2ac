"""Coroutines that leave the event loop free, many threads on one instance, and close()."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time

import pytest

from asherah_core import KmsError

from .conftest import MakeKms
from .fakes import FakeAws

KEY = b"k" * 32


def test_the_coroutines_round_trip(arns: dict[str, str], make_kms: MakeKms) -> None:
    kms = make_kms(arns)

    async def main() -> bytes:
        return await kms.decrypt_key_async(await kms.encrypt_key_async(KEY))

    assert asyncio.run(main()) == KEY


def test_the_event_loop_keeps_running_while_a_slow_kms_call_is_in_flight(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    aws.delays["us-west-2"] = 0.3
    ticks: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    async def main() -> tuple[bytes, int]:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        blob = await kms.encrypt_key_async(KEY)  # GenerateDataKey in us-west-2 takes 0.3 s
        key = await kms.decrypt_key_async(blob)  # Decrypt there takes 0.3 s too
        stop.set()
        await task
        return key, threading.get_ident()

    start = time.perf_counter()
    key, loop_thread = asyncio.run(main())
    elapsed = time.perf_counter() - start

    assert key == KEY
    assert elapsed >= 0.59
    # A blocked loop would tick once or twice; a free one ticks every 10 ms or so.
    assert len(ticks) >= 20, len(ticks)
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.2
    assert loop_thread not in {c.thread for c in aws.calls}


def test_many_coroutines_at_once_all_round_trip(arns: dict[str, str], make_kms: MakeKms) -> None:
    kms = make_kms(arns)
    keys = [os.urandom(32) for _ in range(32)]

    async def one(key: bytes) -> bytes:
        return await kms.decrypt_key_async(await kms.encrypt_key_async(key))

    async def main() -> list[bytes]:
        return list(await asyncio.gather(*(one(k) for k in keys)))

    assert asyncio.run(main()) == keys


def test_sixteen_threads_share_one_instance(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    per_thread = 25
    failures: list[BaseException] = []
    done = [0] * 16
    barrier = threading.Barrier(16)

    def work(n: int) -> None:
        barrier.wait()
        try:
            for _ in range(per_thread):
                key = os.urandom(32)
                if kms.decrypt_key(kms.encrypt_key(key)) != key:
                    raise AssertionError("round trip gave another key")
                done[n] += 1
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == []
    assert done == [per_thread] * 16
    assert aws.clients_made == 3
    assert len(aws.calls) == 16 * per_thread * 4
    assert len({c.thread_name for c in aws.calls}) > 1


def test_close_closes_every_client_once_and_can_be_called_again(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    kms.encrypt_key(KEY)

    kms.close()
    kms.close()

    assert len(aws.clients) == 3
    assert [c.close_calls for c in aws.clients] == [1, 1, 1]


def test_the_context_manager_closes_the_instance(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    with make_kms(arns) as kms:
        blob = kms.encrypt_key(KEY)

    assert all(c.closed for c in aws.clients)
    with pytest.raises(KmsError, match="closed"):
        kms.decrypt_key(blob)


def test_the_coroutines_of_a_closed_instance_raise_kms_error(
    arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    kms.close()

    with pytest.raises(KmsError, match="closed"):
        asyncio.run(kms.encrypt_key_async(KEY))


@pytest.mark.parametrize("hedge_after", [None, 0.05], ids=["plain", "hedged"])
@pytest.mark.parametrize("operation", ["encrypt_key", "decrypt_key"])
def test_closing_during_a_call_fails_that_call_with_kms_error(
    aws: FakeAws,
    arns: dict[str, str],
    make_kms: MakeKms,
    operation: str,
    hedge_after: float | None,
) -> None:
    kms = make_kms(arns, hedge_after=hedge_after)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.25
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(
                kms.encrypt_key(KEY) if operation == "encrypt_key" else kms.decrypt_key(blob)
            )
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.1)  # the call is waiting on us-west-2
    kms.close()
    thread.join()

    (result,) = outcome
    # A call that finished with the KMS call already in flight may succeed; anything else must
    # be the KMS error type, not a RuntimeError or CancelledError from the worker pool.
    assert isinstance(result, bytes | KmsError), repr(result)
