"""The ``asherah`` entry point of this distribution: registers the ``aws-v2`` and
``secrets-manager`` KMS."""

from __future__ import annotations

from asherah_core import RegisterKms, hookimpl

from .builder import kms_from_config
from .envelope import describe_envelope
from .secrets_manager import secrets_manager_kms_from_config


@hookimpl
def asherah_register_kms(register: RegisterKms) -> None:
    """Register the multi-region AWS KMS as ``aws-v2`` and the static master key read from
    Secrets Manager as ``secrets-manager``."""
    register("aws-v2", kms_from_config, describe=describe_envelope)
    register("secrets-manager", secrets_manager_kms_from_config)
