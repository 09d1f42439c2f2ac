"""The KeyManagementService interface: abstract methods, the default health probe."""

from __future__ import annotations

import dataclasses

import pytest

from asherah_core import KeyManagementService, KmsError, ProbeResult


class XorKms(KeyManagementService):
    def encrypt_key(self, key: bytes) -> bytes:
        return bytes(b ^ 0xFF for b in key)

    def decrypt_key(self, encrypted: bytes) -> bytes:
        return bytes(b ^ 0xFF for b in encrypted)


class UnreachableKms(XorKms):
    def encrypt_key(self, key: bytes) -> bytes:
        raise KmsError("us-west-2: could not reach KMS")


class LossyKms(XorKms):
    def decrypt_key(self, encrypted: bytes) -> bytes:
        return b"\0" * len(encrypted)


class BuggyKms(XorKms):
    def decrypt_key(self, encrypted: bytes) -> bytes:
        raise TypeError("plugin bug")


class OnlyEncrypt(KeyManagementService):
    def encrypt_key(self, key: bytes) -> bytes:
        return key


def test_abstract_methods_are_enforced() -> None:
    with pytest.raises(TypeError, match="decrypt_key"):
        OnlyEncrypt()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="encrypt_key"):
        KeyManagementService()  # type: ignore[abstract]


def test_default_diagnose_reports_a_successful_round_trip() -> None:
    (result,) = XorKms().diagnose()
    assert result.target == "round-trip"
    assert result.ok is True
    assert result.seconds >= 0
    assert result.detail == "wrapped and unwrapped a random key"


def test_default_diagnose_reports_a_kms_error_without_raising() -> None:
    (result,) = UnreachableKms().diagnose()
    assert result.ok is False
    assert result.detail == "us-west-2: could not reach KMS"


def test_default_diagnose_reports_a_key_that_does_not_round_trip() -> None:
    (result,) = LossyKms().diagnose()
    assert result.ok is False
    assert result.detail == "unwrapped key differs"


def test_default_diagnose_reports_an_unexpected_exception_without_raising() -> None:
    (result,) = BuggyKms().diagnose()
    assert result.ok is False
    assert result.detail == "TypeError: plugin bug"


def test_close_is_a_safe_no_op_by_default() -> None:
    kms = XorKms()
    kms.close()
    kms.close()
    with kms as entered:
        assert entered is kms


def test_probe_result_is_frozen_with_an_empty_default_detail() -> None:
    result = ProbeResult("eu-west-1", True, 0.25)
    assert result.detail == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ok = False  # type: ignore[misc]
