"""The multi-region KMS envelope: Asherah's JSON, parsed defensively and written compactly.

``{"encryptedKey":"<b64>","kmsKeks":[{"region":"…","arn":"…","encryptedKek":"<b64>"},…]}``
with standard, padded base64. Every malformed input raises `KmsError` whose message names the
field that is wrong and never contains the input's bytes.
"""

from __future__ import annotations

import binascii
import json
import json.scanner
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from asherah_core import ConfigError, KmsError

from .arn import KeyArn, is_region_name, parse_arn, same_multi_region_key

__all__ = [
    "MAX_ENCRYPTED_KEK_BYTES",
    "MAX_ENCRYPTED_KEY_BYTES",
    "MAX_ENTRIES",
    "MAX_ENVELOPE_BYTES",
    "MAX_KEY_BYTES",
    "Entry",
    "Envelope",
    "RegionalKek",
    "entry_head",
    "envelope_bytes",
    "find_entry",
    "parse_envelope",
    "printable_region_names",
    "read_envelope",
]

MAX_KEY_BYTES = 4096  # the largest key we wrap: KMS's own plaintext limit
# The sealed key never goes to KMS (only the 32-byte data key does), and other writers do not
# bound it: read keys well beyond what we write, within the envelope's own limit.
MAX_ENCRYPTED_KEY_BYTES = 1 << 18
MAX_ENCRYPTED_KEK_BYTES = 6144  # KMS's CiphertextBlob limit
MAX_ENTRIES = 64  # more than there are AWS regions
MAX_ARN_CHARS = 2048
MAX_REGION_CHARS = 64
MAX_ENVELOPE_BYTES = 1 << 20  # every field at its limit, with room to spare


@dataclass(frozen=True)
class RegionalKek:
    """One region's KMS-encrypted copy of the data key."""

    region: str
    arn: str
    encrypted_kek: bytes

    def __repr__(self) -> str:
        return (
            f"RegionalKek(region={self.region!r}, arn={self.arn!r}, "
            f"encrypted_kek=<{len(self.encrypted_kek)} bytes>)"
        )


@dataclass(frozen=True)
class Envelope:
    """The key sealed under a data key, and that data key encrypted by KMS per region."""

    encrypted_key: bytes
    keks: tuple[RegionalKek, ...]

    def to_bytes(self) -> bytes:
        """Serialise as compact JSON in the field order the reference writers use."""
        return envelope_bytes(
            self.encrypted_key, [(entry_head(k.region, k.arn), k.encrypted_kek) for k in self.keks]
        )

    def kek_for(self, region: str) -> RegionalKek | None:
        """Return the entry for `region`, if the envelope has one."""
        for kek in self.keks:
            if kek.region == region:
                return kek
        return None

    def entry_for(self, region: str, arn: KeyArn, *, mrk_aware: bool) -> RegionalKek | None:
        """The entry that `region`'s key (`arn`) can decrypt (see `find_entry`)."""
        entries = {k.region: (k.region, k.arn, k.encrypted_kek) for k in self.keks}
        found = find_entry(entries, region, arn, mrk_aware=mrk_aware)
        return None if found is None else self.kek_for(found[0])

    def printable_regions(self) -> str:
        """The entries' region names for a message: AWS-shaped names shown, others counted.

        They are input: an arbitrary string must not reach a message or a log line.
        """
        return printable_region_names(k.region for k in self.keks)

    def __repr__(self) -> str:
        regions = ", ".join(k.region for k in self.keks)
        return f"Envelope(encrypted_key=<{len(self.encrypted_key)} bytes>, regions=[{regions}])"


Entry = tuple[str, str, bytes]
"""An envelope entry as `read_envelope` gives it: region, ARN, encrypted data key."""


def find_entry(
    entries: Mapping[str, Entry], region: str, arn: KeyArn, *, mrk_aware: bool
) -> Entry | None:
    """The entry (of `entries` by region) that `region`'s key, `arn`, can decrypt: the
    region's own, or, when `mrk_aware`, one made under a replica of the same Multi-Region key.

    The envelope's ARN only picks the candidate; Decrypt still names the locally configured
    ARN, so KMS itself refuses a blob that is not from that key.
    """
    own = entries.get(region)
    if own is not None or not (mrk_aware and arn.is_multi_region):
        return own
    for entry in entries.values():
        try:
            if same_multi_region_key(arn, parse_arn(entry[1])):
                return entry
        except ConfigError:
            continue
    return None


def entry_head(region: str, arn: str) -> str:
    """The JSON of an entry up to its encryptedKek value, for `envelope_bytes`: the part that
    is the same in every envelope a region's key writes (made once per region)."""
    return f'{{"region":{_ENCODER.encode(region)},"arn":{_ENCODER.encode(arn)},"encryptedKek":"'


