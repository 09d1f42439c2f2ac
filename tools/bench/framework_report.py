"""The framework part of docs/benchmarks.md: goals, tables, the profile, and its plot."""

from __future__ import annotations

import statistics
from pathlib import Path

from .framework import ONE_KB, ROLLBACK, STORES, FrameworkResults, KmsCount, Op, thread_label
from .measure import Summary, paired_ratios, summarize
from .sides import OURS, SIDES, THEIRS

__all__ = [
    "THREADS_PLOT_NAME",
    "FrameworkGoal",
    "framework_goals",
    "framework_markdown",
    "framework_plot",
    "threads_plot",
]

DASH, TIMES, MU = "\u2013", "\u00d7", "\u00b5"
PLOT_NAME = "benchmarks-framework.png"
THREADS_PLOT_NAME = "benchmarks-framework-threads.png"


class FrameworkGoal:
    """A ratio target (ours / the asherah package) and what was measured."""

    def __init__(
        self,
        what: str,
        limit: float,
        value: Summary,
        *,
        ok: bool | None = None,
        note: str = "",
        at_least: bool = False,
        unit: str = TIMES,
    ) -> None:
        self.what = what
        self.limit = limit
        self.value = value
        self.at_least = at_least
        self.unit = unit
        if ok is None:
            ok = value.median >= limit if at_least else value.median <= limit
        self.passed = ok
        self.note = note

    @property
    def target(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.limit:g}{self.unit}"

    @property
    def shortfall(self) -> float:
        """How far from the target, as a factor of time (1 when met)."""
        if self.at_least:
            return self.limit / self.value.median if self.value.median else float("inf")
        return self.value.median / self.limit


def _size(size: int) -> str:
    if size >= ONE_KB * ONE_KB:
        return f"{size // (ONE_KB * ONE_KB)} MB"
    if size >= ONE_KB:
        return f"{size // ONE_KB} KB"
    return f"{size} B"


def _fmt(value: Summary, digits: int = 2) -> str:
    return f"{value.median:.{digits}f} ({value.p25:.{digits}f}{DASH}{value.p75:.{digits}f})"


def _time(value: Summary) -> str:
    """Seconds as µs (or ms above 1,000 µs), median and quartiles."""
    us = value.scaled(1e6)
    if us.median >= 1000:
        ms = value.scaled(1e3)
        return _fmt(ms, 2 if ms.median < 10 else 1) + " ms"
    return _fmt(us, 2 if us.median < 10 else 1) + f" {MU}s"


def _kms_total(count: KmsCount) -> int:
    return sum(count.kms.values())


def framework_goals(fr: FrameworkResults) -> list[FrameworkGoal]:
    """The ratio goals, measured in this run."""
    out: list[FrameworkGoal] = []
    for op, limit in (("encrypt", 1.4), ("decrypt", 1.5)):
        warm = Op(op, "memory", ONE_KB)
        if (OURS, warm) in fr.samples:
            out.append(FrameworkGoal(f"warm 1 KB {op}, one thread", limit, fr.ratio(warm)))
    for op in ("encrypt", "decrypt"):
        a = Op(op, "memory", ONE_KB, "async")
        if (OURS, a) in fr.samples:
            out.append(FrameworkGoal(f"async warm 1 KB {op} (sequential awaits)", 0.3, fr.ratio(a)))
    out += _thread_goals(fr)
    cold = Op("cold", "sqlite", ONE_KB)
    if (OURS, cold) in fr.samples:
        out.append(
            FrameworkGoal("cold partition: first encrypt, new intermediate key in a new "
                          "SQLite file (each side's own journal)", 1.0, fr.ratio(cold))
        )  # fmt: skip
    old = Op("old", "sqlite", ONE_KB)
    if (OURS, old) in fr.samples:
        out.append(
            FrameworkGoal("decrypt of an old row, its intermediate key not cached (SQLite)", 2.0,
                          fr.ratio(old))
        )  # fmt: skip
    peak_ours, peak_theirs = fr.memory.get(OURS), fr.memory.get(THEIRS)
    if peak_ours and peak_theirs:
        ratio = peak_ours["maxrss_kib"] / peak_theirs["maxrss_kib"]
        out.append(
            FrameworkGoal(
                f"peak RSS, {fr.config.memory_rows:,} rows over {fr.config.memory_partitions:,} "
                "partitions",
                1.0,
                Summary(ratio, ratio, ratio, 1),
                note=f"{peak_ours['maxrss_kib'] / 1024:.1f} vs "
                f"{peak_theirs['maxrss_kib'] / 1024:.1f} MiB",
            )
        )
    new_keys = 1 + fr.config.kms_partitions
    for latency in sorted({k[0] for k in fr.kms}):
        ours = [fr.kms[(latency, p, OURS)] for p in ("encrypt", "decrypt")]
        theirs = [fr.kms[(latency, p, THEIRS)] for p in ("encrypt", "decrypt")]
        mine, its = sum(map(_kms_total, ours)), sum(map(_kms_total, theirs))
        ratio = mine / its if its else float("inf")
        out.append(
            FrameworkGoal(
                f"KMS calls for {fr.config.kms_rows:,} rows over {fr.config.kms_partitions} "
                f"partitions, encrypted then decrypted by fresh factories "
                f"({latency} ms per KMS call)",
                1.0,
                Summary(ratio, ratio, ratio, 1),
                note=f"{mine} vs {its}",
            )
        )
        writes = ours[0].metastore_writes
        out.append(
            FrameworkGoal(
                f"metastore writes for the same rows: one per new key ({new_keys}: 1 system "
                f"key + {fr.config.kms_partitions} intermediate keys) ({latency} ms)",
                1.0,
                Summary(writes / new_keys, writes / new_keys, writes / new_keys, 1),
                ok=writes == new_keys,
                note=f"{writes} writes (the asherah package: {theirs[0].metastore_writes})",
            )
        )
    return out


