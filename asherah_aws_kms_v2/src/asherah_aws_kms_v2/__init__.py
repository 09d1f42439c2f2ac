"""Multi-region AWS KMS for asherah-core, wire-compatible with Asherah's AWS KMS envelope."""

from __future__ import annotations

from ._version import __version__
from .arn import KeyArn, parse_arn, same_multi_region_key
from .builder import AwsKmsBuilder, kms_from_config, new_aws_kms
from .clients import KmsClient, KmsClientFactory
from .envelope import Envelope, RegionalKek, describe_envelope, parse_envelope
from .kms import AwsKms
from .settings import AwsKmsSettings, RegionSettings

__all__ = [
    "AwsKms",
    "AwsKmsBuilder",
    "AwsKmsSettings",
    "Envelope",
    "KeyArn",
    "KmsClient",
    "KmsClientFactory",
    "RegionSettings",
    "RegionalKek",
    "__version__",
    "describe_envelope",
    "kms_from_config",
    "new_aws_kms",
    "parse_arn",
    "parse_envelope",
    "same_multi_region_key",
]
