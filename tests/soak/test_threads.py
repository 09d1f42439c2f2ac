"""Soak: many threads over many partitions with tiny key caches and revocations under way.

16 threads share one `SessionFactory` whose caches hold 8 intermediate keys and 2 system keys,
over 5,000 partitions, with a revocation check due every few milliseconds, while another
factory on the same metastore revokes intermediate and system keys at random. It checks that
no call fails, that no cache ever holds a wiped key (sampled all along), that every row written
decrypts afterwards in a fresh factory, and that the peak RSS stays flat after warm-up; and
prints the figures.

Run it with ``nox -s soak`` or ``pytest -m soak tests/soak/test_threads.py``. Settings, from the
environment: ``ASHERAH_SOAK_THREAD_OPS`` (operations in all, 2,000,000 by default; half encrypts,
half decrypts), ``ASHERAH_SOAK_METASTORE`` (``sqlite``, the default, a file in the test's
temporary directory; or ``memory``, faster, whose rows stay in the process and so grow its RSS
with every key the revocations make).
"""

from __future__ import annotations

import os
import random
import resource
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import pytest
import sqlalchemy as sa

from asherah_core import CryptoPolicy, SessionFactory, StaticKms
from asherah_core.cache import KeyCache
from asherah_core.metastore import InMemoryMetastore, Metastore, SqlMetastore

pytestmark = pytest.mark.soak

OPS = int(os.environ.get("ASHERAH_SOAK_THREAD_OPS", "2000000"))
METASTORE = os.environ.get("ASHERAH_SOAK_METASTORE", "sqlite")
THREADS = 16
PARTITIONS = 5_000
POLICY = CryptoPolicy(
    intermediate_key_cache_max_size=8,
    system_key_cache_max_size=2,
    revoke_check_interval=timedelta(milliseconds=5),
)
MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
HOT = 2 * POLICY.intermediate_key_cache_max_size
"""Partitions ``p0`` to ``p15`` are hot: they take `HOT_SHARE` of the encrypts."""
HOT_SHARE = 0.5
REVOKE_EVERY = 0.01
"""Seconds between the revoking factory's revocations of a random partition's latest key."""
SYSTEM_KEY_EVERY = int(os.environ.get("ASHERAH_SOAK_SYSTEM_KEY_EVERY", "100"))
"""Every this many revocations, the system key is revoked instead."""
WARM_UP = 0.2
"""The share of the operations after which the RSS must stay flat."""
RSS_GROWTH_LIMIT = 1.10
"""Allowed growth of the peak RSS from the end of warm-up to the end (sqlite metastore)."""


@dataclass
class Figures:
    """What the run counted; printed at the end."""

    encrypts: int = 0
    decrypts: int = 0
    failures: list[str] = field(default_factory=list)
    wiped_seen: list[str] = field(default_factory=list)
    cache_samples: int = 0
    revocations: int = 0
    system_key_revocations: int = 0
    rss_at_warm_up_mib: float = 0.0
    rss_samples_mib: list[float] = field(default_factory=list)


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _wiped(cache: KeyCache) -> list[str]:
    # list() of a dict's values runs in C under the GIL: a consistent snapshot.
    entries = list(cache._keys.values()) + list(cache._latest.values())
    return [repr(e) for e in entries if e.aead is None or not any(e.key)]


def _metastore(tmp_path: Path) -> tuple[Metastore, Metastore, Metastore | None]:
    """The workers' metastore, the revoker's, and the one a fresh factory reads afterwards
    (`None`: the in-memory one is shared, nothing survives a process)."""
    if METASTORE == "memory":
        shared = InMemoryMetastore()
        return shared, shared, None
    if METASTORE != "sqlite":
        pytest.fail(f"ASHERAH_SOAK_METASTORE={METASTORE!r}: expected sqlite or memory")
    path = tmp_path / "keys.db"
    # The workers' metastore is made from a URL, as applications make it: its engine is its
    # own, so it keeps SQLite connections checked out between statements (metastore/_kept.py).
    workers = SqlMetastore(
        f"sqlite:///{path}",
        engine_options={"connect_args": {"timeout": 60.0}, "pool_size": THREADS + 4},
    )
    assert workers._kept is not None
    _fast_pragmas(workers.engine)
    workers.create_table()
    return (
        workers,
        SqlMetastore(_sqlite_engine(path)),
        SqlMetastore(_sqlite_engine(path)),
    )


