"""The key hierarchy: load or create system and intermediate keys, the only place with I/O.

System key (SK, one per service and product, wrapped by the KMS) -> intermediate key (IK, one
per partition, sealed with the SK) -> data row key (one per row, sealed with the IK; see
session.py). New keys are stored insert-if-absent with a ``Created`` truncated to the policy's
precision, so racing processes collide and the loser uses the winner's key. A key is used to
encrypt only while it and its parent are neither revoked nor expired; when the latest key is
invalid, the new one gets a ``Created`` later than it, even inside one precision window.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .cache import CachedKey, KeyCache, wipe
from .errors import (
    AsherahError,
    CryptoError,
    KeyNotFoundError,
    KmsError,
    MetastoreError,
    SessionError,
    SessionTypeError,
    SessionUnicodeError,
)
from .forksafe import reset_in_child
from .kms import KeyManagementService
from .metastore.base import Metastore
from .metrics import FrameworkMetrics
from .policy import CryptoPolicy
from .records import EnvelopeKeyRecord, KeyMeta

__all__ = ["KeyHierarchy", "Partition"]

MAX_CREATE_ATTEMPTS = 5
"""New keys tried before giving up when every store loses to a key that cannot be used."""

_STRIPES = 64
logger = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Partition:
    """The key ids of one partition of one service and product (``partition.go``).

    With a region suffix (DynamoDB global tables) the ids end in ``_<suffix>``, and rows whose
    IK id starts with the unsuffixed id (written in another region) still decrypt.
    """

    partition_id: str
    service: str
    product: str
    suffix: str | None = None
    sk_id: str = field(init=False)
    ik_id: str = field(init=False)
    base_ik_id: str = field(init=False)

    def __post_init__(self) -> None:
        # Made for every new session (an old row's partition first): checks and ids inline.
        partition_id, service, product, suffix = (
            self.partition_id,
            self.service,
            self.product,
            self.suffix,
        )
        _check_names(partition_id, service, product, suffix)
        tail = f"_{suffix}" if suffix else ""
        base_ik = f"_IK_{partition_id}_{service}_{product}"
        set_field = object.__setattr__  # frozen: the derived ids are set once, here
        set_field(self, "sk_id", f"_SK_{service}_{product}{tail}")
        set_field(self, "ik_id", base_ik + tail)
        set_field(self, "base_ik_id", base_ik)

    def check_unambiguous(self) -> None:
        """`SessionError` unless no name holds ``_``, the separator of the key ids (opt-in).

        Partition ``a_b`` of service ``c`` and partition ``a`` of service ``b_c`` share the
        intermediate key id ``_IK_a_b_c_<product>``, so they share one key. Go and Rust build
        the ids the same way, so the ids stay as they are; this refuses the names instead.
        """
        for what, value in (
            ("partition id", self.partition_id),
            ("service name", self.service),
            ("product id", self.product),
        ):
            if "_" in value:
                raise SessionError(
                    f"{what} {value!r} holds '_', which separates the parts of key ids, so its "
                    "keys could be another partition's (partition 'a_b' of service 'c' and "
                    "partition 'a' of service 'b_c' share one intermediate key); refused "
                    "because the factory was made with strict_names=True"
                )

    def owns(self, ik_id: str) -> bool:
        """Whether a row sealed under intermediate key `ik_id` belongs to this partition.

        With a region suffix, a row written in another region (the unsuffixed id, or it plus
        ``_<region>``) belongs too. Region names hold no ``_``, so partition ``a`` does not
        accept the rows of partition ``a_svc_prod_x`` (Go's prefix test would).
        """
        if ik_id == self.ik_id:
            return True
        if not self.suffix or not ik_id.startswith(self.base_ik_id):
            return False
        rest = ik_id[len(self.base_ik_id) :]
        return rest == "" or (rest.startswith("_") and len(rest) > 1 and "_" not in rest[1:])


class KeyHierarchy:
    """Loads, creates and caches the system and intermediate keys of one factory.

    Thread-safe: look-ups of one key id are serialised by a striped lock so that concurrent
    misses make one metastore read and one KMS call; different ids proceed in parallel.
    """

    def __init__(
        self,
        *,
        kms: KeyManagementService,
        metastore: Metastore,
        policy: CryptoPolicy,
        clock: Callable[[], float],
        metrics: FrameworkMetrics,
    ) -> None:
        self.kms = kms
        self.metastore = metastore
        self.policy = policy
        self.clock = clock
        self.metrics = metrics
        self.system_keys = KeyCache(
            "system-key", policy.system_key_cache_max_size, retain=policy.cache_system_keys
        )
        self.intermediate_keys = KeyCache(
            "intermediate-key",
            policy.intermediate_key_cache_max_size,
            retain=policy.cache_intermediate_keys,
        )
        metrics.watch(self.system_keys)
        metrics.watch(self.intermediate_keys)
        # The stripes guard no state (only who loads a key id): a forked child renews them,
        # in place, since a thread of the parent loading a key at the fork holds one for good.
        self._ik_locks = [threading.Lock() for _ in range(_STRIPES)]
        self._sk_locks = [threading.Lock() for _ in range(_STRIPES)]
        reset_in_child(self, KeyHierarchy._new_stripes)
        self._revoke_seconds = policy.revoke_check_seconds
        self._expire_seconds = policy.expire_seconds
        self._store_hist = metrics.metastore(metastore.kind, "store")
        self._load_hist = metrics.metastore(metastore.kind, "load")
        self._latest_hist = metrics.metastore(metastore.kind, "loadlatest")

    def _new_stripes(self) -> None:
        """In a forked child: new, unlocked stripes (see `__init__`)."""
        self._ik_locks[:] = [threading.Lock() for _ in range(_STRIPES)]
        self._sk_locks[:] = [threading.Lock() for _ in range(_STRIPES)]

    # Encrypt path ------------------------------------------------------------------------

    def intermediate_key_for_encrypt(self, partition: Partition) -> CachedKey:
        """The partition's latest usable IK: cached, loaded, or made and stored now."""
        ik_id = partition.ik_id
        return self._latest_for_encrypt(
            "intermediate",
            ik_id,
            self.intermediate_keys,
            self._ik_locks,
            use=lambda record, now: self._use_intermediate(ik_id, record, now),
            create=lambda record: self._create_intermediate(partition, record),
            count_hit=False,  # the session counted the look-up that brought it here
        )

    def _use_intermediate(
        self, ik_id: str, record: EnvelopeKeyRecord, now: float
    ) -> CachedKey | None:
        """Arm and cache the IK of `record` if its SK may encrypt too; else ``None``."""
        system_key = self._system_key(self._parent_of(ik_id, record))
        if not self._system_key_may_encrypt(system_key, now):
            return None
        # A cached key is whole even if evicted since this look-up (see cache.py); `put`
        # caches it again, or returns the equal key another thread cached meanwhile.
        entry = self.intermediate_keys.get(ik_id, record.created)
        if entry is not None:
            entry.revoked = record.revoked
        else:
            entry = self._unseal_intermediate(ik_id, record, system_key)
        self._arm(entry, now, system_key)
        return self.intermediate_keys.put(entry, latest=True)

    def _create_intermediate(
        self, partition: Partition, latest: EnvelopeKeyRecord | None
    ) -> CachedKey:
        ik_id = partition.ik_id

        def make(created: int) -> tuple[CachedKey, EnvelopeKeyRecord, CachedKey]:
            system_key = self.system_key_for_encrypt(partition)
            key = bytearray(os.urandom(32))
            try:
                entry = CachedKey(KeyMeta(ik_id, created), key)
                parent = KeyMeta(system_key.meta.key_id, system_key.created)
                return entry, EnvelopeKeyRecord(created, system_key.seal(key), parent), system_key
            finally:
                wipe(key)

        return self._create(
            "intermediate",
            ik_id,
            latest=latest,
            make=make,
            use_winner=lambda winner: self._use_intermediate(ik_id, winner, self.clock()),
            cache=self.intermediate_keys,
        )

    def system_key_for_encrypt(self, partition: Partition) -> CachedKey:
        """The latest usable SK of the partition's service and product; made when needed."""
        sk_id = partition.sk_id

        def use(record: EnvelopeKeyRecord, now: float) -> CachedKey:
            entry = self._system_key_from(KeyMeta(sk_id, record.created), record)
            entry.revoked = record.revoked
            self._arm(entry, now)
            return self.system_keys.put(entry, latest=True)

        return self._latest_for_encrypt(
            "system",
            sk_id,
            self.system_keys,
            self._sk_locks,
            use=use,
            create=lambda record: self._create_system(sk_id, record),
            count_hit=True,
        )

    def _latest_for_encrypt(
        self,
        kind: str,
        key_id: str,
        cache: KeyCache,
        locks: list[threading.Lock],
        *,
        use: Callable[[EnvelopeKeyRecord, float], CachedKey | None],
        create: Callable[[EnvelopeKeyRecord | None], CachedKey],
        count_hit: bool,
    ) -> CachedKey:
        """The cached latest key while it may encrypt; else the stored latest one if `use`
        accepts it (not revoked, not expired, and so its parent); else a new one."""
        with locks[hash(key_id) % _STRIPES]:
            now = self.clock()
            entry = cache.latest(key_id)
            if entry is not None and now < entry.encrypt_until:
                if count_hit:
                    cache.hits += 1
                return entry  # (for an IK: another thread refreshed it while we waited)
            if entry is not None and self._only_check_due(entry, now):
                cache.stale += 1
            else:
                cache.misses += 1
            record = self._load_latest(key_id)
            if record is not None and self._may_encrypt(record, now):
                found = use(record, now)
                if found is not None:
                    return found
            if entry is not None:
                cache.forget_latest(key_id, entry)
            if record is not None:
                logger.info(
                    "%s key %s@%d is %s; making a new one",
                    kind,
                    key_id,
                    record.created,
                    _why_not(record, self.policy, now),
                )
            return create(record)

    def _create_system(self, sk_id: str, latest: EnvelopeKeyRecord | None) -> CachedKey:
        def make(created: int) -> tuple[CachedKey, EnvelopeKeyRecord, None]:
            key = bytearray(os.urandom(32))
            try:
                entry = CachedKey(KeyMeta(sk_id, created), key)
                return entry, EnvelopeKeyRecord(created, self._kms_encrypt(bytes(key), sk_id)), None
            finally:
                wipe(key)

        def use_winner(winner: EnvelopeKeyRecord) -> CachedKey:
            entry = self._system_key_from(KeyMeta(sk_id, winner.created), winner)
            self._arm(entry, self.clock())
            return self.system_keys.put(entry, latest=True)

        return self._create(
            "system", sk_id, latest=latest, make=make, use_winner=use_winner, cache=self.system_keys
        )

    def _create(
        self,
        kind: str,
        key_id: str,
        *,
        latest: EnvelopeKeyRecord | None,
        make: Callable[[int], tuple[CachedKey, EnvelopeKeyRecord, CachedKey | None]],
        use_winner: Callable[[EnvelopeKeyRecord], CachedKey | None],
        cache: KeyCache,
    ) -> CachedKey:
        """Make a new key with `make`, store it insert-if-absent and cache it as the latest.

        When the store loses (another process stored that ``Created`` first, or the store
        failed after committing), the stored latest key is used if it may encrypt; if it may
        not (revoked or expired, even in the same precision window), the next attempt gets a
        ``Created`` later than it, so racing writers meet on one new row again.
        """
        after = None if latest is None else latest.created
        for _ in range(MAX_CREATE_ATTEMPTS):
            created = self._new_created(after)
            entry, record, parent = make(created)
            stored, failure = self._store(key_id, created, record)
            if stored:
                self.metrics.keys_created.add(1, {"kind": kind})
                logger.info(
                    "created %s key %s@%d%s",
                    kind,
                    key_id,
                    created,
                    "" if parent is None else f" under {parent.meta}",
                )
                self._arm(entry, self.clock(), parent)
                return cache.put(entry, latest=True)
            entry.zero()  # never shared: wiped now rather than when dropped
            self.metrics.store_conflicts.add(1, {"kind": kind})
            logger.info(
                "%s key %s@%d was not stored (%s); using the stored one",
                kind,
                key_id,
                created,
                "another process stored it first" if failure is None else "store failed",
            )
            winner = self._load_latest_after_conflict(key_id, failure, created)
            if self._may_encrypt(winner, self.clock()):
                found = use_winner(winner)
                if found is not None:
                    return found
            after = winner.created if after is None else max(after, winner.created)
        raise MetastoreError(
            f"{self.metastore.kind} metastore: could not store a usable {kind} key {key_id!r} "
            f"after {MAX_CREATE_ATTEMPTS} attempts (each lost to a revoked or expired key)"
        )

    # Decrypt path ------------------------------------------------------------------------

    def intermediate_key(self, meta: KeyMeta) -> CachedKey:
        """The IK named by a row's ``ParentKeyMeta``: cached, or loaded and unsealed now."""
        with self._ik_locks[hash(meta.key_id) % _STRIPES]:
            entry = self.intermediate_keys.get(meta.key_id, meta.created)
            if entry is not None:
                return entry
            self.intermediate_keys.misses += 1
            record = self._load(meta.key_id, meta.created)
            if record is None:
                raise KeyNotFoundError(
                    f"{self.metastore.kind} metastore: intermediate key {meta} is not in the "
                    "metastore (deleted, or the row comes from another metastore)"
                )
            system_key = self._system_key(self._parent_of(meta.key_id, record))
            entry = self._unseal_intermediate(meta.key_id, record, system_key, meta)
            return self.intermediate_keys.put(entry)

    # Shared steps ------------------------------------------------------------------------

    def _system_key(self, meta: KeyMeta) -> CachedKey:
        """The SK named by `meta`: cached, or loaded and unwrapped by the KMS."""
        entry = self.system_keys.get(meta.key_id, meta.created)
        if entry is not None:  # no lock for a hit: a cached key is whole (see cache.py)
            self.system_keys.hits += 1
            return entry
        with self._sk_locks[hash(meta.key_id) % _STRIPES]:
            entry = self.system_keys.get(meta.key_id, meta.created)
            if entry is not None:
                self.system_keys.hits += 1
                return entry
            self.system_keys.misses += 1
            record = self._load(meta.key_id, meta.created)
            if record is None:
                raise KeyNotFoundError(
                    f"{self.metastore.kind} metastore: system key {meta} is not in the metastore"
                )
            return self.system_keys.put(self._system_key_from(meta, record))

    def _system_key_from(self, meta: KeyMeta, record: EnvelopeKeyRecord) -> CachedKey:
        cached = self.system_keys.get(meta.key_id, meta.created)
        if cached is not None:  # whole even if evicted since (see cache.py)
            cached.revoked = record.revoked
            return cached
        key = bytearray(self._kms_decrypt(record.encrypted_key, meta))
        try:
            if len(key) != 32:
                raise KmsError(f"the KMS unwrapped system key {meta} to {len(key)} bytes, not 32")
            return CachedKey(meta, key, revoked=record.revoked)
        finally:
            wipe(key)

    def _system_key_may_encrypt(self, entry: CachedKey, now: float) -> bool:
        if now < entry.encrypt_until:
            return True
        if entry.revoked or self.policy.is_expired(entry.created, now):
            return False
        record = self._load(entry.meta.key_id, entry.created)  # the revocation check is due
        if record is None:
            # Deleted from the metastore: rows sealed under it now could not be read by a
            # process that has not cached it. Not used to encrypt (checked again next time).
            logger.warning(
                "system key %s is no longer in the metastore; not encrypting with it", entry.meta
            )
            entry.encrypt_until = 0.0
            return False
        entry.revoked = record.revoked
        self._arm(entry, now)
        return not entry.revoked

    def _unseal_intermediate(
        self,
        ik_id: str,
        record: EnvelopeKeyRecord,
        system_key: CachedKey,
        meta: KeyMeta | None = None,
    ) -> CachedKey:
        """The IK of `record`, cached under its own ``Created`` (`meta`, the one it was loaded
        by, is reused when it names the same)."""
        key = bytearray(system_key.unseal(record.encrypted_key, "intermediate key", ik_id))
        try:
            if len(key) != 32:
                raise CryptoError(f"intermediate key {ik_id!r} is {len(key)} bytes, not 32")
            if meta is None or meta.key_id != ik_id or meta.created != record.created:
                meta = KeyMeta(ik_id, record.created)
            return CachedKey(meta, key, revoked=record.revoked)
        finally:
            wipe(key)

    def _arm(self, entry: CachedKey, now: float, parent: CachedKey | None = None) -> None:
        """Set until when `entry` may encrypt without another look at the metastore."""
        if entry.revoked or (parent is not None and parent.revoked):
            entry.encrypt_until = 0.0
            return
        until = min(now + self._revoke_seconds, entry.created + self._expire_seconds)
        if parent is not None:
            until = min(until, parent.encrypt_until)
        entry.encrypt_until = until

    def _only_check_due(self, entry: CachedKey, now: float) -> bool:
        return not entry.revoked and not self.policy.is_expired(entry.created, now)

    def _may_encrypt(self, record: EnvelopeKeyRecord, now: float) -> bool:
        return not record.revoked and not self.policy.is_expired(record.created, now)

    def _new_created(self, after: int | None) -> int:
        created = self.policy.new_key_created(self.clock())
        if after is not None and created <= after:
            created = after + 1  # a later second than the key that cannot be used
        return created

    def _parent_of(self, key_id: str, record: EnvelopeKeyRecord) -> KeyMeta:
        if record.parent_key_meta is None:
            raise MetastoreError(
                f"{self.metastore.kind} metastore: intermediate key {key_id!r} "
                f"(created {record.created}) has no ParentKeyMeta"
            )
        return record.parent_key_meta

    def _load_latest_after_conflict(
        self, key_id: str, failure: MetastoreError | None, created: int
    ) -> EnvelopeKeyRecord:
        try:
            winner = self._load_latest(key_id)
        except MetastoreError:
            if failure is not None:
                raise failure from None
            raise
        if winner is None or (failure is not None and winner.created < created):
            if failure is not None:
                raise failure  # the store failed and nobody stored this key or a later one
            raise MetastoreError(
                f"{self.metastore.kind} metastore: storing {key_id!r} reported a duplicate, "
                "but no row of that id can be loaded"
            )
        return winner

    # I/O with metrics and uniform errors -------------------------------------------------

    def _load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        return self._timed(self._load_hist, key_id, self.metastore.load, key_id, created)

    def _load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        return self._timed(self._latest_hist, key_id, self.metastore.load_latest, key_id)

    def _store(
        self, key_id: str, created: int, record: EnvelopeKeyRecord
    ) -> tuple[bool, MetastoreError | None]:
        """Store; a failure counts as a lost race (as in Go) but is kept to re-raise."""
        try:
            stored = self._timed(
                self._store_hist, key_id, self.metastore.store, key_id, created, record
            )
        except MetastoreError as e:
            return False, e
        return bool(stored), None

    def _timed(self, histogram: object, key_id: str, call: Callable[..., _T], *args: object) -> _T:
        """``call(*args)``, one metastore call: timed into `histogram`, its result checked, and
        its failures made `MetastoreError` naming `key_id`."""
        start = time.perf_counter()
        error: str | None = None
        try:
            result = call(*args)
            if (
                result is not None
                and type(result) is not EnvelopeKeyRecord
                and not isinstance(result, EnvelopeKeyRecord | bool)
            ):
                raise MetastoreError(
                    f"{self.metastore.kind} metastore returned {type(result).__name__} for "
                    f"{key_id!r}, not a key record"
                )
            return result
        except AsherahError as e:
            error = type(e).__name__
            if isinstance(e, MetastoreError):
                raise
            raise MetastoreError(f"{self.metastore.kind} metastore: {key_id!r}: {e}") from e
        except Exception as e:
            error = type(e).__name__
            raise MetastoreError(
                f"{self.metastore.kind} metastore failed for {key_id!r}: {type(e).__name__}"
            ) from e
        finally:
            attributes = None if error is None else {"error.type": error}  # None: no attributes
            histogram.record(time.perf_counter() - start, attributes)  # type: ignore[attr-defined]

    def _kms_encrypt(self, key: bytes, sk_id: str) -> bytes:
        start = time.perf_counter()
        error: str | None = None
        try:
            wrapped = self.kms.encrypt_key(key)
            if not isinstance(wrapped, bytes) or not wrapped:
                raise KmsError(f"the KMS returned no wrapped key for system key {sk_id!r}")
            return wrapped
        except AsherahError as e:
            error = type(e).__name__
            raise
        except Exception as e:
            error = type(e).__name__
            raise KmsError(
                f"the KMS failed to wrap system key {sk_id!r}: {type(e).__name__}"
            ) from e
        finally:
            attributes = {} if error is None else {"error.type": error}
            self.metrics.kms_encrypt.record(time.perf_counter() - start, attributes)

    def _kms_decrypt(self, wrapped: bytes, meta: KeyMeta) -> bytes:
        start = time.perf_counter()
        error: str | None = None
        try:
            key = self.kms.decrypt_key(wrapped)
            if not isinstance(key, bytes | bytearray):
                raise KmsError(f"the KMS returned no key for system key {meta}")
            return bytes(key)
        except AsherahError as e:
            error = type(e).__name__
            raise
        except Exception as e:
            error = type(e).__name__
            raise KmsError(f"the KMS failed to unwrap system key {meta}: {type(e).__name__}") from e
        finally:
            attributes = {} if error is None else {"error.type": error}
            self.metrics.kms_decrypt.record(time.perf_counter() - start, attributes)

    def close(self) -> None:
        """Zero every cached key."""
        self.intermediate_keys.close()
        self.system_keys.close()
        self.metrics.retire(self.intermediate_keys)
        self.metrics.retire(self.system_keys)


def _why_not(record: EnvelopeKeyRecord, policy: CryptoPolicy, now: float) -> str:
    if record.revoked:
        return "revoked"
    if policy.is_expired(record.created, now):
        return "expired"
    return "unusable (its system key is revoked or expired)"


def _check_names(partition_id: object, service: object, product: object, suffix: object) -> None:
    """Check a partition's names (`_check_name`); the usual ones in one look."""
    if (
        type(partition_id) is str
        and type(service) is str
        and type(product) is str
        and partition_id
        and service
        and product
        and partition_id.isascii()
        and service.isascii()
        and product.isascii()
        and suffix is None
    ):
        return  # non-empty ASCII strings and no region suffix: nothing more to check
    _check_name(partition_id, "partition_id")
    _check_name(service, "service")
    _check_name(product, "product")
    if suffix is not None:
        _check_name(suffix, "region suffix")


def _check_name(value: object, what: str) -> None:
    if type(value) is str and value and value.isascii():  # the usual name: nothing to check
        return
    if not isinstance(value, str):
        raise SessionTypeError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise SessionError(f"{what} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SessionUnicodeError(what, e.start, e.end) from None
