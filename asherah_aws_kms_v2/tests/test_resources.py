"""A failed KMS call lets go of its connection at once, not when the garbage collector runs.

botocore's and urllib3's exceptions reach us with tracebacks whose frames hold the response and
connection objects in reference cycles; kept alive, their sockets stay open (the soak test saw
a handful per run). `call_with_retries` clears those frames' locals, keeping file and line.
"""

from __future__ import annotations

import gc
import traceback
import weakref
from collections.abc import Iterator

import pytest
from botocore.exceptions import EndpointConnectionError

from asherah_aws_kms_v2.deadline import Deadline
from asherah_aws_kms_v2.errors import RegionCallError
from asherah_aws_kms_v2.retry import RetryPolicy, call_with_retries


class Connection:
    """Stands for urllib3's connection (and its socket)."""


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def failing_call(holder: list[Connection]) -> None:
    connection = holder.pop()  # a local of a frame in the traceback, as in urllib3
    try:
        raise OSError("connection reset")
    except OSError as e:
        cause = e  # the frame holds its error and the error its frame: a cycle
        raise EndpointConnectionError(endpoint_url="https://kms.example") from cause
    finally:
        assert connection is not None


def test_the_connection_of_a_failed_call_is_released_without_gc(no_gc: None) -> None:
    holder = [Connection()]
    alive = weakref.ref(holder[0])

    with pytest.raises(RegionCallError) as caught:
        call_with_retries(
            lambda: failing_call(holder),  # type: ignore[arg-type, func-returns-value]
            region="us-west-2",
            operation="Decrypt",
            policy=RetryPolicy(max_retries=0),
            deadline=Deadline.after(5),
            retry_timeouts=False,
            on_attempt=lambda *_: None,
            on_retry=lambda _: None,
        )

    assert alive() is None
    # The chain and where each error was raised are still there for a traceback.
    assert isinstance(caught.value.__cause__, EndpointConnectionError)
    text = "".join(traceback.format_exception(caught.value))
    assert "failing_call" in text
    assert "connection reset" in text


def test_without_it_the_cycle_would_keep_the_connection_until_gc(no_gc: None) -> None:
    """The control: the same failure, not passed through call_with_retries."""
    holder = [Connection()]
    alive = weakref.ref(holder[0])

    with pytest.raises(EndpointConnectionError):
        failing_call(holder)

    assert alive() is not None
    gc.collect()
    assert alive() is None
