"""The plugin's factory: a ``plugins.toml`` table to a built `VaultTransitKms`."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from asherah_core import Aead, ConfigError, PluginConfig

from .kms import VaultTransitKms
from .settings import settings_from_config

__all__ = ["kms_from_config"]


def kms_from_config(
    config: PluginConfig, crypto: Aead, *, environ: Mapping[str, str] | None = None
) -> VaultTransitKms:
    """Build the KMS from ``[plugins.vault]`` (and the ``VAULT_*`` variables for what it leaves
    out). `crypto` is not used: Vault does the wrapping."""
    del crypto
    settings = settings_from_config(config, environ)
    try:
        return VaultTransitKms(settings)
    except ssl.SSLError as e:  # a CA bundle or client certificate that does not load
        raise ConfigError(
            f"{config.source}: {config.path or 'plugins.vault'}: the TLS files (ca_cert, "
            f"client_cert, client_key) do not load: {e.reason or e}"
        ) from None
