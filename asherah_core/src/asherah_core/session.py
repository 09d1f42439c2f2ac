"""`SessionFactory` and `Session`: encrypt and decrypt data rows for one partition.

The hot path, a row whose intermediate key is cached, touches only the cache, the AEAD and the
JSON: no lock, no I/O, no thread hop (the coroutine versions run it inline). A miss goes to
`KeyHierarchy`, the only place that talks to the metastore and the KMS; the coroutine versions
run that part in a worker thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from opentelemetry.metrics import Meter

from . import _rows, entropy, rotation
from ._closing import ClosesOnExit
from ._tothread import to_thread
from .cache import CachedKey
from .errors import (
    ForeignRecordError,
    RecordUnicodeError,
    SessionError,
    SessionTypeError,
    SessionUnicodeError,
)
from .forksafe import new_locks_in_child
from .keys import KeyHierarchy, Partition
from .kms import KeyManagementService
from .metastore.base import Metastore
from .metrics import default_metrics, metrics_for
from .policy import CryptoPolicy
from .records import DataRowRecord, KeyMeta
from .rotation import RewrapResult

__all__ = ["Session", "SessionFactory"]

MAX_DATA_SIZE = 2**31 - 1
"""The largest payload AES-GCM here takes in one call (bytes)."""

_perf = time.perf_counter
_random_blocks = entropy.blocks
# Called unbound: a method looked up on a `threading.local` goes through its own attribute
# look-up and makes a bound method every time (about 0.1 to 0.2 µs of a warm encrypt).
_take_block = entropy.RandomBlocks.block
_ZERO_BLOCK = bytes(entropy.BLOCK_SIZE)
# (module names: the hot paths read them without an attribute look-up)
_open_latest = _rows.open_latest
_seal_row = _rows.seal


class SessionFactory(ClosesOnExit):
    """Makes sessions for the partitions of one service and product; owns the key caches.

    :param service: the service name (part of every key id).
    :param product: the product id (part of every key id).
    :param kms: wraps system keys (any `KeyManagementService`, for example from
        `load_kms_from_file`).
    :param metastore: where system and intermediate keys live, shared by every process.
    :param policy: expiry, revocation checks and caching; Asherah's defaults when omitted.
    :param clock: returns Unix time in seconds; injectable for tests.
    :param meter: the OpenTelemetry meter; the global provider's ``asherah_core`` by default.
    :param region_suffix: appended to key ids (DynamoDB global tables); by default what the
        metastore says (`Metastore.region_suffix`).
    :param strict_names: refuse a service, product or partition name holding ``_``: the key
        ids join the names with ``_``, so such names can share keys with other partitions
        (see `Partition.check_unambiguous`). Off by default, as in every Asherah.
    :param row_metrics: record ``ael.drr.encrypt`` / ``ael.drr.decrypt`` for every row. With an
        OpenTelemetry SDK installed one record costs about as much as a warm 1 KB encrypt, so a
        service that needs every microsecond may turn the per-row histograms off; the metastore,
        KMS, key and cache instruments stay.

    The factory takes ownership of `kms` and `metastore`: `close` closes them and zeroes every
    cached key. It is thread-safe and may be shared by every thread and task of the process.
    """

    def __init__(
        self,
        service: str,
        product: str,
        *,
        kms: KeyManagementService,
        metastore: Metastore,
        policy: CryptoPolicy | None = None,
        clock: Callable[[], float] | None = None,
        meter: Meter | None = None,
        region_suffix: str | None = None,
        row_metrics: bool = True,
        strict_names: bool = False,
    ) -> None:
        if not isinstance(kms, KeyManagementService):
            raise SessionError(f"kms must be a KeyManagementService, not {type(kms).__name__}")
        if not isinstance(metastore, Metastore):
            raise SessionError(f"metastore must be a Metastore, not {type(metastore).__name__}")
        policy = CryptoPolicy() if policy is None else policy
        if not isinstance(policy, CryptoPolicy):
            raise SessionError(f"policy must be a CryptoPolicy, not {type(policy).__name__}")
        self.service = service
        self.product = product
        self.policy = policy
        self.region_suffix = metastore.region_suffix if region_suffix is None else region_suffix
        if not isinstance(strict_names, bool):
            raise SessionError("strict_names must be True or False")
        self.strict_names = strict_names
        checked = Partition("check", service, product, self.region_suffix)  # validates the names
        if strict_names:
            checked.check_unambiguous()
        self._clock = clock if clock is not None else time.time
        self._metrics = metrics_for(meter) if meter is not None else default_metrics()
        if not isinstance(row_metrics, bool):
            raise SessionError("row_metrics must be True or False")
        self.row_metrics = row_metrics
        self._keys = KeyHierarchy(
            kms=kms, metastore=metastore, policy=policy, clock=self._clock, metrics=self._metrics
        )
        self._kms = kms
        self._metastore = metastore
        self._sessions = _SessionCache(policy, self._clock) if policy.cache_sessions else None
        if self._sessions is not None:
            self._metrics.watch(self._sessions)
        self._closed = False
        self._close_lock = threading.Lock()  # guards _closed only: renewed in a forked child
        new_locks_in_child(self, "_close_lock")

    @classmethod
    def from_config(
        cls, source: str | os.PathLike[str] | Mapping[str, Any], **overrides: Any
    ) -> SessionFactory:
        """Build a factory from ``plugins.toml`` or from the ``asherah`` package's configuration.

        :param source: a path to a TOML file with ``[asherah]`` (service, product, policy),
            ``[kms]`` and ``[metastore]`` tables; or a mapping with the PascalCase keys of the
            ``asherah`` PyPI package (``ServiceName``, ``ProductID``, ``Metastore``, ``KMS``, …).
        :param overrides: keyword arguments of `SessionFactory` that replace configured ones
            (for example ``clock=`` or ``meter=``).
        """
        from .appconfig import factory_arguments  # noqa: PLC0415 - config is not the hot path

        arguments = factory_arguments(source)
        for resource in ("kms", "metastore"):
            if resource in overrides and arguments.get(resource) is not None:
                arguments[resource].close()  # built from the file, then replaced
        arguments.update(overrides)
        service = arguments.pop("service")
        product = arguments.pop("product")
        try:
            return cls(service, product, **arguments)
        except BaseException:
            for resource in ("kms", "metastore"):
                if resource not in overrides and arguments.get(resource) is not None:
                    arguments[resource].close()
            raise

    @property
    def kms(self) -> KeyManagementService:
        """The KMS that wraps system keys."""
        return self._kms

    @property
    def metastore(self) -> Metastore:
        """The metastore of this factory."""
        return self._metastore

    @property
    def keys(self) -> KeyHierarchy:
        """The key hierarchy and its caches (for operators and tests)."""
        return self._keys

    def get_session(self, partition_id: str) -> Session:
        """Return a session for `partition_id` (the same one while cached, when enabled)."""
        if self._closed:
            raise SessionError("the session factory is closed")
        if self._sessions is not None:
            return self._sessions.get(partition_id, self._new_session)
        return self._new_session(partition_id, shared=False)

    def _new_session(self, partition_id: str, *, shared: bool) -> Session:
        partition = Partition(partition_id, self.service, self.product, self.region_suffix)
        if self.strict_names:
            partition.check_unambiguous()
        return Session(self, partition, shared=shared)

    def close(self) -> None:
        """Zero every cached key and close the KMS and the metastore. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._sessions is not None:
                self._sessions.clear()
                self._metrics.retire(self._sessions)
            self._keys.close()
        finally:
            try:
                self._kms.close()
            finally:
                self._metastore.close()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def __repr__(self) -> str:
        return (
            f"SessionFactory(service={self.service!r}, product={self.product!r}, "
            f"kms={self._kms!r}, metastore={self._metastore!r})"
        )


