"""The benchmark run: which scenarios, in what order, and how the figures are collected."""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .faults import BlackHole, latency_session
from .framework import FrameworkConfig, FrameworkResults, profile_pieces, run_framework
from .measure import (
    Summary,
    cpu_time_ns,
    paired,
    peak_rss_kib,
    run_rounds,
    summarize,
    throughput,
)
from .memory import measure_memory
from .orm import OrmConfig, OrmResults, run_orm
from .systems import (
    MODE_LABELS,
    MODES,
    REGIONS,
    EncryptionSdk,
    Mode,
    RawCalls,
    RawFloor,
    Sequential,
    System,
    World,
    create_keys,
    ours,
)

__all__ = ["Cell", "Config", "Results", "run"]

ENCRYPT, DECRYPT, CALL = "encrypt_key", "decrypt_key", "single call"
FLOOR = RawFloor.name
SEQUENTIAL = Sequential.name
ESDK = EncryptionSdk.name
UNIT_CALL = "raw boto3 Encrypt"
SLOW = MODE_LABELS["slow"]
POOLED_MODES: tuple[Mode, ...] = ("default", "local")
"""Whose KMS calls are also measured raw, concurrent ones at once (encrypt only): the floor of
sending the calls the way ours does, on this machine."""
POOLED = {m: RawCalls.label(m, pooled=True) for m in POOLED_MODES}
SLOW_ENCRYPT_EVERY = 2
"""encrypt_key with a slow preferred region (500 ms and more, very regular) runs every 2nd round."""


class Cell(NamedTuple):
    """One line of the latency matrix: an operation of a system over `regions` regions."""

    op: str
    system: str
    regions: int


@dataclass(frozen=True)
class Config:
    """What to run; the defaults are the published figures' settings."""

    rounds: int = 10
    warmup: int = 1
    region_counts: tuple[int, ...] = (1, 2, 3, 5)
    latencies_ms: tuple[int, ...] = (0, 50)
    black_hole_repeats: int = 3
    black_hole_calls: int = 20
    cpu_ops: int = 40
    cpu_repeats: int = 8  # the ratios swing by a few hundredths between repeats
    thread_counts: tuple[int, ...] = (1, 4, 16)
    throughput_seconds: float = 1.0
    throughput_repeats: int = 5  # the 16-thread figures at L = 0 swing with the machine
    seed: int = 20261129
    quick: bool = False
    """A trial run with few rounds (``--quick``); the page says so."""
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    parts: tuple[str, ...] = ("framework", "kms")
    """Which parts run: the framework against the asherah package, the KMS plugin."""
    orm: OrmConfig = field(default_factory=OrmConfig)
    """The encrypted ORM column against a plain one (part of ``framework``)."""


@dataclass
class LatencyRun:
    """The figures of one latency setting."""

    latency_ms: int
    samples: dict[Cell, dict[int, float]]
    """``cell -> {round: seconds}``."""
    unit: dict[int, float]
    """T of each round: the median of that round's single raw boto3 calls."""
    calls: dict[Cell, int]
    """KMS requests one operation sent (measured once, before the rounds)."""
    first_call: dict[Cell, float]

    @property
    def t(self) -> float:
        """T: the median time of one raw boto3 KMS call at this latency (every round pooled)."""
        pooled = [
            s
            for cell, values in self.samples.items()
            if cell.system in (FLOOR, UNIT_CALL)
            for s in values.values()
        ]
        return statistics.median(pooled)

    def summary(self, cell: Cell) -> Summary:
        return summarize(list(self.samples[cell].values()))

    def in_t(self, cell: Cell) -> Summary:
        """The cell's times divided by the same round's T."""
        return paired(self.samples[cell], self.unit)

    def ratio(self, cell: Cell, other: Cell) -> Summary:
        """The cell's times divided by the other cell's, round by round."""
        return paired(self.samples[cell], self.samples[other])


