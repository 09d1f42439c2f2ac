"""Envelope encryption in the style of Asherah: sessions, the key hierarchy, metastores, AEAD,
the KMS interface and the plugin host."""

from __future__ import annotations

from .aead import Aead, Aes256Gcm
from .config import PluginConfig
from .errors import (
    AsherahError,
    ConfigError,
    CryptoError,
    ForeignRecordError,
    KeyNotFoundError,
    KmsError,
    MetastoreError,
    PluginError,
    RecordError,
    RecordTypeError,
    RecordUnicodeError,
    SessionError,
    SessionTypeError,
    SessionUnicodeError,
)
from .hookspecs import (
    EnvelopeDescriber,
    KmsFactory,
    MetastoreFactory,
    RegisterKms,
    RegisterMetastore,
    hookimpl,
)
from .kms import KeyManagementService, ProbeResult
from .plugins import (
    PluginHost,
    available_kms,
    available_metastores,
    load_kms,
    load_kms_from_file,
    load_metastore,
)
from .policy import CryptoPolicy
from .records import DataRowRecord, EnvelopeKeyRecord, KeyMeta
from .rotation import RewrapResult
from .session import Session, SessionFactory
from .static import StaticKms

__all__ = [
    "Aead",
    "Aes256Gcm",
    "AsherahError",
    "ConfigError",
    "CryptoError",
    "CryptoPolicy",
    "DataRowRecord",
    "EnvelopeDescriber",
    "EnvelopeKeyRecord",
    "ForeignRecordError",
    "KeyManagementService",
    "KeyMeta",
    "KeyNotFoundError",
    "KmsError",
    "KmsFactory",
    "MetastoreError",
    "MetastoreFactory",
    "PluginConfig",
    "PluginError",
    "PluginHost",
    "ProbeResult",
    "RecordError",
    "RecordTypeError",
    "RecordUnicodeError",
    "RegisterKms",
    "RegisterMetastore",
    "RewrapResult",
    "Session",
    "SessionError",
    "SessionFactory",
    "SessionTypeError",
    "SessionUnicodeError",
    "StaticKms",
    "available_kms",
    "available_metastores",
    "hookimpl",
    "load_kms",
    "load_kms_from_file",
    "load_metastore",
]

__version__ = "0.1.0"