def _thread_goals(fr: FrameworkResults) -> list[FrameworkGoal]:
    """Threads sharing one factory: against the package, and against our own one thread (on
    this Python, then on the free-threaded one when it was measured)."""
    label = thread_label(fr.config.threads)
    its = fr.rates.get((THEIRS, label))
    what = f"{fr.config.threads} threads sharing one factory, 1 KB encrypt + decrypt pairs/s"
    ours = (fr.rates.get((OURS, label)), fr.rates.get((OURS, thread_label(1))))
    free = (fr.free_threaded.get(label), fr.free_threaded.get(thread_label(1)))
    return [
        *_scaling_goals(f"{what}, ours", "our own", *ours, its),
        *_scaling_goals(f"{what}, ours on {_free_threaded_name(fr)}", "its own", *free, its),
    ]


def _scaling_goals(
    what: str,
    whose: str,
    mine: list[float] | None,
    one: list[float] | None,
    its: list[float] | None,
) -> list[FrameworkGoal]:
    """`mine` (pairs/s of each repeat) against the package's `its`, and against `one` thread,
    each ratio taken repeat by repeat (a repeat measures every count of threads, one after the
    other), then the median, as every other ratio of the page."""
    if not (mine and one and its):
        return []
    return [
        FrameworkGoal(f"{what} / asherah", 0.8, paired_ratios(mine, its), at_least=True),
        FrameworkGoal(
            f"{what} / {whose} 1-thread rate",
            0.9,
            paired_ratios(mine, one),
            at_least=True,
            note=f"{statistics.median(mine):,.0f} vs {statistics.median(one):,.0f}",
        ),
    ]


def _free_threaded_name(fr: FrameworkResults) -> str:
    """ "free-threaded CPython 3.14.7 (GIL off)", from the version the child reported."""
    version = fr.free_threaded_version.split()[0] if fr.free_threaded_version else "?"
    return f"free-threaded CPython {version} (GIL off)"


def framework_markdown(
    fr: FrameworkResults, pieces: list[tuple[str, str, float]], *, heading: str = "##"
) -> list[str]:
    """The framework section of the page (headings at level `heading`)."""
    cfg = fr.config
    sub = heading + "#"
    goals = framework_goals(fr)
    lines = [
        f"{heading} Application encryption: ours against the `asherah` package",
        "",
        "Our `SessionFactory` / `Session` (asherah_core, Python on `cryptography`, installed "
        "as a user installs it: its row module `_rows` (sealing, reading) and its base64 "
        "`_b64` compiled by mypyc when a C compiler is at hand; see the decrypt and threads "
        "findings) against the `asherah` package from PyPI (a Rust core behind PyO3), both "
        "built from the same "
        "PascalCase configuration (ours through `SessionFactory.from_config`), the same static "
        "master key, the same kind of metastore (in memory, or a SQLite file per side), session "
        "caching on. Timed scenarios run in interleaved rounds: each round runs every task "
        "once, in a new random order; a task times a batch of operations and reports the time "
        f"per operation. {cfg.rounds} rounds after {cfg.warmup} warm-up rounds. Figures are "
        f"medians with the 25th{DASH}75th percentiles in brackets; a ratio is ours / theirs "
        "taken round by round, then the median.",
        "",
        f"{sub} Goals",
        "",
        "| goal | target (ours / asherah) | measured | result |",
        "|---|---|---|---|",
    ]
    for g in goals:
        note = f" — {g.note}" if g.note else ""
        lines.append(
            f"| {g.what}{note} | {g.target} | {_fmt(g.value)} {TIMES} | "
            f"{'pass' if g.passed else '**FAIL**'} |"
        )
    lines += ["", f"{sum(g.passed for g in goals)} of {len(goals)} goals met.", ""]
    lines += _behind(fr, goals, pieces, sub)
    lines += _load(fr)
    lines += [f"![time per operation against payload size]({PLOT_NAME})", ""]
    lines += _warm_table(fr, sub)
    lines += _cold_old(fr, sub)
    lines += _sql_paths(fr, sub)
    lines += _rates(fr, sub)
    lines += _kms_table(fr, sub)
    lines += _memory(fr, sub)
    return lines


def _ratio_row(fr: FrameworkResults, label: str, op: Op) -> str:
    return (
        f"| {label} | {_time(fr.summary(OURS, op))} | {_time(fr.summary(THEIRS, op))} | "
        f"{_fmt(fr.ratio(op))} |"
    )


