"""``python -m tools.bench``: run the benchmark, write the page and the plot, print the figures."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
        help="where benchmarks.md and benchmarks-latency.png go (default: docs/)",
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
    config = Config(rounds=args.rounds)
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
        )
    results = run(endpoint, config)
    page = markdown(results, environment(endpoint), COMMAND)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "benchmarks.md").write_text(page, encoding="utf-8")
    plot(results, args.output_dir / "benchmarks-latency.png")
    print(page)
    say(f"wrote {args.output_dir / 'benchmarks.md'} and benchmarks-latency.png")
    failed = [g for g in goals(results) if not g.passed]
    say(f"{len(failed)} goal(s) missed" if failed else "every goal met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