def _sqlite_engine(path: Path) -> sa.Engine:
    """An engine on a SQLite file, for the revoker and the reader afterwards."""
    engine = sa.create_engine(
        f"sqlite:///{path}", connect_args={"timeout": 60.0}, pool_size=THREADS + 4
    )
    _fast_pragmas(engine)
    return engine


def _fast_pragmas(engine: sa.Engine) -> None:
    """WAL mode without fsync on each new connection (a soak needs no durability, and a
    commit's fsync would make the key writes of each revocation the bottleneck)."""

    @sa.event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.close()


class Worker:
    """One thread's share: random partitions, half encrypts (each row written to its file),
    half decrypts of one of its 64 latest rows; every exception is a failed call."""

    def __init__(self, n: int, factory: SessionFactory, rows_path: Path, figures: Figures):
        self.n = n
        self.factory = factory
        self.rows_path = rows_path
        self.figures = figures
        self.rng = random.Random(n)
        self.recent: deque[tuple[int, str, bytes]] = deque(maxlen=64)
        self.done = 0
        self.encrypts = 0
        self.decrypts = 0

    def run(self, ops: int) -> None:
        with self.rows_path.open("w", encoding="utf-8") as rows:
            for i in range(ops):
                try:
                    self._one(i, rows)
                except Exception as e:
                    self.figures.failures.append(f"thread {self.n} op {i}: {e!r}")
                self.done = i + 1

    def _one(self, i: int, rows: TextIO) -> None:
        if not self.recent or self.rng.random() < 0.5:
            # Half the encrypts go to a few hot partitions (twice the cache), so keys are
            # often still cached when their check is due; the rest spread over all of them.
            hot = self.rng.random() < HOT_SHARE
            p = self.rng.randrange(HOT if hot else PARTITIONS)
            data = b"%d:%d" % (self.n, i)
            text = self.factory.get_session(f"p{p}").encrypt_bytes(data)
            rows.write(f"{p}\t{self.n}:{i}\t{text}\n")
            self.recent.append((p, text, data))
            self.encrypts += 1
        else:
            p, text, data = self.recent[self.rng.randrange(len(self.recent))]
            if self.factory.get_session(f"p{p}").decrypt_bytes(text) != data:
                raise AssertionError(f"a row of p{p} decrypted to other data")
            self.decrypts += 1


def _revoke(revoker: SessionFactory, stop: threading.Event, figures: Figures) -> None:
    rng = random.Random(-1)
    metastore = revoker.metastore
    sk_id = revoker.get_session("p0").partition.sk_id
    count = 0
    while not stop.wait(REVOKE_EVERY):
        count += 1
        if count % SYSTEM_KEY_EVERY == 0:
            key_id = sk_id
        else:
            key_id = revoker.get_session(f"p{rng.randrange(PARTITIONS)}").partition.ik_id
        try:
            latest = metastore.load_latest(key_id)
            if latest is None or latest.revoked:
                continue
            if metastore.revoke(key_id, latest.created):
                figures.revocations += 1
                figures.system_key_revocations += key_id == sk_id
        except Exception as e:
            figures.failures.append(f"revoking {key_id}: {e!r}")


def _watch(
    factory: SessionFactory, stop: threading.Event, figures: Figures, workers: list[Worker]
) -> None:
    caches = (factory.keys.intermediate_keys, factory.keys.system_keys)
    next_rss = 0.0
    warm = False
    while not stop.wait(0.002):
        for cache in caches:
            found = _wiped(cache)
            if found:
                figures.wiped_seen.append(f"{cache.name}: {found}")
        figures.cache_samples += 1
        now = time.monotonic()
        if now >= next_rss:
            next_rss = now + 1.0
            figures.rss_samples_mib.append(_rss_mib())
        if not warm and sum(w.done for w in workers) >= WARM_UP * OPS:
            warm = True
            figures.rss_at_warm_up_mib = _peak_rss_mib()


