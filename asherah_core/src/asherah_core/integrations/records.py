"""What the ORM integrations share: the column's record values, the factory source, and sealing
and opening one value for one partition with errors that name the column.

Nothing here knows an ORM. Imports flow from the ORM modules to this one, never back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from asherah_core.errors import AsherahError, SessionError
from asherah_core.session import Session, SessionFactory

__all__ = [
    "EncryptedColumnError",
    "FactorySource",
    "Record",
    "Sealed",
    "check_partition",
    "open_record",
    "open_record_async",
    "resolve_factory",
    "seal",
    "seal_async",
]

FactorySource: TypeAlias = SessionFactory | Callable[[], SessionFactory]
"""A `SessionFactory`, or a callable returning one (called at each use, so a factory made in an
application's start-up, or replaced in tests, is the one used)."""


class EncryptedColumnError(SessionError):
    """An encrypted column could not be written or read: no partition, a record of another
    partition, a value of the wrong type, a lookup that cannot work on ciphertext. The message
    names the column; never the plaintext."""


class Record(str):
    """The `DataRowRecord` JSON text of a column, as read from the database and not yet opened.

    A `str` so that the ORM stores and compares it like any text; its own type so that the
    integrations can tell a record from a plaintext value of an ``EncryptedText`` column.
    """

    __slots__ = ()


class Sealed(Record):
    """A record made from a plaintext during a write; keeps that plaintext so that the ORM
    object can get it back once the row is written. Its repr is the record's, never the
    plaintext's."""

    __slots__ = ("plain",)

    plain: str | bytes

    def __new__(cls, text: str, plain: str | bytes) -> Sealed:
        made = super().__new__(cls, text)
        made.plain = plain
        return made

    def __repr__(self) -> str:
        return f"Sealed({str.__repr__(self)})"


def resolve_factory(source: FactorySource, column: str) -> SessionFactory:
    """The factory behind `source`; `EncryptedColumnError` naming `column` when it is not one."""
    factory = source if isinstance(source, SessionFactory) else source()
    if not isinstance(factory, SessionFactory):
        raise EncryptedColumnError(
            f"{column}: the factory callable returned {type(factory).__name__}, "
            "not a SessionFactory"
        )
    return factory


def check_partition(value: object, column: str, origin: str) -> str:
    """The partition id `value` as text, or `EncryptedColumnError` naming `column` and where the
    partition came from (`origin`, for example ``attribute 'tenant'``)."""
    if value is None:
        raise EncryptedColumnError(
            f"{column}: its partition ({origin}) is None; an encrypted value needs a partition, "
            "so the row was not written"
        )
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EncryptedColumnError(
            f"{column}: its partition ({origin}) is a {type(value).__name__}; "
            "give a str (or an int)"
        )
    text = str(value)
    if not text:
        raise EncryptedColumnError(
            f"{column}: its partition ({origin}) is empty, so the row was not written"
        )
    return text


def _plain_bytes(value: object, column: str, kind: type[str] | type[bytes]) -> bytes:
    if kind is str:
        if not isinstance(value, str):
            raise EncryptedColumnError(
                f"{column}: an encrypted text column takes str, not {type(value).__name__}"
            )
        return value.encode("utf-8", "surrogatepass")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise EncryptedColumnError(
            f"{column}: an encrypted binary column takes bytes, not {type(value).__name__}"
        )
    return bytes(value)


def _plain_value(data: bytes, column: str, kind: type[str] | type[bytes]) -> str | bytes:
    if kind is bytes:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EncryptedColumnError(
            f"{column}: the decrypted value is not UTF-8 text; is the column an encrypted "
            "binary one in another application?"
        ) from None


_SESSIONS_PER_FACTORY = 1024
# Factory -> {partition id: its Session}, so that a column does not build a Session (and check
# the partition's names) for every value. Sessions are thread-safe and never closed here; a
# closed factory's sessions refuse to work. Invariants: a factory's dict only ever gains whole
# sessions of that factory, and is replaced (never emptied in place) when full, so a reader
# without a lock sees a session or none; the entries of closed factories are dropped whenever
# a dict is made, so a replaced factory (a Django settings change, a test) is not kept for long.
_SESSIONS: dict[SessionFactory, dict[str, Session]] = {}


def _session(factory: SessionFactory, partition: str, column: str) -> Session:
    sessions = _SESSIONS.get(factory)
    if sessions is not None:
        found = sessions.get(partition)
        if found is not None:
            return found
    try:
        made = factory.get_session(partition)
    except AsherahError as error:
        raise EncryptedColumnError(f"{column}: {error}") from error
    if sessions is None or len(sessions) >= _SESSIONS_PER_FACTORY:
        for old in [known for known in list(_SESSIONS) if known.closed]:
            _SESSIONS.pop(old, None)
        sessions = {}
        _SESSIONS[factory] = sessions
    sessions[partition] = made
    return made


def seal(
    factory: SessionFactory,
    partition: str,
    value: object,
    column: str,
    kind: type[str] | type[bytes],
) -> Sealed:
    """Encrypt `value` (a `str` or `bytes` as `kind` says) for `partition`."""
    data = _plain_bytes(value, column, kind)
    session = _session(factory, partition, column)
    try:
        text = session.encrypt_bytes(data)
    except AsherahError as error:
        raise EncryptedColumnError(f"{column}: encrypting for partition failed: {error}") from error
    return Sealed(text, value if isinstance(value, str) else data)


async def seal_async(
    factory: SessionFactory,
    partition: str,
    value: object,
    column: str,
    kind: type[str] | type[bytes],
) -> Sealed:
    """Coroutine version of `seal`: a cached key seals inline, a miss loads it in a worker."""
    data = _plain_bytes(value, column, kind)
    session = _session(factory, partition, column)
    try:
        text = await session.encrypt_bytes_async(data)
    except AsherahError as error:
        raise EncryptedColumnError(f"{column}: encrypting for partition failed: {error}") from error
    return Sealed(text, value if isinstance(value, str) else data)


def open_record(
    factory: SessionFactory,
    partition: str,
    record: str,
    column: str,
    kind: type[str] | type[bytes],
) -> str | bytes:
    """Decrypt a column's record for the row's `partition`; a record of another partition is
    refused (`EncryptedColumnError`) before any key is loaded."""
    session = _session(factory, partition, column)
    try:
        data = session.decrypt_bytes(str(record))
    except AsherahError as error:
        raise EncryptedColumnError(f"{column}: {error}") from error
    return _plain_value(data, column, kind)


async def open_record_async(
    factory: SessionFactory,
    partition: str,
    record: str,
    column: str,
    kind: type[str] | type[bytes],
) -> str | bytes:
    """Coroutine version of `open_record`."""
    session = _session(factory, partition, column)
    try:
        data = await session.decrypt_bytes_async(str(record))
    except AsherahError as error:
        raise EncryptedColumnError(f"{column}: {error}") from error
    return _plain_value(data, column, kind)