def envelope_bytes(encrypted_key: bytes, keks: Iterable[tuple[str, bytes]]) -> bytes:
    """The envelope of `encrypted_key` and its entries, each an `entry_head` and the
    encrypted data key, as compact JSON in the field order the reference writers use."""
    entries = ",".join([f'{head}{_b64(kek)}"}}' for head, kek in keks])
    return f'{{"encryptedKey":"{_b64(encrypted_key)}","kmsKeks":[{entries}]}}'.encode()


def _b64(data: bytes) -> str:
    """Standard, padded base64 (no character of it needs escaping in a JSON string)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def printable_region_names(names: Iterable[str]) -> str:
    """`names` for a message: AWS-shaped region names shown, any other only counted."""
    names = list(names)
    shown = [name for name in names if is_region_name(name)]
    hidden = len(names) - len(shown)
    return ", ".join([*shown, *([f"{hidden} other name(s) not shown"] if hidden else [])]) or "none"


def parse_envelope(data: bytes) -> Envelope:
    """Parse an envelope; raise `KmsError` naming what is wrong with a malformed one."""
    encrypted_key, entries = read_envelope(data)
    return Envelope(encrypted_key, tuple(RegionalKek(*entry) for entry in entries.values()))


def read_envelope(data: bytes) -> tuple[bytes, dict[str, Entry]]:
    """Parse an envelope into the sealed key and its entries by region, in the envelope's
    order: `parse_envelope` without an object per entry (decrypt_key's form). Raise
    `KmsError` naming what is wrong with a malformed one."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise KmsError(f"envelope must be bytes, not {type(data).__name__}")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise KmsError(
            f"envelope is {len(data)} bytes, over the limit of {MAX_ENVELOPE_BYTES}; refusing it"
        )
    document = _load_json(data)
    if not isinstance(document, dict):
        raise KmsError(f"envelope must be a JSON object, got {_json_kind(document)}")
    text = document.get("encryptedKey")
    encrypted_key = _strict_b64(text) if type(text) is str and text else None
    if not encrypted_key or len(encrypted_key) > MAX_ENCRYPTED_KEY_BYTES:  # say what is wrong
        encrypted_key = _b64_field(
            document, "encryptedKey", "encryptedKey", MAX_ENCRYPTED_KEY_BYTES
        )
    raw_keks = document.get("kmsKeks", _ABSENT)
    if raw_keks is _ABSENT:
        raise KmsError("envelope has no kmsKeks field")
    if raw_keks is None:  # one Go version writes null when no region succeeded
        raw_keks = []
    if not isinstance(raw_keks, list):
        raise KmsError(f"envelope field kmsKeks must be a list, got {_json_kind(raw_keks)}")
    return encrypted_key, _read_entries(raw_keks)


# The KmsError of a malformed envelope is raised outside the `except` block on purpose: raised
# inside, even `from None`, it would keep the decoder's exception as __context__, and that
# exception's repr holds the input.


class _NotJsonError(ValueError):
    """A construct Python's json accepts and the reference readers refuse."""


def _refuse_constant(name: str) -> Any:
    raise _NotJsonError(f"{name} is not a JSON number")


# One decoder and one encoder, made once: json.loads or json.dumps with an option would make
# a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"))
# The decoder's scanner (C in CPython), made as JSONDecoder makes its own: `JSONDecoder.decode`
# around it would match two regular expressions for the whitespace; `_load_json` strips it,
# without the regex engine.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    _DECODER  # type: ignore[arg-type]  # typeshed types the argument as the scanner class
)
_JSON_SPACE = " \t\n\r"
# A \u escape of a surrogate; only then can a decoded string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _load_json(data: bytes | bytearray | memoryview) -> Any:
    try:
        # Decode first: json.loads(bytes) would also accept UTF-16, UTF-32 and a UTF-8 BOM,
        # which the reference readers refuse.
        text = bytes(data).decode("utf-8")
        start = len(text) - len(text.lstrip(_JSON_SPACE))
        document, end = _SCAN(text, start)
        if end != len(text):
            extra = len(text) - len(text[end:].lstrip(_JSON_SPACE))
            if extra != len(text):
                raise json.JSONDecodeError("Extra data", text, extra)
        if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(document):
            raise _NotJsonError("a string holds a lone UTF-16 surrogate")
        return document
    except UnicodeDecodeError:
        problem = "envelope is not UTF-8 JSON"
    except StopIteration as e:  # no JSON value where one must start
        problem = f"envelope is not valid JSON: Expecting value at byte {e.value}"
    except json.JSONDecodeError as e:
        problem = f"envelope is not valid JSON: {e.msg} at byte {e.pos}"
    except RecursionError:
        problem = "envelope JSON is nested too deeply"
    except _NotJsonError as e:
        problem = f"envelope is not valid JSON: {e}"
    except ValueError:  # for example an integer with more digits than Python converts
        problem = "envelope is not valid JSON"
    raise KmsError(problem)