@dataclass
class BlackHoleRun:
    """The black-hole scenario: preferred region black-holed, timeout 1 s, three regions."""

    first: list[float] = field(default_factory=list)
    next_medians: list[float] = field(default_factory=list)
    sequential: list[float] = field(default_factory=list)


@dataclass
class CpuRun:
    """Process CPU time per operation at L = 0: ``side -> operation -> seconds per repeat``.

    Sides: ``ours``; ``raw``, the KMS calls ours issues, in the caller's thread; ``pooled``,
    the same calls sent the way ours sends them (concurrent ones at once, on a pool).
    """

    sides: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def ours(self) -> dict[str, list[float]]:
        return self.sides.get("ours", {})

    @property
    def raw(self) -> dict[str, list[float]]:
        return self.sides.get("raw", {})

    @property
    def pooled(self) -> dict[str, list[float]]:
        return self.sides.get("pooled", {})


Rates = dict[tuple[int, str, int], list[float]]
"""``(latency_ms, side, threads) -> operations per second of each repeat``."""


@dataclass
class Results:
    """Everything the report needs."""

    config: Config
    started: float
    finished: float = 0.0
    latency: dict[int, LatencyRun] = field(default_factory=dict)
    black_hole: BlackHoleRun = field(default_factory=BlackHoleRun)
    cpu: CpuRun = field(default_factory=CpuRun)
    throughput: Rates = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    maxrss_kib: int = 0
    framework: FrameworkResults | None = None
    pieces: list[tuple[str, str, float]] = field(default_factory=list)
    orm: OrmResults | None = None
    """Where the microseconds of a warm 1 KB row go: ``(operation, piece, µs)``."""


