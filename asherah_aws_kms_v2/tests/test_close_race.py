"""After close() no KMS call is made: not by the caller's thread failing over, not by a pool
worker retrying; the clients are closed once the attempt under way has ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from botocore.exceptions import EndpointConnectionError

from asherah_aws_kms_v2 import AwsKms
from asherah_core import KmsError

from .conftest import MakeKms
from .fakes import FakeAws, client_error

KEY = b"k" * 32
URL = "https://kms.us-west-2.amazonaws.com"


def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        time.sleep(0.001)
    raise AssertionError("the condition never held")


def close_during_a_call(aws: FakeAws, kms: AwsKms, call: Callable[[], bytes]) -> BaseException:
    """Run `call` in a thread; close `kms` while a KMS call is inside the fake's injected
    delay (a call without one, such as the preferred region's before a slow one, can be over
    before `close` runs: then nothing is under way and every client may close at once)."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: aws.delayed_in_flight > 0)
    calls_at_close = len(aws.calls)
    kms.close()
    assert not any(c.closed for c in aws.clients), "a client was closed under its own call"
    thread.join(10)
    assert not thread.is_alive()
    assert len(aws.calls) == calls_at_close, [c.region for c in aws.calls[calls_at_close:]]
    assert all(c.closed for c in aws.clients)
    assert len(outcome) == 1
    return outcome[0]


def test_a_decrypt_does_not_fail_over_after_close(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, region_cooldown=0)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.2
    aws.down["us-west-2"] = EndpointConnectionError(endpoint_url=URL)

    error = close_during_a_call(aws, kms, lambda: kms.decrypt_key(blob))

    assert isinstance(error, KmsError)
    assert "closed" in str(error)


def test_pool_workers_stop_retrying_after_close(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, region_cooldown=0, max_retries=50, retry_base_delay_ms=1.0)
    aws.delays["us-east-1"] = 0.1
    aws.down["us-east-1"] = client_error("ThrottlingException", 400)

    with pytest.raises(KmsError):
        raise close_during_a_call(aws, kms, lambda: kms.encrypt_key(KEY))


def test_a_decrypt_cannot_succeed_after_close(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns, region_cooldown=0, max_retries=5)
    blob = kms.encrypt_key(KEY)
    aws.delays["us-west-2"] = 0.2
    aws.fail_next("us-west-2", "decrypt", client_error("ThrottlingException", 400))

    error = close_during_a_call(aws, kms, lambda: kms.decrypt_key(blob))

    assert isinstance(error, KmsError)
