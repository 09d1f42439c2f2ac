"""`Deadline`: the moment one encrypt_key or decrypt_key must be done by, as a value."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Deadline"]


class Deadline(NamedTuple):
    """A point on `clock` after which no more work is started or waited for.

    A named tuple: one is made per operation, in a third of the time of a frozen dataclass.
    """

    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline `seconds` from now."""
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.clock() >= self.at

    def fits(self, seconds: float) -> bool:
        """Whether something taking `seconds` from now would end before the deadline."""
        return self.clock() + seconds <= self.at

    def __repr__(self) -> str:
        return f"Deadline(at={self.at!r})"

    def wait_timeout(self, cap: float | None = None) -> float:
        """Seconds to block for: what remains, at most `cap`, and never more than the
        threading module accepts (a longer wait raises OverflowError there)."""
        timeout = self.remaining() if cap is None else min(self.remaining(), max(0.0, cap))
        return min(timeout, threading.TIMEOUT_MAX)
