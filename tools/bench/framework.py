"""The application-encryption benchmark: our `Session` against the ``asherah`` package's.

Same configuration for both (the package's PascalCase mapping), same static master key, same
kind of metastore (each side its own SQLite file, so that neither finds the other's keys).
Timed scenarios run in interleaved rounds: each round runs every task once, in a new random
order, and a task measures a batch of operations and reports the time per operation. Ratios
are taken round by round (ours / theirs), then the median.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .measure import Summary, paired, summarize, throughput
from .sides import (
    OURS,
    SIDES,
    THEIRS,
    Factory,
    HookCounter,
    MetastoreCalls,
    SessionLike,
    Side,
    config,
    make_factory,
    metastore_rows,
    pair_per_thread,
)

__all__ = [
    "ROLLBACK",
    "FrameworkConfig",
    "FrameworkResults",
    "KmsCount",
    "Op",
    "run_framework",
    "thread_label",
]

ROOT = Path(__file__).resolve().parents[2]
KIB = 1024
ONE_KB = KIB
STORES = ("memory", "sqlite")
ROLLBACK = "sqlite-rollback"
"""The cold partitions' store: a SQLite file that existed before, in its rollback journal."""


@dataclass(frozen=True)
class FrameworkConfig:
    """What to run; the defaults are the published figures' settings."""

    rounds: int = 50
    warmup: int = 2
    sizes: tuple[int, ...] = (64, KIB, 8 * KIB, KIB * KIB)
    batch_seconds: float = 0.008
    """About how long one task's batch takes (for the slower side), so every round is short."""
    cold_per_round: int = 8
    old_rows_per_round: int = 25
    threads: int = 8
    """The thread count of the threaded goal (a row of `thread_counts`)."""
    thread_counts: tuple[int, ...] = (1, 2, 4, 8, 16)
    processes: int = 8
    free_threaded_python: str | None = None
    """A free-threaded Python (the GIL off) with asherah-core installed: our threads are also
    measured on it, in a child process per measurement, beside the package on this Python."""
    throughput_seconds: float = 1.0
    throughput_repeats: int = 5
    kms_rows: int = 1000
    kms_partitions: int = 10
    kms_latencies_ms: tuple[int, ...] = (0, 50)
    kms_regions: int = 3
    memory_rows: int = 100_000
    memory_partitions: int = 1000
    sql_calls: int = 2000
    """Calls per measurement of each way to run SqlMetastore's statements (best of 5)."""
    seed: int = 20261202


class Op(NamedTuple):
    """One timed operation: ``encrypt``/``decrypt`` (or ``cold``/``old``), store, size, api."""

    op: str
    store: str
    size: int
    api: str = "sync"


@dataclass
class KmsCount:
    """Calls made for `rows` rows over `partitions` partitions by one side, at one latency."""

    kms: dict[str, int]
    metastore_reads: int
    metastore_writes: int
    seconds: float


@dataclass
class FrameworkResults:
    """Everything the report's framework section needs."""

    config: FrameworkConfig
    samples: dict[tuple[Side, Op], dict[int, float]] = field(default_factory=dict)
    """``(side, op) -> {round: seconds per operation}``."""
    cold_all: dict[Side, list[float]] = field(default_factory=dict)
    old_loads_per_row: dict[Side, float] = field(default_factory=dict)
    rates: dict[tuple[Side, str], list[float]] = field(default_factory=dict)
    """``(side, "1 thread" | "8 threads" | "8 processes") -> ops/s of each repeat``."""
    free_threaded: dict[str, list[float]] = field(default_factory=dict)
    """``"8 threads" -> ops/s of each repeat``: ours on `FrameworkConfig.free_threaded_python`."""
    free_threaded_version: str = ""
    """That Python's version, as ``sys.version`` gives it."""
    bare_rows: list[float] = field(default_factory=list)
    """Pairs/s of each repeat with `FrameworkConfig.threads` threads and no session: the random
    block, `_rows.seal` and `_rows.open_latest` alone (`bare_rows_pair`)."""
    kms: dict[tuple[int, str, Side], KmsCount] = field(default_factory=dict)
    """``(latency_ms, "encrypt" | "decrypt", side) -> counts``."""
    memory: dict[Side, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    load: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)
    """The machine's load averages (1, 5, 15 min) when each part began and at the end."""
    sql_paths: list[tuple[str, str, float]] = field(default_factory=list)
    """``(statement, path, microseconds)``: the ways to run SqlMetastore's hot statements."""

    def summary(self, side: Side, op: Op) -> Summary:
        return summarize(list(self.samples[(side, op)].values()))

    def ratio(self, op: Op) -> Summary:
        """Ours / theirs, round by round."""
        return paired(self.samples[(OURS, op)], self.samples[(THEIRS, op)])


