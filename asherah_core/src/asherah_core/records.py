"""Asherah's records as frozen values: `KeyMeta`, `EnvelopeKeyRecord`, `DataRowRecord`.

JSON in and out in the exact shape the Go, Java, C# and Rust implementations share: field names
``Created``, ``Key``, ``ParentKeyMeta`` (``KeyId``, ``Created``), ``Revoked``, ``Data``; base64
in the standard alphabet with padding. Readers ignore field order, keep unknown fields of a key
record (so a row written by a newer implementation survives a round trip: a number with a
fraction or an exponent is written back as the text it was read from, so ``1e400`` never
becomes an unreadable ``Infinity``), and accept ``Revoked`` as false, null or absent. Every
malformed input raises `RecordError` naming the field; no message ever holds key bytes or data.
"""

from __future__ import annotations

import binascii
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Self

import pybase64

from .errors import RecordError

__all__ = ["MAX_CREATED", "DataRowRecord", "EnvelopeKeyRecord", "KeyMeta", "b64decode", "b64encode"]

MAX_CREATED = 2**63 - 1
"""The largest ``Created`` any implementation can hold (Go's int64)."""

_KNOWN_KEY_FIELDS = frozenset(("Created", "Key", "ParentKeyMeta", "Revoked"))
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def b64encode(data: bytes | bytearray | memoryview) -> str:
    """Standard base64 with padding, as text (pybase64: SIMD, about 6x binascii here)."""
    return pybase64.b64encode_as_string(data)


def b64decode(text: object, where: str, field: str = "") -> bytes:
    """Decode strict standard base64 (padding required, no stray characters) or raise
    `RecordError` naming ``where + field`` (joined only then: the readers below pass the field
    apart, so that a record read whole builds no message)."""
    if type(text) is not str:
        raise RecordError(f"{where}{field}: expected a base64 string, got {_kind(text)}")
    try:
        return pybase64.b64decode(text, None, True)  # positional: keywords cost 0.3 us
    except (binascii.Error, ValueError, TypeError):
        raise RecordError(
            f"{where}{field}: not valid standard base64 ({len(text)} characters)"
        ) from None


