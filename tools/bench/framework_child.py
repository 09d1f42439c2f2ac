"""Child processes of the framework benchmark (one side each, nothing else loaded).

- ``python -m tools.bench.framework_child throughput SIDE SECONDS``: builds a factory (static
  KMS, in-memory metastore), warms up, prints ``ready``, waits for a line on stdin, then
  encrypts and decrypts 1 KB for SECONDS and prints ``{"ops": N, "seconds": S}``.
- ``python -m tools.bench.framework_child threads SIDE SECONDS THREADS``: builds a factory the
  same way, warms up, then THREADS threads sharing it (a session each) encrypt and decrypt
  1 KB for SECONDS; prints ``{"rate": pairs/s, "version": sys.version, "gil": on?}``. The
  benchmark runs it on a free-threaded Python.
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
from .measure import throughput as threads_throughput
from .sides import SIDES, Side, config, make_factory, pair_per_thread

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


def threads(side: Side, seconds: float, count: int) -> None:
    data = os.urandom(1024)
    factory = make_factory(side, config("memory"))
    op = pair_per_thread(factory, data)
    threads_throughput(op, count, min(seconds, 0.3))  # warm: every thread's session, the caches
    rate = threads_throughput(op, count, seconds)
    factory.close()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(json.dumps({"rate": rate, "version": sys.version, "gil": gil}))


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
    elif len(argv) == 4 and argv[0] == "threads":
        threads(_side(argv[1]), float(argv[2]), int(argv[3]))
    elif len(argv) == 4 and argv[0] == "memory":
        memory(_side(argv[1]), int(argv[2]), int(argv[3]))
    else:
        raise SystemExit(
            "usage: python -m tools.bench.framework_child throughput SIDE SECONDS | "
            "threads SIDE SECONDS THREADS | memory SIDE ROWS PARTITIONS"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