def _say(message: str) -> None:
    from .run import say  # noqa: PLC0415 - run imports this module

    say(message)


def run_framework(
    endpoint: str | None, regular_keys: Mapping[str, str] | None, cfg: FrameworkConfig
) -> FrameworkResults:
    """Every scenario; the KMS-call counts need LocalStack (`endpoint`) and its key ARNs."""
    started = time.monotonic()
    results = FrameworkResults(config=cfg)
    with tempfile.TemporaryDirectory(prefix="asherah-bench-") as folder:
        _note_load(results, "timed rounds")
        timed_rounds(Path(folder), cfg, results)
        _say("framework: SqlMetastore's load and store, each way SQLAlchemy offers")
        results.sql_paths = sql_paths(Path(folder), cfg.sql_calls)
        counts = ", ".join(map(str, cfg.thread_counts))
        _say(f"framework: throughput, {counts} threads sharing one factory")
        _note_load(results, "threads")
        thread_rates(cfg, results)
        _say(f"framework: throughput, {cfg.processes} processes")
        process_rates(cfg, results)
        if endpoint and regular_keys:
            kms_counts(Path(folder), endpoint, regular_keys, cfg, results)
        _say(
            f"framework: peak memory, {cfg.memory_rows:,} rows over "
            f"{cfg.memory_partitions:,} partitions, a child process per side"
        )
        _note_load(results, "memory")
        results.memory = {side: _memory_child(side, cfg) for side in SIDES}
        _note_load(results, "end")
    results.seconds = time.monotonic() - started
    return results


def _note_load(results: FrameworkResults, when: str) -> None:
    """Record the load averages (what `uptime` prints): the machine is shared."""
    with contextlib.suppress(OSError):  # not on every platform
        results.load.append((when, os.getloadavg()))


def thread_label(threads: int) -> str:
    """The `FrameworkResults.rates` label of a thread count."""
    return f"{threads} thread{'s' * (threads > 1)}"


# --- Timed rounds: warm, async, cold partition, old rows -------------------------------------


def _batch(size: int, cfg: FrameworkConfig) -> int:
    """Operations per batch: about `batch_seconds` at the slower side's ~1 GB/s + 12 us."""
    per_op = 12e-6 + size / 0.4e9
    return max(2, round(cfg.batch_seconds / per_op))


