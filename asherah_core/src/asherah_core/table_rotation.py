"""Rewrap the records an application keeps in a SQL table, and count the rows under each key.

`rewrap_table` walks the table in primary-key order, one batch per transaction, and moves every
selected record off a key that is not its partition's current one (`Session.rewrap`). Each row
is updated only if it still holds the record that was read (``UPDATE … WHERE key = :k AND
record = :old``): a row the application rewrote meanwhile is read again and handled in a later
transaction, never overwritten. A row is therefore at every moment its old or its new record,
both readable, and a run that stops anywhere (Ctrl-C, a crash, a restart of the database) is
finished by running it again: rows already moved are "current" and left alone.

`key_usage` counts the rows under each intermediate and system key, so an operator can see
when a key has no rows left. Both take an Engine or Connection and table and column names (or
a `sqlalchemy.Table`, or mapped columns through `RowTable.for_columns`); ``asherah-kms rewrap``
and ``asherah-kms keys --usage`` are built on them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import (
    AsherahError,
    CryptoError,
    ForeignRecordError,
    KeyNotFoundError,
    KmsError,
    MetastoreError,
    RecordError,
    SessionError,
)
from .records import KeyMeta
from .session import Session, SessionFactory

try:
    import sqlalchemy as sa
except ImportError as e:  # pragma: no cover - exercised by the install tests
    raise ImportError("rewrap_table needs SQLAlchemy: pip install 'asherah-core[sql]'") from e

__all__ = [
    "KeySelector",
    "KeyUsage",
    "RewrapSummary",
    "RowTable",
    "key_usage",
    "rewrap_table",
]

logger = logging.getLogger(__name__)

Mode = Literal["rewrap", "reencrypt"]
DEFAULT_BATCH_SIZE = 500
MAX_ROUNDS = 3
"""Transactions a row gets when the application keeps rewriting it during the run."""
_SESSIONS_KEPT = 10_000
"""Sessions kept per run (one per partition seen); the dictionary is cleared past this."""
_META = re.compile(r'"ParentKeyMeta":\{"KeyId":"([^"\\]+)","Created":(\d{1,19})\}')
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


# What to walk -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowTable:
    """Where an application keeps its data row records.

    :param table: the table's name (``name`` or ``schema.name``) or a `sqlalchemy.Table`.
    :param record_column: the column holding each record's JSON text.
    :param key_column: a unique, ordered column (the primary key): the order of the walk and
        the row an update targets.
    :param partition_column: the column holding each row's partition id; or
    :param partition: one partition id for every row of the table.
    :param where: an SQL condition selecting the rows to look at (``tenant_id = 7``). It is
        put into the query as it is: it comes from the operator, never from a user.
    """

    table: str | sa.Table
    record_column: str
    key_column: str
    partition_column: str | None = None
    partition: str | None = None
    where: str | None = None
    _table: sa.TableClause = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.partition_column is None) == (self.partition is None):
            raise SessionError("give either a partition column or one partition for every row")
        if self.partition is not None and not self.partition:
            raise SessionError("the partition id must not be empty")
        names = [self.record_column, self.key_column]
        if self.partition_column is not None:
            names.append(self.partition_column)
        if isinstance(self.table, sa.Table):
            missing = [name for name in names if name not in self.table.c]
            if missing:
                raise SessionError(f"table {self.table.name!r} has no column {missing[0]!r}")
            object.__setattr__(self, "_table", self.table)
            return
        if not isinstance(self.table, str):
            raise SessionError(f"table must be a name or a sqlalchemy.Table, not {self.table!r}")
        schema, _, name = self.table.rpartition(".")
        for value, what in ((name, "table"), (schema, "schema"), *((n, "column") for n in names)):
            if (value or what != "schema") and not _NAME.fullmatch(value):
                raise SessionError(
                    f"{what} name {value!r} must be letters, digits, '_' or '$' (at most 63, "
                    "not starting with a digit)"
                )
        clause = sa.table(
            name, *(sa.column(n) for n in dict.fromkeys(names)), schema=schema or None
        )
        object.__setattr__(self, "_table", clause)

    @classmethod
    def for_columns(
        cls,
        record: Any,
        *,
        partition: Any | None = None,
        partition_id: str | None = None,
        key: Any | None = None,
        where: str | None = None,
    ) -> RowTable:
        """The table of mapped or Core columns: ``RowTable.for_columns(User.ssn,
        partition=User.tenant_id)``. `key` defaults to the table's one primary-key column."""
        record_col = _column(record, "record")
        table = record_col.table
        if not isinstance(table, sa.Table):
            raise SessionError("the record column must belong to a table")
        if key is None:
            primary = list(table.primary_key.columns)
            if len(primary) != 1:
                raise SessionError(
                    f"table {table.name!r} has {len(primary)} primary-key columns; name the "
                    "key column"
                )
            key_col = primary[0]
        else:
            key_col = _column(key, "key")
        return cls(
            table,
            record_col.name,
            key_col.name,
            None if partition is None else _column(partition, "partition").name,
            partition_id,
            where,
        )

    @property
    def name(self) -> str:
        """The table's name as shown in messages."""
        schema = getattr(self._table, "schema", None)
        return f"{schema}.{self._table.name}" if schema else self._table.name

    def column(self, name: str) -> sa.ColumnElement[Any]:
        """A column of the table, by name."""
        return self._table.c[name]

    def condition(self) -> sa.ColumnElement[bool] | None:
        """The operator's ``where`` as a clause, or ``None``."""
        return None if self.where is None else sa.text(f"({self.where})")  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class KeySelector:
    """Names the key whose rows to rewrap: ``_IK_p_svc_prod@1796221020``, or an id alone for
    every version of it."""

    key_id: str
    created: int | None = None

    @classmethod
    def parse(cls, text: str) -> KeySelector:
        """Read ``ID@CREATED`` or ``ID``; `SessionError` names what is wrong."""
        key_id, at, created = text.rpartition("@")
        if not at:
            key_id, created = text, ""
        if not key_id:
            raise SessionError(f"key {text!r}: expected ID@CREATED or ID")
        if not at:
            return cls(key_id)
        if not created.isdigit() or len(created) > 19:
            raise SessionError(f"key {text!r}: CREATED must be Unix seconds")
        return cls(key_id, int(created))

    def matches(self, meta: KeyMeta) -> bool:
        """Whether `meta` is this key (any version when no created was given)."""
        return meta.key_id == self.key_id and self.created in (None, meta.created)

    def __str__(self) -> str:
        return self.key_id if self.created is None else f"{self.key_id}@{self.created}"


# Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewrapSummary:
    """Counts of a run (or of the run so far, for progress reports).

    :param scanned: rows read.
    :param rewrapped: rows updated (in a dry run: rows to update).
    :param current: rows already under their partition's current key.
    :param skipped: rows left alone by reason (under a key not selected, no record).
    :param failed: rows that could not be moved by reason; they keep their record.
    :param total: rows the run will read, when counted first; else ``None``.
    :param last_key: the key column of the last row done (resume after it).
    :param seconds: how long the run has taken.
    :param dry_run: whether nothing was written.
    """

    scanned: int = 0
    rewrapped: int = 0
    current: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    total: int | None = None
    last_key: Any = None
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Whether no row failed."""
        return not sum(self.failed.values())

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values."""
        return {
            "scanned": self.scanned,
            "rewrapped": self.rewrapped,
            "current": self.current,
            "skipped": dict(self.skipped),
            "failed": dict(self.failed),
            "total": self.total,
            "last_key": self.last_key,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class KeyUsage:
    """Rows per key in a table.

    :param rows: rows read.
    :param intermediate: rows per intermediate key.
    :param system: rows per system key (through the intermediate keys' records).
    :param unreadable: records that do not parse.
    :param empty: rows without a record (NULL or empty).
    :param unknown_parent: rows under intermediate keys the metastore does not hold.
    :param seconds: how long the count took.
    """

    rows: int
    intermediate: dict[KeyMeta, int]
    system: dict[KeyMeta, int]
    unreadable: int = 0
    empty: int = 0
    unknown_parent: int = 0
    seconds: float = 0.0


# The walk -----------------------------------------------------------------------------------


def rewrap_table(
    bind: sa.Engine | sa.Connection,
    rows: RowTable,
    factory: SessionFactory,
    *,
    key: KeySelector | str | None = None,
    system_key: KeySelector | str | None = None,
    mode: Mode = "rewrap",
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    start_after: Any = None,
    count: bool = False,
    progress: Callable[[RewrapSummary], None] | None = None,
) -> RewrapSummary:
    """Move every selected record of `rows` to its partition's current intermediate key.

    :param bind: an Engine (each batch on a connection of its own, in its own transaction) or
        a Connection (each batch in a transaction of it, or a savepoint when one is open).
    :param factory: the factory of the service and product the records belong to.
    :param key: only rows under this intermediate key (``ID@CREATED`` or ``ID``).
    :param system_key: only rows whose intermediate key is sealed by this system key.
    :param mode: ``rewrap`` (the row key sealed again; data unchanged) or ``reencrypt`` (a new
        row key and the data sealed again, also for rows already current: use with `key`).
    :param batch_size: rows per transaction.
    :param dry_run: read and check every row, write nothing (no row, no new key).
    :param start_after: resume after this value of the key column.
    :param count: count the rows first (a ``total`` for progress reports).
    :param progress: called with the counts so far after each batch.
    :returns: the counts; ``ok`` is False when a row failed (each is logged with its key).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SessionError(f"batch_size must be a positive integer, not {batch_size!r}")
    if mode not in ("rewrap", "reencrypt"):
        raise SessionError(f"mode must be 'rewrap' or 'reencrypt', not {mode!r}")
    run = _Run(
        bind,
        rows,
        factory,
        key=_selector(key),
        system_key=_selector(system_key),
        mode=mode,
        dry_run=dry_run,
    )
    return run.go(batch_size, start_after, count, progress)


class _Run:
    """The state of one `rewrap_table` call (it lives as long as the call)."""

    def __init__(
        self,
        bind: sa.Engine | sa.Connection,
        rows: RowTable,
        factory: SessionFactory,
        *,
        key: KeySelector | None,
        system_key: KeySelector | None,
        mode: Mode,
        dry_run: bool,
    ) -> None:
        self.bind = bind
        self.rows = rows
        self.factory = factory
        self.key = key
        self.system_key = system_key
        self.mode = mode
        self.dry_run = dry_run
        self.record = rows.column(rows.record_column)
        self.key_col = rows.column(rows.key_column)
        self.partition_col = (
            None if rows.partition_column is None else rows.column(rows.partition_column)
        )
        self.sessions: dict[str, Session] = {}
        self.parents: dict[KeyMeta, KeyMeta | None] = {}
        self.current: dict[str, KeyMeta | None] = {}  # dry runs: each partition's current key
        self.scanned = self.rewrapped = self.already = 0
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.total: int | None = None
        self.last_key: Any = None
        self.start = time.monotonic()

    def go(
        self,
        batch_size: int,
        after: Any,
        count: bool,
        progress: Callable[[RewrapSummary], None] | None,
    ) -> RewrapSummary:
        if count:
            self.total = self._count(after)
        self.last_key = after
        while True:
            batch = self._batch(after, batch_size)
            if batch is None:
                break
            after = self.last_key = batch
            if progress is not None:
                progress(self.summary())
        return self.summary()

    def summary(self) -> RewrapSummary:
        return RewrapSummary(
            self.scanned,
            self.rewrapped,
            self.already,
            Counter(self.skipped),
            Counter(self.failed),
            self.total,
            self.last_key,
            time.monotonic() - self.start,
            self.dry_run,
        )

    # Reading and writing --------------------------------------------------------------------

    def _columns(self) -> list[sa.ColumnElement[Any]]:
        columns = [self.key_col, self.record]
        if self.partition_col is not None:
            columns.append(self.partition_col)
        return columns

    def _filtered(self, query: sa.Select[Any], after: Any) -> sa.Select[Any]:
        if after is not None:
            query = query.where(self.key_col > after)
        condition = self.rows.condition()
        if condition is not None:
            query = query.where(condition)
        return query

    def _count(self, after: Any) -> int:
        query = self._filtered(sa.select(sa.func.count()).select_from(self.rows._table), after)
        with self._transaction() as conn:
            return int(conn.execute(query).scalar_one())

    def _batch(self, after: Any, size: int) -> Any:
        """Handle the next `size` rows after `after` in one transaction; return the last key
        read, or ``None`` at the end of the table. Rows the application rewrote meanwhile are
        handled again in transactions of their own."""
        query = self._filtered(sa.select(*self._columns()), after)
        query = query.order_by(self.key_col).limit(size)
        with self._transaction() as conn:
            batch = conn.execute(query).all()
            if not batch:
                return None
            self.scanned += len(batch)
            changed = self._handle(conn, batch)
        for _ in range(MAX_ROUNDS - 1):
            if not changed:
                break
            with self._transaction() as conn:
                again = conn.execute(
                    sa.select(*self._columns()).where(self.key_col.in_(changed))
                ).all()
                changed = self._handle(conn, again)
        for row_key in changed:
            self._fail(row_key, "changed by the application during the run (run again)", None)
        return batch[-1][0]

    def _handle(self, conn: sa.Connection, batch: Sequence[Any]) -> list[Any]:
        """Decide each row and write the new records; return the keys of the rows whose
        record changed between the read and the update."""
        updates: list[dict[str, Any]] = []
        for row in batch:
            row_key, text = row[0], row[1]
            partition = self.rows.partition if self.partition_col is None else row[2]
            new = self._decide(row_key, partition, text)
            if new is not None:
                updates.append({"b_key": row_key, "b_old": text, "b_new": new})
        if not updates:
            return []
        if self.dry_run:
            self.rewrapped += len(updates)
            return []
        return self._write(conn, updates)

    def _write(self, conn: sa.Connection, updates: list[dict[str, Any]]) -> list[Any]:
        table = self.rows._table
        statement = (
            sa.update(table)
            .where(self.key_col == sa.bindparam("b_key"))
            .where(self.record == sa.bindparam("b_old"))
            .values({self.rows.record_column: sa.bindparam("b_new")})
        )
        result = conn.execute(statement, updates)
        if result.rowcount == len(updates):
            self.rewrapped += len(updates)
            return []
        # Some updates found another record: see which rows hold the new one.
        written = dict(
            conn.execute(
                sa.select(self.key_col, self.record).where(
                    self.key_col.in_([u["b_key"] for u in updates])
                )
            ).all()
        )
        changed = [u["b_key"] for u in updates if written.get(u["b_key"]) != u["b_new"]]
        self.rewrapped += len(updates) - len(changed)
        return changed

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        if isinstance(self.bind, sa.Engine):
            with self.bind.begin() as conn:
                yield conn
        elif self.bind.in_transaction():
            with self.bind.begin_nested():
                yield self.bind
        else:
            with self.bind.begin():
                yield self.bind

    # One row --------------------------------------------------------------------------------

    def _decide(  # noqa: PLR0911 - one exit per outcome, each counted
        self, row_key: Any, partition: object, text: object
    ) -> str | None:
        """The new record for a row, or ``None`` when it stays as it is (counted here)."""
        if text is None or text == "":
            self.skipped["no record"] += 1
            return None
        if isinstance(text, bytes | bytearray | memoryview):
            text = bytes(text).decode("utf-8", errors="replace")
        if not isinstance(text, str):
            self._fail(row_key, "the record column is not text", None)
            return None
        if isinstance(partition, int) and not isinstance(partition, bool):
            partition = str(partition)  # an integer tenant id, as the application passes it
        if not isinstance(partition, str) or not partition:
            self._fail(row_key, "no partition id", None)
            return None
        try:
            meta = _parent_meta(text)
            if not self._selected(meta):
                self.skipped["under a key not selected"] += 1
                return None
            session = self._session(partition)
            if self.dry_run:
                return self._dry(session, partition, meta, text)
            new = session.reencrypt(text) if self.mode == "reencrypt" else session.rewrap(text)
        except AsherahError as e:
            self._fail(row_key, _reason(e), e)
            return None
        if new == text:
            self.already += 1
            return None
        return new

    def _dry(self, session: Session, partition: str, meta: KeyMeta, text: str) -> str | None:
        session.decrypt_bytes(text)  # it must open, or it is a failure already now
        if self.mode == "rewrap" and meta == self._current_meta(session, partition):
            self.already += 1
            return None
        return text  # what would change; nothing is written in a dry run

    def _selected(self, meta: KeyMeta) -> bool:
        if self.key is not None and not self.key.matches(meta):
            return False
        if self.system_key is not None:
            parent = self._parent(meta)
            if parent is None or not self.system_key.matches(parent):
                return False
        return True

    def _parent(self, meta: KeyMeta) -> KeyMeta | None:
        if meta not in self.parents:
            record = self.factory.metastore.load(meta.key_id, meta.created)
            self.parents[meta] = None if record is None else record.parent_key_meta
        return self.parents[meta]

    def _session(self, partition: str) -> Session:
        session = self.sessions.get(partition)
        if session is None:
            if len(self.sessions) >= _SESSIONS_KEPT:
                self.sessions.clear()
            session = self.sessions[partition] = self.factory.get_session(partition)
        return session

    def _current_meta(self, session: Session, partition: str) -> KeyMeta | None:
        """The key an encrypt would use now, read without making one (dry runs): ``None`` when
        a new one would be made."""
        if partition not in self.current:
            self.current[partition] = _usable_latest(self.factory, session.partition.ik_id)
        return self.current[partition]

    def _fail(self, row_key: Any, reason: str, error: AsherahError | None) -> None:
        self.failed[reason] += 1
        logger.warning(
            "row %s=%r of %s: %s%s",
            self.rows.key_column,
            row_key,
            self.rows.name,
            reason,
            "" if error is None else f" ({error})",
        )


# Counting rows per key ----------------------------------------------------------------------


def key_usage(
    bind: sa.Engine | sa.Connection,
    rows: RowTable,
    factory_or_metastore: Any = None,
    *,
    chunk: int = 10_000,
) -> KeyUsage:
    """Count the rows of `rows` under each intermediate key, and (with a factory or metastore
    to look the intermediate keys up in) under each system key.

    Reads only the record column, streamed; no key is unsealed and nothing is decrypted.
    """
    start = time.monotonic()
    metastore = getattr(factory_or_metastore, "metastore", factory_or_metastore)
    record = rows.column(rows.record_column)
    query = sa.select(record).select_from(rows._table)
    condition = rows.condition()
    if condition is not None:
        query = query.where(condition)
    per_ik: Counter[KeyMeta] = Counter()
    total = unreadable = empty = 0
    with contextlib.ExitStack() as stack:
        conn = bind if isinstance(bind, sa.Connection) else stack.enter_context(bind.connect())
        result = conn.execution_options(yield_per=chunk).execute(query)
        for (text,) in result:
            total += 1
            if text is None or text == "":
                empty += 1
                continue
            try:
                per_ik[_parent_meta(text)] += 1
            except RecordError:
                unreadable += 1
    per_sk: Counter[KeyMeta] = Counter()
    unknown = 0
    if metastore is not None:
        for meta, n in per_ik.items():
            stored = metastore.load(meta.key_id, meta.created)
            parent = None if stored is None else stored.parent_key_meta
            if parent is None:
                unknown += n
            else:
                per_sk[parent] += n
    return KeyUsage(
        total, dict(per_ik), dict(per_sk), unreadable, empty, unknown, time.monotonic() - start
    )


# Helpers ------------------------------------------------------------------------------------


def _parent_meta(text: object) -> KeyMeta:
    """The intermediate key a record names, read without decoding the rest of it."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise RecordError(f"data row record: expected JSON text, got {type(text).__name__}")
    found = _META.search(text)
    if found is not None and text.count('"ParentKeyMeta"') == 1:
        return KeyMeta(found.group(1), int(found.group(2)))
    try:
        value = json.loads(text)
        meta = value["Key"]["ParentKeyMeta"]
    except (ValueError, TypeError, KeyError):
        raise RecordError("data row record: no Key.ParentKeyMeta") from None
    return KeyMeta.from_dict(meta, "data row record Key.ParentKeyMeta")


def _usable_latest(factory: SessionFactory, ik_id: str) -> KeyMeta | None:
    metastore = factory.metastore
    policy = factory.policy
    now = time.time()
    latest = metastore.load_latest(ik_id)
    if latest is None or latest.revoked or policy.is_expired(latest.created, now):
        return None
    parent = latest.parent_key_meta
    system = None if parent is None else metastore.load(parent.key_id, parent.created)
    if system is None or system.revoked or policy.is_expired(system.created, now):
        return None
    return KeyMeta(ik_id, latest.created)


def _selector(value: KeySelector | str | None) -> KeySelector | None:
    if value is None or isinstance(value, KeySelector):
        return value
    if isinstance(value, str):
        return KeySelector.parse(value)
    raise SessionError(f"a key is named by 'ID@CREATED' or a KeySelector, not {value!r}")


def _reason(error: AsherahError) -> str:  # noqa: PLR0911 - a table of reasons
    if isinstance(error, RecordError):
        return "record does not parse"
    if isinstance(error, ForeignRecordError):
        return "record of another partition, service or product"
    if isinstance(error, CryptoError):
        return "record does not open"
    if isinstance(error, KeyNotFoundError):
        return "key not in the metastore"
    if isinstance(error, MetastoreError):
        return "metastore failed"
    if isinstance(error, KmsError):
        return "KMS failed"
    return type(error).__name__


def _column(value: Any, what: str) -> sa.Column[Any]:
    clause = getattr(value, "__clause_element__", None)
    column = clause() if callable(clause) else value
    if not isinstance(column, sa.Column):
        raise SessionError(f"the {what} column must be a mapped attribute or a Column")
    return column
