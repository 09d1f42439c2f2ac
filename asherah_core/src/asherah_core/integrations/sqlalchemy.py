"""Encrypted SQLAlchemy columns, one intermediate key per partition (``asherah-core[sql]``).

``EncryptedText(factory, partition_from="tenant")`` stores the `DataRowRecord` JSON of each
value, encrypted for the partition named by the row's ``tenant`` attribute; the ORM object holds
plaintext. ``EncryptedText(factory, partition=tenant_var.get)`` takes the partition from a
callable instead (Core statements, a tenant kept in a context variable).

How a value meets its partition (a type's bind and result processing sees one value, never
its row):

- ORM objects: the mapper's ``before_insert``/``before_update`` events seal each changed value
  with the row's partition (every encrypted value again when the partition attribute changed)
  and ``after_insert``/``after_update`` put the plaintext back; the ``load``/``refresh`` events
  open values read from the database with the partition the row has in the database.
- Parameter lists of Core and bulk statements (``conn.execute(insert(t), rows)``,
  ``session.execute(insert(Note), rows)``, ``bulk_save_objects``, ``bulk_insert_mappings``),
  the values of ``insert(t).values(…)`` and of each row of ``insert(t).values([{…}, {…}])``,
  and the bind parameters of our types in a ``text()`` statement: an engine ``before_execute``
  listener seals each value with the partition of its own parameter set or row (for
  ``text()``, the parameter named as ``partition_from`` says, given at execution or in
  ``bindparams()``).
- Anything else that binds a plaintext to a ``partition_from`` column (a statement whose
  parameters do not carry the partition) fails naming the column: nothing is written.

No failure to seal is reported with the statement's parameters (plaintexts): the listener
fails before the statement runs, and the bind processing raises an `EncryptedColumnError`
that SQLAlchemy does not wrap in a ``StatementError`` (whose message shows the parameters).

Under ``AsyncSession`` the same events run in SQLAlchemy's greenlet; a value is then sealed or
opened with the session's coroutine methods, so a cached key works inline and a key that must
be loaded is loaded in a worker thread, not on the event loop.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar, cast

from sqlalchemy import Column, Table, Text, event, inspect
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import ArgumentError, DontWrapMixin
from sqlalchemy.orm import Mapper, attributes
from sqlalchemy.sql import operators
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import BindParameter, ClauseElement, ColumnElement, Null, TextClause
from sqlalchemy.sql.operators import OperatorType
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import concurrency

from asherah_core.metastore.sql import passes_text_statements
from asherah_core.session import SessionFactory

from .records import (
    EncryptedColumnError,
    FactorySource,
    Record,
    Sealed,
    check_partition,
    open_record,
    open_record_async,
    resolve_factory,
    seal,
    seal_async,
)

__all__ = [
    "EncryptedBytes",
    "EncryptedColumnError",
    "EncryptedText",
    "Record",
    "render_item",
]

_T = TypeVar("_T", str, bytes)

_await: Callable[[Any], Any] = getattr(concurrency, "await_", None) or concurrency.await_only


_greenlet_check: Callable[[], Any] | None = getattr(concurrency, "in_greenlet", None)


def _in_greenlet() -> bool:
    """Whether this code runs inside SQLAlchemy's asyncio greenlet (an ``AsyncSession`` or
    ``AsyncConnection`` call), where a coroutine can be awaited with ``await_``."""
    if _greenlet_check is None:
        return False
    try:
        return bool(_greenlet_check())
    except Exception:
        return False


_NULL_TESTS: Final = frozenset({operators.is_, operators.is_not})
_NULLABLE_COMPARISONS: Final = frozenset({operators.eq, operators.ne})


def _is_column(value: object) -> bool:
    return isinstance(value, ColumnElement) and not isinstance(value, BindParameter)


def _refuse(op: OperatorType, label: str) -> EncryptedColumnError:
    name = getattr(op, "__name__", str(op))
    return EncryptedColumnError(
        f"{label}: cannot apply {name!r} to an encrypted column. Encryption is randomised (each "
        "value gets its own data row key and nonce), so equal plaintexts give different records "
        "and the database cannot compare, match or sort them; such a filter would silently "
        "match nothing. Filter on another column, or load the rows and compare in Python. "
        "Only IS NULL / IS NOT NULL work."
    )


class _EncryptedType(TypeDecorator[_T]):
    """The shared part of `EncryptedText` and `EncryptedBytes`: a text column of records."""

    impl = Text
    cache_ok = True
    plain_type: ClassVar[type[str] | type[bytes]]

    class comparator_factory(TypeDecorator.Comparator[Any]):  # noqa: N801 - SQLAlchemy's name
        """Refuses every SQL operator but the null tests (see `_refuse`)."""

        def operate(self, op: OperatorType, *other: Any, **kwargs: Any) -> Any:
            if op in _NULL_TESTS or (
                op in _NULLABLE_COMPARISONS
                and len(other) == 1
                and (other[0] is None or _is_column(other[0]))
            ):
                # Null tests; and column against column, which SQLAlchemy itself does when it
                # matches result columns (``col == col`` there is a test of identity).
                return super().operate(op, *other, **kwargs)
            raise _refuse(op, _label_of(self.type))

        def reverse_operate(self, op: OperatorType, other: Any, **kwargs: Any) -> Any:
            raise _refuse(op, _label_of(self.type))

    def __init__(
        self,
        factory: FactorySource,
        *,
        partition_from: str | None = None,
        partition: Callable[[], object] | None = None,
    ) -> None:
        """:param factory: the `SessionFactory`, or a callable returning it at each use.
        :param partition_from: the attribute of the same row (ORM) or the column key of the
            same parameter set (Core) that holds the partition id.
        :param partition: a callable returning the partition id, for example ``tenant.get``
            of a `contextvars.ContextVar`; used for every row the type reads or writes.
        """
        super().__init__()
        if not isinstance(factory, SessionFactory) and not callable(factory):
            raise ArgumentError(
                f"{type(self).__name__}: factory must be a SessionFactory or a callable "
                f"returning one, not {type(factory).__name__}"
            )
        if partition_from is not None and partition is not None:
            raise ArgumentError(
                f"{type(self).__name__}: give partition_from= or partition=, not both"
            )
        if partition_from is not None and (
            not isinstance(partition_from, str) or not partition_from
        ):
            raise ArgumentError(
                f"{type(self).__name__}: partition_from must name an attribute, "
                f"not {partition_from!r}"
            )
        if partition is not None and not callable(partition):
            raise ArgumentError(
                f"{type(self).__name__}: partition must be a callable returning the partition "
                f"id, not {type(partition).__name__}"
            )
        self.factory = factory
        self.partition_from = partition_from
        self.partition = partition
        # The "table.column" names this type is attached to, for messages only.
        self.columns: list[str] = []

    @property
    def python_type(self) -> type[Any]:
        return self.plain_type

    def __repr__(self) -> str:
        origin = (
            f"partition_from={self.partition_from!r}"
            if self.partition_from is not None
            else "partition=<callable>"
            if self.partition is not None
            else "no partition"
        )
        return f"{type(self).__name__}({origin})"

    # Values ------------------------------------------------------------------------------------

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, Record):
            return str(value)  # sealed for its row already, or a record read and written back
        label = _label_of(self)
        try:
            return str(self._seal_alone(value, label))
        except Exception as error:
            # SQLAlchemy calls this while it executes the statement, where it would wrap the
            # error in a StatementError whose message shows the parameters: the plaintexts.
            raise _not_wrapped(error, label) from error

    def _seal_alone(self, value: object, label: str) -> Sealed:
        """`value` sealed without its row: only a ``partition=`` callable can name its
        partition (the listener below seals the values whose partition is in their row)."""
        if self.partition is None:
            raise _no_partition(self, label)
        partition = check_partition(self.partition(), label, "partition=")
        return _seal(self, partition, value, label)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if self.partition is not None:
            label = _label_of(self)
            partition = check_partition(self.partition(), label, "partition=")
            return _open(self, partition, str(value), label)
        # The ORM's load event opens it with the row's partition; a Core select gets the record.
        return Record(value)

    def compare_values(self, x: Any, y: Any) -> bool:
        return type(x) is type(y) and bool(x == y)


class EncryptedText(_EncryptedType[str]):
    """A `str` column stored as Asherah `DataRowRecord` JSON text, per partition."""

    cache_ok = True  # SQLAlchemy reads it from each class itself
    plain_type = str


class EncryptedBytes(_EncryptedType[bytes]):
    """A `bytes` column stored as Asherah `DataRowRecord` JSON text, per partition."""

    cache_ok = True
    plain_type = bytes


def _label_of(type_: Any) -> str:
    columns = getattr(type_, "columns", None)
    return ", ".join(columns) if columns else f"an {type(type_).__name__} column"


def _no_partition(type_: _EncryptedType[Any], label: str) -> EncryptedColumnError:
    if type_.partition_from is not None:
        return EncryptedColumnError(
            f"{label}: the partition of this column comes from {type_.partition_from!r} of "
            "its row, and this statement does not give it. Write through the ORM, or pass "
            f"{type_.partition_from!r} in every parameter set of the statement, or make the "
            "column with partition= for Core statements; nothing was written."
        )
    return EncryptedColumnError(
        f"{label}: no partition for this encrypted column: give partition_from= (an "
        "attribute of the row) or partition= (a callable); nothing was written."
    )


class _UnwrappedError(EncryptedColumnError, DontWrapMixin):
    """An `EncryptedColumnError` of a bind processor. SQLAlchemy raises it as it is, where it
    wraps any other error in a ``StatementError`` whose message shows the statement's parameters
    (the plaintexts) unless the user's engine was made with ``hide_parameters=True``."""