_T0 = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, with the seconds since the start (the figures go to stdout)."""
    print(f"bench: {time.monotonic() - _T0:5.0f} s  {message}", file=sys.stderr, flush=True)


def run(endpoint: str, config: Config) -> Results:
    """Run every scenario of the chosen parts against the LocalStack at `endpoint`."""
    results = Results(config=config, started=time.time())
    rng = random.Random(config.seed)
    say("creating keys (5 regions, and a Multi-Region key replicated to each)")
    keys = create_keys(endpoint)
    if "framework" in config.parts:
        say("framework: where the microseconds of a warm 1 KB row go")
        results.pieces = profile_pieces()
        results.framework = run_framework(endpoint, dict(keys.regular), config.framework)
        say(f"framework part took {results.framework.seconds:.0f} s")
        say("framework: encrypted ORM column against a plain one (SQLAlchemy, SQLite)")
        results.orm = run_orm(config.orm)
    if "kms" in config.parts:
        with BlackHole() as hole:
            for latency_ms in config.latencies_ms:
                world = World(endpoint, latency_session(latency_ms / 1000), keys, hole.endpoint)
                try:
                    results.latency[latency_ms] = latency_matrix(world, latency_ms, config, rng)
                    if latency_ms == max(config.latencies_ms):
                        results.black_hole = black_hole_scenario(world, config)
                    if latency_ms == 0:
                        results.cpu = cpu_overhead(world, config)
                    results.throughput |= thread_scaling(world, config, latency_ms)
                finally:
                    world.close()
        say("peak memory, in a child process per system")
        results.memory = measure_memory(endpoint, dict(keys.regular))
    results.finished = time.time()
    results.maxrss_kib = peak_rss_kib()
    return results


def _systems(world: World, n: int) -> list[System]:
    regions = REGIONS[:n]
    made: list[System] = [ours(world, regions, m) for m in MODES if not (m == "down" and n == 1)]
    made += [Sequential(world, regions), EncryptionSdk(world, regions), RawFloor(world, regions)]
    return made


def latency_matrix(world: World, latency_ms: int, config: Config, rng: random.Random) -> LatencyRun:
    """Every system's encrypt_key and decrypt_key for each number of regions, in rounds."""
    key = os.urandom(32)
    tasks: dict[Cell, Callable[[], object]] = {}
    calls: dict[Cell, int] = {}
    first_call: dict[Cell, float] = {}
    for n in config.region_counts:
        systems = _systems(world, n)
        healthy = systems[0].encrypt(key)  # ours, default: an envelope with every region
        for system in systems:
            enc, dec = Cell(ENCRYPT, system.name, n), Cell(DECRYPT, system.name, n)
            before = system.counter.total()
            start = time.perf_counter()
            blob = system.encrypt(key)
            first_call[enc] = time.perf_counter() - start
            calls[enc] = system.counter.total() - before
            # A region down or slow must be in the envelope for decrypt to meet it.
            source = healthy if system.name in (MODE_LABELS["down"], MODE_LABELS["slow"]) else blob
            before = system.counter.total()
            start = time.perf_counter()
            plain = system.decrypt(source)
            first_call[dec] = time.perf_counter() - start
            calls[dec] = system.counter.total() - before
            if system.name != FLOOR and plain != key:
                raise RuntimeError(f"{system.name} ({n} regions) did not round-trip the key")
            tasks[enc] = _bind(system.encrypt, key)
            tasks[dec] = _bind(system.decrypt, source)
            if isinstance(system, RawFloor):
                tasks[Cell(CALL, UNIT_CALL, n)] = _bind(system.encrypt_call, key)
        for raw in (RawCalls(world, REGIONS[:n], m, pooled=True) for m in POOLED_MODES):
            enc = Cell(ENCRYPT, raw.name, n)
            before = raw.counter.total()
            raw.encrypt(key)
            calls[enc] = raw.counter.total() - before
            tasks[enc] = _bind(raw.encrypt, key)
    _check_interop(world, key)
    say(
        f"L = {latency_ms} ms: {len(tasks)} tasks x {config.warmup + config.rounds} rounds "
        f"({config.warmup} warm-up)"
    )
    slow_encrypt = {c: SLOW_ENCRYPT_EVERY for c in tasks if c.op == ENCRYPT and c.system == SLOW}
    samples = run_rounds(
        tasks,
        rounds=config.rounds,
        warmup=config.warmup,
        rng=rng,
        every=slow_encrypt,
        progress=lambda r: say(f"L = {latency_ms} ms: round {r}/{config.warmup + config.rounds}"),
    )
    unit_cells = [c for c in samples if c.system in (FLOOR, UNIT_CALL)]
    unit = {r: statistics.median(samples[c][r] for c in unit_cells) for r in range(config.rounds)}
    return LatencyRun(latency_ms, samples, unit, calls, first_call)


def _bind(operation: Callable[[bytes], bytes], argument: bytes) -> Callable[[], object]:
    return lambda: operation(argument)


def _check_interop(world: World, key: bytes) -> None:
    """Ours and the sequential reference read each other's envelopes (same wire format)."""
    regions = REGIONS[:3]
    mine, reference = ours(world, regions, "default"), Sequential(world, regions)
    if mine.decrypt(reference.encrypt(key)) != key or reference.decrypt(mine.encrypt(key)) != key:
        raise RuntimeError("ours and the sequential reference do not read each other's envelopes")


def black_hole_scenario(world: World, config: Config) -> BlackHoleRun:
    """Decrypt with the preferred region's endpoint never answering (timeout 1 s)."""
    say("preferred region black-holed: first call, then the next calls (fresh instance each time)")
    regions = REGIONS[:3]
    key = os.urandom(32)
    envelope = ours(world, regions, "default").encrypt(key)
    run_ = BlackHoleRun()
    for _ in range(config.black_hole_repeats):
        kms = ours(world, regions, "down")
        run_.first.append(_timed(kms.decrypt, envelope))
        run_.next_medians.append(
            statistics.median(_timed(kms.decrypt, envelope) for _ in range(config.black_hole_calls))
        )
        kms.close()
    sequential = Sequential(world, regions, down=True)
    run_.sequential = [_timed(sequential.decrypt, envelope) for _ in range(3)]
    return run_


