"""Bounded caches of unwrapped system and intermediate keys, keyed by ``(id, created)``.

A `CachedKey` holds the key bytes in a `bytearray` and an AES-256-GCM object built once from
them for the hot path. Reads are plain dictionary look-ups without a lock; writers take the
cache's lock.

The invariant: **a cache never holds or hands out a wiped key.** Every key in a `KeyCache`, in
its slot or as its id's latest, has its bytes and its cipher; an id's latest is also in its
slot, and has its row texts (`CachedKey.row_middle`, which the session's hot path reads
without a check: `put` makes them before it marks a key latest, and a key never loses them).
It holds by construction, by one ownership rule:

- A key is wiped only when nothing can reach it any more: its finalizer (`CachedKey.__del__`)
  overwrites the bytes when the last reference goes, which CPython's reference counting does at
  once (on a free-threaded build, when the last reference goes in a thread other than the one
  that made the key, the finalizer runs when that thread next runs Python code, or at the next
  garbage collection: later, never earlier). Eviction only drops the cache's references: a key
  that a call in flight still holds (or that another thread is about to `put` back) stays whole
  for that call, and is wiped when the call lets go of it.
- The one exception is `KeyCache.close`, which first empties the cache and refuses every later
  `put`, and only then wipes the keys it held: after close nothing is cached again.
- Whoever made a key and never shared it may wipe it early (`CachedKey.zero`): the key
  hierarchy does so for a key that lost the duplicate-store race.

So a look-up and the `put` after it need no common lock: whatever the key went through in
between, it is whole, and `put` caches it or the equal key already there.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .aead import NONCE_SIZE, TAG_SIZE
from .errors import CryptoError, SessionError
from .forksafe import new_locks_in_child
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
        "created",
        "encrypt_until",
        "key",
        "meta",
        "meta_json",
        "revoked",
        "row_middle",
    )

    # The row texts, set by `make_row_texts` (unset until then: reading one raises, never
    # gives a wrong text). `meta_json`: the ParentKeyMeta of a row this key seals, as JSON.
    # `row_middle`: what stands between a row's sealed key and its data in such a row; the
    # session writes it, and reads a row by comparing it (see session.py).
    meta_json: str
    row_middle: str

    def __init__(self, meta: KeyMeta, key: bytes | bytearray, *, revoked: bool = False) -> None:
        self.key: bytearray = bytearray(key)  # first: the finalizer wipes it whatever follows
        self.aead: AESGCM | None = None
        self.meta = meta
        self.created = meta.created
        self.aead = AESGCM(self.key)
        self.revoked = revoked
        self.encrypt_until = 0.0

    def make_row_texts(self) -> CachedKey:
        """Make the row texts once (only a key that seals rows needs them: an intermediate key
        loaded to decrypt an old row never does); return this key. Threads that race here
        write equal texts, `meta_json` first."""
        try:
            self.row_middle  # noqa: B018 - made already?
        except AttributeError:
            meta = self.meta
            self.meta_json = f'{{"KeyId":{_json_str(meta.key_id)},"Created":{meta.created}}}'
            self.row_middle = f'","ParentKeyMeta":{self.meta_json}}},"Data":"'
        return self

    def cipher(self) -> AESGCM:
        """The AES-256-GCM object of this key; `SessionError` once the key was zeroed (which
        only a closed factory does to a key someone still holds: see the module's invariant)."""
        aead = self.aead
        if aead is None:
            raise SessionError(f"key {self.meta} was wiped: its session factory was closed")
        return aead

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """Seal `data` under this key: ``ciphertext || tag || nonce`` (Asherah's layout)."""
        nonce = os.urandom(NONCE_SIZE)
        return self.cipher().encrypt(nonce, data, None) + nonce

    def unseal(self, sealed: bytes, what: str, key_id: str) -> bytes:
        """Open `sealed`, the key `key_id`; `CryptoError` names it (``what`` is its kind) and
        this key when it does not open. (The name is built only then.)"""
        if len(sealed) < NONCE_SIZE + TAG_SIZE:
            raise CryptoError(
                f"{what} {key_id!r} is {len(sealed)} bytes; a sealed value is at least "
                f"{NONCE_SIZE + TAG_SIZE} bytes (tag and nonce)"
            )
        try:
            return self.cipher().decrypt(sealed[-NONCE_SIZE:], sealed[:-NONCE_SIZE], None)
        except InvalidTag:
            raise CryptoError(
                f"{what} {key_id!r} does not open with key {self.meta}: wrong key, or tampered with"
            ) from None

    def zero(self) -> None:
        """Overwrite the key bytes and drop the cipher object (only for a key nobody else
        holds, or on close: see the module's invariant)."""
        self.aead = None
        self.encrypt_until = 0.0
        wipe(self.key)

    def __del__(self) -> None:
        # The last reference is gone: nobody can use the key any more, so wipe it.
        with contextlib.suppress(AttributeError):
            wipe(self.key)

    def __repr__(self) -> str:
        return f"CachedKey({self.meta}, revoked={self.revoked})"


class KeyCache:
    """At most `max_size` keys by ``(id, created)``, plus each id's latest key for encrypting.

    When full, the key loaded longest ago is evicted: dropped here, and wiped once no call
    holds it (see the module's invariant). ``retain=False`` makes a cache that keeps nothing
    (the policy turned caching off): `put` hands the key back unkept, and it is wiped when the
    call that uses it ends.
    """

    def __init__(self, name: str, max_size: int, *, retain: bool = True) -> None:
        self.name = name
        self.max_size = max_size
        self.retain = retain
        self.hits = 0
        self.misses = 0
        self.stale = 0
        # Every statement under _lock leaves the invariant whole (an id's latest is in its
        # slot: a slot is filled before the key becomes latest, and stops being latest before
        # the slot is emptied), so a forked child renews the lock (forksafe).
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, int], CachedKey] = {}
        self._latest: dict[str, CachedKey] = {}
        self._closed = False
        new_locks_in_child(self, "_lock")

    def get(self, key_id: str, created: int) -> CachedKey | None:
        """Return the cached key ``(key_id, created)`` or ``None``."""
        return self._keys.get((key_id, created))

    def latest(self, key_id: str) -> CachedKey | None:
        """Return the key last marked as `key_id`'s latest, or ``None``."""
        return self._latest.get(key_id)

    def put(self, entry: CachedKey, *, latest: bool = False) -> CachedKey:
        """Cache `entry` and return the key cached in its slot now: `entry`, or the equal
        key already there (which then takes on `entry`'s revocation, and with `latest` its
        time to the next check; `entry` is dropped).

        `entry` may be a key this cache evicted while the caller held it: it is whole (see
        the module's invariant) and goes back in.
        """
        if not self.retain:
            return entry.make_row_texts() if latest else entry
        with self._lock:
            if self._closed:
                raise SessionError(f"the {self.name} cache is closed")
            if entry.aead is None:  # only a closed cache wipes a held key; never cache one
                raise SessionError(f"key {entry.meta} was wiped; it cannot be cached")
            slot = (entry.meta.key_id, entry.created)
            existing = self._keys.get(slot)
            if existing is None:
                self._keys[slot] = entry
            elif existing is not entry:
                existing.revoked = existing.revoked or entry.revoked
                if latest:
                    existing.encrypt_until = 0.0 if existing.revoked else entry.encrypt_until
                entry = existing
            if latest:
                # What `put(…, latest=True)` returns seals rows, and the hot path reads a
                # latest key's texts unchecked: made here, whichever key is returned.
                entry.make_row_texts()
                current = self._latest.get(entry.meta.key_id)
                if current is None or current.created <= entry.created:
                    self._latest[entry.meta.key_id] = entry
            while len(self._keys) > self.max_size:
                oldest_slot = next(iter(self._keys))
                oldest = self._keys[oldest_slot]
                if self._latest.get(oldest_slot[0]) is oldest:
                    del self._latest[oldest_slot[0]]
                del self._keys[oldest_slot]
        return entry

    def forget_latest(self, key_id: str, entry: CachedKey) -> None:
        """Stop using `entry` as `key_id`'s latest (it stays cached for decrypt)."""
        with self._lock:
            if self._latest.get(key_id) is entry:
                del self._latest[key_id]

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        """Drop and zero every key; refuse every later `put`. Safe to call more than once."""
        with self._lock:
            self._closed = True
            entries = list(self._keys.values())
            self._latest.clear()
            self._keys.clear()
        for entry in entries:
            entry.zero()

    def __repr__(self) -> str:
        return f"KeyCache({self.name!r}, size={len(self._keys)}, max_size={self.max_size})"


def wipe(buffer: bytearray) -> None:
    """Overwrite `buffer` with zeros in place (the only copy of key bytes Python lets us reach)."""
    buffer[:] = bytes(len(buffer))  # same length: overwritten where it is, never moved


def _json_str(text: str) -> str:
    """`text` as a JSON string, as ``json.dumps(text, ensure_ascii=False)`` writes it: printable
    text without quotes or backslashes is written as it is (json.dumps escapes nothing else)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)
