"""The error types of asherah-core: one base class and a few specific kinds."""

from __future__ import annotations

__all__ = ["AsherahError", "ConfigError", "CryptoError", "KmsError", "PluginError"]


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
