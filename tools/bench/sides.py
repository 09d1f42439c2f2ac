"""The two sides of the framework benchmark, built from one PascalCase configuration.

- *ours*: `asherah_core.SessionFactory`, from the same configuration through
  `asherah_core.appconfig.factory_arguments`, its metastore (and KMS) wrapped to count calls;
- *asherah*: the ``asherah`` package (Rust core) from PyPI, ``asherah.SessionFactory(config)``.

Both have ``get_session(partition)`` whose sessions have ``encrypt_bytes(bytes) -> str``,
``decrypt_bytes(str) -> bytes`` and their ``*_async`` coroutines. Imports are lazy: a child
process loads only the side it measures.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from asherah_core.metastore.base import Metastore

__all__ = [
    "MASTER_KEY_HEX",
    "OURS",
    "SIDES",
    "THEIRS",
    "Factory",
    "HookCounter",
    "SessionLike",
    "Side",
    "config",
    "make_factory",
    "metastore_rows",
    "pair_per_thread",
]

Side = Literal["ours", "asherah"]
OURS: Side = "ours"
THEIRS: Side = "asherah"
SIDES: tuple[Side, Side] = (OURS, THEIRS)
MASTER_KEY_HEX = "22" * 32
"""The static master key both sides use."""
SERVICE, PRODUCT = "bench", "framework"


class SessionLike(Protocol):
    """What both sides' sessions offer."""

    def encrypt_bytes(self, data: bytes, /) -> str: ...
    def decrypt_bytes(self, drr: str, /) -> bytes: ...
    def encrypt_bytes_async(self, data: bytes, /) -> Awaitable[str]: ...
    def decrypt_bytes_async(self, drr: str, /) -> Awaitable[bytes]: ...


class Factory(Protocol):
    """What both sides' session factories offer."""

    def get_session(self, partition_id: str, /) -> Any: ...
    def close(self) -> None: ...


def config(
    metastore: str,
    path: str | None = None,
    *,
    region_map: Mapping[str, str] | None = None,
    preferred: str | None = None,
) -> dict[str, Any]:
    """The ``asherah`` package's configuration: static KMS unless a region map is given."""
    cfg: dict[str, Any] = {
        "ServiceName": SERVICE,
        "ProductID": PRODUCT,
        "Metastore": metastore,
        "EnableSessionCaching": True,
    }
    if path is not None:
        cfg["ConnectionString"] = path
    if region_map:
        cfg |= {"KMS": "aws", "RegionMap": dict(region_map)}
        if preferred:
            cfg["PreferredRegion"] = preferred
    else:
        cfg |= {"KMS": "static", "StaticMasterKeyHex": MASTER_KEY_HEX}
    return cfg


class MetastoreCalls:
    """Counts of our metastore's calls, by method."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def reads(self) -> int:
        return self.counts["load"] + self.counts["load_latest"]

    def writes(self) -> int:
        return self.counts["store"]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


def _counting(inner: Metastore, calls: MetastoreCalls) -> Metastore:
    from asherah_core.metastore.base import Metastore  # noqa: PLC0415
    from asherah_core.records import EnvelopeKeyRecord  # noqa: PLC0415

    class Counting(Metastore):
        kind = inner.kind

        def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
            calls.add("load")
            return inner.load(key_id, created)

        def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
            calls.add("load_latest")
            return inner.load_latest(key_id)

        def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
            calls.add("store")
            return inner.store(key_id, created, record)

        @property
        def region_suffix(self) -> str | None:
            return inner.region_suffix

        def close(self) -> None:
            inner.close()

    return Counting()


def make_factory(
    side: Side, cfg: Mapping[str, Any], calls: MetastoreCalls | None = None
) -> Factory:
    """A session factory of `side` from `cfg`; ours counts its metastore calls in `calls`."""
    if side == THEIRS:
        import asherah  # noqa: PLC0415

        return asherah.SessionFactory(dict(cfg))
    from asherah_core import SessionFactory  # noqa: PLC0415
    from asherah_core.appconfig import factory_arguments  # noqa: PLC0415

    if calls is None:
        return SessionFactory.from_config(cfg)
    arguments = factory_arguments(cfg)
    arguments["metastore"] = _counting(arguments["metastore"], calls)
    service, product = arguments.pop("service"), arguments.pop("product")
    return SessionFactory(service, product, **arguments)


def metastore_rows(path: str) -> int:
    """Key rows in a SQLite metastore (the ``asherah`` package's drift-guard row not counted)."""
    with sqlite3.connect(path) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM encryption_key WHERE id NOT LIKE '\\_\\_asherah%' ESCAPE '\\'"
        ).fetchone()
    return int(count)


class HookCounter:
    """Counts the ``asherah`` package's metrics-hook events (``cache_miss`` and the like).

    The package reports no metastore or KMS call directly; a ``cache_miss`` is a metastore read.
    Events arrive asynchronously from a thread of its own: call `settle` before reading.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        if kind.startswith("cache"):
            with self._lock:
                self.counts[f"{kind} {event.get('name', '')}"] += 1

    def install(self) -> None:
        import asherah  # noqa: PLC0415

        asherah.set_metrics_hook(self)

    @staticmethod
    def uninstall() -> None:
        import asherah  # noqa: PLC0415

        asherah.set_metrics_hook(None)

    def settle(self) -> None:
        """Give the package's event thread time to deliver what it has queued."""
        import time  # noqa: PLC0415

        time.sleep(0.3)

    def misses(self) -> int:
        with self._lock:
            return sum(v for k, v in self.counts.items() if k.startswith("cache_miss"))

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


def pair_per_thread(factory: Factory, data: bytes) -> Callable[[], None]:
    """One encrypt and decrypt of `data` through the calling thread's own session of `factory`
    (its partition: the thread's name), made at the thread's first call."""
    local = threading.local()

    def pair() -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = factory.get_session(threading.current_thread().name)
        session.decrypt_bytes(session.encrypt_bytes(data))

    return pair
