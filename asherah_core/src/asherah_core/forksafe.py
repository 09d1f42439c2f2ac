"""`PerProcess`: a value (an HTTP client, a worker pool) made again in a forked child;
`reset_in_child`, for an object that must put itself right there (a lock, a pool, a count);
`new_locks_in_child`, for an object whose locks are all it must put right; and `Lock`, a lock
that a forked child starts with unlocked.

After `os.fork` a child holds copies of its parent's connections and none of its parent's
threads. A client used in both processes shares one socket (and one TLS session) between them;
a thread pool in the child believes it has the parent's idle workers and starts none. Servers
that load the application and then fork (gunicorn's ``--preload``, Celery's prefork pool) do
exactly this. So the metastores and KMS plugins keep such values in a `PerProcess`: a child
makes its own on first use, and the parent's is set aside, neither used nor closed (closing
could end the parent's sessions; dropping it could close them when collected).

Invariants, held by construction:

- `get` returns a value made in the calling process.
- The process and its value are one tuple, replaced whole, so no thread reads one process's id
  with another's value. Two threads of a child may both make a value on first use: the last
  stays, and both are the child's own.
- What a parent made is never closed in a child: `mine` gives `None` there.
- `reset_in_child` holds its objects weakly, and their resets as plain functions (never bound
  methods, which would hold them): registering an object never keeps it alive. Every reset
  runs in the child before any other thread of it exists, in the order they were registered.
- A lock is renewed in a child only where what it guards is whole between any two statements
  of the code that holds it (each owner says so beside its lock): the parent's thread that held
  it stopped at a statement boundary and does not exist in the child, so the child finds the
  state as that thread left it, never half of a statement's change.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Lock", "PerProcess", "new_locks_in_child", "reset_in_child", "set_aside"]

_T = TypeVar("_T")

_SET_ASIDE: list[Any] = []
"""A parent's values, in a forked child: referenced so that they are never collected there."""


def set_aside(value: object) -> None:
    """Keep `value`, something of a parent's in a forked child, referenced for good: it is
    never used, closed or collected there (its connections are the parent's)."""
    _SET_ASIDE.append(value)


_RESETS: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
"""Live objects and what a forked child does to each (`reset_in_child`)."""


def reset_in_child(owner: _T, reset: Callable[[_T], None]) -> None:
    """Make every forked child of this process call ``reset(owner)`` first thing, for as long
    as `owner` lives. `reset` must not hold `owner`: pass the function (``Gate._forked``), not
    the bound method (``gate._forked``), or `owner` would never be collected."""
    _RESETS[owner] = reset


def new_locks_in_child(owner: object, *names: str) -> None:
    """Give `owner` a new, unlocked `threading.Lock` in each attribute of `names`, in every
    forked child, for as long as `owner` lives: a lock that another thread of the parent held
    at the fork would stay held in the child for good. An owner with more to put right than its
    locks uses `reset_in_child` instead (an owner has one reset)."""
    reset_in_child(owner, functools.partial(_new_locks, names=names))


def _new_locks(owner: object, *, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(owner, name, threading.Lock())


def _after_fork_in_child() -> None:
    for owner, reset in list(_RESETS.items()):
        reset(owner)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Lock:
    """A `threading.Lock` (as a context manager) that every forked child starts with unlocked.

    A child has only the thread that forked: a lock that another thread of the parent held at
    that moment would stay held in the child for good. Here the child gets a new lock first
    thing (`new_locks_in_child`), before any thread of its own can take it.
    """

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        new_locks_in_child(self, "_lock")

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class PerProcess(Generic[_T]):
    """The value `make` returns, made once per process: now, and again in a forked child."""

    __slots__ = ("_make", "_owned")

    def __init__(self, make: Callable[[], _T], *, first: _T | None = None) -> None:
        """:param first: this process's value when it is already made (else `make` runs now)."""
        self._make = make
        self._owned = (os.getpid(), make() if first is None else first)

    def get(self) -> _T:
        """This process's value: a forked child makes its own on its first call."""
        pid, value = self._owned
        if pid == os.getpid():
            return value
        set_aside(value)
        mine = self._make()
        self._owned = (os.getpid(), mine)
        return mine

    def mine(self) -> _T | None:
        """The value if this process made it (to close it), else `None`: make nothing."""
        pid, value = self._owned
        return value if pid == os.getpid() else None

    def __repr__(self) -> str:
        return f"PerProcess(pid={self._owned[0]})"
