"""Soak: one shared `AwsKms`, 32 threads and an asyncio task group, against LocalStack, with
the preferred region flapping between answering, refusing connections and never answering.

Every key must round-trip, no exception may escape, the three clients made at build must be
the only ones, every log line (botocore's DEBUG included) must be free of keys, data keys and
credentials, and after `close()` the threads and file descriptors must be back where they were.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter

import pytest

from asherah_aws_kms_v2 import AwsKms, AwsKmsBuilder
from asherah_core import Aes256Gcm

from ..leakscan import LeakScanner, capture_all_logs  # noqa: TID252 - shared with unit tests
from .faultkit import (
    FORWARD,
    HOLD,
    REFUSE,
    FlakyEndpoint,
    KmsFactory,
    ScanCredentials,
    open_sockets,
    resource_usage,
    wait_for_usage,
)

pytestmark = pytest.mark.slow

THREADS, THREAD_OPS = 32, 48  # ops per thread, alternating encrypt and decrypt
TASKS, TASK_OPS = 16, 32  # asyncio tasks in one TaskGroup, through the *_async methods
FLAP = [(FORWARD, 0.25), (REFUSE, 0.15), (FORWARD, 0.25), (HOLD, 0.15)]
TIME_LIMIT = 150.0  # seconds for the whole soak; it takes well under a minute here
FD_TOLERANCE = 1  # the harness's own descriptors (pytest's capture files) may come and go
CREDENTIALS = ScanCredentials.make("Soak")
PREFERRED = "us-west-2"


class Ledger:
    """Keys wrapped so far, and what happened to them; thread-safe."""

    def __init__(self, scanner: LeakScanner) -> None:
        self._lock = threading.Lock()
        self.scanner = scanner
        self.wrapped: list[tuple[bytes, bytes]] = []
        self.verified: set[int] = set()
        self.ops: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.wrong_keys = 0

    def new_key(self) -> bytes:
        key = os.urandom(32)
        self.scanner.add_secret(key)
        return key

    def wrapped_one(self, key: bytes, blob: bytes, by: str) -> None:
        with self._lock:
            self.wrapped.append((key, blob))
            self.ops[f"encrypt ({by})"] += 1

    def pick(self, rng: random.Random) -> tuple[int, bytes, bytes] | None:
        with self._lock:
            if not self.wrapped:
                return None
            index = rng.randrange(len(self.wrapped))
            return index, *self.wrapped[index]

    def unwrapped(self, index: int, key: bytes, got: bytes, by: str) -> None:
        with self._lock:
            self.ops[f"decrypt ({by})"] += 1
            if got == key:
                self.verified.add(index)
            else:
                self.wrong_keys += 1

    def failed(self, error: BaseException) -> None:
        self.scanner.add_error(error)
        with self._lock:
            self.errors.append(error)


def thread_worker(kms: AwsKms, ledger: Ledger, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(THREAD_OPS):
        try:
            picked = ledger.pick(rng) if i % 2 else None
            if picked is None:
                key = ledger.new_key()
                ledger.wrapped_one(key, kms.encrypt_key(key), "threads")
            else:
                index, key, blob = picked
                ledger.unwrapped(index, key, kms.decrypt_key(blob), "threads")
        except BaseException as error:  # nothing may escape: count it
            ledger.failed(error)


async def task_worker(kms: AwsKms, ledger: Ledger, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(TASK_OPS):
        try:
            picked = ledger.pick(rng) if i % 2 else None
            if picked is None:
                key = ledger.new_key()
                ledger.wrapped_one(key, await kms.encrypt_key_async(key), "asyncio")
            else:
                index, key, blob = picked
                ledger.unwrapped(index, key, await kms.decrypt_key_async(blob), "asyncio")
        except Exception as error:
            ledger.failed(error)


async def task_group(kms: AwsKms, ledger: Ledger) -> None:
    async with asyncio.TaskGroup() as group:
        for n in range(TASKS):
            group.create_task(task_worker(kms, ledger, 1000 + n))


def verify_the_rest(kms: AwsKms, ledger: Ledger) -> None:
    """Decrypt every wrapped key not yet checked, on 8 threads (the region still flapping)."""
    todo = [i for i in range(len(ledger.wrapped)) if i not in ledger.verified]
    chunks = [todo[n::8] for n in range(8)]

    def run(chunk: list[int]) -> None:
        for index in chunk:
            key, blob = ledger.wrapped[index]
            try:
                ledger.unwrapped(index, key, kms.decrypt_key(blob), "final check")
            except BaseException as error:
                ledger.failed(error)

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIME_LIMIT)


def test_soak_with_a_flapping_region(
    localstack_endpoint: str,
    regional_keys: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    scanner = LeakScanner()
    ledger = Ledger(scanner)
    factory = KmsFactory()
    baseline, sockets_before = resource_usage(), open_sockets()
    started = time.monotonic()
    with capture_all_logs(scanner, exclusive=True) as logs:
        proxy = FlakyEndpoint(localstack_endpoint)
        session = CREDENTIALS.session()
        builder = (
            AwsKmsBuilder(Aes256Gcm(), regional_keys)
            .with_preferred_region(PREFERRED)
            .with_timeout(2.0)
            .with_operation_timeout(10.0)
            .with_retry_config(2, 20)
            .with_region_cooldown(0.05)
            .with_session(session)
            .with_kms_factory(factory)
        )
        for region in regional_keys:
            builder.with_endpoint(region, proxy.url if region == PREFERRED else localstack_endpoint)
        kms = builder.build()
        built = sum(factory.clients_made.values())

        proxy.flap(FLAP)
        threads = [
            threading.Thread(target=thread_worker, args=(kms, ledger, n), name=f"soak-{n}")
            for n in range(THREADS)
        ]
        for t in threads:
            t.start()
        asyncio.run(task_group(kms, ledger))
        for t in threads:
            t.join(TIME_LIMIT)
        assert not any(t.is_alive() for t in threads)
        load_done = time.monotonic()
        verify_the_rest(kms, ledger)
        proxy.stop_flapping()
        flaps, accepted = proxy.changes, dict(proxy.accepted)
        kms.close()
        proxy.close()
        made = sum(factory.clients_made.values())
        preferred_requests = factory.attempts(PREFERRED)
    elapsed = time.monotonic() - started
    after = wait_for_usage((baseline[0], baseline[1] + FD_TOLERANCE))
    sockets_left = open_sockets() - sockets_before  # no gc.collect(): closed means closed

    scanner.add_secrets([*factory.data_keys, *CREDENTIALS.secrets])
    leaks = scanner.leaks()
    ops = sum(ledger.ops.values())
    failovers = sum("trying the next region" in m for m in logs.messages)
    with capsys.disabled():
        print(
            f"\nsoak: {ops} operations ({dict(ledger.ops)}) in {elapsed:.1f} s "
            f"(load {load_done - started:.1f} s); {len(ledger.wrapped)} keys wrapped, "
            f"{len(ledger.verified)} verified; {len(ledger.errors)} errors; "
            f"{ledger.wrong_keys} wrong keys; {failovers} failovers; preferred region: {flaps} "
            f"mode changes, connections accepted {accepted}, {preferred_requests} requests; "
            f"{made} clients; {logs.records} log records ({scanner.text_size / 1e6:.1f} MB) "
            f"scanned for {scanner.secret_count} secrets; threads/fds {baseline} -> {after}"
        )

    assert ledger.errors == [], [repr(e) for e in ledger.errors[:5]]
    assert ledger.wrong_keys == 0
    assert len(ledger.verified) == len(ledger.wrapped)  # every key round-tripped
    assert ops >= THREADS * THREAD_OPS + TASKS * TASK_OPS
    assert ledger.ops["encrypt (asyncio)"]
    assert ledger.ops["decrypt (asyncio)"]
    assert built == made == 3  # one client per region, made at build, none per call
    assert flaps >= 4  # the region really flapped …
    assert accepted.get(HOLD)
    assert failovers > 0  # … and was routed around …
    assert preferred_requests >= 150  # … yet kept being probed and used between faults
    assert leaks == []
    assert factory.data_keys
    assert logs.by_logger.get("botocore.parsers", 0) > 0
    assert after[0] <= baseline[0], f"threads left behind: {baseline[0]} -> {after[0]}"
    assert after[1] <= baseline[1] + FD_TOLERANCE, f"descriptors: {baseline[1]} -> {after[1]}"
    assert sockets_left == set(), sockets_left
    assert elapsed < TIME_LIMIT