@dataclass(frozen=True, slots=True)
class KeyMeta:
    """Names a key in the metastore: its id and its ``Created`` (Unix seconds)."""

    key_id: str
    created: int

    def __post_init__(self) -> None:
        _check_id(self.key_id, "KeyMeta.key_id")
        _check_created(self.created, "KeyMeta.created")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object form, ``{"KeyId": …, "Created": …}``."""
        return {"KeyId": self.key_id, "Created": self.created}

    @classmethod
    def from_dict(cls, value: object, where: str = "ParentKeyMeta") -> KeyMeta:
        """Read the JSON object form; `RecordError` names `where` and the bad field."""
        if type(value) is not dict and not isinstance(value, Mapping):
            raise RecordError(f"{where}: expected an object, got {_kind(value)}")
        key_id = value.get("KeyId")
        if type(key_id) is not str:
            raise RecordError(f"{where}.KeyId: expected a string, got {_kind(key_id)}")
        _check_id(key_id, where, ".KeyId")
        return cls(key_id, _created(value.get("Created"), where, ".Created"))

    def __str__(self) -> str:
        return f"{self.key_id}@{self.created}"


@dataclass(frozen=True, slots=True)
class EnvelopeKeyRecord:
    """A system or intermediate key as the metastore holds it.

    :param created: when the key was made, Unix seconds (truncated to the policy's precision).
    :param encrypted_key: for a system key the KMS's wrapped form, for an intermediate key the
        key sealed with its system key.
    :param parent_key_meta: the key that sealed this one; ``None`` for a system key.
    :param revoked: ``True`` once an operator revoked the key (it still decrypts).
    :param extra: fields another implementation wrote that this one does not know, kept as is.
    """

    created: int
    encrypted_key: bytes = field(repr=False)
    parent_key_meta: KeyMeta | None = None
    revoked: bool = False
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_created(self.created, "EnvelopeKeyRecord.created")
        if not isinstance(self.encrypted_key, bytes):
            raise RecordError(
                f"EnvelopeKeyRecord.encrypted_key: expected bytes, got {_kind(self.encrypted_key)}"
            )
        if self.parent_key_meta is not None and not isinstance(self.parent_key_meta, KeyMeta):
            raise RecordError("EnvelopeKeyRecord.parent_key_meta: expected a KeyMeta or None")
        if not isinstance(self.revoked, bool):
            raise RecordError(
                f"EnvelopeKeyRecord.revoked: expected a bool, got {_kind(self.revoked)}"
            )

    def __repr__(self) -> str:
        return (
            f"EnvelopeKeyRecord(created={self.created}, parent_key_meta={self.parent_key_meta!r}, "
            f"revoked={self.revoked}, encrypted_key=<{len(self.encrypted_key)} bytes>)"
        )

    def with_revoked(self, revoked: bool = True) -> EnvelopeKeyRecord:
        """Return a copy with ``Revoked`` set (what an operator writes to revoke a key)."""
        return EnvelopeKeyRecord(
            self.created, self.encrypted_key, self.parent_key_meta, revoked, self.extra
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object form; ``Revoked`` only when true; unknown fields kept."""
        out: dict[str, Any] = dict(self.extra)
        out["Created"] = self.created
        out["Key"] = b64encode(self.encrypted_key)
        if self.parent_key_meta is not None:
            out["ParentKeyMeta"] = self.parent_key_meta.to_dict()
        if self.revoked:
            out["Revoked"] = True
        return out

    def to_json(self) -> str:
        """Return compact JSON text, as the metastores store it; unknown fields as read.

        A `RecordError` (before anything is written) for an unknown field that JSON cannot
        hold, such as a NaN given in `extra` by a program.
        """
        return _to_json(self.to_dict(), bool(self.extra))

    @classmethod
    def from_dict(cls, value: object, where: str = "key record") -> Self:
        """Read the JSON object form; `RecordError` names `where` and the bad field."""
        if type(value) is not dict and not isinstance(value, Mapping):
            raise RecordError(f"{where}: expected an object, got {_kind(value)}")
        created = _created(value.get("Created"), where, ".Created")
        if "Key" not in value:
            raise RecordError(f"{where}.Key: missing")
        encrypted = b64decode(value["Key"], where, ".Key")
        meta_value = value.get("ParentKeyMeta")
        meta = (
            None if meta_value is None else KeyMeta.from_dict(meta_value, f"{where}.ParentKeyMeta")
        )
        revoked = value.get("Revoked")
        if revoked is not None and not isinstance(revoked, bool):
            raise RecordError(
                f"{where}.Revoked: expected true, false or null, got {_kind(revoked)}"
            )
        extra = (
            None
            if value.keys() <= _KNOWN_KEY_FIELDS
            else {k: v for k, v in value.items() if k not in _KNOWN_KEY_FIELDS}
        )
        return cls(
            created,
            encrypted,
            meta,
            bool(revoked),
            MappingProxyType(extra) if extra else _EMPTY,
        )

    @classmethod
    def from_json(cls, text: str | bytes | bytearray, where: str = "key record") -> Self:
        """Parse JSON text; `RecordError` names what was wrong.

        A record in the plain form (known fields only, see `_plainrecord`) is read in one
        msgspec call; any other text, and a plain one whose values are out of range, by the
        general reader, which names what is wrong.
        """
        plain = _plain_reader()(text)
        if plain is not None:
            created, key, parent_id, parent_created, revoked = plain
            try:
                meta = None if parent_id is None else _parent_meta(parent_id, parent_created)
                return cls(created, key, meta, revoked, _EMPTY)
            except RecordError:
                pass  # the general reader below names the field
        return cls.from_dict(parse_json(text, where), where)


@functools.lru_cache(maxsize=256)
def _parent_meta(key_id: str, created: int) -> KeyMeta:
    """The `KeyMeta` of a record's parent, one object per recently read ``(id, created)``: the
    intermediate keys of a service share a few system keys (a `KeyMeta` is immutable, and a
    bad one raises, which is not cached)."""
    return KeyMeta(key_id, created)


@functools.cache
def _plain_reader() -> Callable[[object], tuple[int, bytes, str | None, int, bool] | None]:
    """`_plainrecord.read`, imported on the first key record read (msgspec: about 1 MiB)."""
    from ._plainrecord import read  # noqa: PLC0415

    return read


@dataclass(frozen=True, slots=True)
class DataRowRecord:
    """What `Session.encrypt` returns and the application stores beside its row.

    :param key: the data row key (sealed with the intermediate key) and that key's meta.
    :param data: the data sealed with the data row key.
    """

    key: EnvelopeKeyRecord
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, EnvelopeKeyRecord):
            raise RecordError("DataRowRecord.key: expected an EnvelopeKeyRecord")
        if self.key.parent_key_meta is None:
            raise RecordError("DataRowRecord.key.ParentKeyMeta: missing")
        if not isinstance(self.data, bytes):
            raise RecordError(f"DataRowRecord.data: expected bytes, got {_kind(self.data)}")

    def __repr__(self) -> str:
        return (
            f"DataRowRecord(parent={self.parent_key_meta}, created={self.key.created}, "
            f"data=<{len(self.data)} bytes>)"
        )

    @property
    def parent_key_meta(self) -> KeyMeta:
        """The intermediate key that sealed this row's key."""
        meta = self.key.parent_key_meta
        assert meta is not None  # checked in __post_init__
        return meta

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object form."""
        return {"Key": self.key.to_dict(), "Data": b64encode(self.data)}

    def to_json(self) -> str:
        """Return compact JSON text, the form every Asherah implementation reads."""
        return _to_json(self.to_dict(), bool(self.key.extra))

    @classmethod
    def from_dict(cls, value: object, where: str = "data row record") -> Self:
        """Read the JSON object form; `RecordError` names the bad field."""
        if not isinstance(value, Mapping):
            raise RecordError(f"{where}: expected an object, got {_kind(value)}")
        if "Key" not in value:
            raise RecordError(f"{where}.Key: missing")
        if "Data" not in value:
            raise RecordError(f"{where}.Data: missing")
        key = EnvelopeKeyRecord.from_dict(value["Key"], f"{where}.Key")
        if key.parent_key_meta is None:
            raise RecordError(f"{where}.Key.ParentKeyMeta: missing")
        return cls(key, b64decode(value["Data"], where, ".Data"))

    @classmethod
    def from_json(cls, text: str | bytes | bytearray, where: str = "data row record") -> Self:
        """Parse JSON text; `RecordError` names what was wrong."""
        return cls.from_dict(parse_json(text, where), where)


def parse_json(text: object, where: str) -> Any:
    """Parse strict JSON: no NaN or Infinity, no lone surrogates, UTF-8 only."""
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError(f"{where}: not valid UTF-8") from None
    if not isinstance(text, str):
        raise RecordError(f"{where}: expected JSON text, got {_kind(text)}")
    try:
        value = _DECODER.decode(text)
    except RecordError:
        raise
    except json.JSONDecodeError as e:
        raise RecordError(f"{where}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise RecordError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError:  # Python's limit on the digits of an integer (4,300)
        raise RecordError(f"{where}: a number in it has too many digits") from None
    return value


def _refuse_constant(name: str) -> Any:
    raise RecordError(f"JSON constant {name} is not allowed in a record")


class _JsonFloat(float):
    """A JSON number with a fraction or an exponent: its value, and the text it was read from,
    which is what a rewrite writes back (``1e400`` is infinity as a float, and JSON has no
    infinity: writing the value would make the record unreadable everywhere)."""

    __slots__ = ("text",)
    text: str


def _read_float(text: str) -> float:
    number = _JsonFloat(text)
    number.text = text
    return number


# One decoder, made once: json.loads with an option would make a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_read_float)


def _to_json(value: dict[str, Any], with_unknown_fields: bool) -> str:
    """Compact JSON text of a record's object form; numbers read from JSON as they were read."""
    if not with_unknown_fields:  # only our own fields: ints, strings, bools
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return _write(value, "record")


