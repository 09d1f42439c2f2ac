"""HashiCorp Vault / OpenBao Transit KMS for asherah-core, wire-compatible with the Rust
Asherah core's Vault KMS."""

from __future__ import annotations

from ._version import __version__
from .auth import Credentials, Lease
from .builder import kms_from_config
from .ciphertext import describe_ciphertext, key_version, parse_ciphertext
from .kms import VaultTransitKms
from .settings import AuthSettings, ClusterSettings, VaultTransitSettings, settings_from_config

__all__ = [
    "AuthSettings",
    "ClusterSettings",
    "Credentials",
    "Lease",
    "VaultTransitKms",
    "VaultTransitSettings",
    "__version__",
    "describe_ciphertext",
    "key_version",
    "kms_from_config",
    "parse_ciphertext",
    "settings_from_config",
]
