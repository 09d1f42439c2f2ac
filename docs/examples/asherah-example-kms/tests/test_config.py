"""Settings validation: every error names the exact plugins.toml key, never a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asherah_example_kms import KeyringKms, keyring_from_config

from asherah_core import Aes256Gcm, ConfigError, PluginConfig, load_kms_from_file

HEX_OLD, HEX_NEW = "11" * 32, "22" * 32


def build(table: dict[str, Any], environ: dict[str, str] | None = None) -> KeyringKms:
    """Call the factory the way asherah-core does, with the table's path for messages."""
    config = PluginConfig(table, path="plugins.example-keyring", environ=environ or {})
    return keyring_from_config(config, Aes256Gcm())


def test_a_valid_table() -> None:
    kms = build({"current": "2025-01", "keys": {"2024-06": HEX_OLD, "2025-01": HEX_NEW}})
    assert kms.decrypt_key(kms.encrypt_key(b"k" * 32)) == b"k" * 32


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"current": "a"}, "plugins.example-keyring.keys: missing required table"),
        ({"current": "a", "keys": {}}, "plugins.example-keyring.keys: add at least one"),
        ({"keys": {"a": HEX_OLD}}, "plugins.example-keyring.current: missing required setting"),
        (
            {"current": "a", "keys": {"a": HEX_OLD}, "curent": "b"},
            "plugins.example-keyring.curent: unknown setting; expected one of current, keys",
        ),
        (
            {"current": "a", "keys": {"a": "abc"}},
            "plugins.example-keyring.keys.a: expected 64 hex digits",
        ),
        (
            {"current": "a", "keys": {"a": 7}},
            "plugins.example-keyring.keys.a: expected a string, got a number",
        ),
        (
            {"current": "b", "keys": {"a": HEX_OLD}},
            "plugins.example-keyring.current: 'b' is not one of keys: a",
        ),
        (
            {"current": "a", "keys": {"a b": HEX_OLD}},
            'plugins.example-keyring.keys."a b": a key id is',
        ),
    ],
)
def test_errors_name_the_key_path(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="^<mapping>: " + message.replace(".", r"\.")):
        build(table)


def test_a_bad_value_from_the_environment_names_the_variable_not_the_value() -> None:
    secret = "zz" + "11" * 31  # 64 characters, not hex
    with pytest.raises(ConfigError) as raised:
        build({"current": "a", "keys": {"a": "${KEYRING_A}"}}, {"KEYRING_A": secret})
    assert "keys.a (from $KEYRING_A): expected 64 hex digits" in str(raised.value)
    assert secret not in str(raised.value)


def test_plugins_toml_with_keys_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(
        """
        [kms]
        plugin = "example-keyring"

        [plugins.example-keyring]
        current = "${KEYRING_CURRENT:-2025-01}"

        [plugins.example-keyring.keys]
        2024-06 = "${KEYRING_2024_06}"
        2025-01 = "${KEYRING_2025_01}"
        """,
        encoding="utf-8",
    )
    monkeypatch.setenv("KEYRING_2024_06", HEX_OLD)
    monkeypatch.setenv("KEYRING_2025_01", HEX_NEW)
    with load_kms_from_file(config) as kms:
        assert isinstance(kms, KeyringKms)
        assert kms.decrypt_key(kms.encrypt_key(b"k" * 32)) == b"k" * 32

    monkeypatch.delenv("KEYRING_2025_01")
    with pytest.raises(ConfigError, match=r"keys\.2025-01: environment variable \$KEYRING_2025_01"):
        load_kms_from_file(config)
