"""Fixtures of the asherah-aws-kms-v2 unit tests: the fake AWS account and KMS instances on it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric

from asherah_aws_kms_v2 import AwsKms, AwsKmsBuilder, AwsKmsSettings
from asherah_core import Aes256Gcm

from .fakes import FakeAws

# With us-west-2 preferred, the canonical order is us-west-2, eu-west-1, us-east-1.
REGIONS = ("us-west-2", "us-east-1", "eu-west-1")

MakeKms = Callable[..., AwsKms]


@pytest.fixture
def aws() -> FakeAws:
    """An empty fake AWS account."""
    return FakeAws()


@pytest.fixture
def arns(aws: FakeAws) -> dict[str, str]:
    """One ordinary (single-region) key in each of the three regions."""
    return {region: aws.create_key(region) for region in REGIONS}


@pytest.fixture
def make_kms(aws: FakeAws) -> Iterator[MakeKms]:
    """Build an `AwsKms` on the fake account; every instance is closed after the test.

    ``make_kms(arns, preferred="us-west-2", min_regions=…, hedge_after=…, …)`` goes through
    `AwsKmsBuilder` and ``with_kms_factory``; passing ``clock=`` or ``sleep=`` builds `AwsKms`
    directly from `AwsKmsSettings` (the builder does not take them). Retries default to a 1 ms
    base delay to keep the tests fast.
    """
    made: list[AwsKms] = []

    def make(
        arn_map: Mapping[str, str],
        *,
        preferred: str | None = "us-west-2",
        min_regions: int | str = 1,
        meter: Meter | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        **options: Any,
    ) -> AwsKms:
        if preferred not in arn_map:
            preferred = None
        options.setdefault("max_retries", 3)
        options.setdefault("retry_base_delay_ms", 1.0)
        if clock is not None or sleep is not None:
            settings = AwsKmsSettings.create(
                arn_map, preferred_region=preferred, min_regions=min_regions, **options
            )
            clients = {region: aws.client(region) for region in arn_map}
            kms = AwsKms(
                settings,
                Aes256Gcm(),
                clients,
                meter=meter,
                clock=clock or time.monotonic,
                sleep=sleep or time.sleep,
            )
        else:
            builder = AwsKmsBuilder(Aes256Gcm(), arn_map).with_kms_factory(aws.factory())
            if preferred is not None:
                builder.with_preferred_region(preferred)
            builder.with_min_regions(min_regions)  # type: ignore[arg-type]
            builder.with_retry_config(
                options.pop("max_retries"), options.pop("retry_base_delay_ms")
            )
            if meter is not None:
                builder.with_meter(meter)
            for name, value in options.items():
                getattr(builder, f"with_{name}")(value)
            kms = builder.build()
        made.append(kms)
        return kms

    yield make
    for kms in made:
        kms.close()


@pytest.fixture
def offline_boto3(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Let real boto3 clients be built without the user's AWS files, credentials or IMDS."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class Metrics:
    """An OpenTelemetry SDK meter whose measurements the test can read back."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.meter = self.provider.get_meter("asherah-aws-kms-v2-tests")

    def collect(self) -> dict[str, Metric]:
        """Every metric recorded so far, by name."""
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def points(self, name: str) -> list[Any]:
        metric = self.collect().get(name)
        return [] if metric is None else list(metric.data.data_points)

    def count(self, name: str, **attributes: str) -> int:
        """The sum of a counter (or a histogram's count) over points with these attributes."""
        total = 0
        for point in self.points(name):
            attrs = {k.replace(".", "_"): v for k, v in (point.attributes or {}).items()}
            if all(attrs.get(k) == v for k, v in attributes.items()):
                total += point.count if hasattr(point, "count") else point.value
        return int(total)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    """A meter backed by the SDK's in-memory reader; pass ``metrics.meter`` to the KMS."""
    m = Metrics()
    yield m
    m.provider.shutdown()