def test_threads_over_many_partitions_with_tiny_caches_and_revocations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers_store, revoker_store, fresh_store = _metastore(tmp_path)
    factory = SessionFactory(
        "soak", "threads", kms=StaticKms(MASTER_KEY), metastore=workers_store, policy=POLICY
    )
    revoker = SessionFactory(
        "soak", "threads", kms=StaticKms(MASTER_KEY), metastore=revoker_store, policy=POLICY
    )
    figures = Figures()
    stop = threading.Event()
    per_thread = -(-OPS // THREADS)
    paths = [tmp_path / f"rows-{n}.tsv" for n in range(THREADS)]
    workers = [Worker(n, factory, paths[n], figures) for n in range(THREADS)]
    threads = [threading.Thread(target=w.run, args=(per_thread,)) for w in workers]
    watcher = threading.Thread(target=_watch, args=(factory, stop, figures, workers))
    revoking = threading.Thread(target=_revoke, args=(revoker, stop, figures))
    started = time.perf_counter()
    watcher.start()
    revoking.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    stop.set()
    watcher.join()
    revoking.join()
    figures.encrypts = sum(w.encrypts for w in workers)
    figures.decrypts = sum(w.decrypts for w in workers)
    peak_end = _peak_rss_mib()
    factory.close()
    revoker.close()

    # Every row written decrypts afterwards, in a fresh factory (nothing cached).
    verify_started = time.perf_counter()
    fresh = SessionFactory(
        "soak",
        "threads",
        kms=StaticKms(MASTER_KEY),
        metastore=fresh_store if fresh_store is not None else workers_store,
        policy=CryptoPolicy(intermediate_key_cache_max_size=100_000),
    )
    rows = unreadable = 0
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                p, data, text = line.rstrip("\n").split("\t")
                rows += 1
                try:
                    if fresh.get_session(f"p{p}").decrypt_bytes(text) != data.encode():
                        unreadable += 1
                except Exception:
                    unreadable += 1
    verify_seconds = time.perf_counter() - verify_started
    fresh.close()

    ops = figures.encrypts + figures.decrypts
    with capsys.disabled():
        print(
            f"\nthread soak ({METASTORE} metastore): {ops:,} operations "
            f"({figures.encrypts:,} encrypts, {figures.decrypts:,} decrypts) by {THREADS} threads "
            f"over {PARTITIONS:,} partitions in {elapsed:.1f} s ({ops / elapsed:,.0f} ops/s); "
            f"caches of {POLICY.intermediate_key_cache_max_size} intermediate and "
            f"{POLICY.system_key_cache_max_size} system keys, revoke check every "
            f"{POLICY.revoke_check_seconds * 1000:g} ms\n"
            f"  failed calls: {len(figures.failures)}; revocations: {figures.revocations:,} "
            f"({figures.system_key_revocations} of the system key); cache samples: "
            f"{figures.cache_samples:,}, with a wiped key: {len(figures.wiped_seen)}\n"
            f"  rows written: {rows:,}, decrypted afterwards by a fresh factory: "
            f"{rows - unreadable:,} in {verify_seconds:.1f} s; unreadable: {unreadable}\n"
            f"  peak RSS: {figures.rss_at_warm_up_mib:.1f} MiB after warm-up "
            f"({WARM_UP:.0%} of the operations), {peak_end:.1f} MiB at the end; RSS samples "
            f"min {min(figures.rss_samples_mib, default=0):.1f} / max "
            f"{max(figures.rss_samples_mib, default=0):.1f} MiB"
        )
    assert not figures.failures, f"{len(figures.failures)} failed calls: {figures.failures[:5]}"
    assert not figures.wiped_seen, f"a cache held a wiped key: {figures.wiped_seen[:5]}"
    assert figures.cache_samples > 0
    assert rows == figures.encrypts
    assert unreadable == 0, f"{unreadable} of {rows} rows do not decrypt in a fresh factory"
    assert figures.revocations > 0
    if METASTORE == "sqlite":  # the in-memory metastore grows with every key made
        assert figures.rss_at_warm_up_mib > 0
        assert peak_end <= figures.rss_at_warm_up_mib * RSS_GROWTH_LIMIT, (
            f"peak RSS grew from {figures.rss_at_warm_up_mib:.1f} MiB after warm-up to "
            f"{peak_end:.1f} MiB"
        )