def _warm_table(fr: FrameworkResults, sub: str) -> list[str]:
    lines = [
        f"{sub} Warm session: time per operation, one thread",
        "",
        "The session's intermediate key is cached; every call makes a new data row key, seals "
        "the data with it, seals it with the intermediate key and writes the JSON record "
        "(decrypt: the reverse). Static KMS.",
        "",
        "| operation | ours | asherah | ours / asherah |",
        "|---|---|---|---|",
    ]
    for store in STORES:
        for op in ("encrypt", "decrypt"):
            for size in fr.config.sizes:
                key = Op(op, store, size)
                if (OURS, key) in fr.samples:
                    lines.append(_ratio_row(fr, f"{op} {_size(size)}, {store} metastore", key))
    for op in ("encrypt", "decrypt"):
        key = Op(op, "memory", ONE_KB, "async")
        if (OURS, key) in fr.samples:
            lines.append(_ratio_row(fr, f"`{op}_bytes_async` 1 KB, awaited one after another", key))
    return [*lines, ""]


def _cold_old(fr: FrameworkResults, sub: str) -> list[str]:
    cfg = fr.config
    cold, old = Op("cold", "sqlite", ONE_KB), Op("old", "sqlite", ONE_KB)
    if (OURS, cold) not in fr.samples:
        return []
    lines = [
        f"{sub} Cold partitions and old rows (SQLite)",
        "",
        "| scenario | ours | asherah | ours / asherah |",
        "|---|---|---|---|",
        _ratio_row(
            fr,
            f"first encrypt of a new partition (`get_session` + `encrypt_bytes`: looks for the "
            f"latest intermediate key, makes and stores one); median of {cfg.cold_per_round} "
            "per round",
            cold,
        ),
        _ratio_row(
            fr,
            "the same on a SQLite file that existed before, in SQLite's rollback journal, "
            "which both sides keep (four syncs per commit on both; a new file is in WAL mode "
            "on ours, one sync)",
            Op("cold", ROLLBACK, ONE_KB),
        ),
        _ratio_row(
            fr,
            f"decrypt of a row written long ago, by a fresh factory (its system key loaded "
            f"first, untimed): {cfg.old_rows_per_round} rows of as many partitions per round, "
            "time per row",
            old,
        ),
        "",
    ]
    for side in SIDES:
        every = fr.cold_all.get(side, [])
        if len(every) >= 10:
            q = statistics.quantiles(every, n=10)
            lines.append(
                f"- {side}: all {len(every)} first encrypts on a new file: median "
                f"{statistics.median(every) * 1e3:.2f} ms, 90th percentile {q[-1] * 1e3:.2f} ms."
            )
    loads = fr.old_loads_per_row
    if loads:
        lines.append(
            f"- Metastore reads per old row: ours {loads.get(OURS, 0):.2f} (counted by wrapping "
            f"our metastore), asherah {loads.get(THEIRS, 0):.2f} (its `cache_miss` metrics "
            "events, the only count it gives)."
        )
    return [*lines, ""]


def _load(fr: FrameworkResults) -> list[str]:
    if not fr.load:
        return []
    shown = "; ".join(f"{when}: {' '.join(f'{x:.2f}' for x in loads)}" for when, loads in fr.load)
    return [
        "The machine has 2 cores, shared with other jobs: its load averages (1, 5 and 15 "
        f"minutes, as `uptime` prints them) when each part of this section began: {shown}. "
        "Ratios are taken within a round, both sides under the same load.",
        "",
    ]


def _rates(fr: FrameworkResults, sub: str) -> list[str]:
    if not fr.rates:
        return []
    cfg = fr.config
    lines = [
        f"{sub} Throughput: 1 KB encrypt + decrypt pairs per second",
        "",
        f"Threads share one factory (a session each, in-memory metastore); processes have a "
        f"factory each and start together. About {cfg.throughput_seconds:g} s per measurement, "
        f"{cfg.throughput_repeats} repeats, the sides alternating; a repeat measures every "
        "count of workers, and each ratio is taken repeat by repeat, then the median. The "
        "machine has 2 cores, shared with other work.",
        "",
        "| workers | ours (pairs/s) | asherah (pairs/s) | ours / asherah | ours / our 1 thread |",
        "|---|---|---|---|---|",
    ]
    one = fr.rates.get((OURS, thread_label(1)))
    labels = sorted(
        {label for _, label in fr.rates}, key=lambda s: (" process" in s, int(s.split()[0]))
    )
    for label in labels:
        mine, its = fr.rates.get((OURS, label)), fr.rates.get((THEIRS, label))
        if mine and its:
            own = _fmt(paired_ratios(mine, one)) if one and "thread" in label else DASH
            lines.append(
                f"| {label} | {_fmt(summarize(mine), 0)} | {_fmt(summarize(its), 0)} | "
                f"{_fmt(paired_ratios(mine, its))} | {own} |"
            )
    lines += _free_threaded_rates(fr)
    lines += ["", f"![pairs per second against threads]({THREADS_PLOT_NAME})", ""]
    return lines


