"""The OpenTelemetry instruments of the plugin; no cost beyond the API's no-ops without an SDK.

Names follow the Go and Java Asherah plugins (``ael.kms.aws.*``); durations are histograms in
seconds with ``cloud.region`` and, on failure, ``error.type``.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram, Meter

from asherah_core.metrics import DurationHistograms

from ._version import __version__

__all__ = ["LATENCY_BUCKETS", "METER_NAME", "KmsMetrics"]

METER_NAME = "asherah_aws_kms_v2"
# KMS calls take milliseconds to seconds; the SDK's default buckets start at 0 and jump to 5.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

_Attributes = Mapping[str, str]


class KmsMetrics:
    """Records operation and per-call durations and the failover, health and loss counters."""

    def __init__(self, meter: Meter | None = None) -> None:
        self._meter = meter if meter is not None else metrics.get_meter(METER_NAME, __version__)
        self._histogram = DurationHistograms(self._meter, LATENCY_BUCKETS).get
        self.encrypt_key = self._histogram("ael.kms.aws.encryptkey", "encrypt_key, whole")
        self.decrypt_key = self._histogram("ael.kms.aws.decryptkey", "decrypt_key, whole")
        self.failovers: Counter = self._meter.create_counter(
            "ael.kms.aws.failover",
            unit="{failover}",
            description="Times a region failed and the operation moved on to the next region.",
        )
        self.regions_left_out: Counter = self._meter.create_counter(
            "ael.kms.aws.region.left_out",
            unit="{region}",
            description="Regions left out of an envelope: their Encrypt failed, or they were "
            "skipped while cooling down.",
        )
        self.health_changes: Counter = self._meter.create_counter(
            "ael.kms.aws.region.health_change",
            unit="{change}",
            description="Regions moved to the back of the order (state=unhealthy) or back.",
        )
        self.retries: Counter = self._meter.create_counter(
            "ael.kms.aws.retry",
            unit="{retry}",
            description="KMS calls retried in the same region after a retryable failure.",
        )
        self.hedges: Counter = self._meter.create_counter(
            "ael.kms.aws.hedge",
            unit="{request}",
            description="Hedged decrypt requests sent because the earlier region was slow.",
        )

    def kms_call(self, operation: str, region: str) -> Histogram:
        """The histogram of one KMS operation in one region: ``ael.kms.aws.decrypt.us-west-2``."""
        return self._histogram(
            f"ael.kms.aws.{operation}.{region}", f"KMS {operation} calls in {region}"
        )


def attributes(region: str | None = None, error_type: str | None = None) -> _Attributes:
    """Build the attributes of a measurement: ``cloud.region`` and ``error.type`` when set."""
    result: dict[str, str] = {}
    if region is not None:
        result["cloud.region"] = region
    if error_type is not None:
        result["error.type"] = error_type
    return result
