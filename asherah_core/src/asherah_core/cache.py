"""Bounded caches of unwrapped system and intermediate keys, keyed by ``(id, created)``.

A `CachedKey` holds the key bytes in a `bytearray` that is zeroed when the key is evicted or
the cache closes, and an AES-256-GCM object built once from them for the hot path. Reads are
plain dictionary look-ups without a lock; writers take the cache's lock.
"""

from __future__ import annotations

import json
import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .aead import NONCE_SIZE, TAG_SIZE
from .errors import CryptoError, SessionError
from .records import KeyMeta

__all__ = ["CachedKey", "KeyCache", "wipe"]


class CachedKey:
    """An unwrapped key and what decides whether it may still encrypt.

    ``encrypt_until`` is the clock time after which the key must be checked again before it
    encrypts: the earliest of its expiry, its parent's expiry and the next revocation check;
    zero once it or its parent is revoked. The key bytes never leave this object except as
    the `aead` built from them.
    """

    __slots__ = (
        "aead",
        "cached",
        "created",
        "encrypt_until",
        "key",
        "meta",
        "meta_json",
        "revoked",
    )

    def __init__(self, meta: KeyMeta, key: bytes | bytearray, *, revoked: bool = False) -> None:
        self.meta = meta
        self.created = meta.created
        self.key: bytearray = bytearray(key)
        self.aead: AESGCM | None = AESGCM(self.key)
        self.revoked = revoked
        self.encrypt_until = 0.0
        self.cached = False
        # The ParentKeyMeta of a row this key seals, as JSON, made once (see session.py).
        self.meta_json = f'{{"KeyId":{_json_str(meta.key_id)},"Created":{meta.created}}}'

    def cipher(self) -> AESGCM:
        """The AES-256-GCM object of this key; `SessionError` once the key was zeroed."""
        aead = self.aead
        if aead is None:
            raise SessionError(f"key {self.meta} was evicted and wiped; retry the call")
        return aead

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """Seal `data` under this key: ``ciphertext || tag || nonce`` (Asherah's layout)."""
        nonce = os.urandom(NONCE_SIZE)
        return self.cipher().encrypt(nonce, data, None) + nonce

    def unseal(self, sealed: bytes, what: str) -> bytes:
        """Open `sealed`; `CryptoError` names `what` and this key when it does not open."""
        if len(sealed) < NONCE_SIZE + TAG_SIZE:
            raise CryptoError(
                f"{what} is {len(sealed)} bytes; a sealed value is at least "
                f"{NONCE_SIZE + TAG_SIZE} bytes (tag and nonce)"
            )
        try:
            return self.cipher().decrypt(sealed[-NONCE_SIZE:], sealed[:-NONCE_SIZE], None)
        except InvalidTag:
            raise CryptoError(
                f"{what} does not open with key {self.meta}: wrong key, or tampered with"
            ) from None

    def zero(self) -> None:
        """Overwrite the key bytes and drop the cipher object."""
        self.aead = None
        self.encrypt_until = 0.0
        wipe(self.key)

    def __repr__(self) -> str:
        return f"CachedKey({self.meta}, revoked={self.revoked})"


class KeyCache:
    """At most `max_size` keys by ``(id, created)``, plus each id's latest key for encrypting.

    When full, the key loaded longest ago is evicted and zeroed. ``retain=False`` makes a
    cache that keeps nothing (the policy turned caching off): `put` hands the key back unkept
    and the caller zeroes it after use.
    """

    def __init__(self, name: str, max_size: int, *, retain: bool = True) -> None:
        self.name = name
        self.max_size = max_size
        self.retain = retain
        self.hits = 0
        self.misses = 0
        self.stale = 0
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, int], CachedKey] = {}
        self._latest: dict[str, CachedKey] = {}
        self._closed = False

    def get(self, key_id: str, created: int) -> CachedKey | None:
        """Return the cached key ``(key_id, created)`` or ``None``."""
        return self._keys.get((key_id, created))

    def latest(self, key_id: str) -> CachedKey | None:
        """Return the key last marked as `key_id`'s latest, or ``None``."""
        return self._latest.get(key_id)

    def put(self, entry: CachedKey, *, latest: bool = False) -> CachedKey:
        """Cache `entry` (or return the equal one already cached, zeroing `entry`)."""
        if not self.retain:
            return entry
        evicted: list[CachedKey] = []
        with self._lock:
            if self._closed:
                raise SessionError(f"the {self.name} cache is closed")
            slot = (entry.meta.key_id, entry.created)
            existing = self._keys.get(slot)
            if existing is not None and existing is not entry:
                existing.revoked = existing.revoked or entry.revoked
                evicted.append(entry)
                entry = existing
            else:
                self._keys[slot] = entry
                entry.cached = True
            if latest:
                current = self._latest.get(entry.meta.key_id)
                if current is None or current.created <= entry.created:
                    self._latest[entry.meta.key_id] = entry
            while len(self._keys) > self.max_size:
                oldest_slot = next(iter(self._keys))
                oldest = self._keys.pop(oldest_slot)
                if self._latest.get(oldest_slot[0]) is oldest:
                    del self._latest[oldest_slot[0]]
                oldest.cached = False
                evicted.append(oldest)
        for old in evicted:
            old.zero()
        return entry

    def forget_latest(self, key_id: str, entry: CachedKey) -> None:
        """Stop using `entry` as `key_id`'s latest (it stays cached for decrypt)."""
        with self._lock:
            if self._latest.get(key_id) is entry:
                del self._latest[key_id]

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        """Zero and drop every key. Safe to call more than once."""
        with self._lock:
            self._closed = True
            entries = list(self._keys.values())
            self._keys.clear()
            self._latest.clear()
        for entry in entries:
            entry.cached = False
            entry.zero()

    def __repr__(self) -> str:
        return f"KeyCache({self.name!r}, size={len(self._keys)}, max_size={self.max_size})"


def wipe(buffer: bytearray) -> None:
    """Overwrite `buffer` with zeros in place (the only copy of key bytes Python lets us reach)."""
    for i in range(len(buffer)):
        buffer[i] = 0


def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
