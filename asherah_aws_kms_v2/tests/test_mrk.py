"""Multi-Region keys and local data keys: fewer KMS calls, the same envelope format."""

from __future__ import annotations

import time

import pytest

from asherah_aws_kms_v2 import Envelope, parse_envelope
from asherah_core import KmsError

from .conftest import REGIONS, MakeKms
from .fakes import FakeAws, client_error

KEY = b"k" * 32
CANONICAL = ["us-west-2", "eu-west-1", "us-east-1"]


def calls(aws: FakeAws) -> list[tuple[str, str]]:
    return [(c.region, c.operation) for c in aws.calls]


def test_replicas_of_one_mrk_need_a_single_kms_call_to_encrypt(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = aws.create_mrk(list(REGIONS))
    kms = make_kms(arns)

    envelope = parse_envelope(kms.encrypt_key(KEY))

    assert calls(aws) == [("us-west-2", "generate_data_key")]
    assert [k.region for k in envelope.keks] == CANONICAL
    assert len({k.encrypted_kek for k in envelope.keks}) == 1  # one blob, shared
    assert {k.region: k.arn for k in envelope.keks} == arns  # each with its own ARN


def test_an_entry_from_another_replica_region_decrypts_with_the_local_replica_arn(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = aws.create_mrk(["us-west-2", "us-east-1"])
    writer = make_kms(arns, preferred="us-east-1")
    envelope = parse_envelope(writer.encrypt_key(KEY))
    east = envelope.kek_for("us-east-1")
    assert east is not None
    east_only = Envelope(envelope.encrypted_key, (east,)).to_bytes()
    reader = make_kms(arns, preferred="us-west-2")

    assert reader.decrypt_key(east_only) == KEY
    assert [(c.region, c.key_id) for c in aws.calls_to("decrypt")] == [
        ("us-west-2", arns["us-west-2"])
    ]


def test_a_reader_configured_with_only_one_replica_decrypts_another_replicas_entry(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = aws.create_mrk(["us-west-2", "us-east-1"])
    writer = make_kms({"us-east-1": arns["us-east-1"]}, preferred="us-east-1")
    blob = writer.encrypt_key(KEY)
    assert [k.region for k in parse_envelope(blob).keks] == ["us-east-1"]
    reader = make_kms({"us-west-2": arns["us-west-2"]}, preferred="us-west-2")

    assert reader.decrypt_key(blob) == KEY
    assert [(c.region, c.key_id) for c in aws.calls_to("decrypt")] == [
        ("us-west-2", arns["us-west-2"])
    ]


def test_an_unrelated_entry_is_not_taken_for_a_replica(aws: FakeAws, make_kms: MakeKms) -> None:
    east = aws.create_mrk(["us-east-1"])["us-east-1"]
    west = aws.create_mrk(["us-west-2"])["us-west-2"]  # another MRK: other key id
    blob = make_kms({"us-east-1": east}, preferred="us-east-1").encrypt_key(KEY)
    reader = make_kms({"us-west-2": west}, preferred="us-west-2")

    with pytest.raises(KmsError, match="no copy of the data key for a configured region"):
        reader.decrypt_key(blob)
    assert aws.calls_to("decrypt") == []


def test_decrypt_fails_over_across_replicas_with_each_regions_own_arn(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = aws.create_mrk(list(REGIONS))
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", client_error("AccessDeniedException"))

    assert kms.decrypt_key(blob) == KEY
    assert [(c.region, c.key_id) for c in aws.calls_to("decrypt")] == [
        ("us-west-2", arns["us-west-2"]),
        ("eu-west-1", arns["eu-west-1"]),
    ]


def test_a_mixed_map_generates_once_and_encrypts_only_for_the_plain_key(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = {**aws.create_mrk(["us-west-2", "us-east-1"]), "eu-west-1": aws.create_key("eu-west-1")}
    kms = make_kms(arns)

    envelope = parse_envelope(kms.encrypt_key(KEY))

    assert calls(aws) == [("us-west-2", "generate_data_key"), ("eu-west-1", "encrypt")]
    west, east = envelope.kek_for("us-west-2"), envelope.kek_for("us-east-1")
    assert west is not None
    assert east is not None
    assert west.encrypted_kek == east.encrypted_kek
    for region, arn in arns.items():
        assert make_kms({region: arn}).decrypt_key(envelope.to_bytes()) == KEY


def test_a_mixed_map_with_a_plain_preferred_key_encrypts_once_for_the_replicas(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = {**aws.create_mrk(["us-west-2", "us-east-1"]), "eu-west-1": aws.create_key("eu-west-1")}
    kms = make_kms(arns, preferred="eu-west-1")

    envelope = parse_envelope(kms.encrypt_key(KEY))

    assert calls(aws) == [("eu-west-1", "generate_data_key"), ("us-east-1", "encrypt")]
    assert [k.region for k in envelope.keks] == ["eu-west-1", "us-east-1", "us-west-2"]
    assert kms.decrypt_key(envelope.to_bytes()) == KEY


def test_when_one_replica_refuses_encrypt_another_replica_covers_the_group(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = {**aws.create_mrk(["us-west-2", "us-east-1"]), "eu-west-1": aws.create_key("eu-west-1")}
    kms = make_kms(arns, preferred="eu-west-1", min_regions="all")
    aws.fail_next("us-east-1", "encrypt", client_error("AccessDeniedException"))

    envelope = parse_envelope(kms.encrypt_key(KEY))

    assert [(r, op) for r, op in calls(aws) if op == "encrypt"] == [
        ("us-east-1", "encrypt"),
        ("us-west-2", "encrypt"),
    ]
    assert len(envelope.keks) == 3


def test_unrelated_multi_region_keys_are_not_treated_as_replicas(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = {**aws.create_mrk(["us-west-2"]), **aws.create_mrk(["us-east-1"])}
    kms = make_kms(arns)

    envelope = parse_envelope(kms.encrypt_key(KEY))

    assert calls(aws) == [("us-west-2", "generate_data_key"), ("us-east-1", "encrypt")]
    assert len({k.encrypted_kek for k in envelope.keks}) == 2


def test_with_mrk_awareness_off_every_region_gets_its_own_call(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = aws.create_mrk(list(REGIONS))
    kms = make_kms(arns, mrk_awareness=False)

    envelope = parse_envelope(kms.encrypt_key(KEY))

    assert sorted(calls(aws)) == [
        ("eu-west-1", "encrypt"),
        ("us-east-1", "encrypt"),
        ("us-west-2", "generate_data_key"),
    ]
    assert len({k.encrypted_kek for k in envelope.keks}) == 3


def test_local_data_key_mode_encrypts_in_every_region_at_once_without_generate_data_key(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, local_data_key=True)
    aws.delays = dict.fromkeys(arns, 0.2)

    start = time.perf_counter()
    blob = kms.encrypt_key(KEY)
    elapsed = time.perf_counter() - start

    assert aws.calls_to("generate_data_key") == []
    assert sorted(c.region for c in aws.calls_to("encrypt")) == sorted(arns)
    assert aws.max_in_flight == 3
    assert 0.19 <= elapsed < 0.38, elapsed  # one round trip, not two
    assert [k.region for k in parse_envelope(blob).keks] == CANONICAL
    assert len(set(aws.plaintexts)) == 1  # the same data key everywhere
    assert len(aws.plaintexts[0]) == 32
    aws.delays.clear()
    assert kms.decrypt_key(blob) == KEY


def test_local_data_keys_are_fresh_for_every_encrypt(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, local_data_key=True)

    for _ in range(5):
        kms.encrypt_key(KEY)

    assert len(set(aws.plaintexts)) == 5


def test_local_data_key_mode_with_an_mrk_makes_one_encrypt_call(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = aws.create_mrk(list(REGIONS))
    kms = make_kms(arns, local_data_key=True)

    envelope = parse_envelope(kms.encrypt_key(KEY))

    assert calls(aws) == [("us-west-2", "encrypt")]
    assert len({k.encrypted_kek for k in envelope.keks}) == 1
    assert [k.region for k in envelope.keks] == CANONICAL
    assert kms.decrypt_key(envelope.to_bytes()) == KEY
