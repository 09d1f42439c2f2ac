"""A metastore in a SQL database through SQLAlchemy Core, in the table every Asherah shares.

Each dialect's differences (how ``created`` is stored, the DDL, how a duplicate insert is
reported) live in one `Dialect` value, so a new database is one entry in `DIALECTS`.
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import operator
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from asherah_core._sqlsecrets import (
    is_secret_parameter,
    scrubbed_line,
    shown_url,
    url_secrets,
    without_query_secrets,
)
from asherah_core.errors import MetastoreError, RecordError
from asherah_core.forksafe import new_locks_in_child
from asherah_core.records import EnvelopeKeyRecord

from .base import ListedKey, Metastore, StoredKey, readable

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.pool import StaticPool
except ImportError as e:  # pragma: no cover - exercised by the install tests
    raise ImportError("SqlMetastore needs SQLAlchemy: pip install 'asherah-core[sql]'") from e

from ._forked import own  # (both need SQLAlchemy: after the check above)
from ._journal import use_wal
from ._kept import kept_for

__all__ = [
    "DEFAULT_TABLE",
    "DIALECTS",
    "Dialect",
    "SqlMetastore",
    "is_secret_parameter",
    "passes_text_statements",
    "shown_url",
]

DEFAULT_TABLE = "encryption_key"
DRIFT_GUARD_PREFIX = "__asherah_internal_config_drift_guard_v1__:"
"""Rows the ``asherah`` package writes for itself; never read as keys, never touched."""

_T = TypeVar("_T")
_CONNECT_TIMEOUTS: dict[str, dict[str, Any]] = {
    "psycopg": {"connect_timeout": 10},
    "psycopg2": {"connect_timeout": 10},
    "pymysql": {"connect_timeout": 10, "read_timeout": 30, "write_timeout": 30},
    "mysqldb": {"connect_timeout": 10, "read_timeout": 30, "write_timeout": 30},
}
"""Seconds a driver waits to connect, and (MySQL) for a reply; ``engine_options`` override."""
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_FIRST_DATETIME = datetime(1, 1, 1)
_FIRST_SECOND = calendar.timegm(_FIRST_DATETIME.timetuple())
_LAST_SECOND = calendar.timegm(datetime(9999, 12, 31, 23, 59, 59).timetuple())


def _checked_created(where: str, created: int) -> int:
    """`created` if it is Unix seconds a SQL ``TIMESTAMP`` can hold (years 1 to 9999)."""
    if isinstance(created, bool) or not isinstance(created, int):
        raise MetastoreError(
            f"{where}: created must be an integer (Unix seconds), got {type(created).__name__}"
        )
    if not _FIRST_SECOND <= created <= _LAST_SECOND:
        raise MetastoreError(
            f"{where}: created {_shown_number(created)} is out of range: expected Unix seconds "
            f"from {_FIRST_SECOND} to {_LAST_SECOND} (years 1 to 9999; a millisecond or "
            "nanosecond timestamp is too large)"
        )
    return created


def _shown_number(value: int) -> str:
    if abs(value) < 10**40:
        return str(value)
    return f"{'-' if value < 0 else ''}(an integer of {value.bit_length()} bits)"


# Both are pure functions of an int that return immutable values, so they are remembered:
# every load and store binds one, and the keys of one precision window share it.


@functools.lru_cache(maxsize=1024)
def _text_created(created: int) -> Any:
    return (_FIRST_DATETIME + timedelta(seconds=created - _FIRST_SECOND)).isoformat(" ")


@functools.lru_cache(maxsize=1024)
def _datetime_created(created: int) -> Any:
    return _FIRST_DATETIME + timedelta(seconds=created - _FIRST_SECOND)


def _unix_seconds(value: object) -> int:
    """The ``created`` column as read back (a UTC datetime, or SQLite's text) in Unix seconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return calendar.timegm(value.timetuple())
    if isinstance(value, int):
        return value
    raise TypeError(f"unexpected created value of type {type(value).__name__}")


@dataclass(frozen=True)
class Dialect:
    """What differs between databases for the ``encryption_key`` table.

    :param name: SQLAlchemy's dialect name (``engine.dialect.name``).
    :param ddl: the statements that create the table, ``{table}`` replaced by its name and
        ``{record}`` by the type of ``key_record`` (``TEXT``, or ``JSONB`` on request); the
        schema the Go, Java and Rust implementations use on that database (on MySQL with a
        binary collation for ``id``, which theirs leave to the server's case-blind default).
    :param created: converts Unix seconds to the value bound for the ``created`` column: the
        UTC wall-clock time, with no zone, exactly as Go's driver (``loc=UTC``), Java and the
        Rust core send it. MySQL reads that in the session's time zone, which is left as the
        server set it: changing it would make the same key land on another instant than the
        other implementations' rows on a server whose zone is not UTC.
    :param record_as_text: read ``key_record`` through ``CAST(… AS TEXT)`` (PostgreSQL, where
        the column may be ``JSONB``, as the Rust core needs it).
    """

    name: str
    ddl: tuple[str, ...]
    created: Callable[[int], Any]
    record_as_text: bool = False


DIALECTS: dict[str, Dialect] = {
    "sqlite": Dialect(
        "sqlite",
        (
            "CREATE TABLE IF NOT EXISTS {table} (id TEXT NOT NULL, created TIMESTAMP NOT NULL, "
            "key_record TEXT NOT NULL, PRIMARY KEY (id, created))",
        ),
        _text_created,
    ),
    "mysql": Dialect(
        "mysql",
        (
            # A binary collation for id: the server's default (utf8mb4_general_ci and kin)
            # ignores case, so partitions "Alice" and "alice" would share one key.
            "CREATE TABLE IF NOT EXISTS {table} (id VARCHAR(255) CHARACTER SET utf8mb4 "
            "COLLATE utf8mb4_bin NOT NULL, "
            "created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, key_record TEXT NOT NULL, "
            "PRIMARY KEY (id, created), INDEX (created))",
        ),
        _datetime_created,
    ),
    "postgresql": Dialect(
        "postgresql",
        (
            "CREATE TABLE IF NOT EXISTS {table} (id VARCHAR(255) NOT NULL, "
            "created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, key_record {record} NOT NULL, "
            "PRIMARY KEY (id, created))",
            "CREATE INDEX IF NOT EXISTS {table}_created_idx ON {table} (created)",
        ),
        _datetime_created,
        record_as_text=True,
    ),
}


class SqlMetastore(Metastore):
    """Key records in the SQL table ``encryption_key(id, created, key_record)``.

    :param url_or_engine: a SQLAlchemy URL (``sqlite:///keys.db``,
        ``postgresql+psycopg://…``, ``mysql+pymysql://…``) or the `sqlalchemy.engine.Engine`
        the application already has (then `close` leaves it open).
    :param table: the table name (Asherah's is ``encryption_key``).
    :param create_table: create the table if it does not exist, now. Off by default: the
        metastore never changes a schema unless asked (`create_table` does it on demand).
    :param engine_options: passed to `sqlalchemy.create_engine` when a URL is given.
    :param sqlite_wal: for a SQLite file URL, the journal: ``None`` (the default) puts a new,
        empty database in write-ahead-log mode and leaves an existing one as it is, ``True``
        puts it in WAL mode in any case, ``False`` never changes it. In WAL mode every
        connection syncs each commit (``synchronous=FULL``). Anything but ``None`` for an
        engine passed in, an in-memory database or another database is an error.
    """

    kind: ClassVar[str] = "sql"

    def __init__(
        self,
        url_or_engine: str | sa.URL | sa.Engine,
        *,
        table: str = DEFAULT_TABLE,
        create_table: bool = False,
        engine_options: dict[str, Any] | None = None,
        sqlite_wal: bool | None = None,
    ) -> None:
        if sqlite_wal is not None and not isinstance(sqlite_wal, bool):
            raise MetastoreError(
                f"sql metastore: sqlite_wal must be True, False or None, not "
                f"{type(sqlite_wal).__name__}"
            )
        if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
            raise MetastoreError(
                f"sql metastore: table name {table!r} must be letters, digits and '_' "
                "(at most 63, not starting with a digit)"
            )
        self._owns_engine = not isinstance(url_or_engine, sa.Engine)
        if isinstance(url_or_engine, sa.Engine):
            self._engine = url_or_engine
            self._shown_url = shown_url(self._engine.url)
            self._secrets = url_secrets(self._engine.url, {})
        else:
            made = _create_engine(url_or_engine, engine_options or {})
            self._engine, self._shown_url, self._secrets = made
        # One connection shared by every thread (an in-memory SQLite database): held by one
        # thread at a time, from checkout to return, or transactions would interleave on it.
        # A forked child renews the lock (the child's copy of the database is its own).
        self._one_at_a_time: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if isinstance(self._engine.pool, StaticPool):
            self._one_at_a_time = threading.Lock()
            new_locks_in_child(self, "_one_at_a_time")
        name = self._engine.dialect.name
        if name not in DIALECTS:
            known = ", ".join(sorted(DIALECTS))
            self._dispose()
            raise MetastoreError(
                f"sql metastore: database {name!r} is not supported; supported: {known}"
            )
        self._dialect = DIALECTS[name]
        self._where = f"sql metastore ({self._shown_url})"
        sqlite_file = self._owns_engine and name == "sqlite" and not _in_memory(self._engine.url)
        if sqlite_wal is not None and not sqlite_file:
            self._dispose()
            what = (
                f"a {name} database"
                if name != "sqlite"
                else "an engine passed in (set its journal yourself)"
                if not self._owns_engine
                else "an in-memory database"
            )
            raise MetastoreError(
                f"{self._where}: sqlite_wal is for a SQLite file URL; this is {what}"
            )
        if sqlite_file and sqlite_wal is not False:
            use_wal(self._engine, sqlite_wal, self._where)  # see _journal.py
        self._table_name = table
        self._table = sa.table(
            table, sa.column("id"), sa.column("created"), sa.column("key_record")
        )
        # Built once: text statements skip SQLAlchemy's per-call statement construction and
        # cache-key work, which cost more than SQLite's own read of a row. The table name is
        # checked against _TABLE_NAME above; every value is a bound parameter.
        record = "CAST(key_record AS TEXT)" if self._dialect.record_as_text else "key_record"
        self._select_one = sa.text(
            f"SELECT {record} FROM {table} WHERE id = :b_id AND created = :b_created"  # noqa: S608
        )
        self._select_latest = sa.text(
            f"SELECT {record} FROM {table} WHERE id = :b_id ORDER BY created DESC LIMIT 1"  # noqa: S608
        )
        self._insert = sa.text(
            f"INSERT INTO {table} (id, created, key_record) "  # noqa: S608
            "VALUES (:b_id, :b_created, :b_record)"
        )
        # The same three statements compiled once for the driver, run on a pooled DBAPI
        # connection (see _DriverStatement): the hot calls skip SQLAlchemy's execution
        # path, about two thirds of a SQLite load, and keep its URLs, pool and dialects.
        dialect = self._engine.dialect
        self._raw_one = _DriverStatement(self._select_one, dialect)
        self._raw_latest = _DriverStatement(self._select_latest, dialect)
        self._raw_insert = _DriverStatement(self._insert, dialect)
        self._dbapi_error: type[Exception] = getattr(dialect.dbapi, "Error", sa_exc.DBAPIError)
        self._dbapi_integrity: type[Exception] = getattr(
            dialect.dbapi, "IntegrityError", sa_exc.IntegrityError
        )
        # Up to pool_size - 1 connections kept checked out between the hot statements, for a
        # SQLite file of an engine made here (see _kept.py): the pool's checkout and return
        # cost about as much as SQLite's read of a key row.
        self._kept = kept_for(self._engine) if self._owns_engine else None
        if self._owns_engine:
            own(self._engine)  # a new pool in a forked child (see _forked.py)
        self._closed = False
        if create_table:
            self.create_table()

    @property
    def _record(self) -> sa.ColumnElement[Any]:
        column = self._table.c.key_record
        return sa.cast(column, sa.Text) if self._dialect.record_as_text else column

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine in use. With an in-memory SQLite database it has one
        connection, which this metastore's calls take one at a time: use it only between them."""
        return self._engine

    @property
    def dialect(self) -> Dialect:
        """The dialect entry in use."""
        return self._dialect

    def create_table(self, *, jsonb: bool = False) -> None:
        """Create the key table and its index if they do not exist (the anchors' schema).

        :param jsonb: PostgreSQL only: make ``key_record`` ``JSONB`` instead of ``TEXT``. The
            ``asherah`` package (Rust core) binds the record as JSONB and cannot write to a
            TEXT column; this metastore reads and writes both.
        """
        if jsonb and self._dialect.name != "postgresql":
            raise MetastoreError(f"{self._where}: jsonb=True is for PostgreSQL only")
        record = "JSONB" if jsonb else "TEXT"
        statements = [s.format(table=self._table_name, record=record) for s in self._dialect.ddl]

        def run(conn: sa.Connection) -> None:
            for statement in statements:
                conn.execute(sa.text(statement))

        self._run("create the table", None, run)

    # Metastore ---------------------------------------------------------------------------

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """Return the row ``(key_id, created)`` or ``None``."""
        params = {"b_id": key_id, "b_created": self._created(created)}
        if self._listened():
            with self._errors("load", key_id), self._connect() as conn:
                text = conn.execute(self._select_one, params).scalar()
        else:
            text = self._driver("load", key_id, self._raw_one, params)
        return None if text is None else self._parse(text, key_id)

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        """Return the row of `key_id` with the largest ``created``, or ``None``."""
        params = {"b_id": key_id}
        if self._listened():
            with self._errors("load latest", key_id), self._connect() as conn:
                text = conn.execute(self._select_latest, params).scalar()
        else:
            text = self._driver("load latest", key_id, self._raw_latest, params)
        return None if text is None else self._parse(text, key_id)

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        """Insert the row; False when ``(key_id, created)`` exists already.

        A plain insert whose failure on the primary key means "someone else stored it" (an
        ``INSERT … WHERE NOT EXISTS`` deadlocked under concurrent creation in the anchors).
        """
        params = {
            "b_id": key_id,
            "b_created": self._created(created),
            "b_record": record.to_json(),
        }
        try:
            if self._listened():
                with self._errors("store", key_id), self._begin() as conn:
                    conn.execute(self._insert, params)
            else:
                self._driver("store", key_id, self._raw_insert, params)
        except _Duplicate:
            return False
        return True

    def keys(self, prefix: str = "") -> Iterator[StoredKey]:
        """Yield every row whose id starts with `prefix` (drift-guard rows left out)."""
        yield from readable(self.list_keys(prefix))

    def list_keys(self, prefix: str = "") -> Iterator[ListedKey]:
        """`keys`, each row read on its own: one that cannot be read is listed with why."""
        t = self._table
        query = sa.select(t.c.id, t.c.created, self._record).order_by(t.c.id, t.c.created)
        rows = self._run("list keys", None, lambda c: c.execute(query).all())
        for key_id, created, text in rows:
            if not isinstance(key_id, str):
                problem = f"{self._where}: a row's id is not text ({type(key_id).__name__})"
                yield ListedKey(None, None, None, problem)
                continue
            if key_id.startswith(DRIFT_GUARD_PREFIX) or not key_id.startswith(prefix):
                continue
            try:
                seconds = _unix_seconds(created)
            except (TypeError, ValueError, OverflowError):
                problem = f"{self._where}: the created column of {key_id!r} is not a time"
                yield ListedKey(key_id, None, None, problem)
                continue
            try:
                record = self._parse(text, key_id)
            except MetastoreError as e:
                yield ListedKey(key_id, seconds, None, str(e))
                continue
            yield ListedKey(key_id, seconds, record)

    def revoke(self, key_id: str, created: int) -> bool:
        """Set ``Revoked`` in the row's key record; False when there is no such row."""
        t = self._table
        where = (t.c.id == sa.bindparam("b_id")) & (t.c.created == sa.bindparam("b_created"))
        params = {"b_id": key_id, "b_created": self._created(created)}

        def update(conn: sa.Connection) -> bool:
            query = sa.select(self._record).where(where).with_for_update()
            text = conn.execute(query, params).scalar()
            if text is None:
                return False
            record = self._parse(text, key_id).with_revoked()
            conn.execute(
                sa.update(t).where(where).values(key_record=sa.bindparam("b_record")),
                {**params, "b_record": record.to_json()},
            )
            return True

        return self._run("revoke", key_id, update)

    def close(self) -> None:
        """Dispose of the engine's connections if this metastore created the engine."""
        if not self._closed:
            self._closed = True
            if self._kept is not None:
                self._kept.close()
            self._dispose()

    def __repr__(self) -> str:
        return f"SqlMetastore({self._shown_url!r}, table={self._table_name!r})"

    # Internals ---------------------------------------------------------------------------

    def _dispose(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def _created(self, created: int) -> Any:
        return self._dialect.created(_checked_created(self._where, created))

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        with self._one_at_a_time, self._engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        with self._one_at_a_time, self._engine.begin() as conn:
            yield conn

    def _listened(self) -> bool:
        """True when someone listens to the engine's statement events (logging, tracing such
        as OpenTelemetry's SQLAlchemy instrumentation): then the hot statements go through
        SQLAlchemy's `Connection` as every other, so that the listeners see them, and the
        kept connections go back to the pool. Listeners registered with
        `passes_text_statements` do not count."""
        engine = self._engine
        # SQLAlchemy sets _has_events on an engine or dialect (or their class) when a listener
        # of its statement or dialect events is added, and never clears it: without it,
        # nobody listens (a version without the attribute gets the whole check).
        if not (
            getattr(engine, "_has_events", True) or getattr(engine.dialect, "_has_events", True)
        ):
            return False
        dispatch = engine.dispatch
        before = dispatch.before_execute
        listened = bool(
            dispatch.before_cursor_execute
            or dispatch.after_cursor_execute
            or (before and not _PASSING_TEXT.issuperset(before))
            or dispatch.after_execute
            or engine.dialect.dispatch.handle_error
        )
        if listened and self._kept is not None:
            # A listener came after connections were kept: the Connection path takes its own
            # from the pool, so the kept ones go back to it rather than sit idle until close.
            self._kept.release()
        return listened

    def _driver(
        self, what: str, key_id: str, statement: _DriverStatement, params: dict[str, Any]
    ) -> Any:
        """Run `statement` on a DBAPI connection, a kept one (_kept.py) or the pool's: the
        first column of its first row for a query, or commit for an insert. Errors as `_errors`
        makes them; a connection the driver reports as lost is invalidated, as SQLAlchemy
        would do. A connection is kept again only after its statement ended."""
        if self._closed:
            raise MetastoreError(f"{self._where}: closed")
        kept = self._kept
        with self._one_at_a_time:
            conn = None if kept is None else kept.take()
            if conn is None:
                conn = self._checkout(what, key_id)
            cursor = None
            ended = False  # the statement ended (committed or rolled back): it may be kept
            try:
                cursor = conn.dbapi_connection.cursor()  # the driver's own, past the pool's proxy
                pick = statement.pick  # (inline: a call per statement costs as much)
                cursor.execute(statement.sql, params if pick is None else pick(params))
                if statement.query:
                    row = cursor.fetchone()
                    ended = True
                    return None if row is None else row[0]
                conn.commit()
                ended = True
                return None
            except self._dbapi_integrity as e:
                conn.rollback()
                ended = True
                if what == "store":
                    raise _Duplicate from None
                raise MetastoreError(self._failure(what, key_id, e)) from None
            except self._dbapi_error as e:
                if self._engine.dialect.is_disconnect(e, conn.dbapi_connection, cursor):  # type: ignore[arg-type]
                    conn.invalidate(e)
                raise MetastoreError(self._failure(what, key_id, e)) from None
            except (OSError, UnicodeError, ValueError, TypeError) as e:
                raise MetastoreError(
                    f"{self._where}: {what}{_for(key_id)} failed: {type(e).__name__}"
                ) from None
            finally:
                if cursor is not None:
                    try:  # noqa: SIM105 - a try costs nothing; contextlib.suppress is a call
                        cursor.close()
                    except Exception:  # noqa: S110 - the statement's outcome stands
                        pass
                if not (ended and kept is not None and kept.give(conn)):
                    conn.close()  # back to the pool, which rolls back what is left open

    def _checkout(self, what: str, key_id: str) -> Any:
        """A DBAPI connection from the engine's pool (its checkout runs the pre-ping)."""
        try:
            return self._engine.raw_connection()
        except (sa_exc.SQLAlchemyError, self._dbapi_error) as e:  # the driver's own, here
            raise MetastoreError(self._failure(what, key_id, e)) from None
        except (OSError, UnicodeError, ValueError, TypeError) as e:
            raise MetastoreError(
                f"{self._where}: {what}{_for(key_id)} failed: {type(e).__name__}"
            ) from None

    def _run(self, what: str, key_id: str | None, work: Callable[[sa.Connection], _T]) -> _T:
        with self._errors(what, key_id), self._begin() as conn:
            return work(conn)

    @contextlib.contextmanager
    def _errors(self, what: str, key_id: str | None) -> Iterator[None]:
        """Turn every failure inside into a `MetastoreError` naming `what` and `key_id`; a
        duplicate primary key on store into `_Duplicate`."""
        if self._closed:
            raise MetastoreError(f"{self._where}: closed")
        try:
            yield
        except MetastoreError:
            raise
        except sa_exc.IntegrityError as e:
            if what == "store":
                raise _Duplicate from None
            raise MetastoreError(self._failure(what, key_id, e)) from None
        except sa_exc.SQLAlchemyError as e:
            raise MetastoreError(self._failure(what, key_id, e)) from None
        except (OSError, UnicodeError, ValueError, TypeError) as e:
            raise MetastoreError(
                f"{self._where}: {what}{_for(key_id)} failed: {type(e).__name__}"
            ) from None

    def _failure(self, what: str, key_id: str | None, error: Exception) -> str:
        original = getattr(error, "orig", None) or error
        detail = scrubbed_line(str(original), self._secrets)
        if isinstance(error, sa_exc.StatementError) and not getattr(error, "orig", None):
            detail = ""  # the statement and its parameters are not for messages
        hint = ""
        if "no such table" in detail or "doesn't exist" in detail or "does not exist" in detail:
            hint = (
                f"; create it with SqlMetastore(...).create_table() or "
                f"`asherah-kms create-table` (table {self._table_name!r})"
            )
        detail = detail[:300]
        return (
            f"{self._where}: {what}{_for(key_id)} failed: {type(original).__name__}"
            f"{': ' + detail if detail else ''}{hint}"
        )

    def _parse(self, text: object, key_id: str) -> EnvelopeKeyRecord:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8", errors="replace")
        if not isinstance(text, str):
            raise MetastoreError(
                f"{self._where}: the key record of {key_id!r} is not text ({type(text).__name__})"
            )
        try:
            return EnvelopeKeyRecord.from_json(text, "key record")
        except RecordError as e:
            raise MetastoreError(
                f"{self._where}: the row of {key_id!r} does not parse: {e}"
            ) from None


_PASSING_TEXT: set[Callable[..., Any]] = set()
_L = TypeVar("_L", bound=Callable[..., Any])


def passes_text_statements(listener: _L) -> _L:
    """Mark an engine ``before_execute`` listener that returns a text statement and its
    parameters unchanged when no bind parameter of the statement has a type of its own (the
    SQLAlchemy integration's sealing of encrypted columns, which listens on every `Engine`).
    The metastore's hot statements bind plain values, so with only such listeners on its
    engine they still skip `Connection`: the listeners would change nothing of them."""
    _PASSING_TEXT.add(listener)
    return listener


class _DriverStatement:
    """A text statement compiled once for one dialect: its SQL in the driver's parameter style
    and how to pass it the bound values. The statements bind plain values (no SQLAlchemy
    types, so no bind processing is skipped) and read one text column."""

    __slots__ = ("pick", "query", "sql")

    def __init__(self, statement: sa.TextClause, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.query = self.sql.lstrip().upper().startswith("SELECT")
        names = tuple(compiled.positiontup or ()) if compiled.positional else None
        # itemgetter of two names or more returns their tuple, in order, in one C call.
        # How to pass the driver the bound values: None for the dictionary itself, else a
        # function giving their tuple in order.
        self.pick: Callable[[dict[str, Any]], Any] | None = (
            None
            if names is None
            else operator.itemgetter(*names)
            if len(names) > 1
            else lambda params: tuple([params[name] for name in names])
        )


class _Duplicate(Exception):  # noqa: N818 - a signal inside this module, not an error
    """The row exists already (the store lost a race)."""


def _for(key_id: str | None) -> str:
    return "" if key_id is None else f" of {key_id!r}"


def _create_engine(
    url: str | sa.URL, options: dict[str, Any]
) -> tuple[sa.Engine, str, tuple[str, ...]]:
    """The engine for `url`, `url` as it may be shown, and the credentials to scrub from
    messages.

    Credentials in the URL's query move to ``connect_args`` for the drivers that read them
    there alike (`without_query_secrets`), so that the engine's URL (in SQLAlchemy's reprs and
    logs) holds none. An in-memory SQLite database is one connection shared by every thread (a
    `StaticPool`), as the ``asherah`` package shares one: SQLAlchemy's default gives each
    thread its own, empty.
    """
    try:
        parsed = sa.make_url(url)
    except (sa_exc.ArgumentError, ValueError, TypeError):
        raise MetastoreError(
            "sql metastore: the connection URL is not a valid SQLAlchemy URL "
            "(expected for example sqlite:///keys.db or postgresql+psycopg://user@host/db)"
        ) from None
    shown = shown_url(parsed)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    backend = parsed.get_backend_name()
    driver = parsed.get_driver_name()
    if backend == "sqlite":
        kwargs = {"connect_args": {"timeout": 30.0}}
        if _in_memory(parsed):
            kwargs["poolclass"] = StaticPool
            kwargs["connect_args"]["check_same_thread"] = False
    elif driver in _CONNECT_TIMEOUTS:
        # Bounded waits: a server that stops answering fails the call instead of hanging it.
        kwargs["connect_args"] = dict(_CONNECT_TIMEOUTS[driver])
    parsed, given, secrets = without_query_secrets(parsed, options.get("connect_args", {}))
    connect_args = {**kwargs.get("connect_args", {}), **given}
    kwargs.update(options)
    if connect_args:
        kwargs["connect_args"] = connect_args
    try:
        return sa.create_engine(parsed, **kwargs), shown, secrets
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as e:
        raise MetastoreError(
            f"sql metastore ({shown}): cannot create an engine: {type(e).__name__}: "
            f"{scrubbed_line(str(e), secrets)[:200]}"
        ) from None
    except ImportError as e:
        raise MetastoreError(
            f"sql metastore ({shown}): the database driver is not installed ({e.name}); "
            "install asherah-core[postgres] or asherah-core[mysql]"
        ) from None


def _in_memory(url: sa.URL) -> bool:
    """True for SQLite URLs naming an in-memory database (``sqlite://``, ``:memory:``,
    ``mode=memory``): one per connection unless the connection is shared."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
