"""Inputs and settings that used to escape as bare exceptions, pass validation and fail later,
or damage the application's own state; each now gets the plugin's own, clear answer."""

from __future__ import annotations

import array
import base64
import itertools
import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from asherah_aws_kms_v2 import AwsKmsBuilder, Envelope, RegionalKek, parse_envelope
from asherah_aws_kms_v2.deadline import Deadline
from asherah_aws_kms_v2.errors import classify
from asherah_aws_kms_v2.regions import RegionHealth
from asherah_aws_kms_v2.retry import MAX_RETRIES, RetryPolicy
from asherah_core import Aes256Gcm, ConfigError, KmsError

from .conftest import MakeKms
from .fakes import ACCOUNT, FakeAws, FakeClock, client_error

KEY = b"k" * 32
UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"
ARNS = {r: f"arn:aws:kms:{r}:{ACCOUNT}:key/{UUID}" for r in ("us-west-2", "us-east-1")}


def builder() -> AwsKmsBuilder:
    return AwsKmsBuilder(Aes256Gcm(), ARNS).with_preferred_region("us-west-2")


# Key sizes are bytes, whatever the memoryview's item size ----------------------------------


def test_a_key_in_a_non_byte_memoryview_is_measured_in_bytes(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    too_long = memoryview(array.array("I", bytes(16 * 1024)))  # 4096 items, 16 KiB
    assert len(too_long) == 4096

    with pytest.raises(KmsError, match="the key is 16384 bytes"):
        kms.encrypt_key(too_long)  # type: ignore[arg-type]
    assert aws.calls == []


def test_a_key_in_a_non_byte_memoryview_round_trips_as_its_bytes(
    arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    key = memoryview(array.array("I", range(8)))  # 32 bytes

    assert kms.decrypt_key(kms.encrypt_key(key)) == key.tobytes()  # type: ignore[arg-type]


# Durations, retries and backoff --------------------------------------------------------------


@pytest.mark.parametrize("timeout", [timedelta.max, 1e10])
def test_an_operation_timeout_too_long_to_wait_for_is_refused(timeout: Any) -> None:
    with pytest.raises(ConfigError, match="operation_timeout: must be at most"):
        builder().with_operation_timeout(timeout)


def test_the_longest_operation_timeout_allowed_works_for_encrypt_and_hedged_decrypt(
    arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, operation_timeout=10_000_000, hedge_after=0.05)

    assert kms.decrypt_key(kms.encrypt_key(KEY)) == KEY


def test_a_wait_is_never_longer_than_threading_accepts() -> None:
    deadline = Deadline(1e300, clock=lambda: 0.0)

    assert deadline.wait_timeout() == threading.TIMEOUT_MAX
    assert deadline.wait_timeout(cap=2.0) == 2.0
    threading.Event().wait(deadline.wait_timeout(cap=0.0))  # no OverflowError


def test_the_backoff_does_not_overflow_after_many_retries() -> None:
    policy = RetryPolicy(max_retries=5000, base_delay=0.1, max_delay=5.0)

    assert all(0 <= policy.delay(retry) <= 5.0 for retry in (1024, 1025, 5000, 10**9))


def test_max_retries_has_an_upper_bound() -> None:
    builder().with_retry_config(MAX_RETRIES, 100)
    with pytest.raises(ConfigError, match=f"retry.max_retries: must be at most {MAX_RETRIES}"):
        builder().with_retry_config(MAX_RETRIES + 1, 100)


def test_a_zero_base_delay_is_refused_while_retries_are_on() -> None:
    with pytest.raises(ConfigError, match=r"retry\.base_delay_ms: must be more than zero"):
        builder().with_retry_config(3, 0)


# Endpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://[::1", "http://localhost:99999"])
def test_an_unparseable_endpoint_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"regions\.us-east-1\.endpoint: expected an http"):
        builder().with_endpoint("us-east-1", url)


def test_a_host_name_botocore_refuses_is_refused_at_once() -> None:
    with pytest.raises(ConfigError, match="botocore refuses the host"):
        builder().with_endpoint("us-east-1", "http://localstack_kms:4566")


def test_ipv6_and_ordinary_endpoints_are_accepted() -> None:
    for url in ("http://[::1]:4566", "https://kms-fips.us-east-1.amazonaws.com", "http://a.b:1"):
        builder().with_endpoint("us-east-1", url)


@pytest.mark.parametrize(
    "url", ["htps://user:hunter2secret@kms.example.com", "user:hunter2secret@kms.example.com"]
)
def test_a_password_in_a_bad_endpoint_is_never_echoed(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        builder().with_endpoint("us-east-1", url)

    assert "hunter2secret" not in str(caught.value)


def test_with_min_regions_validates_at_once() -> None:
    with pytest.raises(ConfigError, match="min_regions: 3 is more than the 2 configured"):
        builder().with_min_regions(3)
    with pytest.raises(ConfigError, match="min_regions: expected an integer"):
        builder().with_min_regions("most")  # type: ignore[arg-type]


# Only our own traceback frames are cleared ---------------------------------------------------


def application_fails() -> None:
    evidence = "the application's local variable"
    raise ValueError(evidence)


def test_a_failed_kms_call_leaves_the_application_exception_intact(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, region_cooldown=0)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", EndpointConnectionError(endpoint_url="https://x"))

    try:
        application_fails()
    except ValueError as app_error:
        assert kms.decrypt_key(blob) == KEY  # fails over while the application handles it
        caught = app_error

    assert caught.__traceback__ is not None
    frame = caught.__traceback__.tb_next
    assert frame is not None
    assert frame.tb_frame.f_locals.get("evidence") == "the application's local variable"


# Envelopes -------------------------------------------------------------------------------------


def envelope(**fields: Any) -> dict[str, Any]:
    kek = {"region": "us-west-2", "arn": ARNS["us-west-2"], "encryptedKek": "AAAA"}
    return {"encryptedKey": base64.b64encode(b"x" * 60).decode(), "kmsKeks": [kek], **fields}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(envelope(note=float("nan"))),
        json.dumps(envelope(note=float("inf"))),
        json.dumps(envelope(note=float("-inf"))),
        json.dumps(envelope(note="\ud800")),
        json.dumps(envelope()).replace('"us-west-2"', '"us-west-2\\udfff"', 1),
        json.dumps(envelope()).replace('"encryptedKey"', '"\\ud83d"', 1),
    ],
    ids=["NaN", "Infinity", "-Infinity", "lone surrogate", "in a region", "in a key"],
)
def test_what_the_reference_readers_refuse_is_refused(text: str) -> None:
    with pytest.raises(KmsError, match="not valid JSON"):
        parse_envelope(text.encode())


