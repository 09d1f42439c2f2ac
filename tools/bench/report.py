"""The benchmark's output: the goals, the markdown page, the plot, and the run's environment."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .measure import Summary, paired_ratios, summarize
from .run import (
    DECRYPT,
    ENCRYPT,
    ESDK,
    FLOOR,
    POOLED,
    SEQUENTIAL,
    Cell,
    LatencyRun,
    Results,
    describe_counts,
)
from .systems import DOWN_TIMEOUT, HEDGE_AFTER, MODE_LABELS, MODES, SLOW_EXTRA

__all__ = ["Goal", "environment", "goals", "markdown", "plot"]

PACKAGES = (
    "asherah-core",
    "asherah-aws-kms-v2",
    "boto3",
    "botocore",
    "cryptography",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "aws-encryption-sdk",
    "aws-cryptographic-material-providers",
    "matplotlib",
)
SYSTEM_ORDER = (*(MODE_LABELS[m] for m in MODES), SEQUENTIAL, ESDK, FLOOR)
TABLE_ORDER = (*SYSTEM_ORDER, *POOLED.values())
DEFAULT, LOCAL, MRK = MODE_LABELS["default"], MODE_LABELS["local"], MODE_LABELS["mrk"]
DOWN, SLOW = MODE_LABELS["down"], MODE_LABELS["slow"]
GOAL_REGIONS = 3
CPU_LIMIT = 1.10
DASH, TIMES = "\u2013", "\u00d7"
BEHIND_LIMIT = 1.05
"""Ours is reported as behind a peer when the median round-by-round ratio is above this."""


@dataclass(frozen=True)
class Goal:
    """One number to reach, and what was measured."""

    kind: str
    """``latency`` (time in units of T) or ``efficiency`` (against the peers, CPU, throughput)."""
    what: str
    target: str
    value: Summary
    unit: str
    passed: bool
    note: str = ""


def _top(results: Results) -> LatencyRun:
    return results.latency[max(results.latency)]


def goals(results: Results) -> list[Goal]:
    """The KMS plugin's goals, measured (L = the highest latency run, 3 regions)."""
    run = _top(results)
    lat = f"L = {run.latency_ms} ms, {GOAL_REGIONS} regions"
    n = GOAL_REGIONS
    out: list[Goal] = []

    def in_t(
        kind: str, what: str, cell: Cell, limit: float, note: str = "", ok: bool = True
    ) -> None:
        value = run.in_t(cell)
        out.append(
            Goal(kind, what, f"≤ {limit:g} T", value, "T", ok and value.median <= limit, note)
        )

    in_t("latency", f"encrypt_key, default mode ({lat})", Cell(ENCRYPT, DEFAULT, n), 2.2)
    mrk_calls = run.calls[Cell(ENCRYPT, MRK, n)]
    in_t(
        "latency",
        f"encrypt_key, Multi-Region key ({lat}), and exactly one KMS call",
        Cell(ENCRYPT, MRK, n),
        1.2,
        note=f"{mrk_calls} KMS call(s) per encrypt_key",
        ok=mrk_calls == 1,
    )
    in_t("latency", f"encrypt_key, local data key ({lat})", Cell(ENCRYPT, LOCAL, n), 1.2)
    in_t("latency", f"decrypt_key, all healthy ({lat})", Cell(DECRYPT, DEFAULT, n), 1.1)
    hole = results.black_hole
    if hole.next_medians:
        ratios = [m / run.t for m in hole.next_medians]
        value = Summary(statistics.median(ratios), min(ratios), max(ratios), len(ratios))
        out.append(
            Goal(
                "latency",
                f"decrypt_key, preferred region never answers, timeout {DOWN_TIMEOUT:g} s: "
                f"median of the {results.config.black_hole_calls} calls after the first ({lat})",
                "≤ 1.3 T",
                value,
                "T",
                value.median <= 1.3,
                note=f"spread: min{DASH}max of {len(ratios)} fresh instances; first call "
                f"{statistics.median(hole.first) * 1000:.0f} ms",
            )
        )
    in_t(
        "latency",
        f"decrypt_key, preferred region {SLOW_EXTRA * 1000:.0f} ms late, hedge "
        f"{HEDGE_AFTER * 1000:.0f} ms ({lat})",
        Cell(DECRYPT, SLOW, n),
        3.3,
    )
    for mode, limit in ((DEFAULT, 0.75), (MRK, 0.45), (LOCAL, 0.45)):
        for peer in (SEQUENTIAL, ESDK):
            value = run.ratio(Cell(ENCRYPT, mode, n), Cell(ENCRYPT, peer, n))
            out.append(
                Goal(
                    "efficiency",
                    f"encrypt_key ({mode}) / {peer} ({lat})",
                    f"≤ {limit:g}",
                    value,
                    TIMES,
                    value.median <= limit,
                )
            )
    for name in (f"{ENCRYPT}, default", f"{DECRYPT}, default"):
        if name in results.cpu.ours:
            value = paired_ratios(results.cpu.ours[name], results.cpu.raw[name])
            out.append(
                Goal(
                    "efficiency",
                    f"CPU time of {name.replace(', ', ' (')} mode, 3 regions, L = 0) / "
                    "the raw boto3 calls it issues",
                    f"≤ {CPU_LIMIT:g} (overhead ≤ 10 %)",
                    value,
                    TIMES,
                    value.median <= CPU_LIMIT,
                )
            )
    top_threads = max(results.config.thread_counts)
    for latency_ms in sorted(results.latency):
        if (latency_ms, "ours", top_threads) not in results.throughput:
            continue
        value = paired_ratios(
            results.throughput[(latency_ms, "ours", top_threads)],
            results.throughput[(latency_ms, "raw", top_threads)],
        )
        out.append(
            Goal(
                "efficiency",
                f"throughput with {top_threads} threads sharing one instance / raw boto3 with "
                f"{top_threads} threads (encrypt_key + decrypt_key, 3 regions, "
                f"L = {latency_ms} ms)",
                "≥ 0.9",
                value,
                TIMES,
                value.median >= 0.9,
            )
        )
    return out


