"""boto3 KMS clients: one per region, created once; each call bounded, retried and classified."""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

__all__ = [
    "HandOff",
    "KmsClient",
    "KmsClientFactory",
    "RegionCallError",
    "RetryPolicy",
    "call_with_retries",
    "client_config",
    "default_client_factory",
    "make_clients",
]

USER_AGENT_EXTRA = "asherah-py-aws-kms-v2/0.1.0"
# Error codes after which the same call may succeed: throttling and server-side faults.
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
    }
)
# Failures where no answer came from KMS: retrying the same region pays the wait again.
_CONNECTION_ERRORS = frozenset(
    {
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "EndpointConnectionError",
        "ConnectionClosedError",
        "HTTPClientError",
        "ProxyConnectionError",
        "SSLError",
        "ConnectionError",
    }
)
_THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException"}
)


class KmsClient(Protocol):
    """The part of a boto3 KMS client this plugin uses."""

    def generate_data_key(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def encrypt(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def decrypt(self, **kwargs: Any) -> Mapping[str, Any]: ...


class KmsClientFactory(Protocol):
    """Make the KMS client of one region: ``factory(region, *, session, endpoint_url, config)``."""

    def __call__(
        self,
        region: str,
        *,
        session: boto3.Session,
        endpoint_url: str | None,
        config: Config,
    ) -> KmsClient: ...


def default_client_factory(
    region: str, *, session: boto3.Session, endpoint_url: str | None, config: Config
) -> KmsClient:
    """Make a boto3 KMS client for `region` from `session`."""
    client: Any = session.client(
        "kms", region_name=region, endpoint_url=endpoint_url, config=config
    )
    return cast(KmsClient, client)


def client_config(timeout: float, max_connections: int) -> Config:
    """Client settings: our timeouts, botocore's own retries off (we retry), a connection pool."""
    return Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max_connections,
        user_agent_extra=USER_AGENT_EXTRA,
    )


_session_lock = threading.Lock()


def make_clients(
    regions: Mapping[str, str | None],
    *,
    session: boto3.Session | None,
    factory: KmsClientFactory,
    config: Config,
) -> dict[str, KmsClient]:
    """Make one client per region (``region -> endpoint``); Sessions are not thread-safe."""
    with _session_lock:
        session = session if session is not None else boto3.session.Session()
        return {
            region: factory(region, session=session, endpoint_url=endpoint, config=config)
            for region, endpoint in regions.items()
        }


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry a retryable failure, and the base of the backoff."""

    max_retries: int = 3
    base_delay: float = 0.1
    max_delay: float = 5.0

    def delay(self, retry: int) -> float:
        """Full-jitter exponential backoff for the `retry`-th retry (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (retry - 1)))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography


class RegionCallError(Exception):
    """One KMS call in one region failed; carries a short, secret-free description."""

    def __init__(
        self,
        region: str,
        operation: str,
        error_type: str,
        detail: str,
        *,
        region_fault: bool,
        retryable: bool,
    ) -> None:
        super().__init__(f"{region}: {operation} failed: {error_type}: {detail}")
        self.region = region
        self.operation = operation
        self.error_type = error_type
        self.detail = detail
        self.region_fault = region_fault
        self.retryable = retryable

    @property
    def summary(self) -> str:
        """``ErrorType: detail`` for a message that lists several regions."""
        return f"{self.error_type}: {self.detail}"


def classify(region: str, operation: str, error: Exception) -> RegionCallError:
    """Turn a botocore error into a `RegionCallError` that says whether the region is at fault.

    Region faults (connection errors, timeouts, throttling, 5xx) are retryable and move the
    region to the back of the order; key-level errors (access denied, disabled or missing
    key, bad ciphertext) are neither.
    """
    if isinstance(error, RegionCallError):
        return error
    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        code = str(err.get("Code") or "ClientError")
        message = str(err.get("Message") or "")[:300]
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        fault = code in _RETRYABLE_CODES or status >= 500 or status == 429
        return RegionCallError(
            region,
            operation,
            code,
            message or f"HTTP {status}",
            region_fault=fault,
            retryable=fault,
        )
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return RegionCallError(
            region, operation, type(error).__name__, "timed out", region_fault=True, retryable=True
        )
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return RegionCallError(
            region,
            operation,
            type(error).__name__,
            _short(error),
            region_fault=True,
            retryable=True,
        )
    if isinstance(error, BotoCoreError):
        return RegionCallError(
            region,
            operation,
            type(error).__name__,
            _short(error),
            region_fault=False,
            retryable=False,
        )
    return RegionCallError(
        region, operation, type(error).__name__, _short(error), region_fault=False, retryable=False
    )


def is_throttling(error: RegionCallError) -> bool:
    """Whether the failure was KMS refusing the request rate."""
    return error.error_type in _THROTTLING_CODES


def call_with_retries(
    call: Callable[[], Mapping[str, Any]],
    *,
    region: str,
    operation: str,
    policy: RetryPolicy,
    deadline: float,
    retry_timeouts: bool,
    on_attempt: Callable[[float, RegionCallError | None], None],
    on_retry: Callable[[RegionCallError], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    attempt_budget: float = 0.0,
    first_retry: int = 0,
) -> Mapping[str, Any]:
    """Run `call`, retrying retryable failures with backoff, never past `deadline`.

    With ``retry_timeouts=False`` (another region can take over) connection errors and
    timeouts fail at once instead of paying the timeout again. `on_attempt` sees each
    attempt's duration and error. With an `attempt_budget`, an attempt that might not end
    before the deadline is not started: `HandOff` says which retry is due instead, so a
    caller that cannot leave early can pass the call to one that can (`first_retry`).
    """
    retry = first_retry
    while True:
        if attempt_budget and retry > first_retry and clock() + attempt_budget > deadline:
            raise HandOff(retry)
        start = clock()
        try:
            response = call()
        except Exception as e:
            _release_frames(e)
            error = classify(region, operation, e)
            on_attempt(clock() - start, error)
            connection_level = error.error_type in _CONNECTION_ERRORS
            if (
                not error.retryable
                or retry >= policy.max_retries
                or (connection_level and not retry_timeouts)
            ):
                raise error from e
            retry += 1
            delay = policy.delay(retry)
            if clock() + delay >= deadline:
                raise error from e
            on_retry(error)
            sleep(delay)
            continue
        on_attempt(clock() - start, None)
        return response


class HandOff(Exception):  # noqa: N818 - a signal between two callers, not an error
    """The next attempt might overrun the deadline in this thread; `retry` is the one due."""

    def __init__(self, retry: int) -> None:
        super().__init__(f"retry {retry} handed off")
        self.retry = retry


def _release_frames(error: BaseException) -> None:
    """Clear the local variables of the finished frames in `error`'s tracebacks (and of the
    errors chained to it), keeping the file and line of each frame.

    Those frames hold urllib3's response and connection objects in reference cycles, so their
    sockets would stay open until the garbage collector ran; this closes them at once.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        stack += [e.__cause__, e.__context__]


def _short(error: Exception) -> str:
    text = str(error).replace("\n", " ")
    return text if len(text) <= 300 else text[:300] + "…"
