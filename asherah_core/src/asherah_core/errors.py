"""The error types of asherah-core: one base class and a few specific kinds."""

from __future__ import annotations

__all__ = [
    "AsherahError",
    "ConfigError",
    "CryptoError",
    "ForeignRecordError",
    "KeyNotFoundError",
    "KmsError",
    "MetastoreError",
    "PluginError",
    "RecordError",
    "RecordTypeError",
    "SessionError",
    "SessionTypeError",
]


class AsherahError(Exception):
    """Base class of every error raised by asherah-core and its plugins."""


class KmsError(AsherahError):
    """A key management service could not wrap or unwrap a key."""


class CryptoError(AsherahError):
    """An AEAD operation failed: wrong key length, short or tampered input."""


class ConfigError(AsherahError):
    """A configuration value is missing or invalid; the message names the key path."""


class PluginError(AsherahError):
    """A plugin failed to load or to register; the message names the plugin and distribution."""


class MetastoreError(AsherahError):
    """A metastore could not load or store a key record; the message names the metastore and
    the key id (never key bytes or a password from a connection URL)."""


class KeyNotFoundError(MetastoreError):
    """A key that a row or an intermediate key names is not in the metastore: deleted, or the
    row comes from another metastore."""


class RecordError(AsherahError):
    """A data row or key record is malformed: bad JSON, a missing or mistyped field, bad base64,
    or a ciphertext too short to be valid. The message names the field."""


class SessionError(AsherahError):
    """A session or factory was used wrongly: closed, another partition's row, bad argument."""


class ForeignRecordError(SessionError):
    """A row sealed for another partition, service or product: its intermediate key is not
    this session's. Nothing was decrypted, and no metastore or KMS call was made. The message
    begins with ``invalid IK id``, as the ``asherah`` package's does."""


class SessionTypeError(SessionError, TypeError):
    """An argument of the wrong type: ``None`` or a ``str`` where data, text or a partition id
    belongs. Also a `TypeError`, as the ``asherah`` package raises for these."""


class RecordTypeError(RecordError, TypeError):
    """A data row record that is not text at all (``None``, a number). Also a `TypeError`."""
