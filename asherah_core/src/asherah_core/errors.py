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
    "RecordUnicodeError",
    "SessionError",
    "SessionTypeError",
    "SessionUnicodeError",
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


class SessionUnicodeError(SessionError, UnicodeEncodeError):
    """A text or name that UTF-8 cannot encode: it holds a lone surrogate. Also a
    `UnicodeEncodeError` (so a `ValueError`), as the ``asherah`` package raises for these.

    `what` names the text (``text``, ``partition_id``…); ``start`` and ``end`` locate the first
    surrogate; ``object`` is empty, because the text may be plaintext, which no error of ours
    holds."""

    def __init__(self, what: str, start: int, end: int) -> None:
        message = f"{what} is not valid Unicode (a lone surrogate at index {start})"
        UnicodeEncodeError.__init__(self, "utf-8", "", start, end, message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.reason


class RecordUnicodeError(RecordError, UnicodeDecodeError):
    """Decrypted data asked for as text that is not UTF-8. Also a `UnicodeDecodeError` (so a
    `ValueError`), as the ``asherah`` package raises. ``start`` and ``end`` locate the first
    bad byte; ``object`` is empty, because the data is plaintext, which no error of ours holds."""

    def __init__(self, start: int, end: int) -> None:
        message = f"the decrypted data is not valid UTF-8 (at byte {start}); use decrypt_bytes"
        UnicodeDecodeError.__init__(self, "utf-8", b"", start, end, message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.reason
