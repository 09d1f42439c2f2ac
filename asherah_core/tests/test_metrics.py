"""The OpenTelemetry instruments, read through the SDK's in-memory reader."""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from asherah_core import MetastoreError, SessionFactory
from asherah_core.metastore import InMemoryMetastore
from asherah_core.metrics import metrics_for

if TYPE_CHECKING:
    from conftest import CountingKms, FactoryMaker, FakeClock


def collect(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def count(points: list[Any], **attributes: Any) -> int:
    total = 0
    for point in points:
        if all(point.attributes.get(k) == v for k, v in attributes.items()):
            total += point.count if hasattr(point, "count") else point.value
    return total


def test_instruments_and_counts(kms: CountingKms, clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    factory = SessionFactory(
        "svc",
        "prod",
        kms=kms,
        metastore=InMemoryMetastore(),
        clock=clock,
        meter=provider.get_meter("test"),
    )
    with factory:
        texts = [factory.get_session(f"p{i % 2}").encrypt_bytes(b"x") for i in range(10)]
        cold = SessionFactory(
            "svc",
            "prod",
            kms=kms,
            metastore=factory.metastore,
            clock=clock,
            meter=provider.get_meter("test"),
        )
        for i, text in enumerate(texts):
            assert cold.get_session(f"p{i % 2}").decrypt_bytes(text) == b"x"
        metrics = collect(reader)
        cold.close()
    assert count(metrics["ael.drr.encrypt"]) == 10
    assert count(metrics["ael.drr.decrypt"]) == 10
    assert count(metrics["ael.kms.encryptkey"]) == 1
    assert count(metrics["ael.kms.decryptkey"]) == 1  # the cold factory unwraps the SK once
    assert count(metrics["ael.keys.created"], kind="system") == 1
    assert count(metrics["ael.keys.created"], kind="intermediate") == 2
    assert count(metrics["ael.metastore.memory.store"]) == 3
    assert count(metrics["ael.metastore.memory.loadlatest"]) == 3  # SK, IK p0, IK p1
    assert count(metrics["ael.metastore.memory.load"]) == 3  # the cold reader: 2 IKs, 1 SK
    assert count(metrics["ael.cache.hit"], cache="intermediate-key") == 8 + 8
    assert count(metrics["ael.cache.miss"], cache="intermediate-key") == 2 + 2
    assert count(metrics["ael.cache.stale"], cache="intermediate-key") == 0
    # the counters never go down once the caches are closed
    after = collect(reader)
    assert count(after["ael.cache.hit"], cache="intermediate-key") == 16


def test_stale_counts_revocation_checks(kms: CountingKms, clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with SessionFactory(
        "svc",
        "prod",
        kms=kms,
        metastore=InMemoryMetastore(),
        clock=clock,
        meter=provider.get_meter("test"),
    ) as factory:
        session = factory.get_session("p1")
        session.encrypt(b"x")
        clock.advance(3601)
        session.encrypt(b"x")
        assert count(collect(reader)["ael.cache.stale"], cache="intermediate-key") == 1


def test_metastore_errors_are_recorded_with_their_type(kms: CountingKms, clock: FakeClock) -> None:
    class Down(InMemoryMetastore):
        def load_latest(self, key_id: str) -> Any:
            raise ConnectionError("down")

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with (
        SessionFactory(
            "svc", "prod", kms=kms, metastore=Down(), clock=clock, meter=provider.get_meter("t")
        ) as factory,
        pytest.raises(MetastoreError),
    ):
        factory.get_session("p1").encrypt(b"x")
    points = collect(reader)["ael.metastore.memory.loadlatest"]
    assert count(points, **{"error.type": "ConnectionError"}) == 1


def test_row_metrics_off_keeps_every_instrument_but_the_row_histograms(
    make_factory: FactoryMaker,
) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    with make_factory(meter=meter, row_metrics=False) as factory:
        session = factory.get_session("p")
        assert session.decrypt_bytes(session.encrypt_bytes(b"x")) == b"x"
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert "ael.drr.encrypt" not in names
    assert "ael.drr.decrypt" not in names
    assert {"ael.keys.created", "ael.metastore.memory.store", "ael.kms.encryptkey"} <= names


def test_one_set_of_instruments_per_meter_kept_only_while_something_uses_it(
    kms: CountingKms,
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("test")
    first = SessionFactory("svc", "prod", kms=kms, metastore=InMemoryMetastore(), meter=meter)
    second = SessionFactory("svc", "prod", kms=kms, metastore=InMemoryMetastore(), meter=meter)
    assert first.keys.metrics is second.keys.metrics is metrics_for(meter)
    first.close()
    second.close()
    del first, second
    gc.collect()
    # The SDK still holds the instruments' callbacks: the meter keeps the same instruments.
    assert metrics_for(meter) is metrics_for(meter)
    meter_gone, instruments_gone = weakref.ref(meter), weakref.ref(metrics_for(meter))
    del meter, provider, reader
    gc.collect()
    assert meter_gone() is None  # nothing of ours kept the meter, its provider or instruments
    assert instruments_gone() is None
