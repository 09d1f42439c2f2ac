"""The framework's OpenTelemetry instruments; the API's no-ops cost next to nothing without an SDK.

Names follow the anchors (``ael.drr.encrypt``, ``ael.metastore.sql.load``); durations are
histograms in seconds. Cache events are counted with plain integers on the hot path and
reported through observable counters, so a cache hit pays no metrics call. A row is timed only
while its duration goes somewhere (`when_recording`): with no SDK installed and no metrics hook
set, a session reads no clock for it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    NoOpHistogram,
    Observation,
)

from . import events
from .forksafe import Lock, new_locks_in_child

__all__ = [
    "LATENCY_BUCKETS",
    "METER_NAME",
    "CacheStats",
    "FrameworkMetrics",
    "metrics_for",
    "when_recording",
]

METER_NAME = "asherah_core"
# A row takes microseconds; a metastore or KMS call milliseconds to seconds.
LATENCY_BUCKETS = (
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class CacheStats(Protocol):
    """What a cache exposes to the observable counters."""

    name: str
    hits: int
    misses: int
    stale: int


class DurationHistograms:
    """Duration histograms (unit ``s``) by name, each made once on first use; thread-safe.

    Shared by the framework's and the plugins' instruments, each with its own bucket advice.
    """

    def __init__(self, meter: Meter, buckets: Sequence[float]) -> None:
        self._meter = meter
        self._buckets = list(buckets)
        self._lock = threading.Lock()  # a forked child renews it: one dict write under it
        self._histograms: dict[str, Histogram] = {}
        new_locks_in_child(self, "_lock")

    def get(self, name: str, what: str) -> Histogram:
        """The histogram `name` ("Duration of `what`."), made if it does not exist yet."""
        histogram = self._histograms.get(name)
        if histogram is None:
            with self._lock:
                histogram = self._histograms.get(name)
                if histogram is None:
                    histogram = self._meter.create_histogram(
                        name,
                        unit="s",
                        description=f"Duration of {what}.",
                        explicit_bucket_boundaries_advisory=self._buckets,
                    )
                    self._histograms[name] = histogram
        return histogram


def when_recording(histogram: Histogram, start: Callable[[], None]) -> None:
    """Call `start` once `histogram` records what it is given: now; or, for the API's proxy
    instrument (made before an SDK was installed), when an SDK is installed; never for the
    API's no-op instrument.

    The proxy tells no one when it gets its SDK instrument: its meter calls its
    ``on_meter_set`` then, the API's own protocol between its proxy classes, and that call is
    wrapped here. An instrument of any other shape is taken to record from the start.
    """
    if isinstance(histogram, NoOpHistogram):
        return
    on_meter_set = getattr(histogram, "on_meter_set", None)
    if callable(on_meter_set) and hasattr(histogram, "_real_instrument"):

        def installed(meter: Meter) -> None:
            on_meter_set(meter)
            start()

        # Wrapped before the check below: an SDK installed between the two still calls it.
        try:
            setattr(histogram, "on_meter_set", installed)  # noqa: B010 - an instance attribute
        except AttributeError:  # a proxy with slots: time every row
            pass
        else:
            if getattr(histogram, "_real_instrument", None) is None:
                return
    start()


class FrameworkMetrics:
    """Histograms of rows, metastore and KMS calls; counters of keys created and cache events."""

    def __init__(self, meter: Meter | None = None) -> None:
        self._meter = meter if meter is not None else metrics.get_meter(METER_NAME)
        self._lock = threading.Lock()  # a forked child renews it: see forksafe
        new_locks_in_child(self, "_lock")
        self._histogram = DurationHistograms(self._meter, LATENCY_BUCKETS).get
        self._caches: weakref.WeakSet[CacheStats] = weakref.WeakSet()
        self._retired: dict[tuple[str, str], int] = {}
        # The counts last reported to the metrics hook, per live cache (under _lock).
        self._reported: weakref.WeakKeyDictionary[CacheStats, tuple[int, int, int]] = (
            weakref.WeakKeyDictionary()
        )
        self.encrypt = self._row_tap("ael.drr.encrypt", "encrypt")
        self.decrypt = self._row_tap("ael.drr.decrypt", "decrypt")
        events.watch_installs(self)
        self.kms_encrypt = self._histogram("ael.kms.encryptkey", "one KMS encrypt_key (system key)")
        self.kms_decrypt = self._histogram("ael.kms.decryptkey", "one KMS decrypt_key (system key)")
        self.keys_created: Counter = self._meter.create_counter(
            "ael.keys.created",
            unit="{key}",
            description="System and intermediate keys created and stored by this process "
            "(kind=system or intermediate).",
        )
        self.store_conflicts: Counter = self._meter.create_counter(
            "ael.keys.store_conflict",
            unit="{key}",
            description="New keys thrown away because another process stored one first.",
        )
        for event, what in (("hit", "hits"), ("miss", "misses"), ("stale", "stale")):
            self._meter.create_observable_counter(
                f"ael.cache.{event}",
                callbacks=[self._observe(what)],
                unit="{lookup}",
                description=f"Key and session cache {what} (cache=system-key, "
                "intermediate-key or session).",
            )

    def _row_tap(self, name: str, kind: str) -> events.Tap:
        """The histogram of one row's `kind` (encrypt or decrypt), timed once it records."""
        histogram = self._histogram(name, f"one {kind} of a data row")
        tap = events.Tap(histogram, kind, self._report_caches, heard=False)
        when_recording(histogram, tap.hear)
        return tap

    def watch(self, cache: CacheStats) -> None:
        """Report `cache`'s counts while it lives."""
        self._caches.add(cache)

    def retire(self, cache: CacheStats) -> None:
        """Keep `cache`'s counts after it closes, so the counters never go down."""
        with self._lock:
            if cache in self._caches:
                self._caches.discard(cache)
                for attribute in ("hits", "misses", "stale"):
                    key = (cache.name, attribute)
                    self._retired[key] = self._retired.get(key, 0) + getattr(cache, attribute)

    def metastore(self, kind: str, operation: str) -> events.Tap:
        """The histogram ``ael.metastore.<kind>.<operation>`` (load, loadlatest, store)."""
        return events.Tap(
            self._histogram(f"ael.metastore.{kind}.{operation}", f"metastore {operation}"),
            "store" if operation == "store" else "load",
        )

    def rebase(self) -> None:
        """Count cache events for a newly installed metrics hook from now on."""
        with self._lock:
            for cache in list(self._caches):
                self._reported[cache] = (cache.hits, cache.misses, cache.stale)

    def _report_caches(self, hook: events.Hook) -> None:
        """Send the hook one event per cache hit, miss and stale entry since the last report."""
        found: list[tuple[str, str]] = []
        with self._lock:
            for cache in list(self._caches):
                now = (cache.hits, cache.misses, cache.stale)
                before = self._reported.get(cache, (0, 0, 0))
                self._reported[cache] = now
                for kind, count, seen in zip(_CACHE_EVENTS, now, before, strict=True):
                    found.extend([(kind, cache.name)] * max(0, count - seen))
        for kind, name in found:
            events.deliver(hook, {"type": kind, "name": name})

    def _observe(self, attribute: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterator[Observation]:
            with self._lock:
                totals = {name: n for (name, what), n in self._retired.items() if what == attribute}
                caches = list(self._caches)
            for cache in caches:
                totals[cache.name] = totals.get(cache.name, 0) + getattr(cache, attribute)
            for name, value in totals.items():
                yield Observation(value, {"cache": name})

        return callback


_CACHE_EVENTS = ("cache_hit", "cache_miss", "cache_stale")

_default: FrameworkMetrics | None = None
_default_lock = Lock()  # (forksafe: unlocked in a forked child)


def default_metrics() -> FrameworkMetrics:
    """The process-wide instruments from the global meter provider, made on first use."""
    global _default  # noqa: PLW0603 - one set of instruments per process
    with _default_lock:
        if _default is None:
            _default = FrameworkMetrics()
        return _default


# Both ways weak: a `FrameworkMetrics` holds its meter, so a strong value would keep every
# meter ever passed (and its provider's instruments) for the life of the process. The
# instruments live as long as a factory holds them, or an SDK holds their callbacks (as long
# as its provider lives): while they live, the same meter gets the same instruments.
_by_meter: weakref.WeakKeyDictionary[Meter, weakref.ref[FrameworkMetrics]] = (
    weakref.WeakKeyDictionary()
)


def metrics_for(meter: Meter) -> FrameworkMetrics:
    """The instruments on `meter`, made once per meter and shared by every factory using it.

    An SDK keeps the first instrument of a name and drops a second one's callbacks, so a second
    set of instruments on one meter would lose its cache counts.
    """
    with _default_lock:
        try:
            known = _by_meter.get(meter)
        except TypeError:  # a meter that cannot be weakly referenced
            return FrameworkMetrics(meter)
        found = known() if known is not None else None
        if found is None:
            found = FrameworkMetrics(meter)
            _by_meter[meter] = weakref.ref(found)
        return found