def timed_rounds(folder: Path, cfg: FrameworkConfig, results: FrameworkResults) -> None:
    """Scenarios warm (sync and async), cold partition and old rows, interleaved."""
    rng = random.Random(cfg.seed)
    tasks: dict[tuple[Side, Op], Callable[[], float]] = {}
    loop = asyncio.new_event_loop()
    factories: list[Factory] = []
    counters: dict[Side, Any] = {}
    for side in SIDES:
        for store in STORES:
            path = str(folder / f"{side}-warm.db") if store == "sqlite" else None
            factory = make_factory(side, config(store, path))
            factories.append(factory)
            session: SessionLike = factory.get_session("warm")
            for size in cfg.sizes:
                data = os.urandom(size)
                drr = session.encrypt_bytes(data)
                if session.decrypt_bytes(drr) != data:
                    raise RuntimeError(f"{side} did not round-trip {size} bytes")
                n = _batch(size, cfg)
                tasks[(side, Op("encrypt", store, size))] = _sync_batch(
                    session.encrypt_bytes, data, n
                )
                tasks[(side, Op("decrypt", store, size))] = _sync_batch(
                    session.decrypt_bytes, drr, n
                )
                if store == "memory" and size == ONE_KB:
                    na = max(2, n // 4)
                    tasks[(side, Op("encrypt", store, size, "async"))] = _async_batch(
                        loop, session.encrypt_bytes_async, data, na
                    )
                    tasks[(side, Op("decrypt", store, size, "async"))] = _async_batch(
                        loop, session.decrypt_bytes_async, drr, na
                    )
        # A new file (ours puts it in WAL mode) and one that existed before, in SQLite's
        # rollback journal, which both sides keep: the same journal and syncs on both.
        for store, existing in (("sqlite", False), (ROLLBACK, True)):
            cold_path = folder / f"{side}-cold-{store}.db"
            if existing:
                with contextlib.closing(sqlite3.connect(cold_path)) as db, db:
                    db.execute("CREATE TABLE existed_before (a)")
            cold = make_factory(side, config("sqlite", str(cold_path)))
            factories.append(cold)
            cold.get_session("first").encrypt_bytes(b"x")  # the system key exists before timing
            everything = results.cold_all.setdefault(side, []) if not existing else []
            tasks[(side, Op("cold", store, ONE_KB))] = _cold_batch(
                cold, f"{side}-{store}", cfg.cold_per_round, everything
            )
        counters[side] = _OldRows(folder, side, cfg)
    for side in SIDES:
        tasks[(side, Op("old", "sqlite", ONE_KB))] = counters[side].batch
    keys = list(tasks)
    total = cfg.warmup + cfg.rounds
    _say(f"framework: {len(tasks)} tasks x {total} rounds ({cfg.warmup} warm-up)")
    for number in range(-cfg.warmup, cfg.rounds):
        rng.shuffle(keys)
        for key in keys:
            per_op = tasks[key]()
            if number >= 0:
                results.samples.setdefault(key, {})[number] = per_op
        if (number + cfg.warmup + 1) % 10 == 0:
            _say(f"framework: round {number + cfg.warmup + 1}/{total}")
    for side in SIDES:
        results.old_loads_per_row[side] = counters[side].loads_per_row()
        counters[side].close()
    for factory in factories:
        factory.close()
    loop.close()


def _sync_batch(
    operation: Callable[[Any], object], argument: object, n: int
) -> Callable[[], float]:
    def batch() -> float:
        start = time.perf_counter()
        for _ in range(n):
            operation(argument)
        return (time.perf_counter() - start) / n

    return batch


def _async_batch(
    loop: asyncio.AbstractEventLoop,
    operation: Callable[[Any], Awaitable[object]],
    argument: object,
    n: int,
) -> Callable[[], float]:
    """Awaits the coroutine `n` times in sequence, timed inside the running loop."""

    async def batch() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await operation(argument)
        return (time.perf_counter() - start) / n

    return lambda: loop.run_until_complete(batch())


def _cold_batch(
    factory: Factory, name: str, k: int, everything: list[float]
) -> Callable[[], float]:
    """The first encrypt of `k` new partitions (new intermediate key), median of the k."""
    data = os.urandom(ONE_KB)
    counter = iter(range(10**9))

    def batch() -> float:
        times = []
        for _ in range(k):
            partition = f"cold-{name}-{next(counter)}"
            start = time.perf_counter()
            factory.get_session(partition).encrypt_bytes(data)
            times.append(time.perf_counter() - start)
        everything.extend(times)
        return statistics.median(times)

    return batch


class _OldRows:
    """Rows written before the rounds, one per partition; each round a fresh factory reads some.

    Each row's intermediate key is not cached (new factory, partition not seen), so every row
    costs a metastore load of its key, and unsealing it with the system key.
    """

    def __init__(self, folder: Path, side: Side, cfg: FrameworkConfig) -> None:
        self.side = side
        self.path = str(folder / f"{side}-old.db")
        self.cfg = config("sqlite", self.path)
        self.per_round = cfg.old_rows_per_round
        count = (cfg.rounds + cfg.warmup + 1) * self.per_round + 1
        self.data = os.urandom(ONE_KB)
        writer = make_factory(side, self.cfg)
        self.rows = [
            (f"old-{i}", writer.get_session(f"old-{i}").encrypt_bytes(self.data))
            for i in range(count)
        ]
        writer.close()
        self.warm = self.rows.pop()
        self.next = 0
        self.calls = MetastoreCalls()
        self.hook = HookCounter()
        self.counted_rows = 0

    def _take(self) -> list[tuple[str, str]]:
        rows = self.rows[self.next : self.next + self.per_round]
        self.next += self.per_round
        return rows

    def batch(self) -> float:
        factory = make_factory(self.side, self.cfg)
        try:
            partition, drr = self.warm  # the system key and the connection, not timed
            factory.get_session(partition).decrypt_bytes(drr)
            rows = self._take()
            start = time.perf_counter()
            for partition, drr in rows:
                factory.get_session(partition).decrypt_bytes(drr)
            return (time.perf_counter() - start) / len(rows)
        finally:
            factory.close()

    def loads_per_row(self) -> float:
        """Metastore reads per old row, counted in one more, untimed, batch."""
        if self.side == OURS:
            factory = make_factory(self.side, self.cfg, self.calls)
        else:
            self.hook.install()
            factory = make_factory(self.side, self.cfg)
        try:
            partition, drr = self.warm
            factory.get_session(partition).decrypt_bytes(drr)
            self.hook.settle()
            self.calls.reset()
            self.hook.reset()
            rows = self._take()
            for partition, drr in rows:
                if factory.get_session(partition).decrypt_bytes(drr) != self.data:
                    raise RuntimeError(f"{self.side} did not decrypt an old row")
            self.hook.settle()
            reads = self.calls.reads() if self.side == OURS else self.hook.misses()
            return reads / len(rows)
        finally:
            factory.close()
            if self.side == THEIRS:
                self.hook.uninstall()

    def close(self) -> None:
        self.rows.clear()


# --- SqlMetastore's hot statements -----------------------------------------------------------


def sql_paths(folder: Path, calls: int) -> list[tuple[str, str, float]]:
    """Microseconds per call of a key row's load and store on a SQLite file, each way.

    The ways: SQLAlchemy's `Connection.execute` of the `text()` statement (what SqlMetastore
    did first), `exec_driver_sql`, the pooled DBAPI connection checked out and returned per
    call (`Engine.raw_connection`, what it did next), one DBAPI connection kept checked out
    (what it does now on a SQLite file), `sqlite3` alone (the floor), and the whole
    `SqlMetastore` call (with reading the record, or writing it). Best of 5 runs of `calls`
    calls each.
    """
    import timeit  # noqa: PLC0415

    from asherah_core.metastore.sql import SqlMetastore  # noqa: PLC0415
    from asherah_core.records import EnvelopeKeyRecord, KeyMeta  # noqa: PLC0415

    path = folder / "sql-paths.db"
    store = SqlMetastore(f"sqlite:///{path}", create_table=True)  # a new file: in WAL mode
    rollback_path = folder / "sql-paths-rollback.db"
    rollback = SqlMetastore(f"sqlite:///{rollback_path}", create_table=True, sqlite_wal=False)
    record = EnvelopeKeyRecord(1796000000, os.urandom(60), KeyMeta("_SK_bench_framework", 1))
    for i in range(1000):
        store.store(f"_IK_p{i}_bench_framework", 1796000000, record)
    engine = store.engine
    created = store.dialect.created(1796000000)
    select = "SELECT key_record FROM encryption_key WHERE id = ? AND created = ?"
    insert = "INSERT INTO encryption_key (id, created, key_record) VALUES (?, ?, ?)"
    text = record.to_json()
    counter = iter(range(10**9))
    select_text = store._select_one  # the statements it ran before
    insert_text = store._insert

    def ids() -> str:
        return f"_IK_new{next(counter)}_bench_framework"

    def load_connection() -> object:
        with engine.connect() as conn:
            args = {"b_id": "_IK_p500_bench_framework", "b_created": created}
            return conn.execute(select_text, args).scalar()

    def load_driver_sql() -> object:
        with engine.connect() as conn:
            return conn.exec_driver_sql(select, ("_IK_p500_bench_framework", created)).scalar()

    def load_on(conn: Any) -> object:
        cursor = conn.cursor()
        cursor.execute(select, ("_IK_p500_bench_framework", created))
        row = cursor.fetchone()
        cursor.close()
        return row

    def load_raw() -> object:
        conn = engine.raw_connection()
        try:
            return load_on(conn)
        finally:
            conn.close()

    held = engine.raw_connection()

    def load_kept() -> object:
        return load_on(held)

    db = sqlite3.connect(path)

    def load_sqlite3() -> object:
        return db.execute(select, ("_IK_p500_bench_framework", created)).fetchone()

    def store_connection() -> None:
        with engine.begin() as conn:
            args = {"b_id": ids(), "b_created": created, "b_record": text}
            conn.execute(insert_text, args)

    def store_driver_sql() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(insert, (ids(), created, text))

    def store_on(conn: Any) -> None:
        cursor = conn.cursor()
        cursor.execute(insert, (ids(), created, text))
        cursor.close()
        conn.commit()

    def store_raw() -> None:
        conn = engine.raw_connection()
        try:
            store_on(conn)
        finally:
            conn.close()

    def store_kept() -> None:
        store_on(held)

    def store_sqlite3() -> None:
        db.execute(insert, (ids(), created, text))
        db.commit()

    ways: list[tuple[str, str, Callable[[], object]]] = [
        ("load", "`Connection.execute(text(...))` (first)", load_connection),
        ("load", "`Connection.exec_driver_sql`", load_driver_sql),
        ("load", "`Engine.raw_connection()`, checked out and returned per call (next)",
         load_raw),
        ("load", "a DBAPI connection kept checked out between calls (now)", load_kept),
        ("load", "`sqlite3` alone, one open connection (the floor)", load_sqlite3),
        ("load", "`SqlMetastore.load`, the record read", lambda: store.load(
            "_IK_p500_bench_framework", 1796000000)),
        ("store", "`Connection.execute(text(...))` in `Engine.begin()` (first)",
         store_connection),
        ("store", "`Connection.exec_driver_sql` in `Engine.begin()`", store_driver_sql),
        ("store", "`Engine.raw_connection()`, commit, returned per call (next)", store_raw),
        ("store", "a DBAPI connection kept checked out, commit (now)", store_kept),
        ("store", "`sqlite3` alone, commit (the floor)", store_sqlite3),
        ("store", "`SqlMetastore.store`, the record written",
         lambda: store.store(ids(), 1796000000, record)),
        ("store", "`SqlMetastore.store`, the file in SQLite's rollback journal "
         "(`sqlite_wal=False`)", lambda: rollback.store(ids(), 1796000000, record)),
    ]  # fmt: skip
    out = []
    for statement, way, call in ways:
        n = max(10, calls // 10) if statement == "store" else calls  # a commit syncs the file
        best = min(timeit.repeat(call, number=n, repeat=5)) / n
        out.append((statement, way, best * 1e6))
    db.close()
    held.close()
    store.close()
    rollback.close()
    return out


# --- Throughput ---------------------------------------------------------------------------------


def thread_rates(cfg: FrameworkConfig, results: FrameworkResults) -> None:
    """encrypt + decrypt of 1 KB per second, threads sharing one factory (a session each)."""
    data = os.urandom(ONE_KB)
    factories = {side: make_factory(side, config("memory")) for side in SIDES}

    ops = {side: pair_per_thread(f, data) for side, f in factories.items()}
    bare = bare_rows_pair(factories[OURS], data)
    for repeat in range(cfg.throughput_repeats):
        for threads in cfg.thread_counts:
            label = thread_label(threads)
            if cfg.free_threaded_python and repeat % 2 == 1:
                _free_threaded_rate(cfg, cfg.free_threaded_python, threads, results)
            for side in SIDES if repeat % 2 == 0 else reversed(SIDES):
                rate = throughput(ops[side], threads, cfg.throughput_seconds)
                results.rates.setdefault((side, label), []).append(rate)
            if bare is not None and threads == cfg.threads:
                results.bare_rows.append(_contended(bare, threads, cfg.throughput_seconds))
            if cfg.free_threaded_python and repeat % 2 == 0:
                _free_threaded_rate(cfg, cfg.free_threaded_python, threads, results)
    for factory in factories.values():
        factory.close()


def bare_rows_pair(factory: Factory, data: bytes) -> Callable[[], None] | None:
    """Our encrypt and decrypt of `data` with no session around them: a block of the calling
    thread's random buffer, `_rows.seal`, the block wiped, `_rows.open_latest`, every thread
    with the key of one partition of our `factory`, cached before. What a session adds (the
    expiry and cache checks, the clock, its method calls, and the timing while a metrics
    listener is there) is left out, so this is the most a GIL-bound session built as ours is
    could make. `None` for an asherah_core without those modules."""
    try:
        rows: Any = importlib.import_module("asherah_core._rows")
        entropy: Any = importlib.import_module("asherah_core.entropy")
    except ImportError:
        return None
    if not (hasattr(rows, "seal") and hasattr(rows, "open_latest")):
        return None
    # The partition's key is made and cached here, before the timed threads: a key made in
    # them would be a slow first row, where versions that timed rows switched the base64 back.
    session: Any = factory.get_session("bare-rows")
    session.encrypt_bytes(data)
    entry = session._ik_latest[session._ik_id]
    cipher, middle, meta = entry.aead, entry.row_middle, entry.meta
    seal, open_latest, take, wipe = rows.seal, rows.open_latest, entropy.blocks.block, entropy.wipe
    created = int(time.time())

    def pair() -> None:
        block = take()
        try:
            text = seal(cipher, data, block, created, middle)
        finally:
            wipe(block)
        if open_latest(text, middle, cipher, meta) != data:
            raise RuntimeError("a bare row did not open to its data")

    return pair


def _contended(pair: Callable[[], None], threads: int, seconds: float) -> float:
    """`throughput` of `pair` with the base64 that holds the GIL from its first field, which
    our session's base64 takes by itself once it sees threads contend (asherah_core._b64;
    versions before it saw that in the session's timing of rows, which the bare loop lacks)."""
    try:
        b64: Any = importlib.import_module("asherah_core._b64")
    except ImportError:
        return throughput(pair, threads, seconds)
    before = b64.left
    b64.left = 1 << 62
    try:
        return throughput(pair, threads, seconds)
    finally:
        b64.left = before


def _free_threaded_rate(
    cfg: FrameworkConfig, python: str, threads: int, results: FrameworkResults
) -> None:
    """Our pairs/s with `threads` threads on the free-threaded `python` (a child process that
    warms up first); fails if that Python ran with its GIL on."""
    command = [python, "-m", "tools.bench.framework_child"]
    out = subprocess.run(
        [*command, "threads", OURS, str(cfg.throughput_seconds), str(threads)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120 + cfg.throughput_seconds,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the free-threaded throughput child failed:\n{out.stderr[-2000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    if data["gil"]:
        raise RuntimeError(
            f"{python} ran with its GIL on (a module it loaded needs it, or PYTHON_GIL=1): "
            "its figures would not be free-threaded"
        )
    results.free_threaded.setdefault(thread_label(threads), []).append(data["rate"])
    results.free_threaded_version = data["version"]


def process_rates(cfg: FrameworkConfig, results: FrameworkResults) -> None:
    """The same operation in `processes` processes, each with its own factory, started together."""
    label = f"{cfg.processes} processes"
    for repeat in range(cfg.throughput_repeats):
        for side in SIDES if repeat % 2 == 0 else reversed(SIDES):
            rate = _processes(side, cfg.processes, cfg.throughput_seconds)
            results.rates.setdefault((side, label), []).append(rate)


def _child_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.bench.framework_child", *args]


def _processes(side: Side, count: int, seconds: float) -> float:
    children = [
        subprocess.Popen(
            _child_command("throughput", side, str(seconds)),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for child in children:  # every child has built its factory and warmed up
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {side} throughput child did not start")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        total = 0.0
        for child in children:
            out, _ = child.communicate(timeout=60 + seconds * count)
            if child.returncode != 0:
                raise RuntimeError(f"a {side} throughput child failed")
            data = json.loads(out.strip().splitlines()[-1])
            total += data["ops"] / data["seconds"]
        return total
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def _memory_child(side: Side, cfg: FrameworkConfig) -> dict[str, float]:
    out = subprocess.run(
        _child_command("memory", side, str(cfg.memory_rows), str(cfg.memory_partitions)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the {side} memory child failed:\n{out.stderr[-2000:]}")
    data: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


# --- KMS and metastore calls ----------------------------------------------------------------


@contextmanager
def _endpoint_env(endpoint: str) -> Any:
    """``AWS_ENDPOINT_URL`` for the block: both sides' KMS clients read it when built."""
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS")}
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.pop("AWS_ENDPOINT_URL_KMS", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def kms_counts(
    folder: Path,
    endpoint: str,
    regular_keys: Mapping[str, str],
    cfg: FrameworkConfig,
    results: FrameworkResults,
) -> None:
    """KMS and metastore calls for `kms_rows` rows over `kms_partitions` partitions.

    A fresh factory on an empty SQLite file encrypts the rows (round robin over the
    partitions); another fresh factory decrypts them. KMS requests are counted at a proxy in
    front of LocalStack, which also adds the latency, for both sides alike.
    """
    from .kmsproxy import KmsProxy  # noqa: PLC0415

    regions = list(regular_keys)[: cfg.kms_regions]
    region_map = {r: regular_keys[r] for r in regions}
    data = os.urandom(ONE_KB)
    hook = HookCounter()
    for latency_ms in cfg.kms_latencies_ms:
        _say(
            f"framework: KMS and metastore calls per {cfg.kms_rows:,} rows, "
            f"{len(regions)} regions, {latency_ms} ms per KMS call"
        )
        with KmsProxy(endpoint, latency_ms) as proxy, _endpoint_env(proxy.endpoint):
            for side in SIDES:
                path = str(folder / f"{side}-kms-{latency_ms}.db")
                cfg_ = config("sqlite", path, region_map=region_map, preferred=regions[0])
                calls = MetastoreCalls()
                if side == THEIRS:
                    hook.install()
                for phase in ("encrypt", "decrypt"):
                    proxy.reset()
                    calls.reset()
                    hook.reset()
                    rows_before = metastore_rows(path) if phase == "decrypt" else 0
                    factory = make_factory(side, cfg_, calls if side == OURS else None)
                    start = time.perf_counter()
                    if phase == "encrypt":
                        drrs = [
                            (p, factory.get_session(p).encrypt_bytes(data))
                            for i in range(cfg.kms_rows)
                            for p in (f"kms-{i % cfg.kms_partitions}",)
                        ]
                    else:
                        for p, drr in drrs:
                            if factory.get_session(p).decrypt_bytes(drr) != data:
                                raise RuntimeError(f"{side} did not decrypt its row")
                    seconds = time.perf_counter() - start
                    factory.close()
                    hook.settle()
                    reads = calls.reads() if side == OURS else hook.misses()
                    results.kms[(latency_ms, phase, side)] = KmsCount(
                        kms=proxy.counts(),
                        metastore_reads=reads,
                        metastore_writes=metastore_rows(path) - rows_before,
                        seconds=seconds,
                    )
                if side == THEIRS:
                    hook.uninstall()


# --- Where the microseconds go --------------------------------------------------------------


def profile_pieces(repeat: int = 5, number: int = 5000) -> list[tuple[str, str, float]]:
    """The pieces of a warm 1 KB encrypt and decrypt, each timed alone (best of `repeat`).

    Returns ``(operation, piece, microseconds)``; the whole calls of both sides come first.
    """
    import binascii  # noqa: PLC0415
    import timeit  # noqa: PLC0415

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    def best(call: Callable[[], object]) -> float:
        return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6

    data, key, nonce = os.urandom(ONE_KB), os.urandom(32), os.urandom(12)
    cached = AESGCM(os.urandom(32))
    sealed = AESGCM(key).encrypt(nonce, data, None) + nonce
    sealed_key = cached.encrypt(nonce, key, None) + nonce
    sealed_with_cached = cached.encrypt(nonce, data, None)
    text = binascii.b2a_base64(sealed, newline=False).decode()
    sessions = {side: make_factory(side, config("memory")).get_session("p") for side in SIDES}
    drrs = {side: s.encrypt_bytes(data) for side, s in sessions.items()}
    drr = drrs[OURS]
    enc, dec = "encrypt 1 KB", "decrypt 1 KB"
    pieces: list[tuple[str, str, Callable[[], object]]] = [
        (enc, "whole call, ours", lambda: sessions[OURS].encrypt_bytes(data)),
        (enc, "whole call, asherah", lambda: sessions[THEIRS].encrypt_bytes(data)),
        (
            enc,
            "os.urandom(32) + 2 x os.urandom(12)",
            lambda: (os.urandom(32), os.urandom(12), os.urandom(12)),
        ),
        (enc, "os.urandom(56) once (for comparison)", lambda: os.urandom(56)),
        (enc, "AESGCM(row key): a new AEAD object per row", lambda: AESGCM(key)),
        (enc, "AESGCM.encrypt of the 1 KB data", lambda: cached.encrypt(nonce, data, None)),
        (
            enc,
            "AESGCM.encrypt of the 32-byte row key (cached IK object)",
            lambda: cached.encrypt(nonce, key, None),
        ),
        (
            enc,
            "base64 of the sealed data, binascii (b2a_base64 + decode)",
            lambda: binascii.b2a_base64(sealed, newline=False).decode(),
        ),
        (
            enc,
            "base64 of the sealed row key",
            lambda: binascii.b2a_base64(sealed_key, newline=False).decode(),
        ),
        (
            enc,
            "JSON text of the record (one f-string)",
            lambda: (
                f'{{"Key":{{"Created":{int(time.time())},"Key":"{text[:80]}","ParentKeyMeta":'
                f'{{"KeyId":"_IK_p_bench_framework","Created":1796230980}}}},"Data":"{text}"}}'
            ),
        ),
        (
            enc,
            "time.perf_counter() x 2 + time.time()",
            lambda: (time.perf_counter(), time.perf_counter(), time.time()),
        ),
        (dec, "whole call, ours", lambda: sessions[OURS].decrypt_bytes(drr)),
        (dec, "whole call, asherah", lambda: sessions[THEIRS].decrypt_bytes(drrs[THEIRS])),
        (dec, "json.loads of the 1.6 KB record", lambda: json.loads(drr)),
        (
            dec,
            "base64 decode of the data, binascii (a2b_base64, strict)",
            lambda: binascii.a2b_base64(text, strict_mode=True),
        ),
        (dec, "AESGCM(row key)", lambda: AESGCM(key)),
        (
            dec,
            "AESGCM.decrypt of the row key (cached IK object)",
            lambda: cached.decrypt(sealed_key[-12:], sealed_key[:-12], None),
        ),
        (
            dec,
            "AESGCM.decrypt of the 1 KB data",
            lambda: cached.decrypt(nonce, sealed_with_cached, None),
        ),
    ]
    pieces += _pybase64_pieces(sealed, text)
    pieces += _our_pieces(sessions[OURS], data, drr)
    histogram = _sdk_histogram()
    if histogram is not None:
        pieces.append(
            (
                enc,
                "one OpenTelemetry histogram record, SDK installed",
                lambda: histogram.record(1e-6),
            )
        )
    from opentelemetry.metrics import get_meter  # noqa: PLC0415

    api_histogram = get_meter("bench-noop").create_histogram("bench.noop")
    pieces.append(
        (
            enc,
            "one OpenTelemetry histogram record, API only (no SDK)",
            lambda: api_histogram.record(1e-6),
        )
    )
    return [(op, name, best(call)) for op, name, call in pieces]


def _sdk_histogram() -> Any:
    try:
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: PLC0415
    except ImportError:
        return None
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    return meter.create_histogram("bench.histogram")


def _pybase64_pieces(sealed: bytes, text: str) -> list[tuple[str, str, Callable[[], object]]]:
    """pybase64 (SIMD base64, what asherah_core uses when installed), if installed."""
    try:
        import pybase64  # noqa: PLC0415
    except ImportError:
        return []
    return [
        ("encrypt 1 KB", "base64 of the sealed data, pybase64.b64encode_as_string",
         lambda: pybase64.b64encode_as_string(sealed)),
        ("decrypt 1 KB", "base64 decode of the data, pybase64.b64decode",
         lambda: pybase64.b64decode(text)),
    ]  # fmt: skip


def _contended_pieces(drr: str, middle: str | None) -> list[tuple[str, str, Callable[[], object]]]:
    """The base64 of a row while threads contend (librt, which holds the GIL), if this version
    of asherah_core has it: one call per direction, as the hot path makes."""
    try:
        from asherah_core._b64 import held_decode, held_encode  # noqa: PLC0415
    except ImportError:
        return []
    if middle is None:
        return []
    at = drr.index(middle)
    text = drr[at - 80 : at] + drr[at + len(middle) : -2]
    sealed = held_decode(text)
    return [
        ("encrypt 1 KB", "ours while threads contend: base64 of the sealed row (librt)",
         lambda: held_encode(sealed)),
        ("decrypt 1 KB", "ours while threads contend: base64 decode of the row (librt, checked)",
         lambda: held_decode(text)),
    ]  # fmt: skip


def _open_latest_pieces(
    module: object, entry: object, drr: str, data: bytes
) -> list[tuple[str, str, Callable[[], object]]]:
    """`_rows.open_latest` as installed (compiled by mypyc, or not) and run from its Python
    source, in the same run: what the compiled build saves on a warm decrypt."""

    open_latest = getattr(module, "open_latest", None)
    source = Path(getattr(module, "__file__", "")).with_name("_rows.py")
    middle = getattr(entry, "row_middle", None)
    cipher = getattr(entry, "aead", None)
    meta = getattr(entry, "meta", None)
    if not callable(open_latest) or middle is None or not source.is_file():
        return []
    spec = importlib.util.spec_from_file_location("asherah_core._rows_source", source)
    if spec is None or spec.loader is None:
        return []
    python = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(python)
    as_python = python.open_latest
    args = (drr, middle, cipher, meta)
    if open_latest(*args) != data or as_python(*args) != data:
        return []
    built = "pure Python" if str(getattr(module, "__file__", "")).endswith(".py") else "compiled"
    dec = "decrypt 1 KB"
    return [
        (dec, f"ours: `_rows.open_latest` as installed ({built})",
         lambda: open_latest(*args)),
        (dec, "ours: `_rows.open_latest` run from its Python source",
         lambda: as_python(*args)),
    ]  # fmt: skip


def _our_pieces(
    session: SessionLike, data: bytes, drr: str
) -> list[tuple[str, str, Callable[[], object]]]:
    """Pieces of our own hot paths, as far as this version of asherah_core has them: the
    record readers, the random buffer, and the floor of a decrypt in Python."""
    import pybase64  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    try:
        module: object = importlib.import_module("asherah_core._rows")
    except ImportError:  # an asherah_core from before the module
        module = None

    enc, dec = "encrypt 1 KB", "decrypt 1 KB"
    out: list[tuple[str, str, Callable[[], object]]] = []
    parse_row = getattr(module, "parse_row", None)
    if callable(parse_row):
        out.append(
            (dec, "ours: the general reader of a canonical record (`_rows.parse_row`)",
             lambda: parse_row(drr))
        )  # fmt: skip
    entry = getattr(session, "_ik_latest", {}).get(getattr(session, "_ik_id", None))
    sealed_by = getattr(module, "sealed_by", None)
    middle = getattr(entry, "row_middle", None)
    if callable(sealed_by) and middle is not None:
        out.append(
            (dec, "ours: reading a row of the partition's latest key (`_rows.sealed_by`)",
             lambda: sealed_by(drr, middle))
        )  # fmt: skip
    out += _open_latest_pieces(module, entry, drr, data)
    cipher = getattr(entry, "aead", None)
    if middle is not None and cipher is not None:
        at = drr.index(middle)

        def floor() -> bytes:
            sealed_key = pybase64.b64decode(drr[at - 80 : at], None, True)
            sealed_data = pybase64.b64decode(drr[at + len(middle) : -2], None, True)
            row_key = cipher.decrypt(sealed_key[-12:], sealed_key[:-12], None)
            return AESGCM(row_key).decrypt(sealed_data[-12:], sealed_data[:-12], None)

        if floor() == data:
            out.append(
                (dec, "the floor: fields by slicing, 2 base64 decodes, 2 AESGCM opens",
                 floor)
            )  # fmt: skip
    out += _contended_pieces(drr, middle)
    try:
        from asherah_core import entropy  # noqa: PLC0415
    except ImportError:
        return out

    def random_block() -> None:
        block = entropy.blocks.block()
        entropy.wipe(block)

    out.append((enc, "ours: a 56-byte block of the thread's random buffer, wiped", random_block))
    return out
