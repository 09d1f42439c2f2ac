"""Authenticated encryption: the `Aead` interface and Asherah's AES-256-GCM."""

from __future__ import annotations

import abc
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import CryptoError

__all__ = ["KEY_SIZE", "NONCE_SIZE", "TAG_SIZE", "Aead", "Aes256Gcm"]

KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16


class Aead(abc.ABC):
    """Authenticated encryption with a caller-supplied key."""

    @abc.abstractmethod
    def encrypt(self, data: bytes, key: bytes) -> bytes:
        """Seal `data` under `key` and return the ciphertext in the implementation's layout."""

    @abc.abstractmethod
    def decrypt(self, data: bytes, key: bytes) -> bytes:
        """Open `data` sealed by `encrypt` under `key`; raise `CryptoError` if it fails."""


class Aes256Gcm(Aead):
    """AES-256-GCM in Asherah's layout: ``ciphertext || tag || nonce``.

    The 12-byte nonce is random for every call and appended at the end; there is no
    associated data. The output interoperates with the Go, Java, C# and Rust Asherah cores.
    """

    def encrypt(self, data: bytes, key: bytes) -> bytes:
        """Seal `data` under the 32-byte `key`."""
        cipher = AESGCM(key) if type(key) is bytes and len(key) == KEY_SIZE else _cipher(key)
        if type(data) is not bytes:
            data = _input(data)
        nonce = os.urandom(NONCE_SIZE)
        return cipher.encrypt(nonce, data, None) + nonce

    def decrypt(self, data: bytes, key: bytes) -> bytes:
        """Open `data` (``ciphertext || tag || nonce``) under the 32-byte `key`."""
        cipher = AESGCM(key) if type(key) is bytes and len(key) == KEY_SIZE else _cipher(key)
        if type(data) is not bytes:
            data = _input(data)
        if len(data) < NONCE_SIZE + TAG_SIZE:
            raise CryptoError(
                f"AES-256-GCM input is {len(data)} bytes; a sealed value is at least "
                f"{NONCE_SIZE + TAG_SIZE} bytes (tag and nonce)"
            )
        try:
            return cipher.decrypt(data[-NONCE_SIZE:], data[:-NONCE_SIZE], None)
        except InvalidTag as e:
            raise CryptoError(
                "AES-256-GCM authentication failed: wrong key, or the data was tampered with"
            ) from e

    def __repr__(self) -> str:
        return "Aes256Gcm()"


def _cipher(key: bytes) -> AESGCM:
    """The cipher of a key that is not simply 32 bytes of `bytes`, or `CryptoError` naming
    what is wrong with it (the common case is made in line, without this call)."""
    if not isinstance(key, bytes | bytearray | memoryview):
        raise CryptoError(f"AES-256-GCM key must be bytes, not {type(key).__name__}")
    size = memoryview(key).nbytes  # in bytes, not items of a non-byte memoryview
    if size != KEY_SIZE:
        raise CryptoError(f"AES-256-GCM key must be {KEY_SIZE} bytes, got {size}")
    return AESGCM(bytes(key))


def _input(data: object) -> bytes:
    """`data` (not simply `bytes`) as bytes, or `CryptoError` naming its type."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CryptoError(f"AES-256-GCM input must be bytes, not {type(data).__name__}")
    return bytes(data)
