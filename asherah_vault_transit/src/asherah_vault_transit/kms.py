"""`VaultTransitKms`: wraps system keys with Vault's Transit engine, over one or more clusters.

One operation is a flow (`protocol`): for each cluster in health order, get a token, call
Transit, retry what is worth retrying within the deadline, log in again once on a 403, and
move on to the next cluster when this one fails. `transport` runs the flow, blocking or async.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from opentelemetry.metrics import Histogram, Meter

from asherah_core import KeyManagementService, KmsError, ProbeResult

from .auth import ClusterError, Credentials
from .ciphertext import key_version, parse_ciphertext
from .clusters import ClusterHealth
from .metrics import VaultMetrics
from .policy import Deadline, RetryPolicy, retryable_status
from .protocol import Call, Flow, Pause, Reply
from .settings import VaultTransitSettings
from .transport import HttpTransport

__all__ = ["VaultTransitKms"]

log = logging.getLogger(__name__)


class VaultTransitKms(KeyManagementService):
    """Wraps keys with a named Transit key; stores Transit's ``vault:vN:…`` text as the
    encrypted key, as the Rust Asherah core does. Thread-safe; `close` releases the clients.

    :param settings: the validated settings (see `settings_from_config`).
    :param transport: an httpx transport to use instead of the network (tests).
    :param meter: the OpenTelemetry meter; the global one by default.
    :param clock: the monotonic clock of deadlines, health and token lifetimes (tests).
    :param sleep: the blocking sleep of back-offs (tests).
    :param read_text: reads the Kubernetes service account token file (tests).
    """

    def __init__(
        self,
        settings: VaultTransitSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        read_text: Callable[[str], str] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._http = HttpTransport(settings, transport=transport, sleep=sleep)
        self._credentials = [
            Credentials(
                i,
                settings.auth,
                timeout=cluster.timeout,
                renew_fraction=settings.renew_fraction,
                clock=clock,
                read_text=read_text,
            )
            for i, cluster in enumerate(settings.clusters)
        ]
        self._health = ClusterHealth(len(settings.clusters), settings.cluster_cooldown, clock)
        self._retry = RetryPolicy(settings.max_retries, settings.retry_base_delay)
        self._metrics = VaultMetrics(meter)
        self._closed = threading.Event()

    def __repr__(self) -> str:
        addresses = ", ".join(c.address for c in self.settings.clusters)
        return (
            f"VaultTransitKms(key={self.settings.transit_mount}/{self.settings.transit_key}, "
            f"clusters=[{addresses}], auth={self.settings.auth.method})"
        )

    @property
    def credentials(self) -> tuple[Credentials, ...]:
        """Each cluster's token holder, by cluster number (for health reports and tests)."""
        return tuple(self._credentials)

    # The KeyManagementService interface ---------------------------------------------------

    def encrypt_key(self, key: bytes) -> bytes:
        """Wrap `key` with the Transit key; return the ``vault:vN:…`` text as bytes."""
        return self._timed(self._metrics.encrypt_key, lambda: self._http.run(self._encrypt(key)))

    def decrypt_key(self, encrypted: bytes) -> bytes:
        """Unwrap a ``vault:vN:…`` value (ours or the Rust core's) and return the key."""
        return self._timed(
            self._metrics.decrypt_key, lambda: self._http.run(self._decrypt(encrypted))
        )

    async def encrypt_key_async(self, key: bytes) -> bytes:
        """Coroutine version of `encrypt_key`, on async httpx (no worker thread)."""
        start = time.perf_counter()
        try:
            self._check_open()
            result = await self._http.run_async(self._encrypt(key))
        except Exception as e:
            self._record(self._metrics.encrypt_key, start, e)
            raise
        self._record(self._metrics.encrypt_key, start, None)
        return result

    async def decrypt_key_async(self, encrypted: bytes) -> bytes:
        """Coroutine version of `decrypt_key`, on async httpx (no worker thread)."""
        start = time.perf_counter()
        try:
            self._check_open()
            result = await self._http.run_async(self._decrypt(encrypted))
        except Exception as e:
            self._record(self._metrics.decrypt_key, start, e)
            raise
        self._record(self._metrics.decrypt_key, start, None)
        return result

    def diagnose(self) -> list[ProbeResult]:
        """Round-trip a random key on each cluster separately (``asherah-kms doctor``)."""
        results = []
        for cluster, settings in enumerate(self.settings.clusters):
            start = time.perf_counter()
            try:
                self._check_open()
                detail = self._http.run(self._probe(cluster))
                ok = True
            except ClusterError as e:
                ok, detail = False, e.problem
            except KmsError as e:
                ok, detail = False, str(e)
            results.append(ProbeResult(settings.address, ok, time.perf_counter() - start, detail))
        return results

    def close(self) -> None:
        """Close the HTTP clients; later calls raise `KmsError`. Safe to call more than once."""
        self._closed.set()
        self._http.close()

    # Flows --------------------------------------------------------------------------------

    def _encrypt(self, key: bytes) -> Flow[bytes]:
        body = {"plaintext": base64.b64encode(key).decode("ascii")}
        data = yield from self._operation("encrypt", self.settings.encrypt_path(), body)
        return _ciphertext_of(data)

    def _decrypt(self, encrypted: bytes) -> Flow[bytes]:
        text = parse_ciphertext(encrypted)
        body = {"ciphertext": text}
        data = yield from self._operation("decrypt", self.settings.decrypt_path(), body)
        return _plaintext_of(data)

    def _probe(self, cluster: int) -> Flow[str]:
        deadline = Deadline.after(self.settings.deadline, self._clock)
        key = os.urandom(32)
        body = {"plaintext": base64.b64encode(key).decode("ascii")}
        path = self.settings.encrypt_path()
        wrapped = _ciphertext_of(
            (yield from self._on_cluster(cluster, "encrypt", path, body, deadline))
        )
        text = wrapped.decode("ascii")
        back = {"ciphertext": text}
        path = self.settings.decrypt_path()
        plain = _plaintext_of(
            (yield from self._on_cluster(cluster, "decrypt", path, back, deadline))
        )
        if plain != key:
            raise KmsError("the unwrapped key differs from the one wrapped")
        lease = self._credentials[cluster].lease()
        life = "no expiry" if lease is None or lease.ttl == 0 else f"token TTL {lease.ttl:g}s"
        return (
            f"wrapped and unwrapped a random key with {self.settings.transit_mount}/"
            f"{self.settings.transit_key} v{key_version(text)} ({self.settings.auth.method} "
            f"auth, {life})"
        )

    def _operation(self, name: str, path: str, body: Mapping[str, Any]) -> Flow[Mapping[str, Any]]:
        deadline = Deadline.after(self.settings.deadline, self._clock)
        failures: list[str] = []
        for n, cluster in enumerate(self._health.order()):
            address = self.settings.clusters[cluster].address
            if deadline.remaining() <= 0:
                failures.append(
                    f"{address}: not tried, the {self.settings.deadline:g}s deadline passed"
                )
                continue
            if n > 0:
                self._metrics.failovers.add(1, {"operation": name})
            try:
                data = yield from self._on_cluster(cluster, name, path, body, deadline)
            except ClusterError as e:
                if e.final:
                    raise KmsError(
                        f"Vault Transit {name} refused at {address}: {e.problem}"
                    ) from None
                failures.append(f"{address}: {e.problem}")
                if self._health.failed(cluster):
                    log.warning("Vault cluster %s failed (%s): %s", address, name, e.problem)
                continue
            if self._health.succeeded(cluster):
                log.info("Vault cluster %s answers again", address)
            return data
        raise KmsError(
            f"Vault Transit {name} failed on every cluster ({len(failures)}): "
            + "; ".join(failures)
        )

    def _on_cluster(
        self,
        cluster: int,
        name: str,
        path: str,
        body: Mapping[str, Any],
        deadline: Deadline,
    ) -> Flow[Mapping[str, Any]]:
        credentials = self._credentials[cluster]
        cap = self.settings.clusters[cluster].timeout
        relogged = False
        retry = 0
        while True:
            asked = 0.0  # the server's Retry-After, if it gave one
            timeout = min(cap, deadline.remaining())
            if timeout <= 0:
                raise ClusterError(
                    f"the {self.settings.deadline:g}s deadline passed", retryable=False
                )
            try:
                token = yield from credentials.token(timeout)
                reply = yield Call(cluster, "POST", path, timeout, body, token)
            except ClusterError as e:
                if not e.retryable or retry >= self._retry.max_retries:
                    raise
                problem = e.problem
            else:
                if reply.ok:
                    if reply.data is None:
                        raise ClusterError(
                            f"{name}: HTTP {reply.status} without data", retryable=False
                        )
                    return reply.data
                problem = _describe(name, reply)
                asked = reply.retry_after
                if reply.status == 403 and not relogged:
                    relogged = True
                    fresh = yield from credentials.after_denied(token, timeout)
                    if fresh is not None:
                        self._metrics.token_events.add(1, {"event": "relogin"})
                        continue
                _refuse(problem, reply.status, retry >= self._retry.max_retries)
            retry += 1
            delay = max(self._retry.delay(retry), asked)
            if delay >= deadline.remaining():
                raise ClusterError(f"{problem} (no time left to retry)", retryable=False)
            self._metrics.retries.add(1, {"operation": name})
            yield Pause(delay)

    # Helpers -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise KmsError("the Vault Transit KMS is closed")

    def _timed(self, histogram: Histogram, run: Callable[[], bytes]) -> bytes:
        start = time.perf_counter()
        try:
            self._check_open()
            result = run()
        except Exception as e:
            self._record(histogram, start, e)
            raise
        self._record(histogram, start, None)
        return result

    @staticmethod
    def _record(histogram: Histogram, start: float, error: Exception | None) -> None:
        attributes = {} if error is None else {"error.type": type(error).__name__}
        histogram.record(time.perf_counter() - start, attributes)