def _write(value: Any, where: str) -> str:
    if isinstance(value, _JsonFloat):
        return value.text
    if isinstance(value, Mapping):
        items = (f"{_write(str(k), where)}:{_write(v, f'{where}.{k}')}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_write(v, f"{where}[]") for v in value) + "]"
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        if isinstance(value, str) and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate, read from a \u escape: write that
                text = json.dumps(value)
        return text
    except (TypeError, ValueError):
        raise RecordError(
            f"{where}: {_kind(value)} that JSON cannot hold; the record is not written"
        ) from None


def _created(value: object, where: str, field: str = "") -> int:
    _check_created(value, where, field)
    return value  # type: ignore[return-value]  # an int: checked just above


# The checks below name ``where + field``, joined only when they fail.


def _check_created(value: object, where: str, field: str = "") -> None:
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecordError(f"{where}{field}: expected an integer (Unix seconds), got {_kind(value)}")
    if not 0 <= value <= MAX_CREATED:
        shown = str(value) if -(10**30) < value < 10**30 else "a number of more than 30 digits"
        raise RecordError(f"{where}{field}: {shown} is out of range (0 to 2**63-1)")


def _check_id(key_id: object, where: str, field: str = "") -> None:
    if not isinstance(key_id, str) or not key_id:
        raise RecordError(f"{where}{field}: expected a non-empty string")
    if not key_id.isascii():  # ASCII encodes as UTF-8 whatever it holds
        try:
            key_id.encode("utf-8")
        except UnicodeEncodeError:
            raise RecordError(f"{where}{field}: not valid Unicode (lone surrogate)") from None


_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    ((int, float), "a number"),
    (str, "a string"),
    (Mapping, "an object"),
    (list, "an array"),
)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"
