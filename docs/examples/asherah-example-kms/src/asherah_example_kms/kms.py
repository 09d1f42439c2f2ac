"""`KeyringKms`: wraps keys with the current master key, unwraps with the one that wrapped them.

The wrapped form is compact JSON naming the master key, so the key can be rotated:
``{"keyring":"2025-01","sealed":"<base64 of the AEAD output>"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from asherah_core import Aead, ConfigError, CryptoError, KeyManagementService, KmsError

__all__ = ["KEY_ID", "KeyringKms", "describe_keyring"]

KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MASTER_KEY_BYTES = 32


class KeyringKms(KeyManagementService):
    """Wraps keys with the `current` master key of `keys`; unwraps with any of them.

    Stateless after construction, so it is thread-safe, and there is nothing to close.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str, crypto: Aead) -> None:
        for key_id, master in keys.items():
            if not KEY_ID.fullmatch(key_id):
                raise ConfigError(f"keys: {key_id!r} is not a valid key id")
            if len(master) != MASTER_KEY_BYTES:
                # Say how long it is, never what it is.
                raise ConfigError(f"keys.{key_id}: must be 32 bytes, got {len(master)}")
        if current not in keys:
            raise ConfigError(f"current: {current!r} is not one of the keys")
        self._keys = dict(keys)
        self._current = current
        self._crypto = crypto

    def encrypt_key(self, key: bytes) -> bytes:
        """Seal `key` under the current master key and name that key in the result."""
        if not key:
            raise KmsError("example-keyring: the key to encrypt is empty")
        try:
            sealed = self._crypto.encrypt(key, self._keys[self._current])
        except CryptoError as e:
            raise KmsError(f"example-keyring: could not encrypt the key: {e}") from e
        document = {"keyring": self._current, "sealed": base64.b64encode(sealed).decode("ascii")}
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    def decrypt_key(self, encrypted: bytes) -> bytes:
        """Open a value written by `encrypt_key` with the master key it names."""
        key_id, sealed = _parse(encrypted)
        master = self._keys.get(key_id)
        if master is None:
            raise KmsError(
                f"example-keyring: the key was wrapped with master key {key_id!r}, which is "
                f"not configured (configured: {', '.join(sorted(self._keys))})"
            )
        try:
            return self._crypto.decrypt(sealed, master)
        except CryptoError as e:
            raise KmsError(f"example-keyring: could not decrypt the key: {e}") from e

    def __repr__(self) -> str:
        # Key ids only: a repr ends up in logs and tracebacks.
        return f"KeyringKms(current={self._current!r}, keys={sorted(self._keys)!r})"


def describe_keyring(encrypted: bytes) -> dict[str, Any] | None:
    """Summarise a wrapped key for ``asherah-kms inspect``; `None` if it is not in this format."""
    try:
        document = json.loads(encrypted)
    except (ValueError, TypeError):
        return None
    if not isinstance(document, dict) or "keyring" not in document:
        return None  # not ours: let another plugin try
    key_id, sealed = _parse(encrypted)  # ours but malformed: KmsError
    return {"format": "example keyring", "key_id": key_id, "sealed_bytes": len(sealed)}


def _parse(encrypted: bytes) -> tuple[str, bytes]:
    """Return the key id and the sealed bytes; `KmsError` says what is wrong, never the bytes."""
    try:
        document = json.loads(encrypted)
    except (ValueError, TypeError):
        raise KmsError("example-keyring: the wrapped key is not JSON") from None
    if not isinstance(document, dict):
        raise KmsError("example-keyring: the wrapped key is not a JSON object")
    key_id, sealed = document.get("keyring"), document.get("sealed")
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise KmsError("example-keyring: the wrapped key has no valid 'keyring' field")
    if not isinstance(sealed, str):
        raise KmsError("example-keyring: the wrapped key has no 'sealed' field")
    try:
        return key_id, base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise KmsError("example-keyring: the 'sealed' field is not valid base64") from None
