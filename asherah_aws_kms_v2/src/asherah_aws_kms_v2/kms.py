"""`AwsKms`: one encrypt_key or decrypt_key orchestrated over the configured regions."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from typing import Any

from opentelemetry.metrics import Histogram, Meter

from asherah_core import Aead, ConfigError, CryptoError, KeyManagementService, KmsError, ProbeResult

from .arn import parse_arn, same_multi_region_key
from .clients import HandOff, KmsClient, RegionCallError, RetryPolicy, call_with_retries
from .envelope import MAX_KEY_BYTES, Envelope, RegionalKek, parse_envelope
from .metrics import KmsMetrics, attributes
from .redact import install_log_redaction
from .regions import RegionHealth
from .settings import AwsKmsSettings

__all__ = ["AwsKms"]

logger = logging.getLogger("asherah_aws_kms_v2")
DATA_KEY_BYTES = 32
_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
_METRIC_OPERATION = {
    "generate_data_key": "generatedatakey",
    "encrypt": "encrypt",
    "decrypt": "decrypt",
}


class AwsKms(KeyManagementService):
    """Wraps keys with AWS KMS in several regions; build it with `AwsKmsBuilder`.

    encrypt_key: a data key from GenerateDataKey in the first healthy region (or, in local
    data key mode, from the OS), the key sealed under it, and a KMS-encrypted copy of the data
    key for every region, made concurrently. decrypt_key: the regions in order (preferred
    first, cooling regions last), optionally hedged, until one unwraps the key.
    Thread-safe; `close()` releases the clients and the worker threads.
    """

    def __init__(
        self,
        settings: AwsKmsSettings,
        crypto: Aead,
        clients: Mapping[str, KmsClient],
        *,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        missing = [r.name for r in settings.regions if r.name not in clients]
        if missing:
            raise KmsError(f"no KMS client for region(s) {', '.join(missing)}")
        install_log_redaction()  # botocore's DEBUG logs would show data keys otherwise
        self._settings = settings
        self._crypto = crypto
        self._clients = dict(clients)
        self._order = tuple(r.name for r in settings.regions)
        self._arns = {r.name: r.arn for r in settings.regions}
        self._groups = self._mrk_groups() if settings.mrk_awareness else {}
        # The longest one attempt can take: botocore's connect and read timeouts.
        self._attempt_budget = 2 * settings.timeout
        self._retry = RetryPolicy(settings.max_retries, settings.retry_base_delay_ms / 1000.0)
        self._metrics = KmsMetrics(meter)
        self._clock = clock
        self._sleep = sleep
        self._health = RegionHealth(
            self._order,
            cooldown=settings.region_cooldown,
            probe_timeout=settings.deadline,
            on_change=self._health_changed,
            clock=clock,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrency, thread_name_prefix="asherah-aws-kms"
        )
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def settings(self) -> AwsKmsSettings:
        """The validated settings this instance runs with."""
        return self._settings

    @property
    def regions(self) -> tuple[str, ...]:
        """The configured regions in canonical order (preferred first)."""
        return self._order

    # encrypt_key ------------------------------------------------------------------------

    def encrypt_key(self, key: bytes) -> bytes:
        """Wrap `key`; return the JSON envelope with a copy of the data key per region."""
        self._check_open()
        if not isinstance(key, bytes | bytearray | memoryview):
            raise KmsError(f"encrypt_key: the key must be bytes, not {type(key).__name__}")
        if not 0 < len(key) <= MAX_KEY_BYTES:
            raise KmsError(
                f"encrypt_key: the key is {len(key)} bytes; it must be 1 to {MAX_KEY_BYTES} bytes"
            )
        plaintext = bytes(key)
        return self._operate(
            "encrypt_key",
            self._metrics.encrypt_key,
            lambda deadline, probes: self._encrypt(plaintext, deadline, probes),
        )

    def _operate(
        self,
        name: str,
        histogram: Histogram,
        body: Callable[[float, list[tuple[str, float]]], bytes],
    ) -> bytes:
        """Run one encrypt_key or decrypt_key: its deadline, its duration metric, the probes
        it was granted, and a close() that races with it."""
        start = time.perf_counter()
        error_type = None
        probes: list[tuple[str, float]] = []  # probes of recovering regions granted to us
        try:
            return body(self._clock() + self._settings.deadline, probes)
        except BaseException as e:
            if isinstance(e, RuntimeError | CancelledError) and self._closed:
                # close() shut the pool under this call: no new work, queued work cancelled.
                error_type = "KmsError"
                raise KmsError(f"{name}: this AwsKms was closed during the call") from e
            error_type = _error_type(e)
            raise
        finally:
            self._health.release(probes)  # those of regions this call never asked
            histogram.record(time.perf_counter() - start, attributes(error_type=error_type))

    def _encrypt(self, key: bytes, deadline: float, probes: list[tuple[str, float]]) -> bytes:
        usable, cooling = self._health.split(self._order, probes=probes)
        order = usable + cooling
        entries: dict[str, bytes] = {}
        errors: dict[str, RegionCallError] = {}
        first: str | None = None
        if self._settings.local_data_key:
            data_key = os.urandom(DATA_KEY_BYTES)
        else:
            first, data_key, blob = self._generate_data_key(order, deadline, errors)
            for region in self._group(first):
                entries[region] = blob
        try:
            encrypted_key = self._crypto.encrypt(key, data_key)
        except CryptoError as e:
            raise KmsError(f"encrypt_key: sealing the key failed: {e}") from e
        # A region that just faulted, or is cooling down, would likely cost a timeout again:
        # leave it out unless it is needed to reach min_regions.
        faulted = [r for r in usable if r in errors and errors[r].region_fault]
        usable = [r for r in usable if r not in faulted]
        cooling = faulted + cooling
        skipped: list[str] = []
        if len(usable) >= self._settings.min_regions:
            skipped, order = cooling, usable
            for region in skipped:
                errors.setdefault(region, _cooling_error(region))
        self._encrypt_remaining(order, data_key, deadline, entries, errors)
        if len(entries) < self._settings.min_regions and skipped:
            # The healthy regions fell short after all (a key error, say): ask the others too.
            self._encrypt_remaining(skipped, data_key, deadline, entries, errors)
        self._check_coverage(entries, errors)
        head = [first] if first is not None else []
        keks = tuple(
            RegionalKek(region, str(self._arns[region]), entries[region])
            for region in head + [r for r in self._order if r != first]
            if region in entries
        )
        return Envelope(encrypted_key, keks).to_bytes()

    def _generate_data_key(
        self, order: Sequence[str], deadline: float, errors: dict[str, RegionCallError]
    ) -> tuple[str, bytes, bytes]:
        for i, region in enumerate(order):
            last = i == len(order) - 1
            try:
                response = self._run(
                    region, "generate_data_key", {"KeySpec": "AES_256"}, deadline, last
                )
                data_key = _data_key(region, "GenerateDataKey", response)
                blob = response.get("CiphertextBlob")
                if not isinstance(blob, bytes) or not blob:
                    raise RegionCallError(
                        region, "GenerateDataKey", "InvalidResponse", "no CiphertextBlob",
                        region_fault=False, retryable=False,
                    )  # fmt: skip
            except RegionCallError as e:
                errors[region] = e
                if not last:
                    self._failover("encrypt_key", e)
                continue
            return region, data_key, blob
        raise _all_failed("encrypt_key: GenerateDataKey failed in every region", errors)

    def _encrypt_remaining(
        self,
        order: Sequence[str],
        data_key: bytes,
        deadline: float,
        entries: dict[str, bytes],
        errors: dict[str, RegionCallError],
    ) -> None:
        groups: list[tuple[str, ...]] = []
        for region in order:
            if region not in entries and not any(region in g for g in groups):
                groups.append(tuple(r for r in order if r in self._group(region)))
        # Regions each group's copy would cover (all its replicas, configured or not asked).
        covers = {g: len(self._group(g[0])) for g in groups}
        reachable = len(entries) + sum(covers.values())
        futures: dict[Future[tuple[str, bytes]], tuple[str, ...]] = {}
        group_errors: dict[tuple[str, ...], dict[str, RegionCallError]] = {}
        for group in groups:
            # Pay a timeout again only for a copy min_regions cannot do without.
            needed = reachable - covers[group] < self._settings.min_regions
            group_errors[group] = {}
            future = self._pool.submit(
                self._encrypt_in_group, group, data_key, deadline, group_errors[group], needed
            )
            futures[future] = group
        if not futures:
            return
        done, not_done = wait(futures, timeout=max(0.0, deadline - self._clock()))
        for future in done:
            group = futures[future]
            try:
                region, blob = future.result()
            except RegionCallError:
                errors.update(group_errors[group])
                continue
            for member in self._group(region):
                entries[member] = blob
                errors.pop(member, None)
        for future in not_done:
            future.cancel()
            for region in futures[future]:
                errors[region] = _deadline_error(region, "Encrypt")

    def _encrypt_in_group(
        self,
        group: Sequence[str],
        data_key: bytes,
        deadline: float,
        errors: dict[str, RegionCallError],
        needed: bool = True,
    ) -> tuple[str, bytes]:
        """Encrypt the data key in the first region of `group` that answers (MRK replicas).

        Connection errors and timeouts are retried in the group's last region only when the
        copy is `needed` to reach min_regions; otherwise the region is left out at once.
        """
        for i, region in enumerate(group):
            last = i == len(group) - 1
            try:
                response = self._call(
                    region, "encrypt", {"Plaintext": data_key}, deadline,
                    retry_timeouts=last and needed,
                )  # fmt: skip
            except RegionCallError as e:
                errors[region] = e
                if last:
                    raise
                self._failover("encrypt_key", e)
                continue
            blob = response.get("CiphertextBlob")
            if not isinstance(blob, bytes) or not blob:
                errors[region] = RegionCallError(
                    region, "Encrypt", "InvalidResponse", "no CiphertextBlob",
                    region_fault=False, retryable=False,
                )  # fmt: skip
                if last:
                    raise errors[region]
                continue
            return region, blob
        raise KmsError("empty region group")  # pragma: no cover - groups are never empty

    def _check_coverage(
        self, entries: Mapping[str, bytes], errors: Mapping[str, RegionCallError]
    ) -> None:
        left_out = [r for r in self._order if r not in entries]
        for region in left_out:
            reason = errors[region].summary if region in errors else "no copy was made"
            logger.warning(
                "encrypt_key: region %s left out of the envelope (%s); the data key is held "
                "in %d of %d regions",
                region,
                reason,
                len(entries),
                len(self._order),
            )
            self._metrics.regions_left_out.add(1, attributes(region))
        if len(entries) < self._settings.min_regions:
            detail = "; ".join(
                f"{r}: {errors[r].summary if r in errors else 'no copy'}" for r in left_out
            )
            raise _all_failed(
                f"encrypt_key: only {len(entries)} of {len(self._order)} regions hold a copy of "
                f"the data key and min_regions is {self._settings.min_regions} ({detail})",
                {r: errors[r] for r in left_out if r in errors},
                summarise=False,
            )

    # decrypt_key ------------------------------------------------------------------------

    def decrypt_key(self, encrypted: bytes) -> bytes:
        """Unwrap an envelope written by `encrypt_key` (or by another Asherah implementation)."""
        self._check_open()
        return self._operate(
            "decrypt_key",
            self._metrics.decrypt_key,
            lambda deadline, probes: self._decrypt(parse_envelope(encrypted), deadline, probes),
        )

    def _decrypt(
        self, envelope: Envelope, deadline: float, probes: list[tuple[str, float]]
    ) -> bytes:
        attempts = self._decrypt_attempts(envelope, probes)
        if self._settings.hedge_after <= 0:
            return self._decrypt_in_order(attempts, envelope.encrypted_key, deadline)
        return self._decrypt_hedged(attempts, envelope, deadline)

    def _decrypt_hedged(
        self, attempts: Sequence[tuple[str, bytes]], envelope: Envelope, deadline: float
    ) -> bytes:
        """With hedging: when a region is slow to answer, the next is asked too; first wins."""
        errors: list[RegionCallError] = []
        pending: dict[Future[bytes], str] = {}
        hedge = self._settings.hedge_after
        launched = 0
        last_launch = 0.0

        def launch() -> None:
            nonlocal launched, last_launch
            region, blob = attempts[launched]
            launched += 1
            future = self._pool.submit(
                self._decrypt_in, region, blob, envelope.encrypted_key, deadline,
                launched == len(attempts),
            )  # fmt: skip
            pending[future] = region
            last_launch = self._clock()

        launch()
        try:
            while pending:
                now = self._clock()
                if now >= deadline:
                    break
                timeout = deadline - now
                can_hedge = hedge > 0 and launched < len(attempts)
                if can_hedge:
                    timeout = min(timeout, max(0.0, last_launch + hedge - now))
                done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
                if not done:
                    if can_hedge and self._clock() >= last_launch + hedge:
                        self._metrics.hedges.add(1, attributes(attempts[launched][0]))
                        launch()
                    continue
                for future in done:
                    region = pending.pop(future)
                    try:
                        return future.result()
                    except RegionCallError as e:
                        errors.append(e)
                        if launched < len(attempts) or pending:
                            self._failover("decrypt_key", e)
                if launched < len(attempts):
                    launch()
            for region in pending.values():
                errors.append(_deadline_error(region, "Decrypt"))
        finally:
            for future in pending:
                future.cancel()
        raise _all_failed("decrypt_key failed in every region tried", {e.region: e for e in errors})

    def _decrypt_in_order(
        self, attempts: Sequence[tuple[str, bytes]], encrypted_key: bytes, deadline: float
    ) -> bytes:
        """Without hedging: one region after another until one unwraps the key."""
        errors: dict[str, RegionCallError] = {}
        for i, (region, blob) in enumerate(attempts):
            last = i == len(attempts) - 1
            try:
                response = self._run(region, "decrypt", {"CiphertextBlob": blob}, deadline, last)
                return self._open(region, response, encrypted_key)
            except RegionCallError as e:
                errors[region] = e
                if not last:
                    self._failover("decrypt_key", e)
        raise _all_failed("decrypt_key failed in every region tried", errors)

    def _decrypt_attempts(
        self, envelope: Envelope, probes: list[tuple[str, float]]
    ) -> list[tuple[str, bytes]]:
        attempts: list[tuple[str, bytes]] = []
        for region in self._health.order(self._order, probes=probes):
            entry = envelope.kek_for(region) or self._replica_entry(region, envelope)
            if entry is not None:
                attempts.append((region, entry.encrypted_kek))
        if not attempts:
            present = _envelope_regions(k.region for k in envelope.keks)
            raise KmsError(
                "decrypt_key: the envelope holds no copy of the data key for a configured "
                f"region (envelope regions: {present}; configured: {', '.join(self._order)})"
            )
        return attempts

    def _replica_entry(self, region: str, envelope: Envelope) -> RegionalKek | None:
        """An entry made under a replica of `region`'s Multi-Region key, if MRK-aware.

        The envelope's ARN only picks the candidate; Decrypt still names the locally
        configured ARN, so KMS itself refuses a blob that is not from that key.
        """
        local = self._arns[region]
        if not (self._settings.mrk_awareness and local.is_multi_region):
            return None
        for entry in envelope.keks:
            try:
                if same_multi_region_key(local, parse_arn(entry.arn)):
                    return entry
            except ConfigError:
                continue
        return None

    def _decrypt_in(
        self, region: str, blob: bytes, encrypted_key: bytes, deadline: float, last: bool
    ) -> bytes:
        response = self._call(
            region, "decrypt", {"CiphertextBlob": blob}, deadline, retry_timeouts=last
        )
        return self._open(region, response, encrypted_key)

    def _open(self, region: str, response: Mapping[str, Any], encrypted_key: bytes) -> bytes:
        """Check the data key KMS returned and open the sealed key with it."""
        data_key = _data_key(region, "Decrypt", response)
        try:
            return self._crypto.decrypt(encrypted_key, data_key)
        except CryptoError as e:
            raise RegionCallError(
                region, "Decrypt", "CryptoError", str(e), region_fault=False, retryable=False
            ) from e

    # KMS calls --------------------------------------------------------------------------

    def _run(
        self, region: str, operation: str, params: dict[str, Any], deadline: float, last: bool
    ) -> Mapping[str, Any]:
        """Make one call, waiting for it no longer than the deadline.

        While a whole attempt (connect and read timeouts) fits before the deadline, attempts
        run in the caller's thread: a hand-off to the pool costs about a tenth of the CPU of
        a KMS call. Otherwise, or to go on retrying when it no longer fits, the call runs
        on the pool and the caller stops waiting at the deadline.
        """
        retry = 0
        if self._clock() + self._attempt_budget <= deadline:
            try:
                return self._call(
                    region, operation, params, deadline,
                    retry_timeouts=last, attempt_budget=self._attempt_budget,
                )  # fmt: skip
            except HandOff as e:
                retry = e.retry
        future = self._pool.submit(
            self._call, region, operation, params, deadline, retry_timeouts=last, first_retry=retry
        )
        done, _ = wait([future], timeout=max(0.0, deadline - self._clock()))
        if not done:
            future.cancel()
            raise _deadline_error(region, _api_name(operation))
        return future.result()

    def _call(
        self,
        region: str,
        operation: str,
        params: dict[str, Any],
        deadline: float,
        *,
        retry_timeouts: bool,
        attempt_budget: float = 0.0,
        first_retry: int = 0,
    ) -> Mapping[str, Any]:
        """One KMS operation in `region`, with the locally configured ARN as KeyId."""
        if self._clock() >= deadline:
            raise _deadline_error(region, _api_name(operation))
        self._health.calling(region)
        method = getattr(self._clients[region], operation)
        kwargs = {"KeyId": str(self._arns[region]), **params}
        histogram = self._metrics.kms_call(_METRIC_OPERATION[operation], region)

        def on_attempt(seconds: float, error: RegionCallError | None) -> None:
            histogram.record(seconds, attributes(region, error.error_type if error else None))

        def on_retry(error: RegionCallError) -> None:
            self._metrics.retries.add(1, attributes(region, error.error_type))

        try:
            response = call_with_retries(
                lambda: method(**kwargs),
                region=region,
                operation=_api_name(operation),
                policy=self._retry,
                deadline=deadline,
                retry_timeouts=retry_timeouts,
                on_attempt=on_attempt,
                on_retry=on_retry,
                sleep=self._sleep,
                clock=self._clock,
                attempt_budget=attempt_budget,
                first_retry=first_retry,
            )
        except RegionCallError as e:
            if e.region_fault:
                self._health.record_fault(region, e.summary)
            else:
                self._health.record_success(region)  # it answered; the key is the problem
            raise
        self._health.record_success(region)
        return response

    # Health, diagnosis, lifecycle -------------------------------------------------------

    def diagnose(self) -> list[ProbeResult]:
        """Probe each region (GenerateDataKey, then Decrypt of its blob) and the whole envelope."""
        self._check_open()
        results: list[ProbeResult] = []
        for region in self._order:
            start = time.perf_counter()
            try:
                deadline = self._clock() + self._settings.timeout * 2
                generated = self._call(
                    region, "generate_data_key", {"KeySpec": "AES_256"}, deadline,
                    retry_timeouts=True,
                )  # fmt: skip
                data_key = _data_key(region, "GenerateDataKey", generated)
                decrypted = self._call(
                    region, "decrypt", {"CiphertextBlob": generated["CiphertextBlob"]},
                    deadline, retry_timeouts=True,
                )  # fmt: skip
                ok = _data_key(region, "Decrypt", decrypted) == data_key
                detail = "GenerateDataKey and Decrypt" if ok else "Decrypt returned another key"
            except RegionCallError as e:
                ok, detail = False, e.summary
            results.append(ProbeResult(region, ok, time.perf_counter() - start, detail))
        results.extend(super().diagnose())
        return results

    def close(self) -> None:
        """Stop the worker threads and close the clients. Safe to call more than once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self._clients.values():
            close = getattr(client, "close", None)
            if callable(close):
                close()

    def __repr__(self) -> str:
        mode = "local-data-key" if self._settings.local_data_key else "generate-data-key"
        return (
            f"AwsKms(regions={list(self._order)!r}, preferred_region={self._order[0]!r}, "
            f"mode={mode!r}, min_regions={self._settings.min_regions})"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise KmsError("this AwsKms is closed")

    def _failover(self, operation: str, error: RegionCallError) -> None:
        logger.info("%s: %s; trying the next region", operation, error)
        self._metrics.failovers.add(
            1, {**attributes(error.region, error.error_type), "operation": operation}
        )

    def _health_changed(self, region: str, healthy: bool) -> None:
        state = "healthy" if healthy else "unhealthy"
        self._metrics.health_changes.add(1, {"cloud.region": region, "state": state})

    def _group(self, region: str) -> tuple[str, ...]:
        return self._groups.get(region, (region,))

    def _mrk_groups(self) -> dict[str, tuple[str, ...]]:
        groups: dict[str, tuple[str, ...]] = {}
        for region in self._order:
            arn = self._arns[region]
            groups[region] = tuple(
                r for r in self._order if r == region or same_multi_region_key(arn, self._arns[r])
            )
        return groups


def _data_key(region: str, operation: str, response: Mapping[str, Any]) -> bytes:
    data_key = response.get("Plaintext")
    if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_BYTES:
        size = len(data_key) if isinstance(data_key, bytes) else 0
        raise RegionCallError(
            region, operation, "InvalidDataKeyLength",
            f"KMS returned a {size}-byte data key, expected {DATA_KEY_BYTES}",
            region_fault=False, retryable=False,
        )  # fmt: skip
    return data_key


def _envelope_regions(names: Iterable[str]) -> str:
    """The envelope's region names for a message: AWS-shaped names shown, any other counted.

    They are input: an arbitrary string must not reach a message or a log line.
    """
    names = list(names)
    shown = [name for name in names if _AWS_REGION.fullmatch(name)]
    hidden = len(names) - len(shown)
    return ", ".join([*shown, *([f"{hidden} other name(s) not shown"] if hidden else [])]) or "none"


def _deadline_error(region: str, operation: str) -> RegionCallError:
    return RegionCallError(
        region, operation, "DeadlineExceeded", "the operation's deadline passed first",
        region_fault=False, retryable=False,
    )  # fmt: skip


def _cooling_error(region: str) -> RegionCallError:
    return RegionCallError(
        region, "Encrypt", "RegionCoolingDown", "skipped while the region cools down after a fault",
        region_fault=False, retryable=False,
    )  # fmt: skip


_API_NAMES = {"generate_data_key": "GenerateDataKey", "encrypt": "Encrypt", "decrypt": "Decrypt"}


def _api_name(operation: str) -> str:
    return _API_NAMES.get(operation) or "".join(p.title() for p in operation.split("_"))


def _all_failed(
    message: str, errors: Mapping[str, RegionCallError], *, summarise: bool = True
) -> KmsError:
    if summarise and errors:
        message += ": " + "; ".join(f"{r}: {e.summary}" for r, e in errors.items())
    error = KmsError(message)
    causes = list(errors.values())
    if len(causes) == 1:
        error.__cause__ = causes[0]
    elif causes:
        error.__cause__ = ExceptionGroup("errors per region", causes)
    return error


def _error_type(error: BaseException) -> str:
    cause = error.__cause__
    if isinstance(cause, RegionCallError):
        return cause.error_type
    return type(error).__name__
