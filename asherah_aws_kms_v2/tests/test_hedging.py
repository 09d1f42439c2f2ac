"""Hedged decrypt: after a delay with no answer, the next region is asked too; first valid wins."""

from __future__ import annotations

import time

import pytest

from asherah_core import KmsError

from .conftest import MakeKms, Metrics
from .fakes import FakeAws, client_error

KEY = b"k" * 32


def timed_decrypt(kms: object, blob: bytes) -> float:
    start = time.perf_counter()
    assert kms.decrypt_key(blob) == KEY  # type: ignore[attr-defined]
    return time.perf_counter() - start


def decrypt_regions(aws: FakeAws) -> list[str]:
    return [c.region for c in aws.calls_to("decrypt")]


def test_a_slow_preferred_region_is_hedged_with_the_next_one(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, hedge_after=0.1, meter=metrics.meter)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.6

    elapsed = timed_decrypt(kms, blob)

    assert decrypt_regions(aws) == ["us-west-2", "eu-west-1"]
    assert 0.09 <= elapsed < 0.4, elapsed
    assert metrics.count("ael.kms.aws.hedge") == 1
    assert metrics.count("ael.kms.aws.hedge", cloud_region="eu-west-1") == 1


def test_the_hedged_answer_costs_the_hedge_delay_plus_the_second_regions_time(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = {r: aws.create_key(r) for r in ("us-west-2", "us-east-1")}
    kms = make_kms(arns, hedge_after=0.1)
    blob = kms.encrypt_key(KEY)
    aws.delays.update({"us-west-2": 0.8, "us-east-1": 0.15})

    elapsed = timed_decrypt(kms, blob)

    assert 0.24 <= elapsed < 0.55, elapsed


def test_each_hedge_delay_without_an_answer_asks_one_more_region(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, hedge_after=0.1, meter=metrics.meter)
    blob = kms.encrypt_key(KEY)
    aws.delays.update({"us-west-2": 0.8, "eu-west-1": 0.8})

    elapsed = timed_decrypt(kms, blob)

    assert decrypt_regions(aws) == ["us-west-2", "eu-west-1", "us-east-1"]
    assert 0.19 <= elapsed < 0.55, elapsed
    assert metrics.count("ael.kms.aws.hedge") == 2


def test_no_hedge_when_the_first_region_answers_in_time(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, metrics: Metrics
) -> None:
    kms = make_kms(arns, hedge_after=0.3, meter=metrics.meter)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.05

    timed_decrypt(kms, blob)

    assert decrypt_regions(aws) == ["us-west-2"]
    assert metrics.count("ael.kms.aws.hedge") == 0


def test_hedging_is_off_by_default(aws: FakeAws, arns: dict[str, str], make_kms: MakeKms) -> None:
    kms = make_kms(arns)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.3

    elapsed = timed_decrypt(kms, blob)

    assert kms.settings.hedge_after == 0.0
    assert decrypt_regions(aws) == ["us-west-2"]
    assert elapsed >= 0.29


def test_an_error_from_the_hedged_region_does_not_win_over_a_slow_valid_answer(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = {r: aws.create_key(r) for r in ("us-west-2", "us-east-1")}
    kms = make_kms(arns, hedge_after=0.1)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.3
    aws.fail_next("us-east-1", "decrypt", client_error("AccessDeniedException"))

    elapsed = timed_decrypt(kms, blob)

    assert decrypt_regions(aws) == ["us-west-2", "us-east-1"]
    assert elapsed >= 0.29


def test_when_every_hedged_region_fails_the_error_names_them_all(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    arns = {r: aws.create_key(r) for r in ("us-west-2", "us-east-1")}
    kms = make_kms(arns, hedge_after=0.05)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.2
    aws.fail_next("us-west-2", "decrypt", client_error("DisabledException"))
    aws.fail_next("us-east-1", "decrypt", client_error("AccessDeniedException"))

    with pytest.raises(KmsError) as caught:
        kms.decrypt_key(blob)

    assert "us-west-2: DisabledException" in str(caught.value)
    assert "us-east-1: AccessDeniedException" in str(caught.value)


def test_the_abandoned_call_does_not_break_later_calls(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, hedge_after=0.05)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.3

    timed_decrypt(kms, blob)  # us-west-2's call is abandoned, still running
    del aws.delays["us-west-2"]
    time.sleep(0.35)  # let it finish in the background

    for _ in range(3):
        assert kms.decrypt_key(kms.encrypt_key(KEY)) == KEY
    # A slow answer is not a fault: us-west-2 is still first.
    assert decrypt_regions(aws)[2:] == ["us-west-2"] * 3
