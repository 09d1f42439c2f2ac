"""Signals: SIGTERM raises so clean-up runs; signals held while a child is stopped."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import NoReturn

from .common import Terminated


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, _frame: FrameType | None) -> NoReturn:
    raise Terminated(signum)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into :class:`Terminated` while the block runs (main thread)."""
    if not _in_main_thread():
        yield
        return
    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    for signum in (int(signal.SIGTERM), int(signal.SIGHUP)):
        if signal.getsignal(signum) is signal.SIG_DFL:  # leave deliberate handlers and nohup alone
            previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM/SIGHUP instead of acting on them while the block runs.

    Used around starting (so a signal cannot fall between Popen and remembering the process) and
    stopping (so clean-up cannot itself be interrupted). Stopping is bounded in time.
    """
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    for signum in (int(signal.SIGINT), int(signal.SIGTERM), int(signal.SIGHUP)):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, record)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _raise_received(received: Sequence[int]) -> None:
    if not received:
        return
    for signum in received:
        if signum != signal.SIGINT:
            raise Terminated(signum)
    raise KeyboardInterrupt
