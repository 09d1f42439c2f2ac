"""A KMS that wraps keys with a fixed master key, for tests and local development."""

from __future__ import annotations

from .aead import KEY_SIZE, Aead, Aes256Gcm
from .errors import ConfigError, CryptoError, KmsError
from .kms import KeyManagementService

__all__ = ["StaticKms"]


class StaticKms(KeyManagementService):
    """Wraps keys with a fixed 32-byte master key, like Asherah's static KMS.

    The wrapped form is the AEAD output of the key under the master key, so values are
    interchangeable with the Go, Java, C# and Rust static KMS given the same master key.
    Never use it in production: the master key lives in the process.
    """

    def __init__(self, master_key: bytes, crypto: Aead | None = None) -> None:
        if not isinstance(master_key, bytes | bytearray):
            raise ConfigError(
                f"static KMS master key must be bytes, not {type(master_key).__name__}"
            )
        if len(master_key) != KEY_SIZE:
            raise ConfigError(
                f"static KMS master key must be {KEY_SIZE} bytes, got {len(master_key)}"
            )
        self._master_key = bytes(master_key)
        self._crypto = crypto if crypto is not None else Aes256Gcm()

    def encrypt_key(self, key: bytes) -> bytes:
        """Seal `key` under the master key."""
        if not key:
            raise KmsError("static KMS: the key to encrypt is empty")
        try:
            return self._crypto.encrypt(key, self._master_key)
        except CryptoError as e:
            raise KmsError(f"static KMS: could not encrypt the key: {e}") from e

    def decrypt_key(self, encrypted: bytes) -> bytes:
        """Open a value sealed by `encrypt_key`."""
        try:
            return self._crypto.decrypt(encrypted, self._master_key)
        except CryptoError as e:
            raise KmsError(f"static KMS: could not decrypt the key: {e}") from e

    def __repr__(self) -> str:
        return f"StaticKms(crypto={self._crypto!r})"
