"""A few idle DBAPI connections of one SQLite-file engine, kept checked out of its pool.

`SqlMetastore` runs its hot statements (a key row's two reads and its insert) on a DBAPI
connection. Taking one from SQLAlchemy's pool and giving it back costs about 6 µs on SQLite,
and about 18 µs right after a commit: as much as SQLite's own read of a key row. Kept here
between statements, a connection is taken and given back for well under a microsecond.

Only for SQLite files of an engine the metastore created itself: a server's connections need
what the pool does on checkout (pre-ping, recycling), and an application's own engine keeps
its whole pool for the application.

Invariants, held by construction:

- A connection is in `_idle` only while no statement runs on it: `take` removes it under
  `_lock` before the caller uses it; the caller gives it back only after its statement ended.
- `give` keeps a connection only when it has no open transaction, only while fewer than
  `limit` are idle, and only before `close`; otherwise the caller returns it to the pool,
  which resets it. So a kept connection holds no lock on the database file, and at most
  ``pool_size - 1`` of the pool's connections are kept: one is always left for the rest.
- `_idle` holds only connections checked out in this process: in a forked child a hook empties
  it first (the parent's connections are set aside, neither used nor closed: SQLite's files
  must not be touched through a parent's connection in a child).
- After `close`, `_idle` is empty and stays empty. `release` empties it too, but connections
  given after it are kept again (the metastore releases them while statement listeners send
  its statements through SQLAlchemy's `Connection`, which takes its own from the pool).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from asherah_core.forksafe import reset_in_child, set_aside

__all__ = ["KeptConnections", "kept_for"]


class KeptConnections:
    """Up to `limit` idle connections of one pool, last given first taken."""

    __slots__ = ("__weakref__", "_closed", "_idle", "_lock", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"kept connections: limit must be at least 1, not {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._idle: list[Any] = []  # pool-proxied connections (SQLAlchemy's _ConnectionFairy)
        self._closed = False
        reset_in_child(self, KeptConnections._forget_in_child)

    def take(self) -> Any | None:
        """An idle connection, now the caller's alone, or `None` (then use the pool)."""
        with self._lock:
            return self._idle.pop() if self._idle else None

    def give(self, connection: Any) -> bool:
        """Keep `connection` after a statement that ended; False when the caller must return
        it to the pool instead (a transaction open, enough kept already, or closed)."""
        dbapi = connection.dbapi_connection
        if dbapi is None or dbapi.in_transaction:
            return False
        with self._lock:
            if self._closed or len(self._idle) >= self.limit:
                return False
            self._idle.append(connection)
            return True

    def idle(self) -> int:
        """How many connections are kept now."""
        with self._lock:
            return len(self._idle)

    def release(self) -> None:
        """Return every kept connection to the pool now (later ones may be kept again)."""
        if self._idle:  # (read without the lock: a connection given meanwhile stays kept)
            self._return(closing=False)

    def close(self) -> None:
        """Return every kept connection to the pool; keep none from now on."""
        self._return(closing=True)

    def _return(self, *, closing: bool) -> None:
        with self._lock:
            self._closed = self._closed or closing
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):  # the pool resets it; a failure drops it
                connection.close()

    def _forget_in_child(self) -> None:
        set_aside(self._idle)
        self._idle = []
        self._lock = threading.Lock()  # another thread of the parent may have held it

    def __repr__(self) -> str:
        return f"KeptConnections(limit={self.limit}, idle={len(self._idle)})"


def kept_for(engine: sa.Engine) -> KeptConnections | None:
    """Kept connections for `engine` when it is a SQLite file's with a queue pool of at least
    two connections and no check on checkout, else `None`.

    A pool that recycles connections by age (``pool_recycle``, the ``asherah`` package's
    ``PoolMaxLifetime`` and ``PoolMaxIdleTime``) or pings them (``pool_pre_ping``) was asked
    to look at every connection before it is used: kept connections would skip that, so there
    are none. SQLAlchemy keeps both settings on the pool only as private attributes.
    """
    pool = engine.pool
    if engine.dialect.name != "sqlite" or not isinstance(pool, QueuePool):
        return None
    if getattr(pool, "_recycle", -1) >= 0 or getattr(pool, "_pre_ping", False):
        return None
    return KeptConnections(pool.size() - 1) if pool.size() > 1 else None