def _has_lone_surrogate(document: Any) -> bool:
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _read_entries(raw_keks: list[Any]) -> dict[str, Entry]:
    if len(raw_keks) > MAX_ENTRIES:
        raise KmsError(
            f"envelope has {len(raw_keks)} kmsKeks entries, over the limit of {MAX_ENTRIES}"
        )
    entries: dict[str, Entry] = {}
    region: Any  # JSON values, strings once checked
    arn: Any
    for i, raw in enumerate(raw_keks):
        # The common case in a few comparisons, in line; at the first doubt, `_checked_kek`
        # finds what is wrong and names it.
        kek = None
        if type(raw) is dict:
            region, arn, text = raw.get("region"), raw.get("arn"), raw.get("encryptedKek")
            if (
                type(region) is str
                and type(arn) is str
                and type(text) is str
                and 0 < len(region) <= MAX_REGION_CHARS
                and 0 < len(arn) <= MAX_ARN_CHARS
                and 0 < len(text) <= _MAX_KEK_CHARS
                and not len(text) % 4
            ):
                try:
                    kek = binascii.a2b_base64(text, strict_mode=True)
                except (binascii.Error, ValueError):
                    kek = None
        if not kek or len(kek) > MAX_ENCRYPTED_KEK_BYTES:
            region, arn, kek = _checked_kek(raw, f"kmsKeks[{i}]")
        if region in entries:
            raise KmsError(f"envelope field kmsKeks[{i}].region repeats a region listed before")
        entries[region] = (region, arn, kek)
    return entries


def _checked_kek(raw: Any, where: str) -> Entry:
    """The entry at `where`, or `KmsError` naming the field that is wrong."""
    if not isinstance(raw, dict):
        raise KmsError(f"envelope field {where} must be an object, got {_json_kind(raw)}")
    region = _str_field(raw, "region", where, MAX_REGION_CHARS)
    arn = _str_field(raw, "arn", where, MAX_ARN_CHARS)
    kek = _b64_field(raw, "encryptedKek", f"{where}.encryptedKek", MAX_ENCRYPTED_KEK_BYTES)
    return region, arn, kek


_ABSENT: Any = object()


def _str_field(obj: dict[str, Any], name: str, where: str, limit: int) -> str:
    value = obj.get(name, _ABSENT)
    if value is _ABSENT:
        raise KmsError(f"envelope field {where} has no {name}")
    if not isinstance(value, str):
        raise KmsError(f"envelope field {where}.{name} must be a string, got {_json_kind(value)}")
    if not value or len(value) > limit:
        raise KmsError(f"envelope field {where}.{name} must be 1 to {limit} characters")
    return value


def _b64_field(obj: dict[str, Any], name: str, where: str, limit: int) -> bytes:
    value = obj.get(name, _ABSENT)
    if value is _ABSENT:
        raise KmsError(f"envelope has no {where} field")
    if not isinstance(value, str):
        raise KmsError(f"envelope field {where} must be a base64 string, got {_json_kind(value)}")
    if len(value) > _b64_chars(limit):  # checked before decoding it
        raise KmsError(f"envelope field {where} is over the limit of {limit} bytes")
    decoded = _strict_b64(value)
    if decoded is None:
        raise KmsError(f"envelope field {where} is not valid standard base64")
    if not decoded:
        raise KmsError(f"envelope field {where} is empty")
    if len(decoded) > limit:
        raise KmsError(f"envelope field {where} is over the limit of {limit} bytes")
    return decoded


def _b64_chars(limit: int) -> int:
    """The length of the padded base64 text of `limit` bytes."""
    return (limit + 2) // 3 * 4


_MAX_KEK_CHARS = _b64_chars(MAX_ENCRYPTED_KEK_BYTES)


def _strict_b64(value: str) -> bytes | None:
    """Standard, padded base64 as Go and Rust read it; `None` if `value` is not that."""
    # b64decode ignores padding beyond a full quantum ("AAAA=="); Go refuses it.
    if len(value) % 4:
        return None
    try:  # strict: only the standard alphabet, padding only at the end (ValueError: non-ASCII)
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return kinds.get(type(value), type(value).__name__)


def describe_envelope(data: bytes) -> dict[str, Any] | None:
    """Summarise an envelope without decrypting it; `None` if `data` is not one.

    Used by ``asherah-kms inspect``: regions, ARNs and sizes, never key material.
    """
    try:
        document = json.loads(bytes(data), parse_constant=_refuse_constant)
    except (ValueError, RecursionError, TypeError):
        return None
    if not isinstance(document, dict) or "encryptedKey" not in document:
        return None
    envelope = parse_envelope(data)
    return {
        "format": "asherah multi-region AWS KMS envelope",
        "encrypted_key_bytes": len(envelope.encrypted_key),
        "regions": [
            {
                "region": kek.region,
                "arn": kek.arn,
                "encrypted_kek_bytes": len(kek.encrypted_kek),
                "multi_region_key": _names_multi_region_key(kek.arn),
            }
            for kek in envelope.keks
        ],
    }


def _names_multi_region_key(arn: str) -> bool:
    try:
        return parse_arn(arn).is_multi_region
    except ConfigError:
        return False
