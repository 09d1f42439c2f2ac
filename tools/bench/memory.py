"""Peak memory of one system under load, measured in a child process of its own.

``python -m tools.bench.memory SYSTEM`` (SYSTEM: ``raw`` or ``ours``) reads the endpoint and
the key ARNs from ``BENCH_MEMORY_CONFIG`` (JSON), runs 16 threads of encrypt + decrypt over
three regions for a moment, and prints ``{"system": ..., "maxrss_kib": ..., "ops": ...}``.
`measure_memory` runs it for each system from the parent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["measure_memory"]

CONFIG_ENV = "BENCH_MEMORY_CONFIG"
SYSTEMS = ("raw", "ours")
THREADS = 16
SECONDS = 1.5
ROOT = Path(__file__).resolve().parents[2]


def measure_memory(endpoint: str, regular: dict[str, str]) -> dict[str, dict[str, float]]:
    """Run the child for each system; return ``system -> {"maxrss_kib", "ops_per_s"}``."""
    env = dict(os.environ, **{CONFIG_ENV: json.dumps({"endpoint": endpoint, "arns": regular})})
    results: dict[str, dict[str, float]] = {}
    for system in SYSTEMS:
        out = subprocess.run(
            [sys.executable, "-m", "tools.bench.memory", system],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"memory child for {system} failed:\n{out.stderr[-2000:]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        results[system] = {"maxrss_kib": data["maxrss_kib"], "ops_per_s": data["ops_per_s"]}
    return results


def _child(system: str) -> None:
    from .faults import latency_session  # noqa: PLC0415 - keep the parent's imports light
    from .measure import peak_rss_kib, throughput  # noqa: PLC0415
    from .systems import REGIONS, Keys, RawCalls, World, ours  # noqa: PLC0415

    config = json.loads(os.environ[CONFIG_ENV])
    keys = Keys(regular=config["arns"], mrk={})
    world = World(config["endpoint"], latency_session(0.0), keys, black_hole=config["endpoint"])
    regions = REGIONS[:3]
    key = os.urandom(32)
    if system == "ours":
        kms = ours(world, regions, "default")
        rate = throughput(lambda: kms.decrypt(kms.encrypt(key)), THREADS, SECONDS)
    else:
        raw = RawCalls(world, regions)
        blob = raw.encrypt(key)  # the preferred region's GenerateDataKey ciphertext

        def raw_op() -> None:
            raw.encrypt(key)
            raw.decrypt_kek(blob)

        rate = throughput(raw_op, THREADS, SECONDS)
    world.close()
    print(json.dumps({"system": system, "maxrss_kib": peak_rss_kib(), "ops_per_s": rate}))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SYSTEMS:
        sys.exit(f"usage: python -m tools.bench.memory {{{'|'.join(SYSTEMS)}}}")
    _child(sys.argv[1])