def _fmt(value: Summary, digits: int = 2) -> str:
    return f"{value.median:.{digits}f} ({value.p25:.{digits}f}{DASH}{value.p75:.{digits}f})"


def _ms(value: Summary) -> str:
    ms = value.scaled(1000)
    digits = 1 if ms.median < 100 else 0
    return _fmt(ms, digits)


_CPU_FLAGS = (("aes", "AES-NI"), ("vaes", "VAES"), ("avx512f", "AVX-512"))
"""The instructions AES-GCM's speed depends on, as /proc/cpuinfo names them, and as shown."""


def cpu_description(cpuinfo: str) -> str:
    """The first processor of `cpuinfo` (the text of /proc/cpuinfo): its model name, then its
    family and model numbers, which tell generations apart where a cloud host's name does not
    (every one called "AMD EPYC"), and which of `_CPU_FLAGS` it has. The ratios against the
    package move with these: `cryptography`'s per-call cost weighs more on some CPUs."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the end of the first processor's block
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']}, model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    if flags:
        details.append(
            ", ".join(label if flag in flags else f"no {label}" for flag, label in _CPU_FLAGS)
        )
    name = fields.get("model name", "unknown CPU")
    return f"{name} ({'; '.join(details)})" if details else name


def environment(endpoint: str) -> dict[str, str]:
    """The machine, the interpreter, the libraries and LocalStack of this run."""
    info: dict[str, str] = {}
    cpuinfo = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        mem = next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        info["memory"] = f"{int(mem) / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    info["cpu"] = f"{cpu_description(cpuinfo)}, {os.cpu_count()} logical cores"
    info["os"] = platform.platform()
    info["python"] = f"{platform.python_implementation()} {platform.python_version()}"
    for package in PACKAGES:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "not installed"
        if package.startswith("asherah") and version != "not installed":
            version += " (editable)" if _editable(package) else " (non-editable install)"
        info[package] = version
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(endpoint + "/_localstack/info", timeout=5) as response:
            info["localstack"] = str(json.loads(response.read()).get("version", "unknown"))
    except (OSError, ValueError):
        info["localstack"] = "unknown"
    return info


def _editable(package: str) -> bool:
    try:
        text = metadata.distribution(package).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return False
    if not text:
        return False
    return bool(json.loads(text).get("dir_info", {}).get("editable", False))


def _latency_table(run: LatencyRun, op: str, counts: Sequence[int]) -> list[str]:
    head = "| system | " + " | ".join(f"{n} region{'s' * (n > 1)}" for n in counts)
    head += f" | KMS calls ({GOAL_REGIONS} regions) |"
    lines = [head, "|" + "---|" * (len(counts) + 2)]
    for system in TABLE_ORDER:
        if not any(Cell(op, system, n) in run.samples for n in counts):
            continue
        cells = []
        for n in counts:
            cell = Cell(op, system, n)
            cells.append(_ms(run.summary(cell)) if cell in run.samples else "—")
        calls = run.calls.get(Cell(op, system, GOAL_REGIONS))
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {calls if calls else '—'} |")
    return lines


def _relative_table(run: LatencyRun, counts: Sequence[int]) -> list[str]:
    lines = [
        "| encrypt_key of | / | " + " | ".join(f"{n} region{'s' * (n > 1)}" for n in counts) + " |",
        "|" + "---|" * (len(counts) + 2),
    ]
    for mode in (DEFAULT, LOCAL, MRK):
        for peer in (SEQUENTIAL, ESDK):
            cells = [
                _fmt(run.ratio(Cell(ENCRYPT, mode, n), Cell(ENCRYPT, peer, n))) for n in counts
            ]
            lines.append(f"| {mode} | {peer} | " + " | ".join(cells) + " |")
    for peer in (SEQUENTIAL, ESDK):
        cells = [_fmt(run.ratio(Cell(DECRYPT, DEFAULT, n), Cell(DECRYPT, peer, n))) for n in counts]
        lines.append(f"| decrypt_key, {DEFAULT} | {peer} | " + " | ".join(cells) + " |")
    return lines


def behind(results: Results, goal_list: Sequence[Goal]) -> list[str]:
    """Where we are behind a goal or a peer, in plain words (empty when nowhere)."""
    notes = [
        f"Goal missed: {g.what}: {_fmt(g.value)} {g.unit}, target {g.target}."
        for g in goal_list
        if not g.passed
    ]
    for latency_ms, run in sorted(results.latency.items()):
        for op in (ENCRYPT, DECRYPT):
            for n in results.config.region_counts:
                for peer in (SEQUENTIAL, ESDK):
                    ratio = run.ratio(Cell(op, DEFAULT, n), Cell(op, peer, n))
                    if ratio.median > BEHIND_LIMIT:
                        clearly = "" if ratio.p25 > 1 else " (within the noise: p25 ≤ 1)"
                        notes.append(
                            f"{op} at L = {latency_ms} ms, {n} region(s): ours (default) takes "
                            f"{_fmt(ratio)} times as long as the {peer}{clearly}."
                        )
    run = _top(results)
    for mode in ("default", "local"):
        mine = Cell(ENCRYPT, MODE_LABELS[mode], GOAL_REGIONS)
        floor = Cell(ENCRYPT, POOLED[mode], GOAL_REGIONS)
        missed = [g for g in goal_list if not g.passed and g.unit == "T" and mode_of(g) == mode]
        if missed and floor in run.samples:
            notes.append(
                f"encrypt_key, {MODE_LABELS[mode]}: the same KMS calls sent the same way with raw "
                f"boto3 (at once, as ours sends them) took {_fmt(run.in_t(floor))} T in "
                f"this run, ours {_fmt(run.in_t(mine))} T, ours / them "
                f"{_fmt(run.ratio(mine, floor))}. Calls sent at once do not overlap fully here: "
                "they share two cores and two interpreter locks (ours and LocalStack's), so "
                "each call's processing is partly serialized; against remote KMS only "
                "the network time overlaps, and that is where the gain is."
            )
    cpu = results.cpu
    over: list[str] = []
    for name, values in cpu.ours.items():
        ratio = paired_ratios(values, cpu.raw[name])
        if ratio.median > CPU_LIMIT:
            handoff = paired_ratios(cpu.pooled[name], cpu.raw[name]).median
            own = paired_ratios(values, cpu.pooled[name]).median
            over.append(f"{name} {ratio.median:.2f} ({handoff:.2f} {TIMES} {own:.2f})")
    if over:
        notes.append(
            "CPU time at L = 0 above the raw boto3 calls by more than the 10 % aimed at "
            f"(ours / raw = raw, pooled / raw {TIMES} ours / raw, pooled): {'; '.join(over)}. "
            "The first factor is the price of making the regional Encrypt calls at once: two "
            "threads in botocore together contend for the interpreter lock and share two cores "
            "with LocalStack. The second is our own work, of which sealing or opening the key "
            "(AES-256-GCM) and writing or reading the envelope are the larger part; the raw "
            "calls do neither."
        )
    return notes


def mode_of(goal: Goal) -> str:
    """``"local"`` or ``"default"`` for an encrypt_key latency goal, else ``""``."""
    if not goal.what.startswith("encrypt_key"):
        return ""
    if "local data key" in goal.what:
        return "local"
    return "default" if "default mode" in goal.what else ""


def known_limits(results: Results) -> list[str]:
    """What the design leaves slow, with this run's figures."""
    run = _top(results)
    n = GOAL_REGIONS
    slow = run.summary(Cell(ENCRYPT, SLOW, n)).median * 1000
    default = run.summary(Cell(ENCRYPT, DEFAULT, n)).median * 1000
    first = run.first_call.get(Cell(ENCRYPT, DOWN, n), 0.0) * 1000
    hole = results.black_hole
    sequential_down = statistics.median(hole.sequential) * 1000 if hole.sequential else 0.0
    notes: list[str] = []
    top_threads = max(results.config.thread_counts)
    at_zero = [
        results.throughput.get((lat, side, top_threads))
        for lat in (0, run.latency_ms)
        for side in ("ours", "raw")
    ]
    if all(at_zero):
        mine0, raw0, mine_top, raw_top = (v for v in at_zero if v is not None)
        notes.append(
            f"Throughput with {top_threads} threads: LocalStack shares the 2 cores with the "
            "benchmark, so when CPU is the limit (see the throughput section) what ours spends "
            "more per operation is also taken from LocalStack, and ours / raw "
            f"(L = 0: {_fmt(paired_ratios(mine0, raw0))}; L = {run.latency_ms} ms: "
            f"{_fmt(paired_ratios(mine_top, raw_top))}) follows the CPU overhead above and the "
            "machine's other load."
        )
        one = [results.throughput.get((run.latency_ms, side, 1)) for side in ("ours", "raw")]
        if one[0] and one[1]:
            notes[-1] += (
                f" With one thread at L = {run.latency_ms} ms, where latency is the limit, "
                f"ours / raw is {_fmt(paired_ratios(one[0], one[1]))}: the regional calls go "
                "out at once."
            )
    notes += [
        f"encrypt_key is not hedged: with the preferred region {SLOW_EXTRA * 1000:.0f} ms late it "
        f"takes {slow:.0f} ms at L = {run.latency_ms} ms ({n} regions), against {default:.0f} ms "
        "when healthy, because every region's copy is awaited (the peers wait the same way). "
        "Only decrypt_key is hedged.",
        f"A region that is down costs one timeout ({DOWN_TIMEOUT:g} s here) the first time, and "
        f"one probe per cool-down period (30 s by default) after that: the first encrypt_key "
        f"with the preferred region down took {first:.0f} ms. The sequential reference pays the "
        f"timeout on every call: {sequential_down:.0f} ms per decrypt_key.",
    ]
    return notes


