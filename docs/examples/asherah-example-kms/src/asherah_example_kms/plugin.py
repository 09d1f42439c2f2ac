"""The ``asherah`` entry point of this distribution: only the hook implementation lives here."""

from __future__ import annotations

from asherah_core import RegisterKms, hookimpl

from .config import keyring_from_config
from .kms import describe_keyring


@hookimpl
def asherah_register_kms(register: RegisterKms) -> None:
    """Register the ``example-keyring`` KMS and its describer for ``asherah-kms inspect``."""
    register("example-keyring", keyring_from_config, describe=describe_keyring)
