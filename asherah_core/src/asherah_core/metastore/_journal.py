"""The journal of a SQLite file the SQL metastore opens: a write-ahead log, synced on commit.

Storing a key is a commit, and a commit is what a partition's first encrypt waits for. In
SQLite's default rollback journal a commit syncs the disk four times (the journal, the
database, the journal's removal); in write-ahead-log mode (WAL) with ``synchronous=FULL`` it
syncs the log once, and is as durable: a key committed survives a crash or a power cut (the
benchmarks page measures both).

WAL is a lasting property of the file, seen by every process and program that opens it, and it
has costs of its own (SQLite's "Write-Ahead Logging"): every process must be on the same host
(no network file system), a reader needs write access to the directory for the ``-wal`` and
``-shm`` files beside the database, and committed keys sit in the ``-wal`` file until a
checkpoint, so a copy of the database file alone may lack them (back up with
``sqlite3 keys.db ".backup copy.db"``, which is right in either mode). So the metastore changes
the mode of a file only when it is new or when asked:

- ``wal=None`` (the default): a new, empty database (no file, or an empty one) is put in WAL
  mode; an existing database keeps the mode it has.
- ``wal=True``: the database is put in WAL mode on the first connection, new or not; a file
  that cannot be (SQLite answers with another mode) fails that connection with a
  `MetastoreError` naming the mode it kept.
- ``wal=False``: the mode is never changed.

Invariants, held by construction:

- Every connection to a database in WAL mode runs with ``synchronous=FULL``, set on the
  connection before the pool hands it out: in WAL mode SQLite's ``NORMAL`` would let the last
  commits, and so the last keys stored, vanish at a power cut.
- Only new DBAPI connections of an engine the metastore made from a SQLite file URL are
  touched (`SqlMetastore` checks this): an application's own engine, and in-memory databases
  (no file, no journal), are left as they are.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from asherah_core.errors import MetastoreError

__all__ = ["use_wal"]


def use_wal(engine: sa.Engine, wal: bool | None, where: str) -> None:
    """Prepare every new connection of `engine` (a SQLite file's) as the module says."""

    def on_connect(dbapi_connection: Any, _record: object) -> None:
        _prepare(dbapi_connection, wal, where)

    sa.event.listen(engine, "connect", on_connect)


def _prepare(connection: Any, wal: bool | None, where: str) -> None:
    # A connection in PEP 249 mode (sqlite3's ``autocommit=False``, Python 3.12+) always has a
    # transaction open, inside which SQLite changes neither the journal nor the syncs: end it
    # for these statements (a new connection has done nothing in it), then put the mode back.
    pep249 = getattr(connection, "autocommit", None) is False
    if pep249:
        connection.autocommit = True
    try:
        _journal(connection, wal, where)
    finally:
        if pep249:
            connection.autocommit = False


def _journal(connection: Any, wal: bool | None, where: str) -> None:
    mode = _one(connection, "PRAGMA journal_mode")
    if mode != "wal" and (wal or (wal is None and _one(connection, "PRAGMA page_count") == 0)):
        mode = _one(connection, "PRAGMA journal_mode=WAL")
        if mode != "wal" and wal:
            raise MetastoreError(
                f"{where}: cannot put the database in WAL mode (sqlite_wal=True): SQLite "
                f"kept journal mode {mode!r}"
            )
    if mode == "wal":
        _one(connection, "PRAGMA synchronous=FULL")


def _one(connection: Any, statement: str) -> object:
    """The first column of `statement`'s first row (lower-cased text), or None."""
    cursor = connection.cursor()
    try:
        cursor.execute(statement)
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        return None
    value = row[0]
    return value.lower() if isinstance(value, str) else value