def _not_wrapped(error: Exception, label: str) -> _UnwrappedError:
    """`error` as an `_UnwrappedError`: with its message when it is an `EncryptedColumnError`
    (whose message never holds the plaintext), else with its type only (its message might).
    Raised ``from error``; SQLAlchemy raises it again ``from`` itself, which leaves `error`
    as its ``__context__``."""
    if isinstance(error, EncryptedColumnError):
        return _UnwrappedError(*error.args)
    return _UnwrappedError(
        f"{label}: sealing a value failed with {type(error).__name__}; nothing was written"
    )


def _seal(type_: _EncryptedType[Any], partition: str, value: object, label: str) -> Sealed:
    factory = resolve_factory(type_.factory, label)
    if _in_greenlet():
        return cast(
            "Sealed", _await(seal_async(factory, partition, value, label, type_.plain_type))
        )
    return seal(factory, partition, value, label, type_.plain_type)


def _open(type_: _EncryptedType[Any], partition: str, record: str, label: str) -> str | bytes:
    factory = resolve_factory(type_.factory, label)
    if _in_greenlet():
        return cast(
            "str | bytes",
            _await(open_record_async(factory, partition, record, label, type_.plain_type)),
        )
    return open_record(factory, partition, record, label, type_.plain_type)


# Columns and tables --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Encrypted:
    """One encrypted column: its key (attribute or column key), its type, its label."""

    key: str
    type_: _EncryptedType[Any]
    label: str

    @property
    def partition_from(self) -> str:
        assert self.type_.partition_from is not None  # asked only of such columns
        return self.type_.partition_from


