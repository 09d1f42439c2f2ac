"""How the figures are taken: interleaved rounds, CPU time, throughput, and their statistics.

The machine is shared and noisy, so every comparison is made in the same run, and the systems
take turns: each round runs every task once, in a shuffled order, and a ratio is computed per
round (both sides measured within a second of each other) before taking the median.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "Summary",
    "cpu_time_ns",
    "paired",
    "paired_ratios",
    "peak_rss_kib",
    "run_rounds",
    "summarize",
    "throughput",
]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Summary:
    """Median and interquartile range of a sample."""

    median: float
    p25: float
    p75: float
    count: int

    def scaled(self, factor: float) -> Summary:
        """The same summary with every figure multiplied by `factor` (e.g. 1000 for ms)."""
        return Summary(self.median * factor, self.p25 * factor, self.p75 * factor, self.count)


def summarize(values: Sequence[float]) -> Summary:
    """Median, 25th and 75th percentiles of `values` (not empty)."""
    if not values:
        raise ValueError("no values to summarize")
    if len(values) == 1:
        return Summary(values[0], values[0], values[0], 1)
    p25, p50, p75 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(p50, p25, p75, len(values))


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> Summary:
    """Summary of ``numerator[i] / denominator[i]`` over rounds measured side by side."""
    return summarize([a / b for a, b in zip(numerator, denominator, strict=True)])


def run_rounds(
    tasks: Mapping[K, Callable[[], object]],
    *,
    rounds: int,
    warmup: int,
    rng: random.Random,
    every: Mapping[K, int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[K, dict[int, float]]:
    """Run the tasks round after round, in a new random order each round.

    Returns ``task -> {round: seconds}``, rounds numbered from 0 after the `warmup` rounds,
    which are run and thrown away (connections, caches, health state). A task with
    ``every[task] = k`` runs in every k-th round only (for the slowest, most regular ones).
    """
    samples: dict[K, dict[int, float]] = {key: {} for key in tasks}
    keys = list(tasks)
    every = every or {}
    for number in range(-warmup, rounds):
        rng.shuffle(keys)
        for key in keys:
            if number >= 0 and number % every.get(key, 1):
                continue
            start = time.perf_counter()
            tasks[key]()
            elapsed = time.perf_counter() - start
            if number >= 0:
                samples[key][number] = elapsed
        if progress is not None:
            progress(number + warmup + 1)
    return samples


def paired(numerator: Mapping[int, float], denominator: Mapping[int, float]) -> Summary:
    """Summary of ``numerator[r] / denominator[r]`` over the rounds both were measured in."""
    common = sorted(numerator.keys() & denominator.keys())
    return summarize([numerator[r] / denominator[r] for r in common])


def cpu_time_ns(operation: Callable[[], object]) -> int:
    """Process CPU time (every thread, user and system) of one call of `operation`, in ns."""
    start = time.process_time_ns()
    operation()
    return time.process_time_ns() - start


def throughput(operation: Callable[[], object], threads: int, seconds: float) -> float:
    """Operations per second with `threads` threads calling `operation` for about `seconds`.

    Each thread finishes the operation it is in when time is up; its rate is its operations
    over its own time, so no operation is lost or cut, and the rates are added up.
    """
    counts = [0] * threads
    ends = [0.0] * threads
    errors: list[BaseException] = []
    start_line = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(index: int) -> None:
        start_line.wait()
        try:
            while not stop.is_set():
                operation()
                counts[index] += 1
        except BaseException as e:  # reported after the run
            errors.append(e)
        ends[index] = time.perf_counter()

    workers = [
        threading.Thread(target=worker, args=(i,), name=f"bench-{i}") for i in range(threads)
    ]
    for thread in workers:
        thread.start()
    start_line.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in workers:
        thread.join()
    if errors:
        failed = f"{len(errors)} worker(s) failed during the throughput run"
        raise RuntimeError(failed) from errors[0]
    return sum(count / (end - began) for count, end in zip(counts, ends, strict=True))


def peak_rss_kib() -> int:
    """Peak resident memory of this process image, in KiB.

    ``VmHWM`` from /proc where there is one: on Linux ``ru_maxrss`` carries over fork and exec,
    so a child started from a bigger parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource  # noqa: PLC0415 - not on every platform

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
