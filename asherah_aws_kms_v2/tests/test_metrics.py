"""Metrics, read back with the OpenTelemetry SDK's in-memory reader."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics import MeterProvider

from asherah_aws_kms_v2.metrics import LATENCY_BUCKETS, METER_NAME, KmsMetrics
from asherah_core import KmsError

from .conftest import MakeKms, Metrics
from .fakes import FakeAws, FakeClock, client_error

KEY = b"k" * 32
PER_CALL = [
    "ael.kms.aws.generatedatakey.us-west-2",
    "ael.kms.aws.encrypt.eu-west-1",
    "ael.kms.aws.encrypt.us-east-1",
    "ael.kms.aws.decrypt.us-west-2",
]


def attributes(metrics: Metrics, name: str) -> list[dict[str, Any]]:
    return [dict(p.attributes or {}) for p in metrics.points(name)]


def test_operation_and_per_call_histograms_are_recorded_in_seconds(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, meter=metrics.meter)
    aws.delays["us-west-2"] = 0.05

    kms.decrypt_key(kms.encrypt_key(KEY))

    recorded = metrics.collect()
    for name in ["ael.kms.aws.encryptkey", "ael.kms.aws.decryptkey", *PER_CALL]:
        assert recorded[name].unit == "s", name
        (point,) = recorded[name].data.data_points
        assert point.count == 1, name
    assert 0.05 <= recorded["ael.kms.aws.generatedatakey.us-west-2"].data.data_points[0].sum < 1
    assert 0.05 <= recorded["ael.kms.aws.encryptkey"].data.data_points[0].sum < 2
    assert "ael.kms.aws.decrypt.eu-west-1" not in recorded


def test_per_call_histograms_carry_the_region_and_whole_operations_do_not(
    arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, meter=metrics.meter)

    kms.decrypt_key(kms.encrypt_key(KEY))

    for name in PER_CALL:
        region = name.rsplit(".", 1)[1]
        assert attributes(metrics, name) == [{"cloud.region": region}]
    assert attributes(metrics, "ael.kms.aws.encryptkey") == [{}]
    assert attributes(metrics, "ael.kms.aws.decryptkey") == [{}]


def test_failed_calls_carry_error_type(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, meter=metrics.meter)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", client_error("AccessDeniedException"))

    kms.decrypt_key(blob)

    assert attributes(metrics, "ael.kms.aws.decrypt.us-west-2") == [
        {"cloud.region": "us-west-2", "error.type": "AccessDeniedException"}
    ]
    assert attributes(metrics, "ael.kms.aws.decrypt.eu-west-1") == [{"cloud.region": "eu-west-1"}]
    assert attributes(metrics, "ael.kms.aws.decryptkey") == [{}]  # the operation succeeded


def test_a_failed_operation_carries_error_type(
    aws: FakeAws, make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms({"us-west-2": aws.create_key("us-west-2")}, meter=metrics.meter)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", client_error("DisabledException"))

    with pytest.raises(KmsError):
        kms.decrypt_key(blob)
    with pytest.raises(KmsError):
        kms.decrypt_key(b"not an envelope")

    assert sorted(
        a.get("error.type", "") for a in attributes(metrics, "ael.kms.aws.decryptkey")
    ) == [
        "DisabledException",
        "KmsError",
    ]


def test_histograms_use_the_kms_latency_buckets(
    arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, meter=metrics.meter)

    kms.decrypt_key(kms.encrypt_key(KEY))

    for name in ["ael.kms.aws.encryptkey", "ael.kms.aws.decryptkey", *PER_CALL]:
        (point,) = metrics.points(name)
        assert tuple(point.explicit_bounds) == LATENCY_BUCKETS, name


def test_failover_and_left_out_counters(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, meter=metrics.meter)
    aws.fail_next("us-west-2", "generate_data_key", client_error("AccessDeniedException"))
    aws.fail_next("us-east-1", "encrypt", client_error("DisabledException"))
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", client_error("AccessDeniedException"))
    kms.decrypt_key(blob)

    assert attributes(metrics, "ael.kms.aws.failover") == [
        {
            "cloud.region": "us-west-2",
            "error.type": "AccessDeniedException",
            "operation": "encrypt_key",
        },
        {
            "cloud.region": "us-west-2",
            "error.type": "AccessDeniedException",
            "operation": "decrypt_key",
        },
    ]
    assert metrics.count("ael.kms.aws.failover") == 2
    assert attributes(metrics, "ael.kms.aws.region.left_out") == [{"cloud.region": "us-east-1"}]
    assert metrics.count("ael.kms.aws.region.left_out") == 1


def test_health_change_counter_counts_each_change_once(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    clock = FakeClock()
    kms = make_kms(arns, meter=metrics.meter, clock=clock, sleep=clock.sleep)
    blob = kms.encrypt_key(KEY)
    aws.down["us-west-2"] = EndpointConnectionError(endpoint_url="https://kms")

    for _ in range(3):
        kms.decrypt_key(blob)
    del aws.down["us-west-2"]
    clock.advance(kms.settings.region_cooldown)
    for _ in range(3):
        kms.decrypt_key(blob)

    name = "ael.kms.aws.region.health_change"
    assert metrics.count(name, cloud_region="us-west-2", state="unhealthy") == 1
    assert metrics.count(name, cloud_region="us-west-2", state="healthy") == 1
    assert metrics.count(name) == 2


def test_retry_counter_names_region_and_error(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, meter=metrics.meter)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", *(client_error("ThrottlingException") for _ in range(2)))

    kms.decrypt_key(blob)

    assert metrics.count("ael.kms.aws.retry") == 2
    assert attributes(metrics, "ael.kms.aws.retry") == [
        {"cloud.region": "us-west-2", "error.type": "ThrottlingException"}
    ]
    # Each attempt is one measurement of the per-call histogram.
    assert metrics.count("ael.kms.aws.decrypt.us-west-2") == 3
    assert metrics.count("ael.kms.aws.decrypt.us-west-2", error_type="ThrottlingException") == 2


def test_hedge_counter(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, meter=metrics.meter, hedge_after=0.05)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.3

    kms.decrypt_key(blob)

    assert attributes(metrics, "ael.kms.aws.hedge") == [{"cloud.region": "eu-west-1"}]
    assert metrics.count("ael.kms.aws.hedge") == 1


def test_the_instruments_have_the_documented_names_and_units(metrics: Metrics) -> None:
    instruments = KmsMetrics(metrics.meter)
    instruments.encrypt_key.record(0.01)
    instruments.decrypt_key.record(0.01)
    instruments.kms_call("decrypt", "ap-south-1").record(0.01, {"cloud.region": "ap-south-1"})
    for counter in (
        instruments.failovers,
        instruments.regions_left_out,
        instruments.health_changes,
        instruments.retries,
        instruments.hedges,
    ):
        counter.add(1)

    recorded = metrics.collect()
    assert {name: m.unit for name, m in recorded.items()} == {
        "ael.kms.aws.encryptkey": "s",
        "ael.kms.aws.decryptkey": "s",
        "ael.kms.aws.decrypt.ap-south-1": "s",
        "ael.kms.aws.failover": "{failover}",
        "ael.kms.aws.region.left_out": "{region}",
        "ael.kms.aws.region.health_change": "{change}",
        "ael.kms.aws.retry": "{retry}",
        "ael.kms.aws.hedge": "{request}",
    }


def test_kms_call_histograms_are_made_once_per_name(metrics: Metrics) -> None:
    instruments = KmsMetrics(metrics.meter)

    assert instruments.kms_call("encrypt", "us-west-2") is instruments.kms_call(
        "encrypt", "us-west-2"
    )


def test_without_an_sdk_the_global_no_op_meter_is_used_and_everything_works(
    arns: dict[str, str], make_kms: MakeKms
) -> None:
    assert not isinstance(otel_metrics.get_meter_provider(), MeterProvider)
    kms = make_kms(arns, hedge_after=0.05)

    assert kms.decrypt_key(kms.encrypt_key(KEY)) == KEY
    with pytest.raises(KmsError):
        kms.decrypt_key(b"{}")


def test_the_default_meter_comes_from_the_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str | None]] = []
    real_get_meter = otel_metrics.get_meter

    def get_meter(name: str, version: str | None = None, *args: Any, **kwargs: Any) -> Any:
        asked.append((name, version))
        return real_get_meter(name, version, *args, **kwargs)

    monkeypatch.setattr(otel_metrics, "get_meter", get_meter)

    KmsMetrics()

    assert asked == [(METER_NAME, "0.1.0")]
