"""StaticKms: a fixed master key, byte-compatible with Asherah's static KMS."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from asherah_core import Aead, Aes256Gcm, ConfigError, CryptoError, KmsError, StaticKms

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"


@pytest.fixture
def kms() -> StaticKms:
    return StaticKms(MASTER_KEY)


def test_round_trip(kms: StaticKms) -> None:
    key = os.urandom(32)
    encrypted = kms.encrypt_key(key)
    assert key not in encrypted
    assert kms.decrypt_key(encrypted) == key


def test_wrapped_form_is_aes256gcm_of_the_key_under_the_master_key(kms: StaticKms) -> None:
    key = os.urandom(32)
    encrypted = kms.encrypt_key(key)
    assert len(encrypted) == 60
    assert AESGCM(MASTER_KEY).decrypt(encrypted[-12:], encrypted[:-12], None) == key


def test_unwraps_a_key_wrapped_by_another_asherah_static_kms(kms: StaticKms) -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    from_go = AESGCM(MASTER_KEY).encrypt(nonce, key, None) + nonce
    assert kms.decrypt_key(from_go) == key


def test_accepts_a_bytearray_master_key() -> None:
    kms = StaticKms(bytearray(MASTER_KEY))
    assert StaticKms(MASTER_KEY).decrypt_key(kms.encrypt_key(b"k" * 32)) == b"k" * 32


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_wrong_master_key_length(length: int) -> None:
    with pytest.raises(ConfigError, match=f"must be 32 bytes, got {length}"):
        StaticKms(b"m" * length)


def test_master_key_must_be_bytes() -> None:
    with pytest.raises(ConfigError, match="must be bytes, not str"):
        StaticKms(MASTER_KEY.decode())  # type: ignore[arg-type]


def test_decrypt_with_another_master_key_fails_with_chained_crypto_error(kms: StaticKms) -> None:
    encrypted = StaticKms(b"x" * 32).encrypt_key(os.urandom(32))
    with pytest.raises(KmsError, match="static KMS: could not decrypt") as info:
        kms.decrypt_key(encrypted)
    assert isinstance(info.value.__cause__, CryptoError)


@pytest.mark.parametrize("encrypted", [b"", b"short", b"\0" * 27])
def test_decrypt_of_short_input_is_a_kms_error(kms: StaticKms, encrypted: bytes) -> None:
    with pytest.raises(KmsError) as info:
        kms.decrypt_key(encrypted)
    assert isinstance(info.value.__cause__, CryptoError)


def test_decrypt_of_tampered_input(kms: StaticKms) -> None:
    encrypted = bytearray(kms.encrypt_key(os.urandom(32)))
    encrypted[0] ^= 1
    with pytest.raises(KmsError, match="authentication failed"):
        kms.decrypt_key(bytes(encrypted))


def test_encrypt_of_an_empty_key_fails(kms: StaticKms) -> None:
    with pytest.raises(KmsError, match="empty"):
        kms.encrypt_key(b"")


def test_encrypt_of_a_non_bytes_key_is_a_kms_error(kms: StaticKms) -> None:
    with pytest.raises(KmsError) as info:
        kms.encrypt_key("not bytes")  # type: ignore[arg-type]
    assert isinstance(info.value.__cause__, CryptoError)


def test_uses_the_given_aead() -> None:
    class Reversing(Aead):
        def encrypt(self, data: bytes, key: bytes) -> bytes:
            return b"rev:" + data[::-1]

        def decrypt(self, data: bytes, key: bytes) -> bytes:
            return data.removeprefix(b"rev:")[::-1]

    kms = StaticKms(MASTER_KEY, Reversing())
    assert kms.encrypt_key(b"abc") == b"rev:cba"
    assert kms.decrypt_key(b"rev:cba") == b"abc"


def test_repr_does_not_show_the_master_key(kms: StaticKms) -> None:
    assert MASTER_KEY.decode() not in repr(kms)
    assert repr(kms) == "StaticKms(crypto=Aes256Gcm())"


def test_context_manager_closes(recording_kms_type: type[Any]) -> None:
    with recording_kms_type() as kms:
        assert kms.closed == 0
    assert kms.closed == 1


def test_context_manager_closes_on_error(recording_kms_type: type[Any]) -> None:
    kms = recording_kms_type()
    with pytest.raises(RuntimeError), kms:
        raise RuntimeError("boom")
    assert kms.closed == 1


def test_static_kms_works_as_a_context_manager() -> None:
    with StaticKms(MASTER_KEY) as kms:
        assert kms.decrypt_key(kms.encrypt_key(b"k" * 32)) == b"k" * 32
    kms.close()  # closing twice is safe


def test_async_round_trip_with_static_kms(kms: StaticKms) -> None:
    async def scenario() -> bytes:
        encrypted = await kms.encrypt_key_async(b"k" * 32)
        assert Aes256Gcm().decrypt(encrypted, MASTER_KEY) == b"k" * 32
        return await kms.decrypt_key_async(encrypted)

    assert asyncio.run(scenario()) == b"k" * 32


def test_async_variants_run_off_the_event_loop_thread(recording_kms_type: type[Any]) -> None:
    kms = recording_kms_type()

    async def scenario() -> tuple[int, bytes]:
        loop_thread = threading.get_ident()
        encrypted = await kms.encrypt_key_async(b"key")
        return loop_thread, await kms.decrypt_key_async(encrypted)

    loop_thread, key = asyncio.run(scenario())
    assert key == b"key"
    assert len(kms.threads) == 2
    assert loop_thread not in kms.threads


def test_async_errors_propagate(kms: StaticKms) -> None:
    with pytest.raises(KmsError):
        asyncio.run(kms.decrypt_key_async(b"\0" * 60))


def test_async_calls_run_concurrently(recording_kms_type: type[Any]) -> None:
    started = threading.Barrier(2, timeout=5)

    class Blocking(recording_kms_type):  # type: ignore[misc,valid-type]
        def encrypt_key(self, key: bytes) -> bytes:
            started.wait()  # both calls must be in flight at once, or this times out
            return super().encrypt_key(key)

    kms = Blocking()

    async def scenario() -> list[bytes]:
        return list(await asyncio.gather(kms.encrypt_key_async(b"a"), kms.encrypt_key_async(b"b")))

    assert len(asyncio.run(scenario())) == 2
    assert len(set(kms.threads)) == 2