# Table -> its encrypted columns by column key. Filled when a column is attached to its
# table (before any statement on that table can run); read without a lock by the listener.
_TABLES: weakref.WeakKeyDictionary[Table, tuple[_Encrypted, ...]] = weakref.WeakKeyDictionary()
_LISTENING: list[bool] = []


@event.listens_for(Column, "after_parent_attach")
def _on_attach(column: Column[Any], table: Any) -> None:
    type_ = column.type
    if not isinstance(type_, _EncryptedType) or not isinstance(table, Table):
        return
    label = f"{table.name}.{column.name}"
    if label not in type_.columns:
        type_.columns.append(label)
    found = _Encrypted(column.key, type_, label)
    _TABLES[table] = (*_TABLES.get(table, ()), found)
    if not _LISTENING:  # the listener costs every statement something: only once needed
        _LISTENING.append(True)
        event.listen(Engine, "before_execute", _seal_parameters, retval=True)


@passes_text_statements  # returns a text statement without a bind parameter of ours as it came
def _seal_parameters(
    conn: Connection,
    statement: Any,
    multiparams: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    execution_options: Mapping[str, Any],
) -> tuple[Any, Sequence[Mapping[str, Any]], Mapping[str, Any]]:
    """Seal the plaintexts of ``partition_from`` columns in each parameter set of an INSERT or
    UPDATE with the partition of that same set (Core executemany, ORM bulk statements), in the
    values of ``insert().values(…)`` (each row of a multi-row one with its own), and in the
    parameters of a ``text()`` statement bound to our types."""
    if isinstance(statement, TextClause):
        return statement, *_seal_text(statement, multiparams, params)
    if not isinstance(statement, Insert | Update):
        return statement, multiparams, params
    table = statement.table
    encrypted = _TABLES.get(table) if isinstance(table, Table) else None
    if not encrypted:
        return statement, multiparams, params
    if statement._values:
        _refuse_expressions(encrypted, statement._values)
    if multiparams or params:
        multiparams = [_seal_row(encrypted, row) for row in multiparams]
        return statement, multiparams, _seal_row(encrypted, params)
    if statement._multi_values:
        return _seal_multi_values(encrypted, statement), multiparams, params
    return _seal_values(encrypted, statement, conn.dialect), multiparams, params


