"""Retries as values: `RetryPolicy` (how), `RetryState` (how far), and the loop reading them."""

from __future__ import annotations

import random
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .deadline import Deadline
from .errors import CONNECTION_ERRORS, ClosedError, RegionCallError, classify

__all__ = ["MAX_RETRIES", "NO_RETRIES", "RetryPolicy", "RetryState", "call_with_retries"]

MAX_RETRIES = 100  # more cannot help within any sensible deadline
_MAX_EXPONENT = 62  # 2 ** 62 x any base delay is past every cap; larger would overflow a float


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry a retryable failure, and the base of the backoff."""

    max_retries: int = 3
    base_delay: float = 0.1
    max_delay: float = 5.0

    def delay(self, retry: int) -> float:
        """Full-jitter exponential backoff for the `retry`-th retry (1-based)."""
        exponent = min(retry - 1, _MAX_EXPONENT)
        ceiling = min(self.max_delay, self.base_delay * 2.0**exponent)
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography

    def allows(self, state: RetryState, error: RegionCallError, *, retry_timeouts: bool) -> bool:
        """Whether `error` may be retried after the retries in `state`."""
        if not error.retryable or state.retries >= self.max_retries:
            return False
        return retry_timeouts or error.error_type not in CONNECTION_ERRORS


@dataclass(frozen=True)
class RetryState:
    """The retries made so far of one call; `increment` returns the next state."""

    retries: int = 0

    def increment(self) -> RetryState:
        """The state after one more retry."""
        return RetryState(self.retries + 1)


NO_RETRIES = RetryState()


def call_with_retries(
    call: Callable[[], Mapping[str, Any]],
    *,
    region: str,
    operation: str,
    policy: RetryPolicy,
    deadline: Deadline,
    retry_timeouts: bool,
    on_attempt: Callable[[float, RegionCallError | None], None],
    on_retry: Callable[[RegionCallError], None],
    sleep: Callable[[float], None] = time.sleep,
    state: RetryState = NO_RETRIES,
    attempt_budget: float = 0.0,
) -> Mapping[str, Any] | RetryState:
    """Run `call`, retrying retryable failures with backoff, never past `deadline`.

    With ``retry_timeouts=False`` (another region can take over) connection errors and
    timeouts fail at once instead of paying the timeout again. `on_attempt` sees each
    attempt's duration and error. With an `attempt_budget`, a retry that might not end before
    the deadline is not started here: the `RetryState` due is returned instead, for a caller
    that can stop waiting at the deadline to go on from (`state`).
    """
    clock = deadline.clock
    first = True
    while True:
        if attempt_budget and not first and not deadline.fits(attempt_budget):
            return state
        first = False
        outer = sys.exception()  # the caller's own exception, if it is handling one
        start = clock()
        try:
            response = call()
        except ClosedError:
            raise
        except Exception as e:
            release_frames(e, keep=outer)
            error = classify(region, operation, e)
            on_attempt(clock() - start, error)
            if not policy.allows(state, error, retry_timeouts=retry_timeouts):
                raise error from e
            state = state.increment()
            delay = policy.delay(state.retries)
            if deadline.remaining() <= delay:
                raise error from e
            on_retry(error)
            sleep(delay)
            continue
        on_attempt(clock() - start, None)
        return response


def release_frames(error: BaseException, *, keep: BaseException | None = None) -> None:
    """Clear the local variables of the finished frames in `error`'s tracebacks (and of the
    errors chained to it), keeping the file and line of each frame.

    Those frames hold urllib3's response and connection objects in reference cycles, so their
    sockets would stay open until the garbage collector ran; this closes them at once. `keep`
    (the exception the caller was handling when the call started) and whatever is chained to
    it belong to the application: their frames are left alone.
    """
    foreign: set[int] = set()
    stack: list[BaseException | None] = [keep]
    while stack:
        e = stack.pop()
        if e is None or id(e) in foreign:
            continue
        foreign.add(id(e))
        stack += [e.__cause__, e.__context__]
    seen = set(foreign)
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        stack += [e.__cause__, e.__context__]
