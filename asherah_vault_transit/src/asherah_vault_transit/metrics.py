"""The OpenTelemetry instruments of the plugin; no cost beyond the API's no-ops without an SDK.

``ael.kms.vault.encryptkey`` and ``ael.kms.vault.decryptkey`` time each whole operation in
seconds, with ``error.type`` on failure, as the AWS plugin's ``ael.kms.aws.*`` do.
"""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Meter

from asherah_core.metrics import DurationHistograms

from ._version import __version__

__all__ = ["LATENCY_BUCKETS", "METER_NAME", "VaultMetrics"]

METER_NAME = "asherah_vault_transit"
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class VaultMetrics:
    """The operation histograms and the failover, retry and token counters."""

    def __init__(self, meter: Meter | None = None) -> None:
        self._meter = meter if meter is not None else metrics.get_meter(METER_NAME, __version__)
        histogram = DurationHistograms(self._meter, LATENCY_BUCKETS).get
        self.encrypt_key = histogram("ael.kms.vault.encryptkey", "encrypt_key, whole")
        self.decrypt_key = histogram("ael.kms.vault.decryptkey", "decrypt_key, whole")
        self.failovers: Counter = self._meter.create_counter(
            "ael.kms.vault.failover",
            unit="{failover}",
            description="Times a cluster failed and the operation moved on to the next one.",
        )
        self.retries: Counter = self._meter.create_counter(
            "ael.kms.vault.retry",
            unit="{retry}",
            description="Transit calls retried on the same cluster after a retryable failure.",
        )
        self.token_events: Counter = self._meter.create_counter(
            "ael.kms.vault.token",
            unit="{event}",
            description="Logins after a Transit call answered 403 (event=relogin).",
        )
