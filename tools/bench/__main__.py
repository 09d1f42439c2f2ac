"""``python -m tools.bench``: run the benchmark, write the page and the plot, print the figures."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from .framework import FrameworkConfig
from .framework_report import (
    PLOT_NAME,
    THREADS_PLOT_NAME,
    framework_goals,
    framework_plot,
    threads_plot,
)
from .orm import OrmConfig
from .report import environment, goals, markdown, plot
from .run import Config, run, say

ENDPOINT_ENV = "ASHERAH_LOCALSTACK_ENDPOINT"
ROOT = Path(__file__).resolve().parents[2]
COMMAND = "nox -s bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=Config.rounds, help="measured rounds")
    parser.add_argument(
        "--quick", action="store_true", help="a few rounds, for trying the benchmark out"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=ROOT / "docs",
        help="where benchmarks.md and its plots go (default: docs/)",
    )
    parser.add_argument(
        "--part",
        choices=("all", "framework", "kms"),
        default="all",
        help="run one part only (the page then has that part only; default: all)",
    )
    parser.add_argument(
        "--free-threaded-python",
        metavar="PYTHON",
        help="a free-threaded Python with asherah-core installed: our threads are measured on "
        "it too (nox -s bench makes one)",
    )
    args = parser.parse_args(argv)
    endpoint = os.environ.get(ENDPOINT_ENV, "").rstrip("/")
    if not endpoint:
        print(
            f"{ENDPOINT_ENV} is not set: run `nox -s bench`, or "
            f"`python -m tools.localstack run -- python -m tools.bench`.",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    parts = ("framework", "kms") if args.part == "all" else (args.part,)
    config = Config(rounds=args.rounds, parts=parts)
    if args.quick:
        config = Config(
            rounds=3,
            warmup=1,
            black_hole_repeats=1,
            cpu_ops=20,
            cpu_repeats=2,
            throughput_seconds=0.5,
            throughput_repeats=1,
            quick=True,
            parts=parts,
            orm=OrmConfig(rounds=3),
            framework=FrameworkConfig(
                rounds=3,
                warmup=1,
                cold_per_round=3,
                old_rows_per_round=5,
                throughput_seconds=0.3,
                throughput_repeats=1,
                kms_rows=100,
                memory_rows=5_000,
                memory_partitions=100,
                sql_calls=300,
            ),
        )
    if args.free_threaded_python:
        framework = dataclasses.replace(
            config.framework, free_threaded_python=args.free_threaded_python
        )
        config = dataclasses.replace(config, framework=framework)
    results = run(endpoint, config)
    page = markdown(results, environment(endpoint), COMMAND)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    target = args.output_dir / "benchmarks.md"
    page = with_kept_sections(page, target)
    target.write_text(page, encoding="utf-8")
    if results.latency:
        plot(results, args.output_dir / "benchmarks-latency.png")
    if results.framework is not None:
        framework_plot(results.framework, args.output_dir / PLOT_NAME)
        threads_plot(results.framework, args.output_dir / THREADS_PLOT_NAME)
    print(page)
    say(f"wrote {args.output_dir / 'benchmarks.md'} and its plots")
    failed = [g.what for g in goals(results) if not g.passed] if results.latency else []
    if results.framework is not None:
        failed += [g.what for g in framework_goals(results.framework) if not g.passed]
    say(f"{len(failed)} goal(s) missed" if failed else "every goal met")
    return 0


KEPT_MARKER = (
    "<!-- Written by hand below this line: nox -s bench keeps it when it rewrites the page. -->"
)
"""Sections of benchmarks.md measured by other commands (``nox -s bench_rewrap``) follow it."""


def with_kept_sections(page: str, target: Path) -> str:
    """`page` followed by what the current page holds from `KEPT_MARKER` on, if anything."""
    try:
        current = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return page
    at = current.find(KEPT_MARKER)
    if at < 0:
        return page
    return page.rstrip("\n") + "\n\n" + current[at:]


if __name__ == "__main__":
    sys.exit(main())
