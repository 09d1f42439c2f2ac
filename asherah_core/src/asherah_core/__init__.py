"""Pluggable envelope encryption in the style of Asherah: AEAD, KMS interface, plugin host."""

from __future__ import annotations

from .aead import Aead, Aes256Gcm
from .config import PluginConfig
from .errors import AsherahError, ConfigError, CryptoError, KmsError, PluginError
from .hookspecs import EnvelopeDescriber, KmsFactory, RegisterKms, hookimpl
from .kms import KeyManagementService, ProbeResult
from .plugins import PluginHost, available_kms, load_kms, load_kms_from_file
from .static import StaticKms

__all__ = [
    "Aead",
    "Aes256Gcm",
    "AsherahError",
    "ConfigError",
    "CryptoError",
    "EnvelopeDescriber",
    "KeyManagementService",
    "KmsError",
    "KmsFactory",
    "PluginConfig",
    "PluginError",
    "PluginHost",
    "ProbeResult",
    "RegisterKms",
    "StaticKms",
    "available_kms",
    "hookimpl",
    "load_kms",
    "load_kms_from_file",
]

__version__ = "0.1.0"
