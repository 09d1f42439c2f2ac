"""Move stored rows off an old intermediate key: rewrap (the row key sealed again under the
partition's current intermediate key, the data untouched) and re-encrypt (a new row key, the
data sealed again).

`Session.rewrap`, `Session.reencrypt` and their typed, coroutine and batch forms delegate here.
What this module needs of a session is the narrow `RotatingSession` surface: the partition's
current key (made and stored when the latest one is revoked or expired, as for an encrypt), the
key a row names (revoked and expired keys still open), and decrypt. Every result is checked to
open, through the session's ordinary decrypt, before it is returned: a rewrap never hands back
a record that would lose the row.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import pybase64
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .aead import NONCE_SIZE, TAG_SIZE
from .cache import CachedKey
from .errors import AsherahError, CryptoError, RecordError, SessionError
from .records import DataRowRecord, KeyMeta

__all__ = ["RewrapResult", "RotatingSession", "reencrypt", "rewrap", "rewrap_many"]

Status = Literal["rewrapped", "current", "failed"]


class RotatingSession(Protocol):
    """What rotation needs of a `Session` (see session.py)."""

    def encrypt_bytes(self, data: bytes) -> str: ...

    def decrypt_bytes(self, text: str | bytes | bytearray) -> bytes: ...

    async def encrypt_bytes_async(self, data: bytes) -> str: ...

    async def decrypt_bytes_async(self, text: str | bytes | bytearray) -> bytes: ...

    def _current_key(self) -> tuple[CachedKey, AESGCM]: ...

    async def _current_key_async(self) -> tuple[CachedKey, AESGCM]: ...

    def _decrypting_key(self, ik_id: str, created: int) -> tuple[CachedKey, AESGCM]: ...

    async def _decrypting_key_async(self, ik_id: str, created: int) -> tuple[CachedKey, AESGCM]: ...


@dataclass(frozen=True, slots=True)
class RewrapResult:
    """What `rewrap_many` did with one record.

    :param status: ``rewrapped`` (`record` is the new record), ``current`` (already under the
        partition's current key; `record` is the input as it was) or ``failed`` (`error` says
        why; the input is untouched and still what the row must keep).
    :param record: the record to store, or ``None`` when it failed.
    :param error: why it failed (a `RecordError`, `CryptoError`, `SessionError` or
        `MetastoreError`), or ``None``.
    """

    status: Status
    record: str | None
    error: AsherahError | None = None


def rewrap(session: RotatingSession, text: str | bytes | bytearray) -> str:
    """The record sealed under the partition's current intermediate key (see `Session.rewrap`)."""
    text = _as_text(text)
    row = DataRowRecord.from_json(text)
    current, cipher = session._current_key()
    if _names(row, current):
        return text
    old, old_cipher = session._decrypting_key(*_meta(row))
    new, data = _resealed(row, old, old_cipher, current, cipher)
    return _checked(new, data, session.decrypt_bytes(new))


async def rewrap_async(session: RotatingSession, text: str | bytes | bytearray) -> str:
    """Coroutine version of `rewrap`: key loads run in a worker thread."""
    text = _as_text(text)
    row = DataRowRecord.from_json(text)
    current, cipher = await session._current_key_async()
    if _names(row, current):
        return text
    old, old_cipher = await session._decrypting_key_async(*_meta(row))
    new, data = _resealed(row, old, old_cipher, current, cipher)
    return _checked(new, data, await session.decrypt_bytes_async(new))


def reencrypt(session: RotatingSession, text: str | bytes | bytearray) -> str:
    """The record's data under a new row key and the current key (see `Session.reencrypt`)."""
    data = session.decrypt_bytes(text)
    new = session.encrypt_bytes(data)
    return _checked(new, data, session.decrypt_bytes(new))


async def reencrypt_async(session: RotatingSession, text: str | bytes | bytearray) -> str:
    """Coroutine version of `reencrypt`."""
    data = await session.decrypt_bytes_async(text)
    new = await session.encrypt_bytes_async(data)
    return _checked(new, data, await session.decrypt_bytes_async(new))


