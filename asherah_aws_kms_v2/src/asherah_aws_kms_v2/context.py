"""`KmsContext`: what every encrypt and decrypt call of one `AwsKms` shares, built once."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from asherah_core import Aead

from .dispatch import Dispatcher
from .errors import RegionCallError
from .metrics import KmsMetrics, attributes
from .regional import RegionalKey
from .regions import RegionHealth
from .settings import AwsKmsSettings

__all__ = ["KmsContext"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KmsContext:
    """The settings, the regional keys in canonical order, their Multi-Region groups and
    envelope entries, the health, the dispatcher and the instruments of one `AwsKms`."""

    settings: AwsKmsSettings
    crypto: Aead
    keys: Mapping[str, RegionalKey]
    order: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]]  # every region's, alone without MRK awareness
    entry_heads: Mapping[str, str]  # every region's envelope entry up to its blob
    health: RegionHealth
    dispatcher: Dispatcher
    metrics: KmsMetrics

    def failover(self, operation: str, error: RegionCallError) -> None:
        """Log and count a move from a failed region to the next."""
        logger.info("%s: %s; trying the next region", operation, error)
        self.metrics.failovers.add(
            1, {**attributes(error.region, error.error_type), "operation": operation}
        )
