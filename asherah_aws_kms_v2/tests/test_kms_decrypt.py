"""decrypt_key: preferred region first, the local ARN as KeyId, failover in a fixed order."""

from __future__ import annotations

import dataclasses

import pytest

from asherah_aws_kms_v2 import Envelope, RegionalKek, parse_envelope
from asherah_aws_kms_v2.errors import RegionCallError
from asherah_core import KmsError

from .conftest import MakeKms
from .fakes import FakeAws, client_error

KEY = b"the 32-byte key we wrap and want"
CANONICAL = ["us-west-2", "eu-west-1", "us-east-1"]


def with_entry(blob: bytes, region: str, **changes: object) -> bytes:
    """The envelope `blob` with the entry of `region` changed."""
    envelope = parse_envelope(blob)
    keks = tuple(
        dataclasses.replace(k, **changes) if k.region == region else k  # type: ignore[arg-type]
        for k in envelope.keks
    )
    return Envelope(envelope.encrypted_key, keks).to_bytes()


def decrypt_regions(aws: FakeAws) -> list[str]:
    return [c.region for c in aws.calls_to("decrypt")]


def test_decrypt_asks_only_the_preferred_region_when_it_answers(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)

    assert kms.decrypt_key(blob) == KEY
    assert [(c.region, c.key_id) for c in aws.calls_to("decrypt")] == [
        ("us-west-2", arns["us-west-2"])
    ]