def test_a_surrogate_pair_is_a_character_and_is_accepted() -> None:
    parsed = parse_envelope(json.dumps(envelope(note="\U0001f600")).encode())

    assert parsed.keks[0].region == "us-west-2"


def test_a_sealed_key_over_the_kms_plaintext_limit_is_read(
    arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)
    small = parse_envelope(kms.encrypt_key(KEY))
    big_key = bytes(range(256)) * 40  # 10,240 bytes: the Go writer does not bound it
    # Only the data key goes to KMS: seal the big key under the data key of a real envelope.
    sealed = Aes256Gcm().encrypt(big_key, _data_key_of(kms, small))
    bigger = Envelope(sealed, small.keks).to_bytes()

    assert kms.decrypt_key(bigger) == big_key


def _data_key_of(kms: Any, envelope: Envelope) -> bytes:
    """The data key of `envelope`, recovered through the plugin's own Decrypt path."""
    captured: list[bytes] = []
    real = Aes256Gcm.decrypt

    def spy(self: Aes256Gcm, data: bytes, key: bytes) -> bytes:
        captured.append(bytes(key))
        return real(self, data, key)

    Aes256Gcm.decrypt = spy  # type: ignore[method-assign]
    try:
        kms.decrypt_key(envelope.to_bytes())
    finally:
        Aes256Gcm.decrypt = real  # type: ignore[method-assign]
    return captured[0]


def test_kms_error_details_are_kept_on_one_line() -> None:
    error = classify(
        "us-west-2", "Decrypt", client_error("AccessDeniedException", 400, "no\nforged: line\r")
    )

    assert "\n" not in str(error)
    assert "\r" not in str(error)
    assert error.detail == "no forged: line "


def test_regional_kek_repr_holds_no_blob() -> None:
    assert "AAAA" not in repr(RegionalKek("us-west-2", ARNS["us-west-2"], b"\0" * 4))


# diagnose ------------------------------------------------------------------------------------


def test_diagnose_reports_a_response_without_ciphertext(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms = make_kms(arns)
    client = aws.clients[0]
    real = client.generate_data_key

    def no_blob(**kw: Any) -> Any:
        return {k: v for k, v in real(**kw).items() if k != "CiphertextBlob"}

    monkeypatch.setattr(client, "generate_data_key", no_blob)

    results = {r.target: r for r in kms.diagnose()}

    broken = results[client.region]
    assert not broken.ok
    assert "no CiphertextBlob" in broken.detail


def test_diagnose_of_dead_regions_stays_within_one_operation_deadline(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    clock = FakeClock()
    kms = make_kms(
        arns, clock=clock, sleep=clock.sleep, timeout=1.0, operation_timeout=3.0,
        max_retries=50, retry_base_delay_ms=400.0,
    )  # fmt: skip
    for region in arns:
        aws.down[region] = client_error("ThrottlingException", 400)

    start = clock()
    results = kms.diagnose()

    # The regional probes take one operation deadline in all (not two timeouts per region),
    # and the round trip of encrypt_key and decrypt_key that follows at most another.
    assert clock() - start <= 2 * 3.0
    assert not any(r.ok for r in results)


# Health ----------------------------------------------------------------------------------------


def test_health_changes_are_reported_in_the_order_they_happen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported: list[bool] = []
    health = RegionHealth(
        ["a"], cooldown=30.0, probe_timeout=1.0, on_change=lambda _, ok: reported.append(ok)
    )

    def flap(fault: bool) -> None:
        for _ in range(300):
            if fault:
                health.record_fault("a", "x")
            else:
                health.record_success("a")
            time.sleep(0)

    with caplog.at_level("INFO", logger="asherah_aws_kms_v2"):
        threads = [threading.Thread(target=flap, args=(i % 2 == 0,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    logged = [r.levelname == "INFO" for r in caplog.records if r.name.startswith("asherah")]
    assert logged == reported  # the log and the metric tell the same story
    assert all(a != b for a, b in itertools.pairwise(reported))  # alternating
