"""`Dispatcher`: where the work of a call runs, and the one place that races with `close()`.

While a whole attempt (connect and read timeouts) fits before the deadline, a call runs in the
caller's thread: a hand-off to the pool costs about a tenth of the CPU of a KMS call. Otherwise
it runs on the instance's pool and the caller stops waiting at the deadline. Work that runs side
by side (regional Encrypts, hedged Decrypts) goes to the pool too. After `close()`, no new
attempt starts; the clients are closed once the attempts under way have ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from asherah_core.forksafe import PerProcess, reset_in_child

from .deadline import Deadline
from .errors import ClosedError
from .retry import NO_RETRIES, RetryState

__all__ = ["Dispatcher", "Gate", "Work"]

_R = TypeVar("_R")
# One call's attempts, from a retry state, within an attempt budget (0: no limit).
Work = Callable[[RetryState, float], _R | RetryState]

_CLOSED = "this AwsKms was closed during the call"


class Gate:
    """Counts the KMS attempts under way; once closed, admits none, and runs `on_idle` once
    when the last one has ended (at once if none is under way)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self.closed = False
        """Whether `close` was called (set under the lock, read without it)."""
        self._on_idle: Callable[[], None] | None = None
        reset_in_child(self, Gate._forked)

    def _forked(self) -> None:
        """In a forked child: the attempts under way were the parent's other threads', which
        do not run here and will never end; one of them may have held the lock."""
        self._lock = threading.Lock()
        self._active = 0

    def enter(self) -> None:
        """Admit one attempt; raise `ClosedError` after `close`."""
        with self._lock:
            if self.closed:
                raise ClosedError(_CLOSED)
            self._active += 1

    def leave(self) -> None:
        """End one attempt admitted by `enter`."""
        with self._lock:
            self._active -= 1
            on_idle = self._take_on_idle() if self.closed else None
        if on_idle is not None:
            on_idle()

    def close(self, on_idle: Callable[[], None]) -> bool:
        """Admit nothing more; `on_idle` runs when no attempt is under way. False if already
        closed."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            self._on_idle = on_idle
            ready = self._take_on_idle()
        if ready is not None:
            ready()
        return True

    def _take_on_idle(self) -> Callable[[], None] | None:
        if not self.closed or self._active:
            return None
        on_idle, self._on_idle = self._on_idle, None
        return on_idle


class Dispatcher:
    """Owns the worker pool: inline runs, gathering with a deadline, first-completed waits."""

    def __init__(self, *, max_workers: int, attempt_budget: float) -> None:
        self.gate = Gate()
        self._attempt_budget = attempt_budget
        self._max_workers = max_workers
        # A forked child has none of its parent's worker threads, and the parent's pool,
        # believing it has some idle, would start none: work submitted there would never run.
        # So each process has a pool of its own (see asherah_core.forksafe).
        self._pools = PerProcess(self._new_pool)

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="asherah-aws-kms"
        )

    def run(self, work: Work[_R], deadline: Deadline, expired: Callable[[], Exception]) -> _R:
        """Run `work` in this thread while an attempt fits before the deadline, then on the
        pool; raise ``expired()`` if the deadline passes first."""
        state = NO_RETRIES
        if deadline.fits(self._attempt_budget):
            result = work(state, self._attempt_budget)
            if not isinstance(result, RetryState):
                return result
            state = result
        future = self.submit(work, state, 0.0)
        if not _settled(future, deadline):
            future.cancel()
            raise expired()
        result = self.result(future)
        assert not isinstance(result, RetryState)  # without a budget, work runs to the end
        return result

    def submit(self, fn: Callable[..., _R], *args: object) -> Future[_R]:
        """Start `fn(*args)` on the pool; `ClosedError` if the pool is shut."""
        if self.gate.closed:
            raise ClosedError(_CLOSED)
        try:
            return self._pools.get().submit(fn, *args)
        except RuntimeError as e:  # shut down by close() since the check
            raise ClosedError(_CLOSED) from e

    def gather(
        self, futures: Collection[Future[_R]], deadline: Deadline
    ) -> tuple[set[Future[_R]], set[Future[_R]]]:
        """Wait for `futures` until the deadline; cancel those not done and return both sets.

        Each is waited for in turn on its own condition (what `Future.result` does), which
        costs less than `concurrent.futures.wait` with its waiter on every future.
        """
        done: set[Future[_R]] = set()
        not_done: set[Future[_R]] = set()
        for future in futures:
            if _settled(future, deadline):
                done.add(future)
            else:
                future.cancel()
                not_done.add(future)
        return done, not_done

    def first_completed(
        self, futures: Iterable[Future[_R]], deadline: Deadline, cap: float | None = None
    ) -> set[Future[_R]]:
        """Wait until one of `futures` is done, the deadline passes or `cap` seconds pass."""
        done, _ = wait(
            list(futures), timeout=deadline.wait_timeout(cap), return_when=FIRST_COMPLETED
        )
        return done

    def result(self, future: Future[_R]) -> _R:
        """`future`'s result; `ClosedError` if close() cancelled it before it ran."""
        try:
            return future.result()
        except CancelledError as e:
            raise ClosedError(_CLOSED) from e

    def close(self, on_idle: Callable[[], None]) -> None:
        """Refuse new work, cancel what is queued; `on_idle` runs once no attempt is under way."""
        if self.gate.close(on_idle):
            pool = self._pools.mine()  # (none made just to be shut down)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)


def _settled(future: Future[_R], deadline: Deadline) -> bool:
    """Wait until `future` is done (or cancelled) or the deadline passes; whether it is done."""
    try:
        future.exception(timeout=deadline.wait_timeout())  # its outcome, not raised
    except CancelledError:
        return True
    except TimeoutError:  # concurrent.futures.TimeoutError since Python 3.11
        return False
    return True
