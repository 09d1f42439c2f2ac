"""A data row record's text: sealing a row into it, reading it and opening its sealed fields.

Plain typed Python that also builds as a C extension: a wheel built with a C compiler at hand
has this module compiled by mypyc (asherah_core/setup.py), and a warm decrypt then takes about
a fifth less time, an encrypt about 0.1 µs less, most of it the interpreter's work between the
calls into C. Without a compiler the module runs as it is, with the same results and errors.
So it holds functions only, of plainly typed arguments, and the session keeps the state:
caches, metrics, timing, the random bytes (it wipes them).

Every Asherah writes a row in one canonical compact form (Go's field order, the Rust package's
and ours); `sealed_by` and `parse_canonical` read that form by slicing, and any doubt goes to
the strict JSON reader, whose `RecordError` names the problem.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import _b64
from .aead import NONCE_SIZE, TAG_SIZE
from .entropy import Block
from .errors import CryptoError, RecordError, RecordTypeError
from .records import MAX_CREATED, DataRowRecord

__all__ = [
    "DATA",
    "HEAD",
    "KEY",
    "META",
    "META_CREATED",
    "SEALED_KEY_SIZE",
    "TAIL",
    "joined",
    "open_latest",
    "open_row",
    "parse_canonical",
    "parse_json_row",
    "parse_row",
    "seal",
    "sealed_by",
]

# The canonical compact form, in order: HEAD, the row's Created, KEY, the sealed row key's
# base64, META, the intermediate key's id, META_CREATED, its Created, DATA, the data's base64,
# TAIL.
HEAD: Final = '{"Key":{"Created":'
KEY: Final = ',"Key":"'
META: Final = '","ParentKeyMeta":{"KeyId":"'
META_CREATED: Final = '","Created":'
DATA: Final = '}},"Data":"'
TAIL: Final = '"}'

SEALED_KEY_SIZE: Final = 60
"""A sealed data row key: 32 bytes, the tag and the nonce (what `sealed_by` reads)."""

# Final names are constants to mypyc (a C static or the value itself, where a plain module
# name is a dictionary look-up on every call): about 0.1 µs of a warm decrypt.
_decode: Final = _b64.decode
_encode: Final = _b64.encode


def seal(
    cipher: AESGCM, data: bytes | bytearray | memoryview, block: Block, created: int, middle: str
) -> str:
    """The canonical record of `data` sealed under a new row key, the row key sealed under
    `cipher` (the intermediate key's): `block` (`entropy.RandomBlocks.block`) holds the row key
    and both nonces, `created` is the row's ``Created``, `middle` the key's
    `CachedKey.row_middle`. The caller wipes `block` once this returns or raises
    (`OverflowError` for data beyond what AES-GCM takes)."""
    _, row_key, nonce, key_nonce = block
    sealed = b"".join(
        (
            cipher.encrypt(key_nonce, row_key, None),
            key_nonce,
            AESGCM(row_key).encrypt(nonce, data, None),
            nonce,
        )
    )  # the sealed key (60 bytes) and the sealed data, each with its nonce
    # One base64 call for both: the 60-byte sealed key is whole groups of 3 bytes, so its
    # base64 is the first 80 characters (`sealed_by` reads them back in one call, too).
    both = _encode(sealed)
    return f'{HEAD}{created}{KEY}{both[:80]}{middle}{both[80:]}"}}'


def open_latest(text: object, middle: str, cipher: AESGCM, meta: object) -> bytes | None:
    """The data of `text` when it is a canonical record sealed by the key whose
    `CachedKey.row_middle` is `middle` and whose cipher is `cipher` (`meta` names it in an
    error); `None` for any other text, which the general reader then decides."""
    sealed = sealed_by(text, middle)
    if sealed is None:
        return None
    return open_row(cipher, sealed, SEALED_KEY_SIZE, meta)


def open_row(cipher: AESGCM, sealed: bytes, key_end: int, meta: object) -> bytes:
    """The one opening of a row. `sealed` is the sealed row key (its first `key_end` bytes)
    then the sealed data, each ``ciphertext || tag || nonce``, as a row's two base64 fields
    decode in one call; both long enough (checked by `sealed_by` or `joined`). `cipher` is the
    intermediate key's, named by `meta` in the error when the row key does not open."""
    try:
        row_key = cipher.decrypt(
            sealed[key_end - NONCE_SIZE : key_end], sealed[: key_end - NONCE_SIZE], None
        )
    except InvalidTag:
        raise CryptoError(
            f"the data row key does not open with intermediate key {meta}: "
            "wrong key, or the record was tampered with"
        ) from None
    if len(row_key) != 32:
        raise CryptoError(f"the data row key is {len(row_key)} bytes, not 32")
    try:
        data: bytes = AESGCM(row_key).decrypt(
            sealed[-NONCE_SIZE:], sealed[key_end:-NONCE_SIZE], None
        )
    except InvalidTag:
        raise CryptoError(
            "the data does not open with its data row key: the record was tampered with"
        ) from None
    return data


def sealed_by(text: object, middle: str) -> bytes | None:
    """The sealed row key (its first `SEALED_KEY_SIZE` bytes) then the sealed data of `text`
    when it is a canonical record sealed by the key whose `CachedKey.row_middle` is `middle`,
    else `None` (the general reader then decides).

    That record is exactly what `Session` writes: the row's ``Created`` (1 to 18 digits, no
    leading zero), 80 characters of base64 (a 60-byte sealed row key), `middle` (the key's
    ``ParentKeyMeta`` as written), the data's base64 (at least 40 characters), both base64
    fields strict and without padding inside (they are decoded as one), so the JSON reader
    would read every field of it alike.
    """
    if type(text) is not str or not text.startswith(HEAD):
        return None
    key_at = text.find(KEY, 19, 44)  # after 1 to 18 digits
    if key_at < 0:
        return None
    created = text[18:key_at]
    if not (created.isdigit() and created.isascii()) or (created[0] == "0" and key_at > 19):
        return None
    data_at = key_at + 88 + len(middle)
    if (
        text[key_at + 88 : data_at] != middle  # (a slice and a compare: str.find of the
        # same window sets up its search over `middle` first, about twice the time)
        or len(text) - 42 < data_at
        or not text.endswith(TAIL)
    ):
        return None
    try:  # one base64 call for both (see Session._seal): 80 characters are 60 bytes
        return _decode(text[key_at + 8 : key_at + 88] + text[data_at:-2])
    except ValueError:
        return None


def joined(sealed_key: bytes, sealed_data: bytes) -> tuple[bytes, int]:
    """Both sealed values of a row as `open_row` takes them: one buffer and where the key
    ends. `RecordError` unless each is long enough to open."""
    if len(sealed_key) < NONCE_SIZE + TAG_SIZE:
        raise RecordError(
            f"data row record Key.Key is {len(sealed_key)} bytes; a sealed key is at "
            f"least {NONCE_SIZE + TAG_SIZE}"
        )
    if len(sealed_data) < NONCE_SIZE + TAG_SIZE:
        raise RecordError(
            f"data row record Data is {len(sealed_data)} bytes; sealed data is at "
            f"least {NONCE_SIZE + TAG_SIZE} (tag and nonce)"
        )
    return sealed_key + sealed_data, len(sealed_key)


def parse_row(text: object) -> tuple[str, int, bytes, bytes]:
    """Read a DataRowRecord: the canonical compact form by slicing, anything else as JSON.

    The fast path accepts only text that is exactly the canonical template with plain fields
    (digits, base64, a key id without quotes, backslashes or control characters), so it reads
    nothing the JSON reader would read differently; any doubt goes to the strict reader, whose
    `RecordError` names the problem.
    """
    if type(text) is str and text.startswith(HEAD) and text.endswith(TAIL):
        found = parse_canonical(text)
        if found is not None:
            return found
    return parse_json_row(text)


def parse_canonical(text: str) -> tuple[str, int, bytes, bytes] | None:
    """The fields of a record in the canonical form (see `parse_row`), or `None`."""
    key_at = text.find(KEY, 18)
    meta_at = text.find(META, key_at)
    meta_created_at = text.find(META_CREATED, meta_at)
    data_at = text.find(DATA, meta_created_at)
    if key_at < 0 or meta_at < 0 or meta_created_at < 0 or data_at < 0:
        return None
    created = text[18:key_at]
    ik_id = text[meta_at + 28 : meta_created_at]
    ik_created = text[meta_created_at + 12 : data_at]
    # Plain JSON integers of at most 19 digits (no sign, no leading zero), a non-empty key id
    # with nothing that JSON would escape; otherwise the strict reader decides (and names what
    # is wrong). (isprintable is False for control characters and lone surrogates.)
    if not (
        0 < len(created) <= 19
        and 0 < len(ik_created) <= 19
        and created.isascii()
        and created.isdigit()
        and ik_created.isascii()
        and ik_created.isdigit()
        and (created[0] != "0" or len(created) == 1)
        and (ik_created[0] != "0" or len(ik_created) == 1)
        and ik_id
        and ik_id.isprintable()
        and '"' not in ik_id
        and "\\" not in ik_id
    ):
        return None
    number = int(ik_created)
    if number > MAX_CREATED or int(created) > MAX_CREATED:
        return None  # (19 digits reach 9999999999999999999, beyond 2**63-1)
    try:
        sealed_key = _decode(text[key_at + 8 : meta_at])
        sealed_data = _decode(text[data_at + 11 : -2])
    except ValueError:
        return None
    return ik_id, number, sealed_key, sealed_data


def parse_json_row(text: object) -> tuple[str, int, bytes, bytes]:
    """A record not in the canonical compact form: the strict reader, which names problems."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise RecordTypeError(f"data row record: expected JSON text, got {type(text).__name__}")
    meta = (record := DataRowRecord.from_json(text)).parent_key_meta
    return meta.key_id, meta.created, record.key.encrypted_key, record.data
