"""Signal handling shared by the throwaway-server harnesses (tools/localstack, tools/dbservers):
SIGTERM becomes an exception, and starting or stopping a server cannot be cut in half by a
signal."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import NoReturn

__all__ = ["Terminated", "raise_received", "signals_held", "sigterm_raises"]

_Handler = Callable[[int, FrameType | None], object] | int | None


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) reached the harness; raised so that clean-up code runs.

    A :class:`KeyboardInterrupt`, so code that already cleans up on Ctrl-C does so on SIGTERM.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, _frame: FrameType | None) -> NoReturn:
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while the block runs (main thread only;
    deliberate handlers of the caller are left alone)."""
    if not _main_thread():
        yield
        return
    previous: dict[int, _Handler] = {}
    for signum in (int(signal.SIGTERM), int(signal.SIGHUP)):
        if signal.getsignal(signum) is signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def signals_held() -> Iterator[list[int]]:
    """Record SIGINT, SIGTERM and SIGHUP instead of acting on them while the block runs.

    Used around spawning (so a signal cannot fall between ``Popen`` and remembering the process)
    and stopping (so clean-up is not itself interrupted); pass the list to `raise_received`.
    """
    received: list[int] = []
    if not _main_thread():
        yield received
        return

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, _Handler] = {}
    for signum in (int(signal.SIGINT), int(signal.SIGTERM), int(signal.SIGHUP)):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, record)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def raise_received(received: Sequence[int]) -> None:
    """Re-raise what `signals_held` recorded: :class:`Terminated` or :class:`KeyboardInterrupt`."""
    for signum in received:
        if signum != signal.SIGINT:
            raise Terminated(signum)
    if received:
        raise KeyboardInterrupt
