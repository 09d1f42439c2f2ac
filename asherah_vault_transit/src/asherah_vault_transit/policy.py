"""Values that bound one operation: its `Deadline` and the `RetryPolicy` of each cluster."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Deadline", "RetryPolicy", "retryable_status"]

_MAX_DELAY = 2.0


class Deadline(NamedTuple):
    """A point on `clock` after which no call is started."""

    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline `seconds` from now."""
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self.at - self.clock())

    def __repr__(self) -> str:
        return f"Deadline(at={self.at!r})"


@dataclass(frozen=True)
class RetryPolicy:
    """How often one cluster is retried and how long to wait between tries (full jitter)."""

    max_retries: int = 2
    base_delay: float = 0.1

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """The back-off before retry number `retry` (1-based): up to base x 2^(retry-1)."""
        return min(_MAX_DELAY, self.base_delay * 2.0 ** (retry - 1)) * rand()


def retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth another try on the same cluster: no answer (0), 412 (a
    performance standby not yet caught up), 429 (rate limited) and 5xx but 501."""
    return status in (0, 412, 429) or (status >= 500 and status != 501)
