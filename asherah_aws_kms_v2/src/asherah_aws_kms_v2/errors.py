"""What a failed KMS call says: `RegionCallError`, mapped from botocore's errors; `ClosedError`."""

from __future__ import annotations

import re
from collections.abc import Mapping

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from asherah_core import KmsError

__all__ = [
    "CONNECTION_ERRORS",
    "ClosedError",
    "RegionCallError",
    "all_failed",
    "classify",
    "deadline_error",
    "error_type",
    "is_throttling",
]

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
CONNECTION_ERRORS = frozenset(
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
_MAX_DETAIL = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class ClosedError(KmsError):
    """The `AwsKms` was closed; no KMS call is made after that."""


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
        code = one_line(str(err.get("Code") or "ClientError"), 100)
        message = one_line(str(err.get("Message") or ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        fault = code in _RETRYABLE_CODES or status >= 500 or status == 429
        return RegionCallError(
            region, operation, code, message or f"HTTP {status}",
            region_fault=fault, retryable=fault,
        )  # fmt: skip
    name = type(error).__name__
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return RegionCallError(
            region, operation, name, "timed out", region_fault=True, retryable=True
        )
    # Connection errors are region faults; any other botocore error, or a bug, is not.
    fault = isinstance(error, BotoConnectionError | HTTPClientError)
    return RegionCallError(
        region, operation, name, one_line(str(error)), region_fault=fault, retryable=fault
    )


def is_throttling(error: RegionCallError) -> bool:
    """Whether the failure was KMS refusing the request rate."""
    return error.error_type in _THROTTLING_CODES


def one_line(text: str, limit: int = _MAX_DETAIL) -> str:
    """`text` on one line (control characters, newlines included, become a space), shortened."""
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= limit else text[:limit] + "…"


def deadline_error(region: str, operation: str) -> RegionCallError:
    """The error of a call the operation's deadline cut short."""
    return RegionCallError(
        region, operation, "DeadlineExceeded", "the operation's deadline passed first",
        region_fault=False, retryable=False,
    )  # fmt: skip


def all_failed(
    message: str, errors: Mapping[str, RegionCallError], *, summarise: bool = True
) -> KmsError:
    """A `KmsError` for an operation no region could serve, caused by each region's error."""
    if summarise and errors:
        message += ": " + "; ".join(f"{r}: {e.summary}" for r, e in errors.items())
    error = KmsError(message)
    causes = list(errors.values())
    if len(causes) == 1:
        error.__cause__ = causes[0]
    elif causes:
        error.__cause__ = ExceptionGroup("errors per region", causes)
    return error


def error_type(error: BaseException) -> str:
    """The low-cardinality ``error.type`` of a failed operation."""
    cause = error.__cause__
    if isinstance(cause, RegionCallError):
        return cause.error_type
    return type(error).__name__