def _free_threaded_rates(fr: FrameworkResults) -> list[str]:
    """Ours on a free-threaded Python, against the package's threads of the same run."""
    if not fr.free_threaded:
        return []
    name = _free_threaded_name(fr)
    lines = [
        "",
        f"Ours on {name}, the same operation in a child process per measurement (a factory "
        "built and warmed up first), taking turns with the two sides above; the package runs "
        "on this run's Python, as in the rows above. `nox -s bench` builds that Python "
        "(tools/install-free-threaded-python.sh) or takes the one `ASHERAH_FREE_THREADED_PYTHON` "
        "names, and fails if it turned its GIL on.",
        "",
        "| threads | ours, GIL off (pairs/s) | asherah (pairs/s) | ours, GIL off / asherah | "
        "ours, GIL off / its 1 thread |",
        "|---|---|---|---|---|",
    ]
    one = fr.free_threaded.get(thread_label(1))
    for n in fr.config.thread_counts:
        label = thread_label(n)
        free, its = fr.free_threaded.get(label), fr.rates.get((THEIRS, label))
        if free and its:
            own = _fmt(paired_ratios(free, one)) if one else DASH
            lines.append(
                f"| {label} | {_fmt(summarize(free), 0)} | {_fmt(summarize(its), 0)} | "
                f"{_fmt(paired_ratios(free, its))} | {own} |"
            )
    return lines


