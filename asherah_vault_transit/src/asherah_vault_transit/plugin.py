"""The ``asherah`` entry point of this distribution: registers the ``vault`` KMS."""

from __future__ import annotations

from asherah_core import RegisterKms, hookimpl

from .builder import kms_from_config
from .ciphertext import describe_ciphertext

NAMES = ("vault", "vault-transit")
"""The KMS names: ``vault`` and the Rust core's alias ``vault-transit``, for the same factory."""


@hookimpl
def asherah_register_kms(register: RegisterKms) -> None:
    """Register the Vault Transit KMS as ``vault`` and ``vault-transit``."""
    for name in NAMES:
        register(name, kms_from_config, describe=describe_ciphertext)