def test_the_preferred_region_goes_first_whatever_the_envelope_order(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    blob = make_kms(arns).encrypt_key(KEY)
    envelope = parse_envelope(blob)
    reversed_blob = Envelope(envelope.encrypted_key, envelope.keks[::-1]).to_bytes()
    reader = make_kms(arns, preferred="us-east-1")

    assert reader.decrypt_key(reversed_blob) == KEY
    assert decrypt_regions(aws) == ["us-east-1"]


def test_key_id_is_the_locally_configured_arn_not_the_envelopes(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)
    bogus = "arn:aws:kms:us-west-2:999999999999:key/00000000-0000-0000-0000-000000000000"
    tampered = with_entry(blob, "us-west-2", arn=bogus)
    tampered = with_entry(tampered, "eu-west-1", arn="not even an ARN")

    assert kms.decrypt_key(tampered) == KEY
    assert [c.key_id for c in aws.calls_to("decrypt")] == [arns["us-west-2"]]


def test_a_kms_error_fails_over_to_the_next_regions_in_canonical_order(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", client_error("AccessDeniedException"))
    aws.fail_next("eu-west-1", "decrypt", client_error("DisabledException"))

    assert kms.decrypt_key(blob) == KEY
    assert decrypt_regions(aws) == CANONICAL
    assert [c.key_id for c in aws.calls_to("decrypt")] == [arns[r] for r in CANONICAL]


def test_an_aead_failure_with_one_regions_data_key_fails_over(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)
    # us-west-2's entry unwraps to another envelope's data key: KMS succeeds, AES-GCM fails.
    other = parse_envelope(kms.encrypt_key(KEY)).kek_for("us-west-2")
    assert other is not None
    mixed = with_entry(blob, "us-west-2", encrypted_kek=other.encrypted_kek)

    assert kms.decrypt_key(mixed) == KEY
    assert decrypt_regions(aws) == ["us-west-2", "eu-west-1"]


def test_a_tampered_encrypted_key_fails_in_every_region_naming_them_all(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    envelope = parse_envelope(kms.encrypt_key(KEY))
    flipped = bytes([envelope.encrypted_key[0] ^ 1]) + envelope.encrypted_key[1:]
    tampered = Envelope(flipped, envelope.keks).to_bytes()

    with pytest.raises(KmsError) as caught:
        kms.decrypt_key(tampered)

    message = str(caught.value)
    assert message.startswith("decrypt_key failed in every region tried: ")
    for region in CANONICAL:
        assert f"{region}: CryptoError: AES-256-GCM authentication failed" in message
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert [e.region for e in group.exceptions] == CANONICAL
    assert decrypt_regions(aws) == CANONICAL


def test_regions_in_the_envelope_that_are_not_configured_are_skipped(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    blob = make_kms(arns).encrypt_key(KEY)
    reader = make_kms(
        {"us-east-1": arns["us-east-1"], "ap-south-1": aws.create_key("ap-south-1")},
        preferred="ap-south-1",
    )

    assert reader.decrypt_key(blob) == KEY
    # ap-south-1 holds no entry; us-west-2 and eu-west-1 are not configured here.
    assert decrypt_regions(aws) == ["us-east-1"]


def test_an_envelope_with_no_configured_region_fails_clearly_without_calling_kms(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    blob = make_kms({"eu-west-1": arns["eu-west-1"]}).encrypt_key(KEY)
    reader = make_kms({"us-west-2": arns["us-west-2"], "us-east-1": arns["us-east-1"]})
    calls = len(aws.calls)

    with pytest.raises(
        KmsError,
        match=r"holds no copy of the data key for a configured region \(envelope regions: "
        r"eu-west-1; configured: us-west-2, us-east-1\)",
    ):
        reader.decrypt_key(blob)

    assert len(aws.calls) == calls


def test_a_data_key_of_the_wrong_length_is_an_error_for_that_region(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)
    aws.data_key_sizes["us-west-2"] = 31

    assert kms.decrypt_key(blob) == KEY
    assert decrypt_regions(aws) == ["us-west-2", "eu-west-1"]


def test_a_wrong_length_data_key_everywhere_says_so(aws: FakeAws, make_kms: MakeKms) -> None:
    kms = make_kms({"us-west-2": aws.create_key("us-west-2")})
    blob = kms.encrypt_key(KEY)
    aws.data_key_size = 64

    with pytest.raises(
        KmsError, match="us-west-2: InvalidDataKeyLength: KMS returned a 64-byte data key"
    ) as caught:
        kms.decrypt_key(blob)

    assert isinstance(caught.value.__cause__, RegionCallError)


def test_ciphertext_of_another_key_is_refused_by_kms_and_the_next_region_answers(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)
    stranger = make_kms({"us-west-2": aws.create_key("us-west-2")})
    foreign = parse_envelope(stranger.encrypt_key(KEY)).kek_for("us-west-2")
    assert foreign is not None
    mixed = with_entry(blob, "us-west-2", encrypted_kek=foreign.encrypted_kek)

    assert kms.decrypt_key(mixed) == KEY
    assert decrypt_regions(aws) == ["us-west-2", "eu-west-1"]


def test_ciphertext_of_another_key_everywhere_reports_incorrect_key(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    kms = make_kms({"us-west-2": aws.create_key("us-west-2")})
    stranger = make_kms({"us-west-2": aws.create_key("us-west-2")})

    with pytest.raises(KmsError, match="us-west-2: IncorrectKeyException"):
        kms.decrypt_key(stranger.encrypt_key(KEY))


def test_a_malformed_envelope_fails_before_any_kms_call(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)

    with pytest.raises(KmsError, match="envelope is not valid JSON"):
        kms.decrypt_key(b"{not json")

    assert aws.calls == []


def test_an_envelope_written_with_a_foreign_entry_order_and_arns_decrypts(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    # As Go might write it: random order, and the writer's own (here different) ARNs.
    envelope = parse_envelope(make_kms(arns).encrypt_key(KEY))
    keks = tuple(
        RegionalKek(k.region, k.arn.replace("111122223333", "444455556666"), k.encrypted_kek)
        for k in sorted(envelope.keks, key=lambda k: k.region, reverse=True)
    )
    reader = make_kms(arns, preferred="eu-west-1")

    assert reader.decrypt_key(Envelope(envelope.encrypted_key, keks).to_bytes()) == KEY
    assert [(c.region, c.key_id) for c in aws.calls_to("decrypt")] == [
        ("eu-west-1", arns["eu-west-1"])
    ]