class _NoHistogram:
    """Stands in for the row histograms when `SessionFactory` has ``row_metrics=False``."""

    __slots__ = ()
    timed = False  # as `events.Tap.timed`: rows are not timed

    def record(self, amount: float, attributes: object = None) -> None:
        """Record nothing."""


_NO_HISTOGRAM = _NoHistogram()


class Session(ClosesOnExit):
    """Encrypts and decrypts the data rows of one partition. Thread-safe; cheap to make.

    ``encrypt*`` return a `DataRowRecord` (or its JSON text); ``decrypt*`` take one made by any
    Asherah implementation for the same partition, service and product.
    """

    __slots__ = (
        "_clock",
        "_closed",
        "_decrypt_hist",
        "_encrypt_hist",
        "_factory",
        "_ik_id",
        "_ik_keys",
        "_ik_latest",
        "_intermediate",
        "_keys",
        "_shared",
        "partition",
    )

    def __init__(self, factory: SessionFactory, partition: Partition, *, shared: bool) -> None:
        self._factory = factory
        self.partition = partition
        self._shared = shared
        self._closed = False
        self._keys = keys = factory.keys
        self._intermediate = intermediate = keys.intermediate_keys
        # The cache's dictionaries, read without a lock on the hot path.
        self._ik_latest = intermediate._latest
        self._ik_keys = intermediate._keys
        self._ik_id = partition.ik_id
        self._clock = keys.clock
        rows = factory.row_metrics
        self._encrypt_hist = keys.metrics.encrypt if rows else _NO_HISTOGRAM
        self._decrypt_hist = keys.metrics.decrypt if rows else _NO_HISTOGRAM

    @property
    def partition_id(self) -> str:
        """The partition this session encrypts for."""
        return self.partition.partition_id

    # Encrypt ------------------------------------------------------------------------------

    def encrypt(self, data: bytes | bytearray | memoryview) -> DataRowRecord:
        """Encrypt `data` and return the typed record."""
        text = self.encrypt_bytes(data)
        return DataRowRecord.from_json(text)

    def encrypt_bytes(self, data: bytes | bytearray | memoryview) -> str:
        """Encrypt `data` and return the `DataRowRecord` as compact JSON text."""
        start = _perf() if self._encrypt_hist.timed else None
        now = self._clock()
        entry = self._ik_latest.get(self._ik_id)
        if (
            entry is not None
            and now < entry.encrypt_until
            and not self._closed
            and (cipher := entry.aead) is not None
        ):
            self._intermediate.hits += 1  # the hot path: a cached key, no lock, no I/O
        else:
            entry, cipher = self._encrypting_key()
        return self._seal(data, entry, cipher, now, start)

    async def encrypt_bytes_async(self, data: bytes | bytearray | memoryview) -> str:
        """Coroutine version of `encrypt_bytes`; a cache hit runs inline, a miss in a worker."""
        start = _perf() if self._encrypt_hist.timed else None
        now = self._clock()
        entry = self._ik_latest.get(self._ik_id)
        if (
            entry is not None
            and now < entry.encrypt_until
            and not self._closed
            and (cipher := entry.aead) is not None
        ):
            self._intermediate.hits += 1
        else:
            entry, cipher = await self._encrypting_key_async()
        return self._seal(data, entry, cipher, now, start)

    async def encrypt_async(self, data: bytes | bytearray | memoryview) -> DataRowRecord:
        """Coroutine version of `encrypt`."""
        return DataRowRecord.from_json(await self.encrypt_bytes_async(data))

    def encrypt_text(self, text: str) -> str:
        """Encrypt the UTF-8 encoding of `text`; return the record's JSON text."""
        return self.encrypt_bytes(_utf8(text))

    async def encrypt_text_async(self, text: str) -> str:
        """Coroutine version of `encrypt_text`."""
        return await self.encrypt_bytes_async(_utf8(text))

    def _seal(
        self,
        data: bytes | bytearray | memoryview,
        entry: CachedKey,
        cipher: AESGCM,
        now: float,
        start: float | None,
    ) -> str:
        """The one sealing of a row (`_rows.seal`): a new row key and two nonces from this
        thread's random buffer (wiped once used), the data under the row key, the row key
        under `cipher`. Timed from `start` (`time.perf_counter`) unless it is `None`."""
        if type(data) is not bytes:
            data = _as_buffer(data)
        block = _take_block(_random_blocks)
        try:
            text = _seal_row(cipher, data, block, int(now), entry.row_middle)
        except OverflowError:
            raise SessionError(
                f"data is {len(data)} bytes; at most {MAX_DATA_SIZE} bytes per row"
            ) from None
        finally:
            block[0][:] = _ZERO_BLOCK  # the row key and nonces leave the buffer once used
        if start is not None:
            self._encrypt_hist.record(_perf() - start)
        return text

    # Decrypt ------------------------------------------------------------------------------

    def decrypt(self, record: DataRowRecord) -> bytes:
        """Decrypt a typed record made for this partition."""
        if not isinstance(record, DataRowRecord):
            raise SessionError(
                f"decrypt takes a DataRowRecord, not {type(record).__name__}; "
                "use decrypt_bytes for JSON text"
            )
        start = _perf() if self._decrypt_hist.timed else None
        meta = record.parent_key_meta
        entry, cipher = self._decrypting_key(meta.key_id, meta.created)
        return self._open(
            entry, cipher, *_rows.joined(record.key.encrypted_key, record.data), start
        )

    async def decrypt_async(self, record: DataRowRecord) -> bytes:
        """Coroutine version of `decrypt`."""
        if not isinstance(record, DataRowRecord):
            raise SessionError(
                f"decrypt takes a DataRowRecord, not {type(record).__name__}; "
                "use decrypt_bytes for JSON text"
            )
        start = _perf() if self._decrypt_hist.timed else None
        meta = record.parent_key_meta
        entry, cipher = await self._decrypting_key_async(meta.key_id, meta.created)
        return self._open(
            entry, cipher, *_rows.joined(record.key.encrypted_key, record.data), start
        )

    def decrypt_bytes(self, data_row_record: str | bytes | bytearray) -> bytes:
        """Decrypt a record's JSON text (from `encrypt_bytes` or any Asherah); the parameter's
        name is the ``asherah`` package's."""
        start = _perf() if self._decrypt_hist.timed else None
        entry = self._ik_latest.get(self._ik_id)
        if (
            entry is not None
            and not self._closed
            and (cipher := entry.aead) is not None
            and (data := _open_latest(data_row_record, entry.row_middle, cipher, entry.meta))
            is not None
        ):
            # The hot path: a row sealed by the partition's latest key, which is cached.
            self._intermediate.hits += 1
            self._opened(start)
            return data
        ik_id, created, sealed_key, sealed_data = _rows.parse_row(data_row_record)
        entry, cipher = self._decrypting_key(ik_id, created)
        return self._open(entry, cipher, *_rows.joined(sealed_key, sealed_data), start)

    async def decrypt_bytes_async(self, data_row_record: str | bytes | bytearray) -> bytes:
        """Coroutine version of `decrypt_bytes`; a cache hit runs inline, a miss in a worker."""
        start = _perf() if self._decrypt_hist.timed else None
        entry = self._ik_latest.get(self._ik_id)
        if (
            entry is not None
            and not self._closed
            and (cipher := entry.aead) is not None
            and (data := _open_latest(data_row_record, entry.row_middle, cipher, entry.meta))
            is not None
        ):
            self._intermediate.hits += 1
            self._opened(start)
            return data
        ik_id, created, sealed_key, sealed_data = _rows.parse_row(data_row_record)
        entry, cipher = await self._decrypting_key_async(ik_id, created)
        return self._open(entry, cipher, *_rows.joined(sealed_key, sealed_data), start)

    def decrypt_text(self, data_row_record: str | bytes | bytearray) -> str:
        """Decrypt a record's JSON text and decode the data as UTF-8."""
        return _from_utf8(self.decrypt_bytes(data_row_record))

    async def decrypt_text_async(self, data_row_record: str | bytes | bytearray) -> str:
        """Coroutine version of `decrypt_text`."""
        return _from_utf8(await self.decrypt_bytes_async(data_row_record))

    def _decrypting_key(self, ik_id: str, created: int) -> tuple[CachedKey, AESGCM]:
        """The intermediate key named by a row, with its cipher (a key evicted by another
        thread meanwhile stays whole while this call holds it: see cache.py)."""
        cached = self._cached_decrypting_key(ik_id, created)
        if cached is not None:
            return cached
        self._check_open()
        entry = self._keys.intermediate_key(KeyMeta(ik_id, created))
        return entry, entry.cipher()

    async def _decrypting_key_async(self, ik_id: str, created: int) -> tuple[CachedKey, AESGCM]:
        """Coroutine version of `_decrypting_key`: a miss loads the key in a worker thread."""
        cached = self._cached_decrypting_key(ik_id, created)
        if cached is not None:
            return cached
        self._check_open()
        entry = await to_thread(self._keys.intermediate_key, KeyMeta(ik_id, created))
        return entry, entry.cipher()

    def _cached_decrypting_key(self, ik_id: str, created: int) -> tuple[CachedKey, AESGCM] | None:
        """The cached key of this partition named by a row and its cipher (a hit), or `None`."""
        if ik_id != self._ik_id and not self.partition.owns(ik_id):
            raise self._foreign(ik_id)
        entry = self._ik_keys.get((ik_id, created))
        if entry is None or self._closed:
            return None
        cipher = entry.aead
        if cipher is None:
            return None
        self._intermediate.hits += 1
        return entry, cipher

    def _open(
        self, entry: CachedKey, cipher: AESGCM, sealed: bytes, key_end: int, start: float | None
    ) -> bytes:
        """Open a row (`_rows.open_row`) with `entry`'s `cipher`, and time the call."""
        data = _rows.open_row(cipher, sealed, key_end, entry.meta)
        self._opened(start)
        return data

    def _opened(self, start: float | None) -> None:
        """A row was opened; the call began at `start` (`time.perf_counter`), or was not
        timed (`None`)."""
        if start is not None:
            self._decrypt_hist.record(_perf() - start)

    def _foreign(self, ik_id: str) -> ForeignRecordError:
        return ForeignRecordError(
            f"invalid IK id {ik_id!r}: the record belongs to another partition, service or "
            f"product (this session's intermediate key is {self._ik_id!r}); nothing was decrypted"
        )

    # Rotation (rotation.py) ---------------------------------------------------------------

    def rewrap(self, record: str | bytes | bytearray) -> str:
        """Return the record with its row key sealed under the partition's current
        intermediate key; ``Data`` unchanged. A record already current comes back as it was.

        The old key may be revoked or expired (it still opens the row); the new record never
        names it, and it is checked to open before it is returned. Raises what `decrypt_bytes`
        raises for a record this session cannot open.
        """
        return rotation.rewrap(self, record)

    def rewrap_record(self, record: DataRowRecord) -> DataRowRecord:
        """Typed form of `rewrap`: the same object back when it is already current."""
        return rotation.rewrap_record(self, record)

    async def rewrap_async(self, record: str | bytes | bytearray) -> str:
        """Coroutine version of `rewrap`."""
        return await rotation.rewrap_async(self, record)

    async def rewrap_record_async(self, record: DataRowRecord) -> DataRowRecord:
        """Coroutine version of `rewrap_record`."""
        return await rotation.rewrap_record_async(self, record)

    def rewrap_many(self, records: Iterable[str | bytes | bytearray]) -> list[RewrapResult]:
        """`rewrap` each record; one that fails is reported in its `RewrapResult`."""
        return rotation.rewrap_many(self, records)

    async def rewrap_many_async(
        self, records: Iterable[str | bytes | bytearray]
    ) -> list[RewrapResult]:
        """Coroutine version of `rewrap_many`."""
        return await rotation.rewrap_many_async(self, records)

    def reencrypt(self, record: str | bytes | bytearray) -> str:
        """Return the record's data encrypted again: a new row key under the current
        intermediate key (for a row key that may have leaked); checked to open."""
        return rotation.reencrypt(self, record)

    def reencrypt_record(self, record: DataRowRecord) -> DataRowRecord:
        """Typed form of `reencrypt`."""
        return DataRowRecord.from_json(rotation.reencrypt(self, self._record_text(record)))

    async def reencrypt_async(self, record: str | bytes | bytearray) -> str:
        """Coroutine version of `reencrypt`."""
        return await rotation.reencrypt_async(self, record)

    async def reencrypt_record_async(self, record: DataRowRecord) -> DataRowRecord:
        """Coroutine version of `reencrypt_record`."""
        text = await rotation.reencrypt_async(self, self._record_text(record))
        return DataRowRecord.from_json(text)

    def _record_text(self, record: DataRowRecord) -> str:
        if not isinstance(record, DataRowRecord):
            raise SessionError(
                f"expected a DataRowRecord, not {type(record).__name__}; use the text form"
            )
        return record.to_json()

    def _current_key(self) -> tuple[CachedKey, AESGCM]:
        """The partition's current intermediate key and its cipher: the one an encrypt now
        uses (loaded, or made and stored when the latest is revoked or expired)."""
        self._check_open()
        entry = self._ik_latest.get(self._ik_id)
        if entry is not None and self._clock() < entry.encrypt_until:
            cipher = entry.aead
            if cipher is not None:
                return entry, cipher
        return self._encrypting_key()

    async def _current_key_async(self) -> tuple[CachedKey, AESGCM]:
        """Coroutine version of `_current_key`: a miss runs in a worker thread."""
        self._check_open()
        entry = self._ik_latest.get(self._ik_id)
        if entry is not None and self._clock() < entry.encrypt_until:
            cipher = entry.aead
            if cipher is not None:
                return entry, cipher
        return await self._encrypting_key_async()

    def _encrypting_key(self) -> tuple[CachedKey, AESGCM]:
        """The current key when the cached one would not do: loaded, or made and stored."""
        self._check_open()
        entry = self._keys.intermediate_key_for_encrypt(self.partition)
        return entry, entry.cipher()

    async def _encrypting_key_async(self) -> tuple[CachedKey, AESGCM]:
        """Coroutine version of `_encrypting_key`: the key hierarchy runs in a worker thread."""
        self._check_open()
        entry = await to_thread(self._keys.intermediate_key_for_encrypt, self.partition)
        return entry, entry.cipher()

    # Life cycle ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError(f"the session for partition {self.partition_id!r} is closed")
        if self._factory.closed:
            raise SessionError("the session factory is closed")

    def close(self) -> None:
        """End the session (a cached, shared session stays usable until evicted)."""
        if not self._shared:
            self._closed = True

    def __repr__(self) -> str:
        return f"Session(partition={self.partition_id!r}, ik={self._ik_id!r})"


