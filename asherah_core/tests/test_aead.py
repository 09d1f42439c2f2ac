"""AES-256-GCM in Asherah's layout: ciphertext || tag || nonce, nonce appended."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from asherah_core import Aead, Aes256Gcm, CryptoError
from asherah_core.aead import KEY_SIZE, NONCE_SIZE, TAG_SIZE

KEY = bytes(range(32))


@pytest.fixture
def aead() -> Aes256Gcm:
    return Aes256Gcm()


def test_round_trip(aead: Aes256Gcm) -> None:
    sealed = aead.encrypt(b"attack at dawn", KEY)
    assert sealed != b"attack at dawn"
    assert aead.decrypt(sealed, KEY) == b"attack at dawn"


def test_is_an_aead() -> None:
    assert isinstance(Aes256Gcm(), Aead)
    assert (KEY_SIZE, NONCE_SIZE, TAG_SIZE) == (32, 12, 16)


def test_output_decrypts_with_plain_aesgcm_using_the_trailing_nonce(aead: Aes256Gcm) -> None:
    sealed = aead.encrypt(b"payload", KEY)
    nonce, ciphertext_and_tag = sealed[-12:], sealed[:-12]
    assert AESGCM(KEY).decrypt(nonce, ciphertext_and_tag, None) == b"payload"


def test_decrypts_plain_aesgcm_output_with_the_nonce_appended(aead: Aes256Gcm) -> None:
    nonce = os.urandom(12)
    foreign = AESGCM(KEY).encrypt(nonce, b"from another Asherah", None) + nonce
    assert aead.decrypt(foreign, KEY) == b"from another Asherah"


def test_nonce_is_not_prepended(aead: Aes256Gcm) -> None:
    nonce = os.urandom(12)
    prepended = nonce + AESGCM(KEY).encrypt(nonce, b"x" * 32, None)
    with pytest.raises(CryptoError):
        aead.decrypt(prepended, KEY)


def test_a_32_byte_key_seals_to_60_bytes(aead: Aes256Gcm) -> None:
    assert len(aead.encrypt(os.urandom(32), KEY)) == 60


def test_empty_plaintext_seals_to_tag_and_nonce(aead: Aes256Gcm) -> None:
    sealed = aead.encrypt(b"", KEY)
    assert len(sealed) == 28
    assert aead.decrypt(sealed, KEY) == b""


def test_nonces_differ_across_calls(aead: Aes256Gcm) -> None:
    sealed = [aead.encrypt(b"same", KEY) for _ in range(50)]
    assert len({s[-12:] for s in sealed}) == 50
    assert len(set(sealed)) == 50


def test_accepts_bytearray_and_memoryview(aead: Aes256Gcm) -> None:
    sealed = aead.encrypt(memoryview(b"data"), bytearray(KEY))
    assert aead.decrypt(bytearray(sealed), memoryview(KEY)) == b"data"


@pytest.mark.parametrize("length", [0, 16, 24, 31, 33, 64])
@pytest.mark.parametrize("operation", ["encrypt", "decrypt"])
def test_wrong_key_length(aead: Aes256Gcm, operation: str, length: int) -> None:
    with pytest.raises(CryptoError, match=f"32 bytes, got {length}"):
        getattr(aead, operation)(b"\0" * 40, b"k" * length)


@pytest.mark.parametrize("operation", ["encrypt", "decrypt"])
@pytest.mark.parametrize(("data", "key"), [("text", KEY), (b"\0" * 40, "k" * 32), (None, KEY)])
def test_non_bytes(aead: Aes256Gcm, operation: str, data: object, key: object) -> None:
    with pytest.raises(CryptoError, match="must be bytes"):
        getattr(aead, operation)(data, key)


@pytest.mark.parametrize("length", [0, 1, 12, 16, 27])
def test_input_shorter_than_tag_and_nonce(aead: Aes256Gcm, length: int) -> None:
    with pytest.raises(CryptoError, match=f"input is {length} bytes; .* at least 28"):
        aead.decrypt(b"\1" * length, KEY)


@pytest.mark.parametrize(
    "position",
    [0, 10, -29, -28, -13, -12, -1],
    ids=["ct0", "ct10", "ct-last", "tag0", "tag-last", "nonce0", "nonce-last"],
)
def test_tampering_anywhere_is_detected(aead: Aes256Gcm, position: int) -> None:
    sealed = bytearray(aead.encrypt(b"x" * 32, KEY))
    sealed[position] ^= 0x01
    with pytest.raises(CryptoError, match="authentication failed") as info:
        aead.decrypt(bytes(sealed), KEY)
    assert type(info.value.__cause__).__name__ == "InvalidTag"


def test_truncated_or_extended_input_is_detected(aead: Aes256Gcm) -> None:
    sealed = aead.encrypt(b"x" * 32, KEY)
    for broken in (sealed[1:], sealed[:-1], sealed + b"\0", b"\0" + sealed):
        with pytest.raises(CryptoError):
            aead.decrypt(broken, KEY)


def test_wrong_key(aead: Aes256Gcm) -> None:
    sealed = aead.encrypt(b"secret", KEY)
    with pytest.raises(CryptoError, match="wrong key, or the data was tampered with"):
        aead.decrypt(sealed, bytes(32))


def test_repr_shows_no_state() -> None:
    assert repr(Aes256Gcm()) == "Aes256Gcm()"


@given(data=st.binary(max_size=2048), key=st.binary(min_size=32, max_size=32))
def test_round_trip_property(data: bytes, key: bytes) -> None:
    aead = Aes256Gcm()
    sealed = aead.encrypt(data, key)
    assert len(sealed) == len(data) + 28
    assert aead.decrypt(sealed, key) == data
    assert AESGCM(key).decrypt(sealed[-12:], sealed[:-12], None) == data