def _refuse_expressions(encrypted: tuple[_Encrypted, ...], values: Mapping[Any, Any]) -> None:
    """A SQL expression as an encrypted column's value (``values(body=func.lower(text))``, a
    column, a subquery) would be stored as the database computes it: not encrypted. Refused,
    naming the column; ``null()`` and bound values pass (they are sealed or NULL)."""
    by_key = {c.key: c for c in encrypted}
    for key, value in values.items():
        column = by_key.get(key if isinstance(key, str) else getattr(key, "key", ""))
        if column is None or not isinstance(value, ClauseElement):
            continue
        if isinstance(value, BindParameter | Null):
            continue
        raise EncryptedColumnError(
            f"{column.label}: takes a value to seal, not a SQL expression "
            f"({type(value).__name__}), which the database would store unencrypted; "
            "nothing was written"
        )


def _seal_values(
    encrypted: tuple[_Encrypted, ...], statement: Insert | Update, dialect: Dialect
) -> Insert | Update:
    """``insert(t).values(tenant=…, body=…)`` (or ``update``): the values are in the statement,
    named by column key in its compiled parameters; each plaintext is sealed and the statement
    gets the record instead (``values()`` again replaces those keys)."""
    try:
        given = statement.compile(dialect=dialect).params
    except Exception:  # not ours to judge: the execution reports it
        return statement
    sealed = _sealed_only(encrypted, given)
    return statement.values(sealed) if sealed else statement


def _seal_multi_values(
    encrypted: tuple[_Encrypted, ...], statement: Insert | Update
) -> Insert | Update:
    """``insert(t).values([{…}, {…}])``: each row's plaintexts sealed with the partition of that
    row. SQLAlchemy keeps the rows in ``_multi_values`` (no public accessor, and ``values()``
    adds rows rather than replace them): a copy of the statement gets the sealed rows, keyed by
    column key as SQLAlchemy reads them (a positional row gives the table's columns in order)."""
    rows = [
        {key if isinstance(key, str) else key.key: value for key, value in row.items()}
        if isinstance(row, Mapping)
        else {column.key: value for column, value in zip(statement.table.c, row, strict=False)}
        for batch in statement._multi_values  # one per call of values() with a list
        for row in batch
    ]
    sealed = [_seal_row(encrypted, row) for row in rows]
    if all(new is old for new, old in zip(sealed, rows, strict=True)):
        return statement
    copy = statement._generate()
    copy._multi_values = (cast("list[dict[Any, Any]]", sealed),)
    return copy