def _timed(operation: Callable[[bytes], bytes], argument: bytes) -> float:
    start = time.perf_counter()
    operation(argument)
    return time.perf_counter() - start


CPU_MODES: tuple[Mode, ...] = ("default", "local", "mrk")
CPU_WITH_SDK_METRICS = "default, OpenTelemetry SDK metrics"
SIDES = ("ours", "raw", "pooled")
"""ours; the raw calls in the caller's thread; the raw calls through a thread pool."""


def cpu_overhead(world: World, config: Config) -> CpuRun:
    """CPU time per encrypt_key/decrypt_key, ours against the raw calls it makes (3 regions).

    The three sides take turns operation by operation, so that a neighbour's load falls on
    all of them alike.
    """
    say("CPU time per operation at L = 0")
    regions = REGIONS[:3]
    key = os.urandom(32)
    sides: dict[str, dict[str, Callable[[], object]]] = {}
    for mode in CPU_MODES:
        mine = ours(world, regions, mode)
        raw = RawCalls(world, regions, mode)
        pooled = RawCalls(world, regions, mode, pooled=True)
        sides[f"{ENCRYPT}, {mode}"] = {
            "ours": _bind(mine.encrypt, key),
            "raw": _bind(raw.encrypt, key),
            "pooled": _bind(pooled.encrypt, key),
        }
        if mode == "default":
            envelope = mine.encrypt(key)
            sides[f"{DECRYPT}, {mode}"] = {
                "ours": _bind(mine.decrypt, envelope),
                "raw": _bind(raw.decrypt, envelope),
                "pooled": _bind(pooled.decrypt, envelope),
            }
    meter = _sdk_meter()
    if meter is not None:
        mine = ours(world, regions, "default", meter=meter)
        raw = RawCalls(world, regions)
        pooled = RawCalls(world, regions, pooled=True)
        sides[f"{ENCRYPT}, {CPU_WITH_SDK_METRICS}"] = {
            "ours": _bind(mine.encrypt, key),
            "raw": _bind(raw.encrypt, key),
            "pooled": _bind(pooled.encrypt, key),
        }
    result = CpuRun()
    for name, operations in sides.items():
        for side in SIDES:
            operations[side]()  # connections up
            result.sides.setdefault(side, {})[name] = []
        for _ in range(config.cpu_repeats):
            spent = dict.fromkeys(SIDES, 0)
            for _ in range(config.cpu_ops):
                for side in SIDES:
                    spent[side] += cpu_time_ns(operations[side])
            for side in SIDES:
                result.sides[side][name].append(spent[side] / 1e9 / config.cpu_ops)
    return result


def _sdk_meter() -> Any:
    try:
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: PLC0415
    except ImportError:
        return None
    return MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")


def thread_scaling(world: World, config: Config, latency_ms: int) -> Rates:
    """encrypt_key + decrypt_key per second, threads sharing one instance, vs raw boto3."""
    counts = describe_counts(config.thread_counts)
    say(f"throughput with {counts} threads at L = {latency_ms} ms")
    regions = REGIONS[:3]
    key = os.urandom(32)
    mine = ours(world, regions, "default")
    raw = RawCalls(world, regions)
    kek_blob = raw.encrypt(key)

    def ours_op() -> None:
        mine.decrypt(mine.encrypt(key))

    def raw_op() -> None:
        raw.encrypt(key)
        raw.decrypt_kek(kek_blob)

    ops = {"ours": ours_op, "raw": raw_op}
    names = list(ops)
    rates: Rates = {}
    for repeat in range(config.throughput_repeats):
        for threads in config.thread_counts:
            for name in names if repeat % 2 == 0 else reversed(names):
                rate = throughput(ops[name], threads, config.throughput_seconds)
                rates.setdefault((latency_ms, name, threads), []).append(rate)
    return rates


def describe_counts(counts: Sequence[int]) -> str:
    """``1, 2, 3 and 5``."""
    names = [str(c) for c in counts]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
