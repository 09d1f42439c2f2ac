"""Transit ciphertext as stored: the UTF-8 bytes of ``vault:v<N>:<base64>``.

The Rust Asherah core stores exactly these bytes as the encrypted system key (the record's
``Key`` is their base64), so both read each other's keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from asherah_core import KmsError

__all__ = ["describe_ciphertext", "key_version", "parse_ciphertext"]

_CIPHERTEXT = re.compile(r"vault:v([1-9][0-9]{0,9}):[A-Za-z0-9+/]+={0,2}")
_MAX_LENGTH = 64 * 1024


def parse_ciphertext(encrypted: bytes) -> str:
    """Return the Transit ciphertext text of `encrypted`; `KmsError` when it is not one."""
    if len(encrypted) > _MAX_LENGTH:
        raise KmsError(f"not a Vault Transit ciphertext: {len(encrypted)} bytes is too long")
    try:
        text = encrypted.decode("ascii")
    except UnicodeDecodeError:
        raise KmsError(
            f"not a Vault Transit ciphertext: {len(encrypted)} bytes that are not ASCII text"
        ) from None
    if not _CIPHERTEXT.fullmatch(text):
        raise KmsError(
            f"not a Vault Transit ciphertext: {len(encrypted)} bytes without the "
            "'vault:v<N>:<base64>' form"
        )
    return text


def key_version(text: str) -> int:
    """The Transit key version that wrapped a ciphertext (the N of ``vault:vN:``)."""
    return int(text.split(":", 2)[1][1:])


def describe_ciphertext(encrypted: bytes) -> Mapping[str, Any] | None:
    """Summarise an encrypted key for ``asherah-kms inspect``; ``None`` when not ours."""
    if not encrypted.startswith(b"vault:"):
        return None
    text = parse_ciphertext(encrypted)
    return {"kms": "vault", "key_version": key_version(text), "ciphertext_chars": len(text)}