def _seal_text(
    statement: TextClause,
    multiparams: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> tuple[Sequence[Mapping[str, Any]], Mapping[str, Any]]:
    """``text(…).bindparams(bindparam("body", type_=EncryptedText(…)))``: each parameter set
    gets the plaintexts of those bind parameters sealed with the partition the set holds under
    the ``partition_from`` name (a value given in ``bindparams()`` counts unless the set
    replaces it, as SQLAlchemy reads them)."""
    binds = statement._bindparams
    encrypted = _encrypted_binds(binds)
    if not encrypted:
        return multiparams, params
    names = {name for c in encrypted for name in (c.key, c.type_.partition_from) if name}
    bound = {
        name: binds[name].value for name in names & binds.keys() if binds[name].value is not None
    }

    def seal_set(given: Mapping[str, Any]) -> Mapping[str, Any]:
        sealed = _sealed_only(encrypted, {**bound, **given})
        return {**given, **sealed} if sealed else given

    if multiparams:
        return [seal_set(given) for given in multiparams], params
    return multiparams, seal_set(params)


def _encrypted_binds(binds: Mapping[str, BindParameter[Any]]) -> tuple[_Encrypted, ...]:
    """The bind parameters of our types among `binds`, by their key (a text statement's)."""
    return tuple(
        _Encrypted(key, bind.type, f"bind parameter {key!r} ({_label_of(bind.type)})")
        for key, bind in binds.items()
        if isinstance(bind.type, _EncryptedType)
    )


def _sealed_only(encrypted: tuple[_Encrypted, ...], given: Mapping[str, Any]) -> dict[str, Any]:
    """The records `_seal_row` makes of the plaintexts in `given`, by key; empty if none."""
    sealed = _seal_row(encrypted, given)
    return {c.key: sealed[c.key] for c in encrypted if sealed.get(c.key) is not given.get(c.key)}


def _seal_row(encrypted: tuple[_Encrypted, ...], row: Mapping[str, Any]) -> Mapping[str, Any]:
    """`row` with each plaintext of an encrypted column sealed; a plaintext without a partition
    fails here, before SQLAlchemy would wrap the error with the parameters (plaintext) shown."""
    changed: dict[str, Any] | None = None
    for column in encrypted:
        value = row.get(column.key)
        if value is None or isinstance(value, Record):
            continue  # nothing to seal, or sealed already
        type_ = column.type_
        if type_.partition is not None:
            partition = check_partition(type_.partition(), column.label, "partition=")
        elif type_.partition_from is not None and type_.partition_from in row:
            partition = check_partition(
                row[type_.partition_from], column.label, f"column {type_.partition_from!r}"
            )
        else:
            raise _no_partition(type_, column.label)
        if changed is None:
            changed = dict(row)
        changed[column.key] = _seal(type_, partition, value, column.label)
    return row if changed is None else changed


# ORM -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _MappedColumns:
    """The ``partition_from`` columns of one mapped class, with the mapper events that seal and
    open them. Made once per mapper when it is configured; immutable after."""

    columns: tuple[_Encrypted, ...]

    def before_insert(self, mapper: Mapper[Any], connection: Connection, target: Any) -> None:
        state = inspect(target)
        for column in self.columns:
            value = state.dict.get(column.key)
            if isinstance(value, Sealed):  # left by a flush that failed: seal it again
                value = value.plain
            elif value is None or isinstance(value, Record):
                continue
            partition = self._partition(target, column)
            # A new row's INSERT takes its values from the state's dictionary: writing there
            # spares the attribute events (the flush makes the whole dictionary committed).
            state.dict[column.key] = _seal(column.type_, partition, value, column.label)

    def before_update(self, mapper: Mapper[Any], connection: Connection, target: Any) -> None:
        state = inspect(target)
        for column in self.columns:
            moved = state.attrs[column.partition_from].history.has_changes()
            if not moved and not state.attrs[column.key].history.has_changes():
                continue
            value = getattr(target, column.key)  # loads (and opens) it when expired
            if isinstance(value, Sealed):  # left by a flush that failed: seal it again
                value = value.plain
            if value is None:
                continue
            if isinstance(value, Record):  # a record assigned as is: keep it unless it moves
                if not moved:
                    continue
                value = _open(
                    column.type_, self._stored_partition(state, column), value, column.label
                )
            partition = self._partition(target, column)
            attributes.set_attribute(
                target, column.key, _seal(column.type_, partition, value, column.label)
            )

    def after_write(self, mapper: Mapper[Any], connection: Connection, target: Any) -> None:
        state = inspect(target)
        for column in self.columns:
            value = state.dict.get(column.key)
            if isinstance(value, Sealed):  # the flush commits the dictionary after this
                state.dict[column.key] = value.plain

    def on_load(self, target: Any, context: Any) -> None:
        self._open_loaded(target, None)

    def on_refresh(self, target: Any, context: Any, attrs: Any) -> None:
        self._open_loaded(target, attrs)

    def _open_loaded(self, target: Any, attrs: Any) -> None:
        state = inspect(target)
        values = state.dict
        for column in self.columns:
            if attrs is not None and column.key not in attrs:
                continue
            value = values.get(column.key)
            if not isinstance(value, Record) or isinstance(value, Sealed):
                continue
            if state.modified or column.partition_from not in values:
                partition = self._stored_partition(state, column)
            else:  # a row as loaded: its partition is the one in the dictionary
                partition = check_partition(
                    values[column.partition_from],
                    column.label,
                    f"attribute {column.partition_from!r}",
                )
            opened = _open(column.type_, partition, value, column.label)
            if state.modified:
                attributes.set_committed_value(target, column.key, opened)
            else:  # loaded, not changed: the dictionary is the committed state
                values[column.key] = opened

    @staticmethod
    def _partition(target: Any, column: _Encrypted) -> str:
        return check_partition(
            getattr(target, column.partition_from),
            column.label,
            f"attribute {column.partition_from!r}",
        )

    @staticmethod
    def _stored_partition(state: Any, column: _Encrypted) -> str:
        """The partition the row has in the database: the value loaded with it, not one
        assigned since (the partition attribute keeps its old value in its history)."""
        history = state.attrs[column.partition_from].history
        if history.deleted:
            value = history.deleted[0]
        elif history.unchanged:
            value = history.unchanged[0]
        elif history.added:
            value = history.added[0]
        else:
            value = getattr(state.obj(), column.partition_from)
        return check_partition(value, column.label, f"attribute {column.partition_from!r}")


def _keep_old_partition(target: Any, value: Any, oldvalue: Any, initiator: Any) -> None:
    """Nothing to do: listening with ``active_history`` is what keeps the old value."""


@event.listens_for(Mapper, "mapper_configured")
def _instrument(mapper: Mapper[Any], class_: type[Any]) -> None:
    columns: list[_Encrypted] = []
    for prop in mapper.column_attrs:
        for column in prop.columns:
            type_ = column.type
            if not isinstance(type_, _EncryptedType) or type_.partition_from is None:
                continue
            label = _label_of(type_)
            if not mapper.has_property(type_.partition_from):
                raise ArgumentError(
                    f"{label}: partition_from={type_.partition_from!r} is not an attribute of "
                    f"{class_.__name__}"
                )
            columns.append(_Encrypted(prop.key, type_, label))
    if not columns:
        return
    mapped = _MappedColumns(tuple(columns))
    event.listen(class_, "before_insert", mapped.before_insert)
    event.listen(class_, "before_update", mapped.before_update)
    event.listen(class_, "after_insert", mapped.after_write)
    event.listen(class_, "after_update", mapped.after_write)
    event.listen(class_, "load", mapped.on_load)
    event.listen(class_, "refresh", mapped.on_refresh)
    for name in {column.partition_from for column in columns}:
        # Loads the old partition before a new one is set, so a row whose partition changed
        # can still be opened with the partition it has in the database.
        event.listen(getattr(class_, name), "set", _keep_old_partition, active_history=True)


# Alembic -------------------------------------------------------------------------------------


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Alembic ``render_item`` hook: encrypted columns render as ``sa.Text()`` in autogenerated
    migrations (the database sees a text column; the factory is not a schema matter).

    In ``env.py``: ``context.configure(..., render_item=render_item)``. Returns False for
    everything else, so Alembic renders it as usual.
    """
    if type_ == "type" and isinstance(obj, _EncryptedType):
        return "sa.Text()"
    return False