def rewrap_many(
    session: RotatingSession, records: Iterable[str | bytes | bytearray]
) -> list[RewrapResult]:
    """`rewrap` each record; a record that cannot be rewrapped is reported, not raised."""
    results: list[RewrapResult] = []
    for text in records:
        try:
            new = rewrap(session, text)
        except AsherahError as e:  # this record only: the next one may well work
            results.append(RewrapResult("failed", None, e))
            continue
        same = new is text or (isinstance(text, str) and new == text)
        results.append(RewrapResult("current" if same else "rewrapped", new))
    return results


async def rewrap_many_async(
    session: RotatingSession, records: Iterable[str | bytes | bytearray]
) -> list[RewrapResult]:
    """Coroutine version of `rewrap_many`."""
    results: list[RewrapResult] = []
    for text in records:
        try:
            new = await rewrap_async(session, text)
        except AsherahError as e:
            results.append(RewrapResult("failed", None, e))
            continue
        same = new is text or (isinstance(text, str) and new == text)
        results.append(RewrapResult("current" if same else "rewrapped", new))
    return results


def rewrap_record(session: RotatingSession, record: DataRowRecord) -> DataRowRecord:
    """Typed `rewrap`: the same object back when it is already current."""
    _check_record(record)
    text = record.to_json()
    new = rewrap(session, text)
    return record if new is text else DataRowRecord.from_json(new)


async def rewrap_record_async(session: RotatingSession, record: DataRowRecord) -> DataRowRecord:
    """Coroutine version of `rewrap_record`."""
    _check_record(record)
    text = record.to_json()
    new = await rewrap_async(session, text)
    return record if new is text else DataRowRecord.from_json(new)


# Steps -------------------------------------------------------------------------------------


def _as_text(text: object) -> str:
    if isinstance(text, str):
        return text
    if isinstance(text, bytes | bytearray):
        try:
            return bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError("data row record: not valid UTF-8") from None
    raise RecordError(f"data row record: expected JSON text, got {type(text).__name__}")


def _check_record(record: object) -> None:
    if not isinstance(record, DataRowRecord):
        raise SessionError(
            f"rewrap_record takes a DataRowRecord, not {type(record).__name__}; "
            "use rewrap for JSON text"
        )


def _meta(row: DataRowRecord) -> tuple[str, int]:
    meta = row.parent_key_meta
    return meta.key_id, meta.created


def _names(row: DataRowRecord, key: CachedKey) -> bool:
    return row.parent_key_meta == key.meta


def _resealed(
    row: DataRowRecord, old: CachedKey, old_cipher: AESGCM, current: CachedKey, cipher: AESGCM
) -> tuple[str, bytes]:
    """The row key opened with the old key and sealed with the current one, as a new record
    (``Data`` and the row key's ``Created`` as they were); and the data, opened to prove the
    row key is the right one before anything is written."""
    row_key = bytearray(_open(old_cipher, row.key.encrypted_key, old.meta, "data row key"))
    try:
        if len(row_key) != 32:
            raise CryptoError(f"the data row key is {len(row_key)} bytes, not 32")
        data = _open(AESGCM(row_key), row.data, None, "data")
        nonce = os.urandom(NONCE_SIZE)
        sealed = cipher.encrypt(nonce, bytes(row_key), None) + nonce
    finally:
        row_key[:] = bytes(len(row_key))
    new = (
        f'{{"Key":{{"Created":{row.key.created},"Key":"{pybase64.b64encode_as_string(sealed)}",'
        f'"ParentKeyMeta":{current.meta_json}}},"Data":"{pybase64.b64encode_as_string(row.data)}"}}'
    )
    return new, data


def _open(cipher: AESGCM, sealed: bytes, meta: KeyMeta | None, what: str) -> bytes:
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise RecordError(
            f"the record's {what} is {len(sealed)} bytes; sealed values are at least "
            f"{NONCE_SIZE + TAG_SIZE}"
        )
    try:
        return cipher.decrypt(sealed[-NONCE_SIZE:], sealed[:-NONCE_SIZE], None)
    except InvalidTag:
        where = "its data row key" if meta is None else f"intermediate key {meta}"
        raise CryptoError(
            f"the {what} does not open with {where}: wrong key, or the record was tampered "
            "with; the row was left as it is"
        ) from None


def _checked(new: str, data: bytes, reopened: bytes) -> str:
    if not hmac.compare_digest(data, reopened):  # pragma: no cover - AES-GCM would have failed
        raise CryptoError("the new record opens to other data; the row was left as it is")
    return new
