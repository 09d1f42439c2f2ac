"""Retries: only what can succeed again, full-jitter backoff, never past the deadline."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from asherah_aws_kms_v2.deadline import Deadline
from asherah_aws_kms_v2.errors import RegionCallError, classify
from asherah_aws_kms_v2.retry import RetryPolicy, RetryState, call_with_retries
from asherah_core import KmsError

from .conftest import MakeKms
from .fakes import FakeAws, FakeClock, client_error

KEY = b"k" * 32
URL = "https://kms.us-west-2.amazonaws.com"


def throttled() -> Exception:
    return client_error("ThrottlingException", 400, "Rate exceeded")


RETRYABLE: dict[str, Any] = {
    "ThrottlingException": throttled,
    "KMSInternalException": lambda: client_error("KMSInternalException", 500),
    "InternalFailure 500": lambda: client_error("InternalFailure", 500),
    "an unknown 503": lambda: client_error("SomethingNew", 503),
    "an unknown 429": lambda: client_error("SlowDown", 429),
    "EndpointConnectionError": lambda: EndpointConnectionError(endpoint_url=URL),
    "ReadTimeoutError": lambda: ReadTimeoutError(endpoint_url=URL),
    "ConnectTimeoutError": lambda: ConnectTimeoutError(endpoint_url=URL),
    "ConnectionClosedError": lambda: ConnectionClosedError(endpoint_url=URL),
}
NOT_RETRYABLE: dict[str, Any] = {
    "AccessDeniedException": lambda: client_error("AccessDeniedException"),
    "DisabledException": lambda: client_error("DisabledException"),
    "NotFoundException": lambda: client_error("NotFoundException"),
    "InvalidCiphertextException": lambda: client_error("InvalidCiphertextException"),
    "IncorrectKeyException": lambda: client_error("IncorrectKeyException"),
    "KMSInvalidStateException": lambda: client_error("KMSInvalidStateException"),
    "a bug in a client": lambda: RuntimeError("boom"),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def one_region(aws: FakeAws, make_kms: MakeKms, clock: FakeClock, **options: Any) -> Any:
    options.setdefault("retry_base_delay_ms", 100.0)
    arns = {"us-west-2": aws.create_key("us-west-2")}
    return make_kms(arns, clock=clock, sleep=clock.sleep, region_cooldown=0, **options)


# Through AwsKms -------------------------------------------------------------------------


@pytest.mark.parametrize("make_error", RETRYABLE.values(), ids=RETRYABLE.keys())
def test_retryable_errors_are_retried_with_backoff_until_success(
    aws: FakeAws, make_kms: MakeKms, clock: FakeClock, make_error: Any
) -> None:
    kms = one_region(aws, make_kms, clock)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", make_error(), make_error())

    assert kms.decrypt_key(blob) == KEY

    assert len(aws.calls_to("decrypt")) == 3
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.1
    assert 0 <= clock.sleeps[1] <= 0.2


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_retries_stop_after_max_retries(
    aws: FakeAws, make_kms: MakeKms, clock: FakeClock, max_retries: int
) -> None:
    kms = one_region(aws, make_kms, clock, max_retries=max_retries)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", *(throttled() for _ in range(10)))

    with pytest.raises(KmsError, match="us-west-2: ThrottlingException: Rate exceeded"):
        kms.decrypt_key(blob)

    assert len(aws.calls_to("decrypt")) == 1 + max_retries
    assert len(clock.sleeps) == max_retries


@pytest.mark.parametrize("make_error", NOT_RETRYABLE.values(), ids=NOT_RETRYABLE.keys())
def test_errors_that_cannot_succeed_again_are_not_retried(
    aws: FakeAws, make_kms: MakeKms, clock: FakeClock, make_error: Any
) -> None:
    kms = one_region(aws, make_kms, clock)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", make_error())

    with pytest.raises(KmsError):
        kms.decrypt_key(blob)

    assert len(aws.calls_to("decrypt")) == 1
    assert clock.sleeps == []


def test_encrypt_retries_too(aws: FakeAws, make_kms: MakeKms, clock: FakeClock) -> None:
    arns = {r: aws.create_key(r) for r in ("us-west-2", "us-east-1")}
    kms = make_kms(arns, clock=clock, sleep=clock.sleep, min_regions="all")
    aws.fail_next("us-west-2", "generate_data_key", throttled())
    aws.fail_next("us-east-1", "encrypt", client_error("KMSInternalException", 500))

    kms.encrypt_key(KEY)

    assert [c.region for c in aws.calls] == ["us-west-2"] * 2 + ["us-east-1"] * 2
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize(
    "make_error",
    [
        RETRYABLE["EndpointConnectionError"],
        RETRYABLE["ReadTimeoutError"],
        RETRYABLE["ConnectTimeoutError"],
    ],
    ids=["EndpointConnectionError", "ReadTimeoutError", "ConnectTimeoutError"],
)
def test_connection_errors_fail_over_at_once_when_another_region_can_serve(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock, make_error: Any
) -> None:
    kms = make_kms(arns, clock=clock, sleep=clock.sleep, region_cooldown=0)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", make_error(), make_error())

    assert kms.decrypt_key(blob) == KEY

    assert [c.region for c in aws.calls_to("decrypt")] == ["us-west-2", "eu-west-1"]
    assert clock.sleeps == []


def test_throttling_is_retried_in_the_same_region_even_when_others_could_serve(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock
) -> None:
    kms = make_kms(arns, clock=clock, sleep=clock.sleep, region_cooldown=0)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", throttled())

    assert kms.decrypt_key(blob) == KEY

    assert [c.region for c in aws.calls_to("decrypt")] == ["us-west-2", "us-west-2"]


@pytest.mark.parametrize(
    ("min_regions", "expected_calls"),
    [(1, 1), (2, 1), ("all", 1 + 3)],  # max_retries is 3
)
def test_a_regional_encrypt_retries_a_timeout_only_when_min_regions_needs_that_copy(
    aws: FakeAws,
    arns: dict[str, str],
    make_kms: MakeKms,
    clock: FakeClock,
    min_regions: int | str,
    expected_calls: int,
) -> None:
    kms = make_kms(arns, clock=clock, sleep=clock.sleep, region_cooldown=0, min_regions=min_regions)
    aws.down["eu-west-1"] = ReadTimeoutError(endpoint_url=URL)

    with contextlib.suppress(KmsError):  # "all" cannot be met: the copy was needed
        kms.encrypt_key(KEY)

    assert len(aws.calls_to("encrypt", region="eu-west-1")) == expected_calls


def test_the_last_region_left_retries_connection_errors(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock
) -> None:
    kms = make_kms(arns, clock=clock, sleep=clock.sleep, region_cooldown=0)
    blob = kms.encrypt_key(KEY)
    aws.down["us-west-2"] = EndpointConnectionError(endpoint_url=URL)
    aws.down["eu-west-1"] = EndpointConnectionError(endpoint_url=URL)
    aws.fail_next("us-east-1", "decrypt", ReadTimeoutError(endpoint_url=URL))

    assert kms.decrypt_key(blob) == KEY

    assert [c.region for c in aws.calls_to("decrypt")] == [
        "us-west-2",
        "eu-west-1",
        "us-east-1",
        "us-east-1",
    ]


def test_backoff_never_sleeps_past_the_deadline(
    aws: FakeAws, make_kms: MakeKms, clock: FakeClock
) -> None:
    kms_deadline = 1.0
    kms = one_region(
        aws, make_kms, clock, max_retries=50, retry_base_delay_ms=400.0, operation_timeout=1.0
    )
    blob = kms.encrypt_key(KEY)
    aws.down["us-west-2"] = throttled()
    start = clock()

    with pytest.raises(KmsError, match="ThrottlingException"):
        kms.decrypt_key(blob)

    assert clock() - start < kms_deadline
    assert sum(clock.sleeps) < kms_deadline
    assert len(aws.calls_to("decrypt")) == len(clock.sleeps) + 1 < 51


def test_a_small_operation_timeout_bounds_retries_in_real_time(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    kms = make_kms(
        {"us-west-2": aws.create_key("us-west-2")},
        max_retries=100,
        retry_base_delay_ms=200.0,
        operation_timeout=0.3,
        region_cooldown=0,
    )
    blob = kms.encrypt_key(KEY)
    aws.down["us-west-2"] = throttled()

    start = time.perf_counter()
    with pytest.raises(KmsError, match=r"ThrottlingException|DeadlineExceeded"):
        kms.decrypt_key(blob)
    elapsed = time.perf_counter() - start

    assert elapsed < 0.3 + 0.25, elapsed


def test_a_call_slower_than_the_deadline_fails_with_deadline_exceeded(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    kms = make_kms({"us-west-2": aws.create_key("us-west-2")}, operation_timeout=0.15)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.5

    start = time.perf_counter()
    with pytest.raises(KmsError, match="us-west-2: DeadlineExceeded"):
        kms.decrypt_key(blob)
    elapsed = time.perf_counter() - start

    assert 0.14 <= elapsed < 0.4, elapsed


def test_an_encrypt_slower_than_the_deadline_fails_with_deadline_exceeded(
    aws: FakeAws, make_kms: MakeKms
) -> None:
    kms = make_kms({"us-west-2": aws.create_key("us-west-2")}, operation_timeout=0.15)
    aws.delays["us-west-2"] = 0.5

    start = time.perf_counter()
    with pytest.raises(KmsError, match="us-west-2: DeadlineExceeded"):
        kms.encrypt_key(KEY)

    assert time.perf_counter() - start < 0.4


# RetryPolicy ----------------------------------------------------------------------------


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 5, 8])
def test_delay_is_full_jitter_between_zero_and_the_exponential_ceiling(retry: int) -> None:
    policy = RetryPolicy(max_retries=10, base_delay=0.1, max_delay=5.0)
    ceiling = min(5.0, 0.1 * 2 ** (retry - 1))

    delays = [policy.delay(retry) for _ in range(400)]

    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.8 * ceiling  # reaches up to the ceiling
    assert min(delays) < 0.2 * ceiling  # and down towards zero
    assert len(set(delays)) > 300  # random, not a fixed schedule


def test_delay_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(max_retries=30, base_delay=0.1, max_delay=2.0)

    assert all(policy.delay(30) <= 2.0 for _ in range(200))


def test_a_zero_base_delay_never_waits() -> None:
    assert {RetryPolicy(base_delay=0.0).delay(r) for r in range(1, 6)} == {0.0}


# call_with_retries ----------------------------------------------------------------------


class FixedPolicy(RetryPolicy):
    """A policy whose backoff is a fixed 0.25 s, to make deadline arithmetic exact."""

    def delay(self, retry: int) -> float:
        return 0.25


class Flaky:
    """A KMS call that raises the given errors in turn, then answers; each try takes 0.01 s."""

    def __init__(self, clock: FakeClock, *errors: Exception) -> None:
        self.clock = clock
        self.errors = list(errors)
        self.tries = 0

    def __call__(self) -> Mapping[str, Any]:
        self.tries += 1
        self.clock.advance(0.01)
        if self.errors:
            raise self.errors.pop(0)
        return {"Plaintext": b"ok"}


def run(
    call: Flaky,
    clock: FakeClock,
    *,
    policy: RetryPolicy | None = None,
    deadline: float = 60.0,
    retry_timeouts: bool = True,
    **options: Any,
) -> tuple[Mapping[str, Any] | RetryState | RegionCallError, list[Any], list[RegionCallError]]:
    attempts: list[Any] = []
    retries: list[RegionCallError] = []
    try:
        result: Mapping[str, Any] | RetryState | RegionCallError = call_with_retries(
            call,
            region="us-west-2",
            operation="Decrypt",
            policy=policy or FixedPolicy(max_retries=3),
            deadline=Deadline(clock() + deadline, clock),
            retry_timeouts=retry_timeouts,
            on_attempt=lambda seconds, error: attempts.append((round(seconds, 6), error)),
            on_retry=retries.append,
            sleep=clock.sleep,
            **options,
        )
    except RegionCallError as e:
        result = e
    return result, attempts, retries


def test_call_with_retries_reports_each_attempt_and_retry_then_returns(clock: FakeClock) -> None:
    call = Flaky(clock, throttled(), client_error("KMSInternalException", 500))

    result, attempts, retries = run(call, clock)

    assert result == {"Plaintext": b"ok"}
    assert call.tries == 3
    assert [seconds for seconds, _ in attempts] == [0.01, 0.01, 0.01]
    assert [e.error_type if e else None for _, e in attempts] == [
        "ThrottlingException",
        "KMSInternalException",
        None,
    ]
    assert [e.error_type for e in retries] == ["ThrottlingException", "KMSInternalException"]
    assert clock.sleeps == [0.25, 0.25]


def test_call_with_retries_raises_a_region_call_error_chained_to_the_original(
    clock: FakeClock,
) -> None:
    original = client_error("AccessDeniedException", 400, "not allowed")
    call = Flaky(clock, original)

    error, _, retries = run(call, clock)

    assert isinstance(error, RegionCallError)
    assert str(error) == "us-west-2: Decrypt failed: AccessDeniedException: not allowed"
    assert (error.region_fault, error.retryable) == (False, False)
    assert error.__cause__ is original
    assert retries == []


def test_call_with_retries_does_not_retry_timeouts_when_another_region_can_serve(
    clock: FakeClock,
) -> None:
    call = Flaky(clock, ReadTimeoutError(endpoint_url=URL))

    error, _, _ = run(call, clock, retry_timeouts=False)

    assert isinstance(error, RegionCallError)
    assert (error.error_type, error.region_fault, error.retryable) == (
        "ReadTimeoutError",
        True,
        True,
    )
    assert call.tries == 1
    assert clock.sleeps == []


def test_call_with_retries_retries_timeouts_when_it_is_the_last_region(clock: FakeClock) -> None:
    call = Flaky(clock, ReadTimeoutError(endpoint_url=URL), ConnectTimeoutError(endpoint_url=URL))

    result, _, _ = run(call, clock, retry_timeouts=True)

    assert result == {"Plaintext": b"ok"}
    assert call.tries == 3


def test_call_with_retries_gives_up_when_the_backoff_would_cross_the_deadline(
    clock: FakeClock,
) -> None:
    # Deadline 0.6 s: try (0.01) + 0.25 sleep + try (0.01) + 0.25 sleep = 0.52; the next sleep
    # would end at 0.78, past the deadline, so the third failure is the last.
    call = Flaky(clock, *(throttled() for _ in range(10)))
    start = clock()

    error, _, retries = run(call, clock, policy=FixedPolicy(max_retries=10), deadline=0.6)

    assert isinstance(error, RegionCallError)
    assert error.error_type == "ThrottlingException"
    assert call.tries == 3
    assert len(retries) == 2
    assert clock() - start < 0.6


def test_call_with_retries_gives_up_after_max_retries(clock: FakeClock) -> None:
    call = Flaky(clock, *(throttled() for _ in range(10)))

    error, attempts, _ = run(call, clock, policy=FixedPolicy(max_retries=2))

    assert isinstance(error, RegionCallError)
    assert call.tries == len(attempts) == 3


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (client_error("ThrottlingException"), True),
        (client_error("KMSInternalException", 500), True),
        (client_error("Whatever", 502), True),
        (EndpointConnectionError(endpoint_url=URL), True),
        (client_error("AccessDeniedException"), False),
        (client_error("ValidationException"), False),
        (ValueError("bug"), False),
    ],
)
def test_classify_marks_region_faults_retryable(error: Exception, fault: bool) -> None:
    classified = classify("eu-west-1", "Encrypt", error)

    assert classified.region == "eu-west-1"
    assert classified.operation == "Encrypt"
    assert classified.region_fault is fault
    assert classified.retryable is fault


def test_a_retry_that_might_overrun_the_deadline_is_handed_off(clock: FakeClock) -> None:
    call = Flaky(clock, throttled(), throttled())
    deadline = clock() + 2.4
    handed_off, _, _ = run(
        call, clock, policy=FixedPolicy(max_retries=3), deadline=2.4, attempt_budget=2.0
    )
    # Attempt 1 at 0 (budget 2.0 fits in 2.4); after it and a 0.25 s backoff, 0.26 + 2.0
    # still fits, so attempt 2 runs; after the next backoff 0.52 + 2.0 > 2.4: hand off.
    assert isinstance(handed_off, RetryState)
    assert call.tries == 2
    assert handed_off.retries == 2

    finished, _, _ = run(
        call,
        clock,
        policy=FixedPolicy(max_retries=3),
        deadline=deadline - clock(),
        state=handed_off,
    )
    assert finished == {"Plaintext": b"ok"}
    assert call.tries == 3  # the retry count went on where the hand-off left it
