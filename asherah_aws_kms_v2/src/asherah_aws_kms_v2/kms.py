"""`AwsKms`: the KMS interface over the regional keys; each operation is one call object."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

from opentelemetry.metrics import Histogram, Meter

from asherah_core import Aead, KeyManagementService, KmsError, ProbeResult

from .arn import mrk_groups
from .clients import KmsClient
from .context import KmsContext
from .deadline import Deadline
from .decrypt_call import DecryptCall
from .dispatch import Dispatcher
from .encrypt_call import EncryptCall
from .envelope import MAX_KEY_BYTES, entry_head
from .errors import ClosedError, RegionCallError, deadline_error, error_type
from .metrics import KmsMetrics, attributes
from .redact import install_log_redaction
from .regional import DECRYPT, GENERATE_DATA_KEY, RegionalKey
from .regions import Probe, RegionHealth
from .retry import RetryPolicy
from .settings import AwsKmsSettings

__all__ = ["AwsKms"]

_AES_256 = {"KeySpec": "AES_256"}
_SUCCEEDED = attributes()  # a measurement's attributes when the operation succeeded
_CLOSED = "this AwsKms is closed"


class _Call(Protocol):
    """`EncryptCall` or `DecryptCall`: made per operation, then run once."""

    def __call__(
        self, context: KmsContext, argument: bytes, deadline: Deadline, probes: list[Probe], /
    ) -> EncryptCall | DecryptCall: ...


class AwsKms(KeyManagementService):
    """Wraps keys with AWS KMS in several regions; build it with `AwsKmsBuilder`.

    encrypt_key: a data key from GenerateDataKey in the first healthy region (or, in local
    data key mode, from the OS), the key sealed under it, and a KMS-encrypted copy of the data
    key for every region, made concurrently. decrypt_key: the regions in order (preferred
    first, cooling regions last), optionally hedged, until one unwraps the key.
    Thread-safe; `close()` releases the clients and the worker threads. In a forked child it
    starts worker threads of its own, and with `client_maker` (the builder passes one) new
    clients too: the parent's are set aside, neither used nor closed.
    """

    def __init__(
        self,
        settings: AwsKmsSettings,
        crypto: Aead,
        clients: Mapping[str, KmsClient],
        *,
        client_maker: Callable[[str], KmsClient] | None = None,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        missing = [r.name for r in settings.regions if r.name not in clients]
        if missing:
            raise KmsError(f"no KMS client for region(s) {', '.join(missing)}")
        install_log_redaction()  # botocore's DEBUG logs would show data keys otherwise
        self._settings = settings
        self._deadline_seconds = settings.deadline
        self._clock = clock
        order = tuple(r.name for r in settings.regions)
        metrics = KmsMetrics(meter)
        health = RegionHealth(
            order,
            cooldown=settings.region_cooldown,
            probe_timeout=settings.deadline,
            on_change=self._health_changed,
            clock=clock,
        )
        # The longest one attempt can take: botocore's connect and read timeouts.
        dispatcher = Dispatcher(
            max_workers=settings.max_concurrency, attempt_budget=2 * settings.timeout
        )
        policy = RetryPolicy(settings.max_retries, settings.retry_base_delay_ms / 1000.0)
        keys = {
            r.name: RegionalKey(
                r.name,
                r.arn,
                clients[r.name],
                remake=None if client_maker is None else partial(client_maker, r.name),
                health=health,
                metrics=metrics,
                policy=policy,
                gate=dispatcher.gate,
                sleep=sleep,
            )
            for r in settings.regions
        }
        arns = {r.name: r.arn for r in settings.regions}
        self._metrics = metrics
        self._gate = dispatcher.gate
        self._ctx = KmsContext(
            settings=settings,
            crypto=crypto,
            keys=keys,
            order=order,
            groups=mrk_groups(arns, order) if settings.mrk_awareness else {r: (r,) for r in order},
            entry_heads={r: entry_head(r, str(arn)) for r, arn in arns.items()},
            health=health,
            dispatcher=dispatcher,
            metrics=metrics,
        )

    @property
    def settings(self) -> AwsKmsSettings:
        """The validated settings this instance runs with."""
        return self._settings

    @property
    def regions(self) -> tuple[str, ...]:
        """The configured regions in canonical order (preferred first)."""
        return self._ctx.order

    def encrypt_key(self, key: bytes) -> bytes:
        """Wrap `key`; return the JSON envelope with a copy of the data key per region."""
        if not isinstance(key, bytes | bytearray | memoryview):
            raise KmsError(f"encrypt_key: the key must be bytes, not {type(key).__name__}")
        view = memoryview(key)  # its size in bytes, whatever the item size
        if not 0 < view.nbytes <= MAX_KEY_BYTES:
            raise KmsError(
                f"encrypt_key: the key is {view.nbytes} bytes; "
                f"it must be 1 to {MAX_KEY_BYTES} bytes"
            )
        plaintext = key if type(key) is bytes else view.tobytes()
        return self._operate("encrypt_key", self._metrics.encrypt_key, EncryptCall, plaintext)

    def decrypt_key(self, encrypted: bytes) -> bytes:
        """Unwrap an envelope written by `encrypt_key` (or by another Asherah implementation)."""
        return self._operate("decrypt_key", self._metrics.decrypt_key, DecryptCall, encrypted)

    def _operate(self, name: str, histogram: Histogram, call: _Call, argument: bytes) -> bytes:
        """Run one encrypt_key or decrypt_key (`call` made with `argument`): its deadline, its
        duration metric, and the probes of recovering regions it was granted but did not use."""
        if self._gate.closed:
            raise KmsError(_CLOSED)
        start = time.perf_counter()
        failure = None
        probes: list[Probe] = []
        try:
            deadline = Deadline(self._clock() + self._deadline_seconds, self._clock)
            return call(self._ctx, argument, deadline, probes).run()
        except ClosedError as e:
            failure = "KmsError"
            raise KmsError(f"{name}: this AwsKms was closed during the call") from e
        except BaseException as e:
            failure = error_type(e)
            raise
        finally:
            if probes:
                self._ctx.health.release(probes)
            histogram.record(
                time.perf_counter() - start,
                _SUCCEEDED if failure is None else attributes(error_type=failure),
            )

    def diagnose(self) -> list[ProbeResult]:
        """Probe each region (GenerateDataKey, then Decrypt of its blob) and the whole envelope.

        Each region gets at most two attempt timeouts, and all of them together no more than
        one operation's deadline: regions not reached by then are reported as not probed.
        """
        if self._gate.closed:
            raise KmsError(_CLOSED)
        ctx = self._ctx
        overall = Deadline(self._clock() + self._settings.deadline, self._clock)
        results: list[ProbeResult] = []
        for region in ctx.order:
            key = ctx.keys[region]
            start = time.perf_counter()
            deadline = Deadline(
                min(overall.at, self._clock() + 2 * self._settings.timeout), self._clock
            )
            try:
                generated = ctx.dispatcher.run(
                    partial(key.call, GENERATE_DATA_KEY, _AES_256, deadline, True),
                    deadline,
                    partial(deadline_error, region, GENERATE_DATA_KEY.api),
                )
                data_key = key.data_key(GENERATE_DATA_KEY, generated)
                blob = key.ciphertext(GENERATE_DATA_KEY, generated)
                decrypted = ctx.dispatcher.run(
                    partial(key.call, DECRYPT, {"CiphertextBlob": blob}, deadline, True),
                    deadline,
                    partial(deadline_error, region, DECRYPT.api),
                )
                ok = key.data_key(DECRYPT, decrypted) == data_key
                detail = "GenerateDataKey and Decrypt" if ok else "Decrypt returned another key"
            except RegionCallError as e:
                ok, detail = False, e.summary
            except ClosedError as e:
                raise KmsError("diagnose: this AwsKms was closed during the call") from e
            results.append(ProbeResult(region, ok, time.perf_counter() - start, detail))
        results.extend(super().diagnose())
        return results

    def close(self) -> None:
        """Stop the worker threads and, once no KMS call is under way, close the clients.

        After close, no KMS call is started: calls in flight fail with `KmsError`. Safe to
        call more than once.
        """
        self._ctx.dispatcher.close(self._close_clients)

    def _close_clients(self) -> None:
        for key in self._ctx.keys.values():
            key.close()

    def __repr__(self) -> str:
        settings = self._settings
        mode = "local-data-key" if settings.local_data_key else "generate-data-key"
        return (
            f"AwsKms(regions={list(self._ctx.order)!r}, preferred_region={self._ctx.order[0]!r}, "
            f"mode={mode!r}, min_regions={settings.min_regions})"
        )

    def _health_changed(self, region: str, healthy: bool) -> None:
        state = "healthy" if healthy else "unhealthy"
        self._metrics.health_changes.add(1, {"cloud.region": region, "state": state})
