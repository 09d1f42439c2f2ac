"""Child processes of the framework benchmark (one side each, nothing else loaded).

- ``python -m tools.bench.framework_child throughput SIDE SECONDS``: builds a factory (static
  KMS, in-memory metastore), warms up, prints ``ready``, waits for a line on stdin, then
  encrypts and decrypts 1 KB for SECONDS and prints ``{"ops": N, "seconds": S}``.
- ``python -m tools.bench.framework_child memory SIDE ROWS PARTITIONS``: encrypts and decrypts
  ROWS rows of 1 KB round robin over PARTITIONS partitions (``get_session`` per row, session
  and key caching on, rows not kept) and prints the peak resident set (VmHWM) before and after.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .measure import peak_rss_kib
from .sides import SIDES, Side, config, make_factory

__all__: list[str] = []


def _side(name: str) -> Side:
    for side in SIDES:
        if side == name:
            return side
    raise SystemExit(f"unknown side {name!r}; expected one of {', '.join(SIDES)}")


def throughput(side: Side, seconds: float) -> None:
    data = os.urandom(1024)
    factory = make_factory(side, config("memory"))
    session = factory.get_session(f"process-{os.getpid()}")
    for _ in range(200):
        session.decrypt_bytes(session.encrypt_bytes(data))
    print("ready", flush=True)
    sys.stdin.readline()
    ops = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        session.decrypt_bytes(session.encrypt_bytes(data))
        ops += 1
        if ops % 16 == 0 and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    factory.close()
    print(json.dumps({"ops": ops, "seconds": elapsed}))


def memory(side: Side, rows: int, partitions: int) -> None:
    data = os.urandom(1024)
    factory = make_factory(side, config("memory"))
    names = [f"partition-{i}" for i in range(partitions)]
    session = factory.get_session(names[0])
    session.decrypt_bytes(session.encrypt_bytes(data))
    baseline = peak_rss_kib()
    start = time.perf_counter()
    for i in range(rows):
        session = factory.get_session(names[i % partitions])
        if session.decrypt_bytes(session.encrypt_bytes(data)) is None:
            raise RuntimeError("unreachable")
    elapsed = time.perf_counter() - start
    peak = peak_rss_kib()
    factory.close()
    print(json.dumps({"baseline_kib": baseline, "maxrss_kib": peak, "seconds": elapsed}))


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "throughput":
        throughput(_side(argv[1]), float(argv[2]))
    elif len(argv) == 4 and argv[0] == "memory":
        memory(_side(argv[1]), int(argv[2]), int(argv[3]))
    else:
        raise SystemExit(
            "usage: python -m tools.bench.framework_child throughput SIDE SECONDS | "
            "memory SIDE ROWS PARTITIONS"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
