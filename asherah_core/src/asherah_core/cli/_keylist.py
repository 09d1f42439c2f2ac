"""The metastore's key rows for ``asherah-kms keys``, a row that does not parse among them.

`Metastore.keys` raises at the first row it cannot read, so one damaged row would hide every
other key from the operator who needs to see them. For a SQL metastore the rows are read here
one by one (each parsed on its own); for any other metastore what `keys` yields before a
failure is kept and the failure becomes one entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from asherah_core.errors import MetastoreError, RecordError
from asherah_core.metastore.base import Metastore
from asherah_core.records import EnvelopeKeyRecord

__all__ = ["ListedKey", "listed_keys"]


@dataclass(frozen=True, slots=True)
class ListedKey:
    """One row of the key table: its record, or why it could not be read (``problem``)."""

    key_id: str | None
    created: int | None
    record: EnvelopeKeyRecord | None
    problem: str | None = None


def listed_keys(metastore: Metastore, prefix: str) -> Iterator[ListedKey]:
    """Every key row whose id starts with `prefix`, by id then created; unreadable ones marked."""
    sql_rows = _sql_rows(metastore)
    if sql_rows is not None:
        yield from _from_sql(sql_rows, prefix)
        return
    try:
        for key_id, created, record in metastore.keys(prefix):
            yield ListedKey(key_id, created, record)
    except MetastoreError as e:
        yield ListedKey(None, None, None, f"the listing stopped: {e}")


def _sql_rows(metastore: Metastore) -> Any:
    """``(id, created, key_record)`` rows of a `SqlMetastore`'s table, or ``None`` for another
    kind of metastore."""
    try:
        from asherah_core.metastore.sql import SqlMetastore  # noqa: PLC0415 - SQLAlchemy is optional
    except ImportError:
        return None
    if not isinstance(metastore, SqlMetastore):
        return None
    import sqlalchemy as sa  # noqa: PLC0415 - present when SqlMetastore imported

    table = sa.table(
        getattr(metastore, "_table_name", "encryption_key"),
        sa.column("id"),
        sa.column("created"),
        sa.column("key_record"),
    )
    record = table.c.key_record
    query = sa.select(
        table.c.id,
        table.c.created,
        sa.cast(record, sa.Text) if metastore.dialect.record_as_text else record,
    ).order_by(table.c.id, table.c.created)
    try:
        with metastore.engine.connect() as conn:
            return conn.execute(query).all()
    except sa.exc.SQLAlchemyError as e:
        original = getattr(e, "orig", None) or e
        raise MetastoreError(
            f"{metastore!r}: list keys failed: {type(original).__name__}"
        ) from None


def _from_sql(rows: Any, prefix: str) -> Iterator[ListedKey]:
    from asherah_core.metastore.sql import DRIFT_GUARD_PREFIX, _unix_seconds  # noqa: PLC0415

    for key_id, created, raw in rows:
        if not isinstance(key_id, str):
            yield ListedKey(None, None, None, f"a row's id is not text ({type(key_id).__name__})")
            continue
        if key_id.startswith(DRIFT_GUARD_PREFIX) or not key_id.startswith(prefix):
            continue
        try:
            seconds: int | None = _unix_seconds(created)
        except (TypeError, ValueError, OverflowError):
            yield ListedKey(key_id, None, None, "the created column is not a time")
            continue
        text = bytes(raw).decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        if not isinstance(text, str):
            yield ListedKey(key_id, seconds, None, "the key record is not text")
            continue
        try:
            record = EnvelopeKeyRecord.from_json(text, "key record")
        except RecordError as e:
            yield ListedKey(key_id, seconds, None, f"does not parse: {e}")
            continue
        yield ListedKey(key_id, seconds, record)