def _kms_table(fr: FrameworkResults, sub: str) -> list[str]:
    if not fr.kms:
        return []
    cfg = fr.config
    lines = [
        f"{sub} KMS and metastore calls ({cfg.kms_rows:,} rows over {cfg.kms_partitions} "
        f"partitions, AWS KMS in LocalStack, {cfg.kms_regions} regions)",
        "",
        "A fresh factory on an empty SQLite file encrypts the rows round robin over the "
        "partitions; another fresh factory decrypts them. Both sides reach KMS through one "
        "local proxy process (`tools/bench/kmsproxy.py`, `AWS_ENDPOINT_URL`) that counts the "
        "requests by API and adds the latency before forwarding each: the package's Rust SDK "
        "cannot take the botocore hook the KMS benchmark below uses. Metastore writes are the "
        "new rows in the table (both sides); metastore reads are counted by wrapping our "
        "metastore, and for the package by its `cache_miss` events.",
        "",
        "| latency per KMS call | phase | side | KMS calls | metastore reads | metastore "
        "writes | time for all rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for (latency, phase, side), c in sorted(fr.kms.items()):
        calls = ", ".join(f"{api} {n}" for api, n in sorted(c.kms.items())) or "none"
        lines.append(
            f"| {latency} ms | {phase} | {side} | {_kms_total(c)} ({calls}) | "
            f"{c.metastore_reads} | {c.metastore_writes} | {c.seconds * 1e3:.0f} ms |"
        )
    return [*lines, ""]


def _memory(fr: FrameworkResults, sub: str) -> list[str]:
    if not fr.memory:
        return []
    cfg = fr.config
    lines = [
        f"{sub} Memory",
        "",
        f"A child process per side encrypts and decrypts {cfg.memory_rows:,} rows of 1 KB "
        f"round robin over {cfg.memory_partitions:,} partitions (`get_session` per row, "
        "session and key caches on, in-memory metastore, static KMS; the rows are not kept, "
        "so what remains is the library's own). Peak resident set (VmHWM) after the factory "
        "and one row, and at the end.",
        "",
        "| side | after one row (MiB) | peak (MiB) | growth (MiB) | time for all rows (s) |",
        "|---|---|---|---|---|",
    ]
    for side in SIDES:
        m = fr.memory.get(side)
        if m:
            lines.append(
                f"| {side} | {m['baseline_kib'] / 1024:.1f} | {m['maxrss_kib'] / 1024:.1f} | "
                f"{(m['maxrss_kib'] - m['baseline_kib']) / 1024:.1f} | {m['seconds']:.1f} |"
            )
    return [*lines, ""]


def _behind(
    fr: FrameworkResults, goals: list[FrameworkGoal], pieces: list[tuple[str, str, float]], sub: str
) -> list[str]:
    lines = [f"{sub} Where we are behind, and why", ""]
    missed = [g for g in goals if not g.passed]
    for g in missed:
        over = g.shortfall
        lines.append(
            f"- **{g.what}**: {g.value.median:.2f} {TIMES} against a target of "
            f"{g.target}, {over:.2f} {TIMES} off it ({(over - 1) * 100:.0f} % beyond "
            "what the target allows)."
        )
    if not missed:
        lines.append("- No goal missed in this run.")
    cold = Op("cold", ROLLBACK, ONE_KB)
    if (OURS, cold) in fr.samples and fr.ratio(cold).median > 1.0:
        lines.append(
            "- The first encrypt of a partition on a file in SQLite's rollback journal (not a "
            "goal: a new file is in WAL mode on ours, see the goal's row), "
            f"{fr.ratio(cold).median:.2f} {TIMES}: both sides make the same system calls for "
            "the new intermediate key (a read of the latest key, then an insert with four "
            "syncs of the journal, checked with strace); the difference is the time spent "
            "around them in SQLAlchemy and Python. With the metastore calls replaced by no-ops, "
            "our first encrypt of a partition takes about 23 µs; the rest of the gap is code that "
            "runs right after the commit's syncs, while the thread slept and the CPU's caches "
            "went cold: the pool's check-in of the connection took 18.5 µs after a commit "
            "against 5.0 otherwise (so the metastore now keeps its connections checked out on "
            "a SQLite file), and a small pure-Python loop 6.9 µs against 3.9 (medians of 300, "
            "one SQLite file). The package's Rust runs far less code there."
        )
    lines += ["", *_findings(fr, pieces)]
    lines += [
        "",
        "The package does the whole row in compiled Rust, in one call from Python. Ours "
        "makes each step a separate call into C (`cryptography`'s AESGCM, `pybase64`), each "
        "paying CPython's call overhead, and a new `AESGCM` object per row for the new data "
        "row key. Each piece of a warm 1 KB row timed alone "
        f"(`timeit`, best of 5 {TIMES} 5,000 calls, in this run):",
        "",
        f"| operation | piece | {MU}s |",
        "|---|---|---|",
    ]
    for op, name, us in pieces:
        lines.append(f"| {op} | {name} | {us:.2f} |")
    lines += [
        "",
        "Reading it: the pieces that no Python implementation can drop (the random bytes, "
        "a new AESGCM for the row key, two AEAD calls, base64 of the data) set a floor to "
        "compare with the package's whole call; the rest of ours is reading or writing the "
        "record and Python's call overhead. An OpenTelemetry histogram record costs little "
        "with the API alone, but several microseconds per row once an SDK is installed.",
        "",
    ]
    return lines


def _piece(pieces: list[tuple[str, str, float]], op: str, start: str) -> float | None:
    for o, name, us in pieces:
        if o == op and name.startswith(start):
            return us
    return None


def _findings(fr: FrameworkResults, pieces: list[tuple[str, str, float]]) -> list[str]:
    """What profiling the hot paths found, with this run's figures where it has them."""
    enc, dec = "encrypt 1 KB", "decrypt 1 KB"
    ours_dec = _piece(pieces, dec, "whole call, ours")
    theirs_dec = _piece(pieces, dec, "whole call, asherah")
    floor = _piece(pieces, dec, "the floor")
    reader = _piece(pieces, dec, "ours: reading a row of the partition's latest key")
    general = _piece(pieces, dec, "ours: the general reader")
    compiled = _piece(pieces, dec, "ours: `_rows.open_latest` as installed")
    python = _piece(pieces, dec, "ours: `_rows.open_latest` run from its Python source")
    built = next(
        (name.split("(")[-1].rstrip(")") for _, name, _ in pieces if "as installed (" in name),
        "",
    )
    new_aead = _piece(pieces, enc, "AESGCM(row key)")
    urandom = _piece(pieces, enc, "os.urandom(56) once")
    block = _piece(pieces, enc, "ours: a 56-byte block")
    ours_enc = _piece(pieces, enc, "whole call, ours")
    theirs_enc = _piece(pieces, enc, "whole call, asherah")
    seal_data = _piece(pieces, enc, "AESGCM.encrypt of the 1 KB data")
    seal_key = _piece(pieces, enc, "AESGCM.encrypt of the 32-byte row key")
    lines = [
        "What profiling found (per-call costs with `perf_counter_ns` and `timeit` over "
        "hundreds of thousands of calls, `cProfile` for the uncached paths, `py-spy` and a "
        "GIL hand-off test for threads, `tracemalloc` for memory):",
        "",
    ]
    if ours_dec and theirs_dec and floor:
        lines.append(
            f"- **Decrypt.** The floor of a decrypt in Python (find the fields by slicing, two "
            f"base64 decodes, open the row key with the cached `AESGCM`, open the data with a "
            f"new one) takes {floor:.2f} {MU}s in this run, {floor / theirs_dec:.2f} {TIMES} the "
            f"package's whole call ({theirs_dec:.2f} {MU}s): a new `AESGCM` for the row key "
            + (f"alone costs {new_aead:.2f} {MU}s" if new_aead else "alone costs about 0.5 µs")
            + " (on the machine of an earlier run, cryptography 51 halved it: 0.89 µs on 50; "
            "each open took 0.4 to 0.7 µs there). Ours took "
            f"{ours_dec:.2f} {MU}s. A row sealed by the partition's latest intermediate key, "
            "the common case, is read and opened by `_rows.open_latest`: it recognises the row "
            "by the text that key writes between the row key and the data "
            "(`CachedKey.row_middle`, made once, when the key becomes a partition's latest), "
            "which also finds the key without a second look-up; it decodes the two base64 "
            "fields in one call and opens the row key and the data from that one buffer"
            + (f" (reading alone: {reader:.2f} {MU}s)" if reader else "")
            + ". Checking that the text is exactly what the JSON reader would read alike costs "
            "about 0.6 µs (the head, the digits of `Created`, the key's `row_middle`, the "
            "tail), the timing and metrics of the call about 0.25 (now paid only while an SDK "
            "or the metrics hook listens, so not in this run). The rest over the floor was "
            "the interpreter's own work between the calls into C, which no rewriting in Python "
            "removed (the whole path as one function saved 0.15 µs). So `_rows` holds plain "
            "typed functions that mypyc compiles into a C extension when the wheel is built "
            "with a C compiler at hand (asherah_core/setup.py; pure Python otherwise, with the "
            "same results)"
            + (
                f": in this run `open_latest` takes {compiled:.2f} {MU}s as installed "
                f"({built}) against {python:.2f} {MU}s run from its Python source"
                if compiled and python
                else ""
            )
            + ". Its constants (the record's markers, the nonce and tag sizes, the base64 "
            "decoder) are `Final`: compiled, a plain module name is a dictionary look-up at "
            "each use, a `Final` one a constant, which took 0.1 to 0.2 µs off a decrypt. Any "
            "other row takes the general reader"
            + (f" (`_rows.parse_row`, {general:.2f} {MU}s)" if general else "")
            + ", then the same `_rows.open_row`."
        )
    if ours_enc and theirs_enc and new_aead and seal_data and seal_key:
        crypto = new_aead + seal_data + seal_key
        lines.append(
            f"- **Encrypt, and the CPU.** The three `cryptography` calls of an encrypt (a new "
            f"`AESGCM` for the row key, the sealing of the data and of the row key) take "
            f"{crypto:.2f} {MU}s in this run, {crypto / theirs_enc:.2f} {TIMES} the package's "
            f"whole encrypt ({theirs_enc:.2f} {MU}s); ours took {ours_enc:.2f} {MU}s. Most of "
            "each call is `cryptography`'s fixed cost around OpenSSL, not the cipher: a new "
            "`AESGCM` sets up two cipher contexts (one to encrypt, one to decrypt), and each "
            "call copies one and sets its nonce, where the package's Rust core calls its "
            "cipher directly. On the Zen 5 EPYC of an earlier page (with AVX-512) the same "
            "three calls took 1.39 µs, 0.54 of the package's 2.57, and ours was 1.33 times the "
            "package: the goals' ratios were set on such machines, and they move with the CPU "
            "(the set-up below names this run's)."
        )
    if urandom and block:
        lines.append(
            f"- **Randomness.** `os.urandom(56)` costs {urandom:.2f} {MU}s and is a system call "
            "that lets go of the GIL. A block of the per-thread buffer (one read of the "
            "kernel's generator per 256 rows, straight into the buffer), wiped after use, costs "
            f"{block:.2f} {MU}s here and gives the GIL "
            "away only at a refill. The views of each block and of its three parts (row key, "
            "two nonces) are made once, with the thread's buffer (about 0.2 MB a thread): "
            "slicing them anew for each row cost about 0.25 µs more, a warm encrypt 1.44 times the "
            "package's instead of 1.36 (alternating processes, Zen 5). About 0.14 µs of a block is "
            "the kernel's own work, which no "
            "buffer size removes: its CSPRNG gave about 0.4 GB/s on the machine of an earlier "
            "run, measured by hand (36 µs for a refill of 14,336 bytes; 2.5 ns a byte from 4 KB "
            "reads up)."
        )
    lines += [
        "- **Threads.** `py-spy` on 8 threads sharing one factory found about 90 % of the "
        "samples waiting at the `pybase64` calls of a pair: pybase64 lets go of the GIL in "
        "every call, however short, and the thread then waits to take it back, so with "
        "threads each call was a hand-off of the GIL and a context switch (`strace`: about "
        "158,000 futex calls for 40,000 pairs in 8 threads). `binascii`, msgspec and librt "
        "hold the GIL, as do the AEAD calls of `cryptography`. So a row makes one base64 call "
        "per direction, and while threads contend, fields of up to 8 KB go through librt's "
        "base64 (the mypy project's C runtime library): no hand-off. Its decoder is lax (it "
        "skips what is not base64), so its result stands only when it is as long as a "
        "well-formed text of that length gives (every character but the final `=` was then "
        "read as base64), and pybase64 decides every other. `_b64` is compiled by mypyc with "
        "`_rows`: checked that way, a 1 KB decode costs about what pybase64's does, where "
        "encoding the result back to compare it, in Python, cost 0.2 µs more (see the pieces "
        "below). Contention is seen as base64 fields slower than 50 µs (a field through "
        "pybase64 is timed when its text begins with `A`, one in 64 of the random sealed "
        "bytes, so that no thread writes a shared count) in two different threads within "
        "10 ms; one thread alone keeps pybase64. binascii was tried first and gave no clear "
        "gain: it decodes 1 KB in 3 to 6 µs. msgspec's base64 came next, about 1.8 µs more "
        "per pair than pybase64: with it "
        "8 threads made 0.78 to 0.85 of one thread's rate, and about 0.93 with librt (the "
        "same loop of 3 s per count, one after the other). The package lets go of the GIL "
        "for its whole call, so its threads use both cores; a GIL-bound implementation "
        "cannot reach its rate with threads (processes can: see the 8 processes row)."
        + _thread_ceiling(fr),
        "- **Uncached old rows and cold partitions.** `SqlMetastore.load` took about 70 µs "
        "through SQLAlchemy's `Connection` (a pooled connection checked out and returned, a "
        "transaction begun, a result object) where SQLite's own read is about 8 µs; each way "
        "to run the two hot statements is measured below. Both run on a DBAPI connection, "
        "compiled once per dialect, unless someone listens to the engine's statement events. "
        "On a SQLite file the metastore now keeps up to `pool_size - 1` connections checked "
        "out between calls: the pool's checkout and return cost 6.1 µs, and 18.5 right after "
        "a commit. By stage, timed alone: SQLite's read about 8 µs, of which about 6 are the "
        "eight system calls around a read outside a transaction (`strace`: four `fcntl` locks, "
        "a look for a journal and a WAL file, the header's change counter, the file's size; "
        "the same read inside a transaction takes 1.8 µs, and the package reads the same "
        "way), the handling of the statement around it "
        "2, the key record's reader 2.3 (4.7 before a record of known fields only was read "
        "in one msgspec call, 5.6 before its field names were built only on failure), the "
        "check for statement listeners 0.1 (0.6 before it read SQLAlchemy's `_has_events`), "
        "the created value 0.2 (1.3 before it was remembered): about 14 µs in all. Outside "
        "the load, with the metastore in memory, about 17 µs: the general row reader 2.5, a "
        "new session 3.1 (its `Partition` 1.2, the session cache), a `CachedKey` 2.1 (2.9 "
        "before key ids skipped `json.dumps`), the unsealing and the open. In the loop of old "
        "rows the load takes about 16.5 µs of a row's 37.5 (31 of 52 before connections were "
        "kept and records read in one call): what runs between two loads pushes SQLite's "
        "code out of the CPU caches. Counted with callgrind (instructions, the same on every "
        "run whatever else the machine does), a row of that loop (25 rows per fresh factory) "
        "took 238,400 user-space instructions and takes 206,900 now (-13 %): a `CachedKey` "
        "makes its row texts only when it becomes a partition's latest key, which an old "
        "row's key never does (-4 %); the driver's cursor is used directly and closed "
        "without `contextlib.suppress`; the metastore timing wraps the call without a lambda; "
        "a record's parent `KeyMeta` is shared; a system key hit takes no lock.",
        "- **Memory.** `tracemalloc` over the 100,000 rows showed the Python heap growing by "
        "only about 1.7 MB (1,000 sessions, keys and their records); the extra resident memory "
        "was imports. `asyncio`, imported by the KMS and metastore interfaces and the session "
        "for `to_thread` only, loads `ssl` and the system's OpenSSL, about 6 MiB; the "
        "PascalCase reader imported `ssl` for the MySQL `tls=` option. Both are now imported "
        "when first needed, and so is `importlib.metadata` (about 4 MiB with `email`, "
        "`zipfile` and `csv`), now only when plugins are discovered: the package's "
        "configuration with built-in parts needs none. What remains: `cryptography` (its own "
        "OpenSSL, about 6.7 MiB), OpenTelemetry's API, pluggy, and the 1,000 sessions and "
        "their keys.",
    ]
    return lines


def _thread_ceiling(fr: FrameworkResults) -> str:
    """The most threads holding the GIL could make against the package: our one thread."""
    label = thread_label(fr.config.threads)
    one, its = fr.rates.get((OURS, thread_label(1))), fr.rates.get((THEIRS, label))
    if not (one and its):
        return ""
    ceiling = statistics.median(one) / statistics.median(its)
    out = (
        f" With the GIL held, {fr.config.threads} threads make at most what one thread makes: "
        f"in this run that ceiling is {ceiling:.2f} {TIMES} the package's "
        f"{fr.config.threads} threads, against the goal of 0.8."
    ) + _bare_rows(fr, statistics.median(its))
    free = fr.free_threaded.get(label)
    if not free:
        return out
    return out + (
        f" On {_free_threaded_name(fr)} the same code's threads run on both cores: "
        f"{fr.config.threads} threads made {statistics.median(free):,.0f} pairs/s, "
        f"{statistics.median(free) / statistics.median(its):.2f} {TIMES} the package's "
        "(the table below). There the base64 switch is off (there is no GIL to hand over), "
        "and nothing on a row's path writes a count that every thread writes but the key "
        "cache's hits: the base64's shared count of fields (to time one field in 64) cost 8 "
        "threads about a fifth of their pairs on the Zen 3 EPYC of a later run (86,000 "
        "against 69,000 pairs/s, medians of 14 alternating processes), and an earlier one "
        "made 16 threads slower than 2. `perf` and `gdb` on 16 threads once found waits in "
        "the per-object locks of the key cache (its hit counter) and the metrics' histogram "
        "tap; a row touches the tap now only while a metrics SDK or hook listens, and taking "
        "the hit counter out by hand gained nothing on that Zen 3 (64,000 pairs/s without "
        "it, 71,000 with, medians of 10 alternating processes)."
    )


def _bare_rows(fr: FrameworkResults, theirs: float) -> str:
    """Our rows with no session around them against the package, with the goal's threads."""
    ours = fr.rates.get((OURS, thread_label(fr.config.threads)))
    if not (fr.bare_rows and ours):
        return ""
    bare, mine = statistics.median(fr.bare_rows), statistics.median(ours)
    return (
        " Below ours lies the floor of a session built as ours is, on `cryptography` and "
        "holding the GIL: the same pair with no session at all (a block of the thread's "
        "random buffer, `_rows.seal`, the block wiped, `_rows.open_latest`, a cached key, the "
        f"base64 that holds the GIL) made {bare:,.0f} pairs/s with {fr.config.threads} "
        f"threads in this run, {bare / theirs:.2f} {TIMES} the package's, where ours made "
        f"{mine:,.0f} ({mine / theirs:.2f} {TIMES}). Between the two is all a session does on "
        "a row: the expiry and cache checks, the clock of the expiry, its method calls; a row "
        "is timed for the metrics only while an OpenTelemetry SDK or the metrics hook "
        "listens, so not here. Measured once, by hand, on a Zen 5 EPYC before rows went "
        "untimed (one thread, best of 25 alternating repeats): a pair took 5.99 µs, the "
        "package's 4.50; 5.76 with the sealing and the timing of an opened row written into "
        "`encrypt_bytes` and `decrypt_bytes` instead of methods of their own that the "
        "coroutines share; 5.43 without the timing and histograms as well. Compiling the "
        "session's glue with mypyc changes little: a mypyc-compiled class making the same "
        "calls took 5.95 µs a pair against 5.95 for ours, and 0.73 of the package's rate "
        "against 0.71 with 8 threads, within the noise: the calls themselves cost, not the "
        "interpreter between them."
    )


def _sql_paths(fr: FrameworkResults, sub: str) -> list[str]:
    if not fr.sql_paths:
        return []
    lines = [
        f"{sub} SqlMetastore's hot statements, each way to run them (SQLite file)",
        "",
        "The load of a key row (an uncached old row, the latest key of a cold partition) and "
        "the store of a new key, timed alone on one SQLite file: best of 5 runs (`timeit`; "
        "a store commits, so it syncs the file). SQLAlchemy stays for URLs, engines, pools "
        "and dialects; the statements are compiled once for the dialect.",
        "",
        f"| statement | way | {MU}s per call |",
        "|---|---|---|",
    ]
    for statement, way, us in fr.sql_paths:
        lines.append(f"| {statement} | {way} | {us:.1f} |")
    return [*lines, ""]


def framework_plot(fr: FrameworkResults, path: Path) -> None:
    """Time per operation against payload size, both sides, encrypt and decrypt, log-log."""
    import matplotlib  # noqa: PLC0415 - only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sizes = list(fr.config.sizes)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, op in zip(axes, ("encrypt", "decrypt"), strict=True):
        for side, colour in ((OURS, "tab:blue"), (THEIRS, "tab:orange")):
            for store, style in (("memory", "-"), ("sqlite", ":")):
                xs, ys, low, high = [], [], [], []
                for size in sizes:
                    key = (side, Op(op, store, size))
                    if key not in fr.samples:
                        continue
                    s = fr.summary(side, key[1]).scaled(1e6)
                    xs.append(size)
                    ys.append(s.median)
                    low.append(s.median - s.p25)
                    high.append(s.p75 - s.median)
                if xs:
                    ax.errorbar(
                        xs, ys, yerr=[low, high], label=f"{side}, {store} metastore",
                        color=colour, linestyle=style, marker="o", capsize=3,
                    )  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [_size(s) for s in sizes])
        ax.minorticks_off()
        ax.set_title(f"{op}, warm session, one thread")
        ax.set_xlabel("payload size (log scale)")
        ax.set_ylabel(f"time per operation, {MU}s, log scale (median, p25{DASH}p75)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def threads_plot(fr: FrameworkResults, path: Path) -> None:
    """Pairs per second against the number of threads sharing one factory, both sides (and
    ours on a free-threaded Python, when measured)."""
    import matplotlib  # noqa: PLC0415 - only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    counts = [n for n in fr.config.thread_counts if (OURS, thread_label(n)) in fr.rates]
    if not counts:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for side, colour in ((OURS, "tab:blue"), (THEIRS, "tab:orange")):
        medians, low, high = [], [], []
        for n in counts:
            s = summarize(fr.rates[(side, thread_label(n))])
            medians.append(s.median)
            low.append(s.median - s.p25)
            high.append(s.p75 - s.median)
        ax.errorbar(
            counts, medians, yerr=[low, high], label=side, color=colour, marker="o", capsize=3
        )
    free = [n for n in counts if thread_label(n) in fr.free_threaded]
    if free:
        summaries = [summarize(fr.free_threaded[thread_label(n)]) for n in free]
        ax.errorbar(
            free,
            [s.median for s in summaries],
            yerr=[[s.median - s.p25 for s in summaries], [s.p75 - s.median for s in summaries]],
            label=f"ours on {_free_threaded_name(fr)}",
            color="tab:green",
            marker="s",
            capsize=3,
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("threads sharing one factory (a session each)")
    ax.set_ylabel("1 KB encrypt + decrypt pairs per second")
    ax.set_title("Throughput against threads (2 cores, in-memory metastore)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
