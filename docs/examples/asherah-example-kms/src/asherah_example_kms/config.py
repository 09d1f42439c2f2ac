"""The plugin's factory: its ``plugins.toml`` table, validated, to a `KeyringKms`.

``[plugins.example-keyring]`` holds ``current`` (the key id that wraps new keys) and the table
``keys`` (key id = 64 hex digits). Values usually come from the environment, ``"${VAR}"``;
asherah-core substitutes them before the factory sees the table.
"""

from __future__ import annotations

from asherah_core import Aead, PluginConfig

from .kms import KEY_ID, MASTER_KEY_BYTES, KeyringKms

__all__ = ["keyring_from_config"]


def keyring_from_config(config: PluginConfig, crypto: Aead) -> KeyringKms:
    """Build the KMS from ``[plugins.example-keyring]``; `ConfigError` names the bad key."""
    config.check_keys({"current", "keys"})  # a typo fails here, not silently later
    table = config.get_table("keys", required=True)
    if not table:
        raise config.error("keys", "add at least one master key: <key id> = <64 hex digits>")
    keys: dict[str, bytes] = {}
    for key_id in table:
        if not KEY_ID.fullmatch(key_id):
            raise table.error(key_id, "a key id is 1 to 64 letters, digits, '.', '_' or '-'")
        text = table.get_str(key_id)
        try:
            master = bytes.fromhex(text)
        except ValueError:
            master = b""
        if len(master) != MASTER_KEY_BYTES:
            # table.error names the path and the variable it came from; never echo the value.
            raise table.error(key_id, "expected 64 hex digits (a 32-byte master key)")
        keys[key_id] = master
    current = config.get_str("current")
    if current not in keys:
        raise config.error("current", f"{current!r} is not one of keys: {', '.join(sorted(keys))}")
    return KeyringKms(keys, current, crypto)