def _refuse(problem: str, status: int, out_of_retries: bool) -> None:
    """Raise the `ClusterError` a failed Transit answer calls for; return when worth a retry.

    400 is final (the request is wrong everywhere: bad ciphertext, a version below
    min_decryption_version); no answer at all fails over at once; retryable statuses are
    retried on the same cluster until the retries run out.
    """
    if status == 400:
        raise ClusterError(problem, retryable=False, final=True)
    if status == 0 or not retryable_status(status) or out_of_retries:
        raise ClusterError(problem, retryable=False)


def _describe(name: str, reply: Reply) -> str:
    if reply.status == 0:
        return f"{name}: {reply.problem}"
    detail = f": {reply.problem}" if reply.problem else ""
    return f"{name}: HTTP {reply.status}{detail}"


def _ciphertext_of(data: Mapping[str, Any]) -> bytes:
    ciphertext = data.get("ciphertext")
    if not isinstance(ciphertext, str):
        raise KmsError("Vault Transit encrypt: the answer held no ciphertext")
    encoded = ciphertext.encode("utf-8")
    parse_ciphertext(encoded)
    return encoded


def _plaintext_of(data: Mapping[str, Any]) -> bytes:
    plaintext = data.get("plaintext")
    if not isinstance(plaintext, str):
        raise KmsError("Vault Transit decrypt: the answer held no plaintext")
    try:
        return base64.b64decode(plaintext, validate=True)
    except (binascii.Error, ValueError):
        raise KmsError("Vault Transit decrypt: the answer's plaintext is not base64") from None
