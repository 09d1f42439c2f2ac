"""The KMS itself: round trips, rotation, and every way a wrapped key can be wrong."""

from __future__ import annotations

import json

import pytest
from asherah_example_kms import KeyringKms, describe_keyring

from asherah_core import Aes256Gcm, ConfigError, KmsError

OLD, NEW = bytes([1]) * 32, bytes([2]) * 32


def keyring(current: str = "2025-01", **keys: bytes) -> KeyringKms:
    return KeyringKms(keys or {"2024-06": OLD, "2025-01": NEW}, current, Aes256Gcm())


def test_round_trip() -> None:
    kms = keyring()
    key = bytes(range(32))
    wrapped = kms.encrypt_key(key)
    assert json.loads(wrapped)["keyring"] == "2025-01"
    assert kms.decrypt_key(wrapped) == key


def test_keys_wrapped_before_a_rotation_still_unwrap() -> None:
    before = keyring("2024-06").encrypt_key(b"k" * 32)
    after = keyring("2025-01")
    assert after.decrypt_key(before) == b"k" * 32
    assert json.loads(after.encrypt_key(b"k" * 32))["keyring"] == "2025-01"


def test_a_retired_master_key_is_named_in_the_error() -> None:
    wrapped = keyring("2024-06").encrypt_key(b"k" * 32)
    with pytest.raises(KmsError, match=r"'2024-06', which is not configured \(configured: 2025"):
        keyring("2025-01", **{"2025-01": NEW}).decrypt_key(wrapped)


def test_tampering_is_detected() -> None:
    kms = keyring()
    document = json.loads(kms.encrypt_key(b"k" * 32))
    document["sealed"] = document["sealed"][:-8] + "AAAAAAA="
    with pytest.raises(KmsError, match="could not decrypt"):
        kms.decrypt_key(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("wrapped", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"sealed": "AAAA"}', "'keyring'"),
        (b'{"keyring": "../etc", "sealed": "AAAA"}', "'keyring'"),
        (b'{"keyring": "2025-01"}', "'sealed'"),
        (b'{"keyring": "2025-01", "sealed": "not base64!"}', "not valid base64"),
    ],
)
def test_malformed_input_is_a_kms_error(wrapped: bytes, problem: str) -> None:
    with pytest.raises(KmsError, match=problem):
        keyring().decrypt_key(wrapped)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(KmsError, match="empty"):
        keyring().encrypt_key(b"")


def test_constructor_checks_what_the_factory_checks() -> None:
    with pytest.raises(ConfigError, match="must be 32 bytes, got 3"):
        KeyringKms({"a": b"abc"}, "a", Aes256Gcm())
    with pytest.raises(ConfigError, match="'b' is not one of the keys"):
        KeyringKms({"a": OLD}, "b", Aes256Gcm())


def test_no_key_material_in_repr() -> None:
    text = repr(keyring())
    assert text == "KeyringKms(current='2025-01', keys=['2024-06', '2025-01'])"
    assert OLD.hex() not in text


def test_describe_summarises_its_own_format_only() -> None:
    wrapped = keyring().encrypt_key(b"k" * 32)
    assert describe_keyring(wrapped) == {
        "format": "example keyring",
        "key_id": "2025-01",
        "sealed_bytes": 60,  # 32-byte key + 16-byte tag + 12-byte nonce
    }
    assert describe_keyring(b'{"encryptedKey": "AAAA", "kmsKeks": []}') is None
    assert describe_keyring(b"\x00\x01binary") is None
    with pytest.raises(KmsError):
        describe_keyring(b'{"keyring": 7}')