def markdown(results: Results, env: dict[str, str], command: str) -> str:
    """The whole docs/benchmarks.md page: the framework part, then the KMS plugin's."""
    config = results.config
    started = dt.datetime.fromtimestamp(results.started, dt.UTC)
    minutes, seconds = divmod(round(results.finished - results.started), 60)
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` (the code is in `tools/bench/`) on "
        f"{started:%Y-%m-%d %H:%M} UTC, in {minutes} min {seconds} s. Do not edit this page by "
        "hand: rerun the command.",
        "",
        *(
            ["**A quick trial run (`--quick`): too few rounds to quote.**", ""]
            if config.quick
            else []
        ),
        "Two parts, measured in the same run on the same machine:",
        "",
        "- [Application encryption](#application-encryption-ours-against-the-asherah-package): "
        "our `Session.encrypt` / `decrypt` against the `asherah` package from PyPI.",
        "- [The multi-region AWS KMS plugin](#the-multi-region-aws-kms-plugin-against-its-peers)"
        ": our KMS against the sequential reference, the AWS Encryption SDK and raw boto3.",
        "",
    ]
    if results.framework is not None:
        from .framework_report import framework_markdown  # noqa: PLC0415

        lines += framework_markdown(results.framework, results.pieces)
    if results.orm is not None:
        from .orm import orm_markdown  # noqa: PLC0415

        lines += orm_markdown(results.orm)
    if results.latency:
        lines += [_demoted(line) for line in _kms_part(results, env, command)]
    return "\n".join(lines) + "\n"


def _demoted(line: str) -> str:
    """One heading level down (the KMS part is a section of the page)."""
    return "#" + line if line.startswith("#") else line


def _kms_part(results: Results, env: dict[str, str], command: str) -> list[str]:
    config = results.config
    top = _top(results)
    goal_list = goals(results)
    counts = config.region_counts
    lines = [
        "# The multi-region AWS KMS plugin against its peers",
        "",
        "The multi-region AWS KMS plugin (*ours*) against what a user would use instead, in the "
        "same run, against LocalStack's KMS on the same machine, with a fixed latency L added "
        "in-process to every KMS call (a botocore `before-send` handler on the boto3 Session "
        "that sleeps L). **T** is the median time of one raw boto3 KMS call through that same "
        f"Session: at L = {top.latency_ms} ms, T = {top.t * 1000:.1f} ms; at L = 0, "
        f"T = {results.latency[min(results.latency)].t * 1000:.1f} ms. Figures are medians with "
        f"the 25th{DASH}75th percentiles in brackets, over {config.rounds} interleaved rounds "
        f"(after {config.warmup} warm-up round(s); encrypt_key with a slow region, which takes "
        "500 ms and more, every second round only) unless a row says otherwise. At L = 0 the "
        "times are a few milliseconds and the shared machine's scheduling shows in the spread.",
        "",
        "## Goals",
        "",
        "| kind | goal | target | measured | result |",
        "|---|---|---|---|---|",
    ]
    for g in goal_list:
        note = f" — {g.note}" if g.note else ""
        lines.append(
            f"| {g.kind} | {g.what}{note} | {g.target} | {_fmt(g.value)} {g.unit} | "
            f"{'pass' if g.passed else '**FAIL**'} |"
        )
    passed = sum(g.passed for g in goal_list)
    lines += ["", f"{passed} of {len(goal_list)} goals met.", "", "## Where we are behind", ""]
    notes = behind(results, goal_list)
    lines += [f"- {note}" for note in notes] or [
        "- Nowhere against the peers in this run: no goal missed, and ours (default mode) is "
        "never more than 5 % slower than a peer (median of the round-by-round ratios)."
    ]
    lines += [f"- {note}" for note in known_limits(results)]
    lines += ["", "![latency against the number of regions](benchmarks-latency.png)", ""]
    for latency_ms in sorted(results.latency, reverse=True):
        run = results.latency[latency_ms]
        for op in (ENCRYPT, DECRYPT):
            lines += [
                f"## {op} latency in ms, L = {latency_ms} ms (T = {run.t * 1000:.1f} ms)",
                "",
                *_latency_table(run, op, counts),
                "",
            ]
        lines += [
            f"### Ours relative to the peers, L = {latency_ms} ms (round by round)",
            "",
            *_relative_table(run, counts),
            "",
        ]
    lines += _scenario_section(results)
    lines += _cpu_section(results)
    lines += _throughput_section(results)
    lines += _setup_section(results, env, command)
    return lines


def _scenario_section(results: Results) -> list[str]:
    run = _top(results)
    n = GOAL_REGIONS
    rows = [
        ("encrypt_key, default", Cell(ENCRYPT, DEFAULT, n)),
        ("encrypt_key, Multi-Region key", Cell(ENCRYPT, MRK, n)),
        ("encrypt_key, local data key", Cell(ENCRYPT, LOCAL, n)),
        ("encrypt_key, sequential reference", Cell(ENCRYPT, SEQUENTIAL, n)),
        ("encrypt_key, AWS Encryption SDK", Cell(ENCRYPT, ESDK, n)),
        (
            "for comparison: the KMS calls of ours, default, raw, sent the same way",
            Cell(ENCRYPT, POOLED["default"], n),
        ),
        (
            "for comparison: the KMS calls of ours, local data key, raw, sent the same way",
            Cell(ENCRYPT, POOLED["local"], n),
        ),
        ("decrypt_key, all healthy", Cell(DECRYPT, DEFAULT, n)),
        ("decrypt_key, preferred region slow, hedged", Cell(DECRYPT, SLOW, n)),
        ("decrypt_key, preferred region down (steady state, in rounds)", Cell(DECRYPT, DOWN, n)),
    ]
    lines = [
        f"## Failure and slow-region scenarios in units of T "
        f"(L = {run.latency_ms} ms, {n} regions)",
        "",
        "| scenario | time / T (per round) | KMS calls |",
        "|---|---|---|",
    ]
    for label, cell in rows:
        lines.append(f"| {label} | {_fmt(run.in_t(cell))} | {run.calls.get(cell, '—')} |")
    hole = results.black_hole
    if hole.next_medians:
        first = [f / run.t for f in hole.first]
        nxt = [m / run.t for m in hole.next_medians]
        seq = [s / run.t for s in hole.sequential]
        lines += [
            f"| decrypt_key, preferred region never answers: first call (fresh instance) | "
            f"{statistics.median(first):.2f} (min {min(first):.2f}, max {max(first):.2f}) | — |",
            f"| the same: median of the next {results.config.black_hole_calls} calls | "
            f"{statistics.median(nxt):.2f} (min {min(nxt):.2f}, max {max(nxt):.2f}) | — |",
            f"| the same with the sequential reference (every call) | "
            f"{statistics.median(seq):.2f} (min {min(seq):.2f}, max {max(seq):.2f}) | — |",
        ]
    return [*lines, ""]


def _cpu_section(results: Results) -> list[str]:
    cpu = results.cpu
    if not cpu.ours:
        return []
    lines = [
        "## CPU time per operation (L = 0, 3 regions)",
        "",
        f"Process CPU time (all threads), the three sides taking turns operation by operation, "
        f"{results.config.cpu_ops} operations per repeat, {results.config.cpu_repeats} repeats. "
        "*raw* makes exactly the KMS calls ours makes, one after another in the caller's "
        "thread, with boto3 clients of the same timeouts, retries and pool size (and "
        "botocore's default parameter validation, which ours turns off: it sends only "
        "parameters it has checked); *raw, pooled* makes them the way ours does: a single "
        "call in the caller's thread, the regional Encrypt calls at once, all but the last on "
        "worker threads and the last in the caller's thread. The difference between the two "
        "raw columns is the cost of concurrency; the difference between *raw, pooled* and "
        "ours is our own code, including the work the raw calls leave out (sealing or opening "
        "the key, writing or parsing the envelope).",
        "",
        "| operation | ours (ms) | raw (ms) | raw, pooled (ms) | ours / raw | "
        "raw, pooled / raw | ours / raw, pooled |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values in cpu.ours.items():
        raw, pooled = cpu.raw[name], cpu.pooled[name]
        lines.append(
            f"| {name} | {_ms(summarize(values))} | {_ms(summarize(raw))} | "
            f"{_ms(summarize(pooled))} | {_fmt(paired_ratios(values, raw))} | "
            f"{_fmt(paired_ratios(pooled, raw))} | {_fmt(paired_ratios(values, pooled))} |"
        )
    return [*lines, ""]


def _throughput_section(results: Results) -> list[str]:
    if not results.throughput:
        return []
    config = results.config
    lines = [
        "## Throughput and memory (3 regions)",
        "",
        "One operation = encrypt_key then decrypt_key; the threads share one instance (ours) "
        "or one set of clients (raw boto3: the same KMS calls, one after another in each "
        f"thread). About {config.throughput_seconds:g} s per measurement (each thread finishes "
        "its operation in flight and is timed to its own end), "
        f"{config.throughput_repeats} repeats. LocalStack shares the 2 cores with the benchmark "
        "(and the machine with other work), so once CPU is the limit, every cycle ours spends "
        "more is also taken from LocalStack.",
        "",
        "| L | threads | ours (ops/s) | raw boto3 (ops/s) | ours / raw |",
        "|---|---|---|---|---|",
    ]
    for latency_ms in sorted(results.latency):
        for threads in config.thread_counts:
            mine = results.throughput.get((latency_ms, "ours", threads))
            raw = results.throughput.get((latency_ms, "raw", threads))
            if mine is None or raw is None:
                continue
            lines.append(
                f"| {latency_ms} ms | {threads} | {_fmt(summarize(mine), 0)} | "
                f"{_fmt(summarize(raw), 0)} | {_fmt(paired_ratios(mine, raw))} |"
            )
    lines.append("")
    top = max(config.thread_counts)
    for latency_ms in sorted(results.latency):
        one = results.throughput.get((latency_ms, "raw", 1))
        many = results.throughput.get((latency_ms, "raw", top))
        if one and many:
            bound = top * statistics.median(one)
            reached = statistics.median(many)
            limit = "CPU, not latency," if reached < 0.8 * bound else "latency"
            lines.append(
                f"At L = {latency_ms} ms, raw boto3 with {top} threads reached {reached:.0f} ops/s "
                f"where latency alone would allow {bound:.0f} ({top} {TIMES} its 1-thread rate): "
                f"{limit} is the limit there."
            )
    lines.append("")
    if results.memory:
        raw_kib = results.memory["raw"]["maxrss_kib"]
        ours_kib = results.memory["ours"]["maxrss_kib"]
        lines += [
            "Peak memory (VmHWM, the peak resident set of the process; its ru_maxrss would carry "
            "over the parent's) of a child process running 16 threads of encrypt_key + "
            "decrypt_key for a moment at L = 0: raw boto3 "
            f"{raw_kib / 1024:.1f} MiB, ours {ours_kib / 1024:.1f} MiB "
            f"(+{(ours_kib - raw_kib) / 1024:.1f} MiB: the plugin's modules, its worker threads "
            "and its clients' connection pools). The whole benchmark process peaked at "
            f"{results.maxrss_kib / 1024:.0f} MiB (it also loads the AWS Encryption SDK and "
            "matplotlib).",
            "",
        ]
    return lines


def _setup_section(results: Results, env: dict[str, str], command: str) -> list[str]:
    config = results.config
    lines = [
        "## Set-up and method",
        "",
        f"- Machine: {env.get('cpu')}, {env.get('memory', '?')} of memory, {env.get('os')}; "
        "shared with other work, hence the interleaving and the ratios below.",
        f"- {env.get('python')}; LocalStack {env.get('localstack')} (KMS, on loopback).",
        "- Libraries: "
        + ", ".join(f"{p} {env.get(p)}" for p in PACKAGES if env.get(p) != "not installed")
        + ".",
        f"- Regions: the first 1, 2, 3 or 5 of us-west-2, us-east-1, eu-west-1, eu-central-1, "
        f"ap-southeast-2 (preferred first); {describe_counts(config.region_counts)} measured. "
        "One ordinary key per region, and one Multi-Region key made in us-west-2 and replicated "
        "to the others.",
        f"- Rounds: each round runs every system's encrypt_key and decrypt_key for every number "
        f"of regions once, in a new random order (seed {config.seed}); ratios are taken round by "
        "round, then the median. T of a round is the median of its single raw calls "
        "(GenerateDataKey, Encrypt, Decrypt).",
        "- ours, default: GenerateDataKey in the preferred region, then the other regions' "
        "Encrypt concurrently. Local data key: every region's Encrypt at once. Multi-Region "
        "key: one GenerateDataKey whose ciphertext serves every replica. Preferred region "
        f"down: its endpoint accepts connections and never answers, timeout {DOWN_TIMEOUT:g} s "
        "(figures in rounds are the steady state; the first call is shown apart). Preferred "
        f"region slow: {SLOW_EXTRA * 1000:.0f} ms more on its calls, decrypt hedged after "
        f"{HEDGE_AFTER * 1000:.0f} ms. Decrypt in those two modes reads an envelope with every "
        "region in it.",
        "- Sequential reference: what the Rust Asherah core does, with raw boto3: "
        "GenerateDataKey, then each other region's Encrypt one after another; decrypt tries the "
        "preferred region first. Same envelope format (checked: ours and it read each "
        "other's envelopes in this run).",
        "- AWS Encryption SDK: `EncryptionSDKClient` (commitment policy "
        "REQUIRE_ENCRYPT_REQUIRE_DECRYPT, default algorithm suite) with a Material Providers "
        "multi-keyring: generator = the preferred region's AWS KMS keyring, children = the "
        "other regions'; each keyring is given a boto3 client from the same Session, pointed "
        "at LocalStack. It wraps the 32-byte key and decrypts the message.",
        "- raw boto3 (floor): one GenerateDataKey (for encrypt) or one Decrypt (for decrypt) in "
        "the preferred region: the least any scheme can do.",
        f"- Command: `{command}` (starts LocalStack unless ASHERAH_LOCALSTACK_ENDPOINT names "
        "one; the distributions are installed non-editable in the session's venv).",
    ]
    return [*lines, ""]


def plot(results: Results, path: Path) -> None:
    """Latency against the number of regions at the highest L, one line per system."""
    import matplotlib  # noqa: PLC0415 - only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    run = _top(results)
    counts = results.config.region_counts
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    top_ms = max(run.summary(cell).p75 for cell in run.samples) * 1000
    markers = "osD^v*Xph"
    for ax, op in zip(axes, (ENCRYPT, DECRYPT), strict=True):
        for i, system in enumerate(SYSTEM_ORDER):
            xs, ys, low, high = [], [], [], []
            for n in counts:
                cell = Cell(op, system, n)
                if cell not in run.samples:
                    continue
                s = run.summary(cell).scaled(1000)
                xs.append(n)
                ys.append(s.median)
                low.append(s.median - s.p25)
                high.append(s.p75 - s.median)
            style = "--" if not system.startswith("ours") else "-"
            ax.errorbar(
                xs, ys, yerr=[low, high], label=system, marker=markers[i % len(markers)],
                linestyle=style, capsize=3,
            )  # fmt: skip
        ax.axhline(run.t * 1000, color="grey", linewidth=0.8, linestyle=":", label="T")
        ax.set_title(f"{op}, L = {run.latency_ms} ms per KMS call (T = {run.t * 1000:.0f} ms)")
        ax.set_xlabel("number of regions")
        ax.set_ylabel(f"latency, ms, log scale (median, p25{DASH}p75)")
        ax.set_xticks(list(counts))
        # Log scale: the slow region's 500 ms must not flatten the lines near T.
        ax.set_yscale("log")
        bottom, top = run.t * 1000 * 0.75, top_ms * 1.25
        ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000) if bottom <= t <= top]
        ax.set_yticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(bottom, top)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
