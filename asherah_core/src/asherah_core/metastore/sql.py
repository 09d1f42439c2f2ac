"""A metastore in a SQL database through SQLAlchemy Core, in the table every Asherah shares.

Each dialect's differences (how ``created`` is stored, the DDL, how a duplicate insert is
reported) live in one `Dialect` value, so a new database is one entry in `DIALECTS`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from ..errors import MetastoreError, RecordError
from ..records import EnvelopeKeyRecord
from .base import Metastore, StoredKey

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
except ImportError as e:  # pragma: no cover - exercised by the install tests
    raise ImportError(
        "SqlMetastore needs SQLAlchemy: pip install 'asherah-core[sql]'"
    ) from e

__all__ = ["DEFAULT_TABLE", "DIALECTS", "Dialect", "SqlMetastore"]

DEFAULT_TABLE = "encryption_key"
DRIFT_GUARD_PREFIX = "__asherah_internal_config_drift_guard_v1__:"
"""Rows the ``asherah`` package writes for itself; never read as keys, never touched."""

_T = TypeVar("_T")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _text_created(created: int) -> Any:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created))


def _datetime_created(created: int) -> Any:
    return datetime.fromtimestamp(created, UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Dialect:
    """What differs between databases for the ``encryption_key`` table.

    :param name: SQLAlchemy's dialect name (``engine.dialect.name``).
    :param ddl: the statements that create the table, ``{table}`` replaced by its name; the
        exact schema the Go, Java and Rust implementations use on that database.
    :param created: converts Unix seconds to the value bound for the ``created`` column.
    """

    name: str
    ddl: tuple[str, ...]
    created: Callable[[int], Any]


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
            "CREATE TABLE IF NOT EXISTS {table} (id VARCHAR(255) NOT NULL, "
            "created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, key_record TEXT NOT NULL, "
            "PRIMARY KEY (id, created), INDEX (created))",
        ),
        _datetime_created,
    ),
    "postgresql": Dialect(
        "postgresql",
        (
            "CREATE TABLE IF NOT EXISTS {table} (id VARCHAR(255) NOT NULL, "
            "created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, key_record TEXT NOT NULL, "
            "PRIMARY KEY (id, created))",
            "CREATE INDEX IF NOT EXISTS {table}_created_idx ON {table} (created)",
        ),
        _datetime_created,
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
    """

    kind: ClassVar[str] = "sql"

    def __init__(
        self,
        url_or_engine: str | sa.URL | sa.Engine,
        *,
        table: str = DEFAULT_TABLE,
        create_table: bool = False,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
            raise MetastoreError(
                f"sql metastore: table name {table!r} must be letters, digits and '_' "
                "(at most 63, not starting with a digit)"
            )
        self._owns_engine = not isinstance(url_or_engine, sa.Engine)
        if isinstance(url_or_engine, sa.Engine):
            self._engine = url_or_engine
        else:
            self._engine = _create_engine(url_or_engine, engine_options or {})
        name = self._engine.dialect.name
        if name not in DIALECTS:
            known = ", ".join(sorted(DIALECTS))
            self._dispose()
            raise MetastoreError(
                f"sql metastore: database {name!r} is not supported; supported: {known}"
            )
        self._dialect = DIALECTS[name]
        self._where = f"sql metastore ({self._engine.url.render_as_string(hide_password=True)})"
        self._table_name = table
        self._table = sa.table(
            table, sa.column("id"), sa.column("created"), sa.column("key_record")
        )
        self._closed = False
        if create_table:
            self.create_table()

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine in use."""
        return self._engine

    @property
    def dialect(self) -> Dialect:
        """The dialect entry in use."""
        return self._dialect

    def create_table(self) -> None:
        """Create the key table and its index if they do not exist (the anchors' schema)."""
        statements = [s.format(table=self._table_name) for s in self._dialect.ddl]

        def run(conn: sa.Connection) -> None:
            for statement in statements:
                conn.execute(sa.text(statement))

        self._run("create the table", None, run)

    # Metastore ---------------------------------------------------------------------------

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """Return the row ``(key_id, created)`` or ``None``."""
        t = self._table
        query = (
            sa.select(t.c.key_record)
            .where(t.c.id == sa.bindparam("id"))
            .where(t.c.created == sa.bindparam("created"))
        )
        params = {"id": key_id, "created": self._dialect.created(created)}
        text = self._run("load", key_id, lambda c: c.execute(query, params).scalar())
        return None if text is None else self._parse(text, key_id)

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        """Return the row of `key_id` with the largest ``created``, or ``None``."""
        t = self._table
        query = (
            sa.select(t.c.key_record)
            .where(t.c.id == sa.bindparam("id"))
            .order_by(t.c.created.desc())
            .limit(1)
        )
        text = self._run("load latest", key_id, lambda c: c.execute(query, {"id": key_id}).scalar())
        return None if text is None else self._parse(text, key_id)

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        """Insert the row; False when ``(key_id, created)`` exists already."""
        params = {
            "id": key_id,
            "created": self._dialect.created(created),
            "key_record": record.to_json(),
        }
        statement = sa.insert(self._table).values(
            id=sa.bindparam("id"),
            created=sa.bindparam("created"),
            key_record=sa.bindparam("key_record"),
        )

        def insert(conn: sa.Connection) -> bool:
            try:
                # A savepoint, so that PostgreSQL's aborted statement leaves the transaction
                # usable; the other databases need none.
                nested = conn.begin_nested() if self._dialect.name == "postgresql" else None
                with nested if nested is not None else contextlib.nullcontext():
                    conn.execute(statement, params)
            except sa_exc.IntegrityError:
                return False
            return True

        return self._run("store", key_id, insert)

    def keys(self, prefix: str = "") -> Iterator[StoredKey]:
        """Yield every row whose id starts with `prefix` (drift-guard rows left out)."""
        t = self._table
        query = sa.select(t.c.id, t.c.key_record).order_by(t.c.id, t.c.created)
        rows = self._run("list keys", None, lambda c: c.execute(query).all())
        for key_id, text in rows:
            if key_id.startswith(DRIFT_GUARD_PREFIX) or not key_id.startswith(prefix):
                continue
            record = self._parse(text, key_id)
            yield key_id, record.created, record

    def revoke(self, key_id: str, created: int) -> bool:
        """Set ``Revoked`` in the row's key record; False when there is no such row."""
        t = self._table
        # Not "id" and "created": SQLAlchemy reserves column names for an UPDATE's SET values.
        where = (t.c.id == sa.bindparam("key_id")) & (t.c.created == sa.bindparam("key_created"))
        params = {"key_id": key_id, "key_created": self._dialect.created(created)}

        def update(conn: sa.Connection) -> bool:
            text = conn.execute(sa.select(t.c.key_record).where(where), params).scalar()
            if text is None:
                return False
            record = self._parse(text, key_id).with_revoked()
            conn.execute(
                sa.update(t).where(where).values(key_record=sa.bindparam("record")),
                {**params, "record": record.to_json()},
            )
            return True

        return self._run("revoke", key_id, update)

    def close(self) -> None:
        """Dispose of the engine's connections if this metastore created the engine."""
        if not self._closed:
            self._closed = True
            self._dispose()

    def __repr__(self) -> str:
        return f"SqlMetastore({self._where[len('sql metastore (') : -1]!r}, table={self._table_name!r})"

    # Internals ---------------------------------------------------------------------------

    def _dispose(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def _run(self, what: str, key_id: str | None, work: Callable[[sa.Connection], _T]) -> _T:
        if self._closed:
            raise MetastoreError(f"{self._where}: closed")
        try:
            with self._engine.begin() as conn:
                return work(conn)
        except MetastoreError:
            raise
        except sa_exc.SQLAlchemyError as e:
            raise MetastoreError(self._failure(what, key_id, e)) from None
        except (OSError, UnicodeError, ValueError, TypeError) as e:
            raise MetastoreError(
                f"{self._where}: {what}{_for(key_id)} failed: {type(e).__name__}"
            ) from None

    def _failure(self, what: str, key_id: str | None, error: Exception) -> str:
        original = getattr(error, "orig", None) or error
        detail = str(original).strip().splitlines()[0] if str(original).strip() else ""
        if isinstance(error, sa_exc.StatementError) and not getattr(error, "orig", None):
            detail = ""  # the statement and its parameters are not for messages
        password = self._engine.url.password
        if password:
            detail = detail.replace(str(password), "***")
        hint = ""
        if "no such table" in detail or "doesn't exist" in detail or "does not exist" in detail:
            hint = (
                f"; create it with SqlMetastore(...).create_table() or "
                f"`asherah-kms metastore create-table` (table {self._table_name!r})"
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
                f"{self._where}: the key record of {key_id!r} is not text "
                f"({type(text).__name__})"
            )
        try:
            return EnvelopeKeyRecord.from_json(text, "key record")
        except RecordError as e:
            raise MetastoreError(f"{self._where}: the row of {key_id!r} does not parse: {e}") from None


def _for(key_id: str | None) -> str:
    return "" if key_id is None else f" of {key_id!r}"


def _create_engine(url: str | sa.URL, options: dict[str, Any]) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except (sa_exc.ArgumentError, ValueError, TypeError):
        raise MetastoreError(
            "sql metastore: the connection URL is not a valid SQLAlchemy URL "
            "(expected for example sqlite:///keys.db or postgresql+psycopg://user@host/db)"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs = {"connect_args": {"timeout": 30.0}}
    kwargs.update(options)
    try:
        return sa.create_engine(parsed, **kwargs)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as e:
        raise MetastoreError(
            f"sql metastore ({shown}): cannot create an engine: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}"
        ) from None
    except ImportError as e:
        raise MetastoreError(
            f"sql metastore ({shown}): the database driver is not installed ({e.name}); "
            "install asherah-core[postgres] or asherah-core[mysql]"
        ) from None
