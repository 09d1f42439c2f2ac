"""An example KMS plugin for asherah-core: keys wrapped with named, rotatable master keys."""

from __future__ import annotations

from .config import keyring_from_config
from .kms import KeyringKms, describe_keyring

__all__ = ["KeyringKms", "__version__", "describe_keyring", "keyring_from_config"]

__version__ = "0.1.0"
