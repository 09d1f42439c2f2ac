"""A row is timed only while its duration goes somewhere: an SDK's histogram or the metrics hook.

With the OpenTelemetry API alone (no SDK installed) the row histograms record nothing, so a
session reads no clock for a row; once an SDK is installed, or a hook set, every row is timed
again. These tests count the session's clock reads and read the SDK's figures.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from asherah_core import SessionFactory, compat, session
from asherah_core.metrics import when_recording

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import FactoryMaker


class ClockReads:
    """Counts the session's `time.perf_counter` reads."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> float:
        self.count += 1
        return float(self.count)


@pytest.fixture
def clock_reads(monkeypatch: pytest.MonkeyPatch) -> ClockReads:
    reads = ClockReads()
    monkeypatch.setattr(session, "_perf", reads)
    return reads


@pytest.fixture
def no_hook() -> Iterator[None]:
    compat.set_metrics_hook(None)
    yield
    compat.set_metrics_hook(None)


def _rows(factory: SessionFactory, count: int) -> None:
    one = factory.get_session("p")
    for n in range(count):
        text = one.encrypt_bytes(bytes([n]) * 10)
        assert one.decrypt_bytes(text) == bytes([n]) * 10


def _row_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    found = {"ael.drr.encrypt": 0, "ael.drr.decrypt": 0}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points: list[Any] = list(metric.data.data_points)  # histogram points
                if metric.name in found:
                    found[metric.name] += sum(point.count for point in points)
    return found


def test_with_the_api_alone_no_row_is_timed(
    clock_reads: ClockReads, no_hook: None, make_factory: FactoryMaker
) -> None:
    with make_factory(meter=NoOpMeterProvider().get_meter("test")) as factory:
        _rows(factory, 5)
    assert clock_reads.count == 0


def test_with_an_sdk_every_row_is_timed_and_recorded(
    clock_reads: ClockReads, no_hook: None, make_factory: FactoryMaker
) -> None:
    reader = InMemoryMetricReader()
    with make_factory(meter=MeterProvider(metric_readers=[reader]).get_meter("test")) as factory:
        _rows(factory, 5)
    assert clock_reads.count == 20  # two reads per row
    assert _row_counts(reader) == {"ael.drr.encrypt": 5, "ael.drr.decrypt": 5}


def test_a_proxy_meter_times_rows_from_when_its_sdk_is_installed(
    clock_reads: ClockReads, no_hook: None, make_factory: FactoryMaker
) -> None:
    """The API's proxy (what `metrics.get_meter` gives before `set_meter_provider`): rows
    before the SDK are not timed (the proxy would drop them), every row after it is."""
    proxies = _ProxyMeterProvider()
    with make_factory(meter=proxies.get_meter("test")) as factory:
        _rows(factory, 3)
        assert clock_reads.count == 0
        reader = InMemoryMetricReader()
        proxies.on_set_meter_provider(MeterProvider(metric_readers=[reader]))
        _rows(factory, 4)
        assert clock_reads.count == 16
        assert _row_counts(reader) == {"ael.drr.encrypt": 4, "ael.drr.decrypt": 4}


def test_a_hook_times_rows_while_it_is_set(
    clock_reads: ClockReads, no_hook: None, make_factory: FactoryMaker
) -> None:
    events: list[dict[str, Any]] = []
    with make_factory(meter=NoOpMeterProvider().get_meter("test")) as factory:
        _rows(factory, 2)
        assert clock_reads.count == 0
        compat.set_metrics_hook(events.append)
        _rows(factory, 3)
        assert clock_reads.count == 12
        durations = [e for e in events if e["type"] in ("encrypt", "decrypt")]
        assert len(durations) == 6
        assert all(e["duration_ns"] > 0 for e in durations)
        compat.set_metrics_hook(None)
        _rows(factory, 2)
        assert clock_reads.count == 12  # the API alone again


def test_row_metrics_off_times_no_row_even_with_an_sdk(
    clock_reads: ClockReads, no_hook: None, make_factory: FactoryMaker
) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    with make_factory(meter=meter, row_metrics=False) as factory:
        _rows(factory, 3)
    assert clock_reads.count == 0
    assert _row_counts(reader) == {"ael.drr.encrypt": 0, "ael.drr.decrypt": 0}


def test_when_recording_calls_back_now_later_or_never() -> None:
    calls: list[str] = []
    sdk = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("test")
    when_recording(sdk.create_histogram("h"), lambda: calls.append("sdk"))
    no_op = NoOpMeterProvider().get_meter("t")
    when_recording(no_op.create_histogram("h"), lambda: calls.append("no-op"))
    proxies = _ProxyMeterProvider()
    when_recording(proxies.get_meter("t").create_histogram("h"), lambda: calls.append("proxy"))
    assert calls == ["sdk"]
    proxies.on_set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    assert calls == ["sdk", "proxy"]
    installed = _ProxyMeterProvider()
    installed.on_set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    when_recording(installed.get_meter("t").create_histogram("h"), lambda: calls.append("set"))
    assert calls == ["sdk", "proxy", "set"]  # a proxy that has its SDK already records


def test_the_global_provider_set_after_the_factory_records_every_later_row() -> None:
    """The whole way, in a process of its own (the global provider is set once per process):
    a factory made with the default meter before `set_meter_provider` counts every row after."""
    script = textwrap.dedent(
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from asherah_core import SessionFactory, StaticKms
        from asherah_core.metastore import InMemoryMetastore

        factory = SessionFactory(
            "svc", "prod", kms=StaticKms(b"k" * 32), metastore=InMemoryMetastore()
        )
        one = factory.get_session("p")
        for _ in range(3):
            one.decrypt_bytes(one.encrypt_bytes(b"before"))
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        for _ in range(7):
            one.decrypt_bytes(one.encrypt_bytes(b"after"))
        counts = {}
        for resource in reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name.startswith("ael.drr."):
                        counts[metric.name] = sum(p.count for p in metric.data.data_points)
        print(sorted(counts.items()))
        factory.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[('ael.drr.decrypt', 7), ('ael.drr.encrypt', 7)]"


def test_a_proxy_shape_that_cannot_be_wrapped_is_timed_from_the_start() -> None:
    class SlottedProxy:
        __slots__ = ("_real_instrument",)

        def __init__(self) -> None:
            self._real_instrument = None

        def on_meter_set(self, meter: object) -> None:
            raise AssertionError("not called here")

        def record(self, amount: float, attributes: object = None) -> None:
            raise AssertionError("not called here")

    calls: list[str] = []
    when_recording(SlottedProxy(), lambda: calls.append("now"))  # type: ignore[arg-type]
    assert calls == ["now"]
