"""`RegionalKey`: one KMS key in one region: its client, its calls, their checks and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import Histogram

from asherah_core.forksafe import PerProcess

from .arn import KeyArn
from .clients import KmsClient
from .deadline import Deadline
from .dispatch import Gate
from .errors import RegionCallError, deadline_error
from .metrics import KmsMetrics, attributes
from .regions import RegionHealth
from .retry import NO_RETRIES, RetryPolicy, RetryState, call_with_retries

__all__ = [
    "DATA_KEY_BYTES",
    "DECRYPT",
    "ENCRYPT",
    "GENERATE_DATA_KEY",
    "Operation",
    "RegionalKey",
]

DATA_KEY_BYTES = 32


@dataclass(frozen=True, eq=False)  # the three below, compared and hashed by identity
class Operation:
    """A KMS operation: the client method, the API name in messages, the metric name."""

    method: str
    api: str
    metric: str


GENERATE_DATA_KEY = Operation("generate_data_key", "GenerateDataKey", "generatedatakey")
ENCRYPT = Operation("encrypt", "Encrypt", "encrypt")
DECRYPT = Operation("decrypt", "Decrypt", "decrypt")
_OPERATIONS = (GENERATE_DATA_KEY, ENCRYPT, DECRYPT)


class RegionalKey:
    """The configured key of one region; every KMS call of the plugin goes through one.

    Each call passes the locally configured ARN as KeyId, is retried per the policy, counts
    toward the region's health and is timed per attempt; its response is checked here.
    """

    def __init__(
        self,
        name: str,
        arn: KeyArn,
        client: KmsClient,
        *,
        remake: Callable[[], KmsClient] | None = None,
        health: RegionHealth,
        metrics: KmsMetrics,
        policy: RetryPolicy,
        gate: Gate,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.arn = arn
        # A forked child makes its own client with `remake` (see asherah_core.forksafe);
        # without it, the one client given serves every process.
        self._clients = PerProcess(remake or (lambda: client), first=client)
        self.key_id = str(arn)  # the ARN as KMS takes it and envelopes hold it
        self._health = health
        self._metrics = metrics
        self._policy = policy
        self._gate = gate
        self._sleep = sleep
        self._recorders = {
            op: _attempt_recorder(metrics.kms_call(op.metric, name), name) for op in _OPERATIONS
        }

    @property
    def client(self) -> KmsClient:
        """The client of this process: a forked child makes its own with `remake` on its
        first call (the parent's shares its connections with the parent)."""
        return self._clients.get()

    def call(  # noqa: PLR0917 - bound by partial, then called as work(state, attempt_budget)
        self,
        operation: Operation,
        params: Mapping[str, Any],
        deadline: Deadline,
        retry_timeouts: bool,
        state: RetryState = NO_RETRIES,
        attempt_budget: float = 0.0,
    ) -> Mapping[str, Any] | RetryState:
        """Make `operation` with retries until `deadline`, retrying connection errors and
        timeouts only if `retry_timeouts` (no other region can take over); the `RetryState`
        due if the rest must move to a thread the caller can leave (see `call_with_retries`).

        With its first four arguments bound (``partial(key.call, ...)``), it is the work
        `Dispatcher.run` takes.
        """
        if deadline.expired():
            raise deadline_error(self.name, operation.api)
        health = self._health
        if health.cooling:  # otherwise there is no probe to mark: no call on the common path
            health.calling(self.name)
        method = getattr(self.client, operation.method)
        kwargs = {"KeyId": self.key_id, **params}
        gate = self._gate

        def attempt() -> Mapping[str, Any]:
            gate.enter()
            try:
                response: Mapping[str, Any] = method(**kwargs)
            finally:
                gate.leave()
            return response

        try:
            result = call_with_retries(
                attempt,
                region=self.name,
                operation=operation.api,
                policy=self._policy,
                deadline=deadline,
                retry_timeouts=retry_timeouts,
                on_attempt=self._recorders[operation],
                on_retry=self._count_retry,
                sleep=self._sleep,
                state=state,
                attempt_budget=attempt_budget,
            )
        except RegionCallError as e:
            if e.region_fault:
                health.record_fault(self.name, e.summary)
            else:
                health.record_success(self.name)  # it answered; the key is the problem
            raise
        if health.cooling and not isinstance(result, RetryState):
            health.record_success(self.name)
        return result

    def call_to_the_end(
        self,
        operation: Operation,
        params: Mapping[str, Any],
        deadline: Deadline,
        *,
        retry_timeouts: bool,
    ) -> Mapping[str, Any]:
        """Make `operation` with every retry the deadline allows, in this thread (a worker's)."""
        result = self.call(operation, params, deadline, retry_timeouts)
        assert not isinstance(result, RetryState)  # only an attempt budget stops early
        return result

    def data_key(self, operation: Operation, response: Mapping[str, Any]) -> bytes:
        """The 32-byte data key in a GenerateDataKey or Decrypt response."""
        data_key = response.get("Plaintext")
        if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_BYTES:
            size = len(data_key) if isinstance(data_key, bytes) else 0
            raise self._invalid(
                operation,
                "InvalidDataKeyLength",
                f"KMS returned a {size}-byte data key, expected {DATA_KEY_BYTES}",
            )
        return data_key

    def ciphertext(self, operation: Operation, response: Mapping[str, Any]) -> bytes:
        """The CiphertextBlob of a GenerateDataKey or Encrypt response."""
        blob = response.get("CiphertextBlob")
        if not isinstance(blob, bytes) or not blob:
            raise self._invalid(operation, "InvalidResponse", "no CiphertextBlob")
        return blob

    def _invalid(self, operation: Operation, error_type: str, detail: str) -> RegionCallError:
        return RegionCallError(
            self.name, operation.api, error_type, detail, region_fault=False, retryable=False
        )

    def _count_retry(self, error: RegionCallError) -> None:
        self._metrics.retries.add(1, self._failed(error))

    def _failed(self, error: RegionCallError) -> Mapping[str, str]:
        return attributes(self.name, error.error_type)

    def close(self) -> None:
        """Close this process's client (its connection pool). In a forked child, a client the
        parent made stays open: with `remake` the child closes only its own."""
        close = getattr(self._clients.mine(), "close", None)
        if callable(close):
            close()


def _attempt_recorder(
    histogram: Histogram, region: str
) -> Callable[[float, RegionCallError | None], None]:
    """Record one attempt's duration in `histogram`, with its error type when it failed."""
    ok = attributes(region)

    def record(seconds: float, error: RegionCallError | None) -> None:
        histogram.record(seconds, ok if error is None else attributes(region, error.error_type))

    return record
