"""The secrets-manager KMS's reading of a GetSecretValue response (no network)."""

from __future__ import annotations

import pytest

from asherah_aws_kms_v2.secrets_manager import master_key_from_secret
from asherah_core import KmsError


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
