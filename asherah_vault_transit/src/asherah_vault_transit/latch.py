"""`Latch`: closed until opened once, then open for good; threads and async tasks (of any event
loop) wait for it to open, each for at most a given time.

This is how a caller waits for another caller's login (`auth`): the login may run in a thread
or in a task of any loop, and so may each waiter. A task's wait never blocks its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from asherah_core.forksafe import Lock

__all__ = ["Latch"]


class Latch:
    """Opened once by `open`; `wait` (threads) and `wait_async` (tasks) return when it opens or
    when their time is up, and say whether it is open.

    Invariant: ``_waiters`` holds the future of each task waiting now, with the loop it belongs
    to; it is only touched with ``_lock`` held. `open` sets ``_opened`` and empties
    ``_waiters`` under the lock, so a task that finds the latch closed there is woken, and one
    that finds it open does not wait. A future is resolved on its own loop
    (``call_soon_threadsafe``), never from another thread. ``_lock`` is a `forksafe.Lock`, free
    in a forked child: what it guards is whole between any two statements but `open`'s two,
    where a child would find the latch open with tasks still listed, which only wait out their
    time.
    """

    __slots__ = ("_lock", "_opened", "_waiters")

    def __init__(self) -> None:
        self._lock = Lock()
        self._opened = threading.Event()
        self._waiters: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}

    def is_open(self) -> bool:
        """Whether `open` has been called."""
        return self._opened.is_set()

    def open(self) -> None:
        """Open the latch and wake every waiter (a second call does nothing)."""
        with self._lock:
            self._opened.set()
            waiters, self._waiters = self._waiters, {}
        for future, loop in waiters.items():
            with contextlib.suppress(RuntimeError):  # its loop is closed: no one waits there
                loop.call_soon_threadsafe(_wake, future)

    def wait(self, seconds: float) -> bool:
        """Block this thread until the latch opens or `seconds` pass; return whether it is
        open."""
        return self._opened.wait(max(0.0, seconds))

    async def wait_async(self, seconds: float) -> bool:
        """Wait on the running loop, without blocking it, until the latch opens or `seconds`
        pass; return whether it is open."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._opened.is_set():
                return True
            self._waiters[future] = loop
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, max(0.0, seconds))
        finally:
            with self._lock:
                self._waiters.pop(future, None)
        return self._opened.is_set()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # a wait that timed out cancelled it
        future.set_result(None)
