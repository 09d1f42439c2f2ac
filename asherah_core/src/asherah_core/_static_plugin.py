"""The built-in ``static`` KMS plugin, registered through the same hook as third-party ones."""

from __future__ import annotations

import base64
import binascii

from .aead import Aead
from .config import PluginConfig
from .errors import ConfigError
from .hookspecs import RegisterKms, hookimpl
from .kms import KeyManagementService
from .static import StaticKms

_KEYS = ("master_key", "master_key_hex", "master_key_base64")


@hookimpl
def asherah_register_kms(register: RegisterKms) -> None:
    """Register the static KMS under the name ``static``."""
    register("static", static_kms_from_config)


def static_kms_from_config(config: PluginConfig, crypto: Aead) -> KeyManagementService:
    """Build a `StaticKms` from ``[plugins.static]``: exactly one form of a 32-byte master key.

    ``master_key`` is a 32-character text key (Asherah's examples use one), ``master_key_hex``
    64 hex digits, ``master_key_base64`` standard base64.
    """
    config.check_keys(_KEYS)
    given = [k for k in _KEYS if k in config]
    if len(given) != 1:
        raise ConfigError(
            f"{config.source}: {config.path or 'plugins.static'}: set exactly one of "
            f"{', '.join(_KEYS)} (found {len(given)})"
        )
    key_name = given[0]
    text = config.get_str(key_name)
    try:
        if key_name == "master_key_hex":
            master = bytes.fromhex(text)
        elif key_name == "master_key_base64":
            master = base64.b64decode(text, validate=True)
        else:
            master = text.encode("utf-8")
    except (ValueError, binascii.Error):
        raise config.error(key_name, "not valid for its encoding") from None
    if len(master) != 32:
        raise config.error(key_name, f"the master key must be 32 bytes, got {len(master)}")
    try:
        return StaticKms(master, crypto)
    except ConfigError as e:
        raise config.error(key_name, str(e)) from None
