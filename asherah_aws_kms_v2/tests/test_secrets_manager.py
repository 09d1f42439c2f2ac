"""The secrets-manager KMS's reading of a GetSecretValue response (no network)."""

from __future__ import annotations

import pytest

from asherah_aws_kms_v2.secrets_manager import (
    master_key_from_secret,
    secrets_manager_kms_from_config,
)
from asherah_core import Aes256Gcm, ConfigError, KmsError, PluginConfig


@pytest.mark.parametrize(
    "response",
    [
        {"SecretString": "01" * 32},
        {"SecretString": "0x" + "01" * 32},
        {"SecretString": " 0101 " * 16 + "\n"},
        {"SecretBinary": b"\x01" * 32},
    ],
)
def test_hex_text_or_raw_bytes(response: dict[str, object]) -> None:
    assert master_key_from_secret(response, "s") == b"\x01" * 32


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        ({"SecretString": "zz" * 32}, "not hex"),
        ({"SecretString": "01" * 31}, "31 bytes"),
        ({"SecretBinary": b"\x01" * 33}, "33 bytes"),
        ({}, "neither SecretString nor SecretBinary"),
    ],
)
def test_bad_secrets_say_why_without_the_value(response: dict[str, object], problem: str) -> None:
    with pytest.raises(KmsError, match=problem) as raised:
        master_key_from_secret(response, "name")
    assert "zz" not in str(raised.value)
    assert "0101" not in str(raised.value)


SECRET = "S3cretPassw0rd"


@pytest.mark.parametrize(
    ("endpoint", "problem"),
    [
        (f"https://proxyuser:{SECRET}@secrets_proxy.internal", "credentials do not belong"),
        (f"https://proxyuser:{SECRET}@secrets.internal", "credentials do not belong"),
        (f"https://u:{SECRET}@[secrets.internal", "(not shown)"),
        ("https://secrets_proxy.internal", "botocore refuses the host of 'https://secrets_proxy"),
        ("https://secrets.internal:99999", "expected an http:// or https:// URL"),
        ("secrets.internal", "expected an http:// or https:// URL"),
    ],
)
def test_a_bad_endpoint_names_the_setting_and_never_its_credentials(
    endpoint: str, problem: str
) -> None:
    config = PluginConfig(
        {"secret_id": "asherah/master", "region": "us-east-1", "endpoint": endpoint},
        path="plugins.secrets-manager",
        source="plugins.toml",
    )
    with pytest.raises(ConfigError) as caught:
        secrets_manager_kms_from_config(config, Aes256Gcm())
    message = str(caught.value)
    assert message.startswith("plugins.toml: plugins.secrets-manager.endpoint: ")
    assert problem in message
    assert SECRET not in message