class _SessionCache:
    """The optional session cache: at most N sessions, each dropped after the idle duration."""

    name = "session"

    def __init__(self, policy: CryptoPolicy, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._max = policy.session_cache_max_size
        self._ttl = policy.session_cache_duration.total_seconds()
        # Each statement under _lock leaves _sessions whole: a forked child renews the lock.
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, tuple[Session, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.stale = 0
        new_locks_in_child(self, "_lock")

    def get(self, partition_id: str, make: Callable[..., Session]) -> Session:
        now = self._clock()
        with self._lock:
            found = self._sessions.get(partition_id)
            if found is not None and now - found[1] < self._ttl:
                self._sessions[partition_id] = (found[0], now)
                self._sessions.move_to_end(partition_id)
                self.hits += 1
                return found[0]
            if found is not None:
                self.stale += 1
            else:
                self.misses += 1
            session = make(partition_id, shared=True)
            self._sessions[partition_id] = (session, now)  # a new key goes last by itself
            if found is not None:
                self._sessions.move_to_end(partition_id)
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
            return session

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


def _as_buffer(data: object) -> bytes | bytearray | memoryview:
    if isinstance(data, bytes | bytearray):  # (a subclass of bytes, such as numpy.bytes_)
        return data
    if isinstance(data, memoryview):
        if data.c_contiguous and data.format in ("B", "b", "c") and data.ndim == 1:
            return data
        try:
            return data.cast("B") if data.c_contiguous else data.tobytes()
        except TypeError:
            return data.tobytes()
    raise SessionTypeError(
        f"data must be bytes, bytearray or memoryview, not {type(data).__name__}"
        + ("; use encrypt_text for str" if isinstance(data, str) else "")
    )


def _utf8(text: object) -> bytes:
    if not isinstance(text, str):
        raise SessionTypeError(f"text must be str, not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SessionUnicodeError("text", e.start, e.end) from None


def _from_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordUnicodeError(e.start, e.end) from None
