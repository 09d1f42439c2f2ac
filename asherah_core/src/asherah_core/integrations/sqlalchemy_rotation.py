"""Rewrap the rows of an encrypted SQLAlchemy column, and count its rows per key.

``rewrap_column(engine, Note.body)`` is `asherah_core.table_rotation.rewrap_table` over the
column's table, with what the column type already knows: the partition of each row comes from
the column named by the type's ``partition_from`` (or, for a type made with ``partition=``,
from that callable, called once), and the factory is the type's. ``column_key_usage`` is
`key_usage` the same way.

The walk reads and writes the column's raw records through a plain copy of the table (its
names, none of its types): the encrypted type would open each record on reading and refuse a
record compared in the conditional ``UPDATE``. The ORM opens the new records as before: they
are ordinary records of the same partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session

from asherah_core.errors import SessionError
from asherah_core.session import SessionFactory
from asherah_core.table_rotation import (
    DEFAULT_BATCH_SIZE,
    KeySelector,
    KeyUsage,
    Mode,
    RewrapSummary,
    RowTable,
    key_usage,
    rewrap_table,
)

from .records import check_partition, resolve_factory
from .sqlalchemy import _EncryptedType

__all__ = ["column_key_usage", "column_rows", "rewrap_column"]

Bind = sa.Engine | sa.Connection | Session


def rewrap_column(
    bind: Bind,
    column: Any,
    *,
    factory: SessionFactory | None = None,
    key: KeySelector | str | None = None,
    system_key: KeySelector | str | None = None,
    mode: Mode = "rewrap",
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    start_after: Any = None,
    count: bool = False,
    progress: Callable[[RewrapSummary], None] | None = None,
    where: str | None = None,
) -> RewrapSummary:
    """Move the records of an encrypted column off keys that are not current (or off `key`).

    :param bind: an Engine, a Connection, or an ORM `Session` (its bind for the column's
        class: each batch is committed in its own transaction, outside the session's).
    :param column: the mapped attribute (``Note.body``) or the `Column` of an `EncryptedText`
        or `EncryptedBytes` column.
    :param factory: the factory to use; by default the column type's.
    :param where: an SQL condition on the rows to look at (trusted text).

    The other parameters are those of `rewrap_table`; so is the result.
    """
    rows, type_ = column_rows(column, where=where)
    return rewrap_table(
        _bind(bind, column),
        rows,
        factory or resolve_factory(type_.factory, _label(type_)),
        key=key,
        system_key=system_key,
        mode=mode,
        batch_size=batch_size,
        dry_run=dry_run,
        start_after=start_after,
        count=count,
        progress=progress,
    )


def column_key_usage(
    bind: Bind,
    column: Any,
    *,
    factory: SessionFactory | None = None,
    where: str | None = None,
) -> KeyUsage:
    """Count the rows of an encrypted column per intermediate and per system key (the system
    keys looked up in the factory's metastore; by default the column type's factory)."""
    rows, type_ = column_rows(column, where=where)
    chosen = factory or resolve_factory(type_.factory, _label(type_))
    return key_usage(_bind(bind, column), rows, chosen)


def column_rows(column: Any, *, where: str | None = None) -> tuple[RowTable, _EncryptedType[Any]]:
    """The `RowTable` of an encrypted column (a plain copy of its table's names) and its type.

    `SessionError` when `column` is not an encrypted column of a table with one primary-key
    column, or when its partition cannot be known.
    """
    col = _column_of(column)
    type_ = col.type
    if not isinstance(type_, _EncryptedType):
        raise SessionError(
            f"column {_name(col)} is not an EncryptedText or EncryptedBytes column "
            f"(its type is {type(type_).__name__})"
        )
    table = col.table
    if not isinstance(table, sa.Table):
        raise SessionError(f"column {_name(col)} must belong to a table")
    primary = list(table.primary_key.columns)
    if len(primary) != 1:
        raise SessionError(
            f"table {table.name!r} has {len(primary)} primary-key columns; rewrap_table with a "
            "RowTable naming a unique key column walks it"
        )
    key_col = primary[0]
    partition_col: sa.Column[Any] | None = None
    partition_id: str | None = None
    if type_.partition_from is not None:
        partition_col = _partition_column(column, table, type_.partition_from, _label(type_))
    elif type_.partition is not None:
        partition_id = check_partition(type_.partition(), _label(type_), "partition=")
    else:
        raise SessionError(f"{_label(type_)}: the column type has no partition_from or partition")
    names = [key_col, col] if partition_col is None else [key_col, col, partition_col]
    plain = sa.Table(
        table.name,
        sa.MetaData(),
        *(sa.Column(c.name, sa.Text() if c is col else c.type.copy()) for c in names),
        schema=table.schema,
    )
    rows = RowTable(
        plain,
        col.name,
        key_col.name,
        None if partition_col is None else partition_col.name,
        partition_id,
        where,
    )
    return rows, type_


def _column_of(value: Any) -> sa.Column[Any]:
    clause = getattr(value, "__clause_element__", None)
    column = clause() if callable(clause) else value
    if not isinstance(column, sa.Column):
        raise SessionError(
            f"expected a mapped attribute or Column of an encrypted column, not {value!r}"
        )
    return column


def _partition_column(
    attribute: Any, table: sa.Table, partition_from: str, label: str
) -> sa.Column[Any]:
    """The column behind ``partition_from``: an attribute of the mapped class when `attribute`
    is a mapped one, else a column key of the table."""
    mapper = getattr(attribute, "parent", None)
    if isinstance(mapper, Mapper) and mapper.has_property(partition_from):
        prop = mapper.get_property(partition_from)
        columns = getattr(prop, "columns", None)
        if columns and isinstance(columns[0], sa.Column) and columns[0].table is table:
            return columns[0]
        raise SessionError(
            f"{label}: partition_from={partition_from!r} is not a column of table {table.name!r}"
        )
    if partition_from in table.c:
        return table.c[partition_from]
    raise SessionError(
        f"{label}: table {table.name!r} has no column {partition_from!r} (partition_from); when "
        "it names an attribute of a mapped class, pass that attribute (Model.column)"
    )


def _bind(bind: Bind, column: Any) -> sa.Engine | sa.Connection:
    if isinstance(bind, sa.Engine | sa.Connection):
        return bind
    if isinstance(bind, Session):
        mapper = getattr(column, "parent", None)
        found = bind.get_bind(mapper=mapper if isinstance(mapper, Mapper) else None)
        if isinstance(found, sa.Engine | sa.Connection):
            return found
    raise SessionError(
        f"expected an Engine, a Connection or an ORM Session, not {type(bind).__name__}"
    )


def _label(type_: _EncryptedType[Any]) -> str:
    return ", ".join(type_.columns) or f"an {type(type_).__name__} column"


def _name(column: sa.Column[Any]) -> str:
    table = getattr(column, "table", None)
    return f"{table.name}.{column.name}" if isinstance(table, sa.Table) else repr(column.name)
