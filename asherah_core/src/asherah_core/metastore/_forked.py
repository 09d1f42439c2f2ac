"""A forked child starts every engine the SQL metastore made on a new, empty pool.

A pooled connection is a socket to a database server or open handles on a SQLite file. After
`os.fork` the child holds copies of the parent's; used in both processes, a server's replies
reach whichever process reads first, and SQLite's file locks, kept per process, no longer
protect the file. So in a child (gunicorn's ``--preload``, Celery's prefork pool,
`multiprocessing` with the fork start method) each engine made by `SqlMetastore` from a URL gets
a new pool, as SQLAlchemy advises (``Engine.dispose(close=False)``).

Invariants, held by construction:

- Only engines `SqlMetastore` made itself are given new pools (an application's own engine, and
  its pool, stay the application's to manage), and only while they live
  (`forksafe.reset_in_child` holds them weakly).
- In a child, the parent's pools are set aside (`forksafe.set_aside`): never used, never closed.
  Closing could end the parent's sessions (a driver may say goodbye to the server on the shared
  socket); dropping them would close them when collected.
- A `StaticPool` (an in-memory SQLite database: its one connection is the database) is kept: the
  child's copy of it is the child's own, with no file or socket shared.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from asherah_core.forksafe import reset_in_child, set_aside

__all__ = ["own"]


def own(engine: sa.Engine) -> None:
    """Give `engine` (made by the metastore) a new pool in every forked child."""
    reset_in_child(engine, _new_pool)


def _new_pool(engine: sa.Engine) -> None:
    if not isinstance(engine.pool, StaticPool):
        set_aside(engine.pool)
        engine.dispose(close=False)  # a new pool of the same settings; the old untouched
