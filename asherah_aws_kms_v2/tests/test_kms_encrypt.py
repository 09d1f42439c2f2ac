"""encrypt_key: GenerateDataKey in the preferred region, concurrent Encrypts, failover, coverage."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter

import pytest

from asherah_aws_kms_v2 import parse_envelope
from asherah_aws_kms_v2.errors import RegionCallError
from asherah_core import KmsError

from .conftest import MakeKms, Metrics
from .fakes import FakeAws, client_error

KEY = bytes(range(32))
# The canonical order with us-west-2 preferred: preferred first, then sorted.
CANONICAL = ["us-west-2", "eu-west-1", "us-east-1"]


def regions_of(blob: bytes) -> list[str]:
    return [entry["region"] for entry in json.loads(blob)["kmsKeks"]]


def test_encrypt_then_decrypt_gives_back_the_key(arns: dict[str, str], make_kms: MakeKms) -> None:
    kms = make_kms(arns)

    assert kms.decrypt_key(kms.encrypt_key(KEY)) == KEY


def test_generate_data_key_runs_in_the_preferred_region_with_its_configured_arn(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)

    kms.encrypt_key(KEY)

    generated = aws.calls_to("generate_data_key")
    assert [(c.region, c.key_id) for c in generated] == [("us-west-2", arns["us-west-2"])]
    assert aws.calls[0] == generated[0]  # before any Encrypt


def test_the_generating_region_reuses_the_generate_data_key_blob(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)

    blob = kms.encrypt_key(KEY)

    assert aws.calls_to("encrypt", "us-west-2") == []
    west_only = make_kms({"us-west-2": arns["us-west-2"]})
    assert west_only.decrypt_key(blob) == KEY  # the us-west-2 entry is that blob


def test_every_other_region_encrypts_the_same_data_key_with_its_own_arn(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)

    blob = kms.encrypt_key(KEY)

    encrypts = sorted((c.region, c.key_id) for c in aws.calls_to("encrypt"))
    assert encrypts == [("eu-west-1", arns["eu-west-1"]), ("us-east-1", arns["us-east-1"])]
    generated, *encrypted = aws.plaintexts
    assert encrypted == [generated, generated]
    envelope = parse_envelope(blob)
    assert {k.region: k.arn for k in envelope.keks} == arns
    for region, arn in arns.items():  # each entry alone unwraps the key
        assert make_kms({region: arn}).decrypt_key(blob) == KEY


def test_the_other_regions_encrypt_concurrently(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    aws.delays = dict.fromkeys(arns, 0.2)

    start = time.perf_counter()
    kms.encrypt_key(KEY)
    elapsed = time.perf_counter() - start

    # GenerateDataKey, then both Encrypts at once: two steps of 0.2 s, not three.
    assert aws.max_in_flight == 2
    assert 0.38 <= elapsed < 0.58, elapsed


def test_sequential_calls_run_in_the_callers_thread_and_concurrent_ones_on_the_pool(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)

    kms.decrypt_key(kms.encrypt_key(KEY))

    caller = threading.get_ident()
    threads = Counter((c.operation, c.thread == caller) for c in aws.calls)
    # GenerateDataKey and Decrypt: a whole attempt fits before the deadline, so no hand-off.
    # Of the two concurrent Encrypts, the caller's thread makes the last one itself.
    assert threads == {
        ("generate_data_key", True): 1,
        ("encrypt", False): 1,
        ("encrypt", True): 1,
        ("decrypt", True): 1,
    }
    pooled = [c for c in aws.calls_to("encrypt") if c.thread != caller]
    assert [c.region for c in pooled] == [CANONICAL[1]]  # the caller takes the last
    assert pooled[0].thread_name.startswith("asherah-aws-kms")


def test_calls_go_to_the_pool_when_an_attempt_might_overrun_the_deadline(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    # operation_timeout below connect + read timeouts: only the pool lets the caller leave
    # at the deadline, so every call is handed off, the Encrypt the caller would make too.
    kms = make_kms(arns, timeout=1.0, operation_timeout=1.5)

    kms.decrypt_key(kms.encrypt_key(KEY))

    assert threading.get_ident() not in {c.thread for c in aws.calls}
    assert all(c.thread_name.startswith("asherah-aws-kms") for c in aws.calls)


def test_no_thread_is_created_per_call(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, max_concurrency=6)

    for _ in range(40):
        kms.decrypt_key(kms.encrypt_key(KEY))

    # 160 KMS calls on the instance's own pool: its threads are reused, never more than the
    # pool's size (ThreadPoolExecutor may add a thread when a worker is slow to report idle).
    assert len(aws.calls) == 160
    threads = {c.thread_name for c in aws.calls}
    assert len(threads) <= 6 + 1  # the pool's, and the caller's own
    assert all(
        name.startswith("asherah-aws-kms") or name == threading.current_thread().name
        for name in threads
    )


def test_entries_are_in_a_fixed_order_whatever_answers_first(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    aws.delays = {"eu-west-1": 0.05}  # us-east-1 answers first

    orders = {tuple(regions_of(kms.encrypt_key(KEY))) for _ in range(5)}

    assert orders == {tuple(CANONICAL)}


def test_generate_data_key_fails_over_to_the_next_region(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, meter=metrics.meter)
    aws.fail_next("us-west-2", "generate_data_key", client_error("AccessDeniedException"))

    blob = kms.encrypt_key(KEY)

    assert [c.region for c in aws.calls_to("generate_data_key")] == ["us-west-2", "eu-west-1"]
    # The generating region comes first; the rest keep the canonical order.
    assert regions_of(blob) == ["eu-west-1", "us-west-2", "us-east-1"]
    assert kms.decrypt_key(blob) == KEY
    assert (
        metrics.count(
            "ael.kms.aws.failover",
            cloud_region="us-west-2",
            error_type="AccessDeniedException",
            operation="encrypt_key",
        )
        == 1
    )


def test_a_wrong_length_data_key_from_generate_data_key_fails_over(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    aws.data_key_sizes["us-west-2"] = 16

    blob = kms.encrypt_key(KEY)

    assert [c.region for c in aws.calls_to("generate_data_key")] == ["us-west-2", "eu-west-1"]
    assert regions_of(blob)[0] == "eu-west-1"
    assert make_kms({"eu-west-1": arns["eu-west-1"]}).decrypt_key(blob) == KEY


def test_generate_data_key_failing_everywhere_names_every_region_and_chains_the_causes(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    aws.fail_next("us-west-2", "generate_data_key", client_error("AccessDeniedException"))
    aws.fail_next("eu-west-1", "generate_data_key", client_error("DisabledException"))
    aws.fail_next("us-east-1", "generate_data_key", client_error("NotFoundException"))

    with pytest.raises(KmsError) as caught:
        kms.encrypt_key(KEY)

    message = str(caught.value)
    assert message.startswith("encrypt_key: GenerateDataKey failed in every region")
    assert "us-west-2: AccessDeniedException" in message
    assert "eu-west-1: DisabledException" in message
    assert "us-east-1: NotFoundException" in message
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert [(e.region, e.error_type) for e in group.exceptions] == [
        ("us-west-2", "AccessDeniedException"),
        ("eu-west-1", "DisabledException"),
        ("us-east-1", "NotFoundException"),
    ]
    assert aws.calls_to("encrypt") == []


def test_a_single_failed_region_is_chained_directly(aws: FakeAws, make_kms: MakeKms) -> None:
    kms = make_kms({"us-west-2": aws.create_key("us-west-2")})
    aws.fail_next("us-west-2", "generate_data_key", client_error("AccessDeniedException"))

    with pytest.raises(KmsError) as caught:
        kms.encrypt_key(KEY)

    assert isinstance(caught.value.__cause__, RegionCallError)
    assert caught.value.__cause__.region == "us-west-2"


def test_by_default_a_failed_region_is_left_out_with_a_warning_and_a_count(
    aws: FakeAws,
    arns: dict[str, str],
    make_kms: MakeKms,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kms = make_kms(arns, meter=metrics.meter)
    aws.fail_next("us-east-1", "encrypt", client_error("AccessDeniedException"))

    with caplog.at_level(logging.WARNING, logger="asherah_aws_kms_v2"):
        blob = kms.encrypt_key(KEY)

    assert regions_of(blob) == ["us-west-2", "eu-west-1"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name.split(".")[0] == "asherah_aws_kms_v2"  # a module logger under it
    assert "region us-east-1 left out of the envelope" in warnings[0].getMessage()
    assert "AccessDeniedException" in warnings[0].getMessage()
    assert "2 of 3 regions" in warnings[0].getMessage()
    assert metrics.count("ael.kms.aws.region.left_out", cloud_region="us-east-1") == 1
    assert metrics.count("ael.kms.aws.region.left_out") == 1


def test_min_regions_is_met_with_some_regions_left_out(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, min_regions=2)
    aws.fail_next("eu-west-1", "encrypt", client_error("AccessDeniedException"))

    assert regions_of(kms.encrypt_key(KEY)) == ["us-west-2", "us-east-1"]


def test_strict_min_regions_fails_naming_each_failed_regions_error(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, caplog: pytest.LogCaptureFixture
) -> None:
    kms = make_kms(arns, min_regions="all")
    aws.fail_next("eu-west-1", "encrypt", client_error("AccessDeniedException"))
    aws.fail_next("us-east-1", "encrypt", client_error("DisabledException"))

    with (
        caplog.at_level(logging.WARNING, logger="asherah_aws_kms_v2"),
        pytest.raises(KmsError) as caught,
    ):
        kms.encrypt_key(KEY)

    message = str(caught.value)
    assert "only 1 of 3 regions hold a copy of the data key and min_regions is 3" in message
    assert "eu-west-1: AccessDeniedException" in message
    assert "us-east-1: DisabledException" in message
    group = caught.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert sorted(e.region for e in group.exceptions) == ["eu-west-1", "us-east-1"]
    left_out = sorted(r.getMessage().split()[2] for r in caplog.records if "left out" in r.msg)
    assert left_out == ["eu-west-1", "us-east-1"]


def test_strict_min_regions_succeeds_when_every_region_answers(
    arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, min_regions="all")

    assert regions_of(kms.encrypt_key(KEY)) == CANONICAL


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (b"", "the key is 0 bytes; it must be 1 to 4096 bytes"),
        (b"k" * 4097, "the key is 4097 bytes; it must be 1 to 4096 bytes"),
        ("a string key", "the key must be bytes, not str"),
        (None, "the key must be bytes, not NoneType"),
        (12345, "the key must be bytes, not int"),
    ],
)
def test_keys_that_are_empty_too_long_or_not_bytes_are_refused_before_any_kms_call(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, key: object, message: str
) -> None:
    kms = make_kms(arns)

    with pytest.raises(KmsError, match=message):
        kms.encrypt_key(key)  # type: ignore[arg-type]

    assert aws.calls == []


@pytest.mark.parametrize(
    "key", [b"k", b"k" * 4096, bytearray(b"k" * 32), memoryview(b"k" * 32)], ids=len
)
def test_keys_of_1_to_4096_bytes_in_any_bytes_form_round_trip(
    arns: dict[str, str], make_kms: MakeKms, key: bytes
) -> None:
    kms = make_kms(arns)

    assert kms.decrypt_key(kms.encrypt_key(key)) == bytes(key)


def test_a_closed_instance_refuses_to_work(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)
    calls = len(aws.calls)
    kms.close()

    with pytest.raises(KmsError, match="closed"):
        kms.encrypt_key(KEY)
    with pytest.raises(KmsError, match="closed"):
        kms.decrypt_key(blob)
    assert len(aws.calls) == calls
