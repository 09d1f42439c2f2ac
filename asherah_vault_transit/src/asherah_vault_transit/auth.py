"""Tokens: the one configured, or one from a login; renewed before expiry, replaced when denied.

Each cluster has its own `Credentials` (a login on one cluster gives a token for that cluster
only). All I/O is in flows (`protocol`), so the same logic serves blocking and async calls.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asherah_core.forksafe import reset_in_child

from .protocol import Call, Flow, Reply
from .settings import AuthSettings

__all__ = ["ClusterError", "Credentials", "Lease"]

log = logging.getLogger(__name__)

_MIN_USEFUL_TTL = 1.0  # a renewal granting less than this counts as refused


class ClusterError(Exception):
    """One cluster could not serve the operation. `problem` is safe to show; `final` means no
    other cluster would do better (the request itself is wrong)."""

    def __init__(self, problem: str, *, retryable: bool, final: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retryable = retryable
        self.final = final


@dataclass(frozen=True)
class Lease:
    """A token and how long it lives: granted `ttl` seconds at `issued` (clock time).

    ``ttl == 0`` means the token does not expire (a root token) or its life is unknown.
    """

    token: str = field(repr=False)
    renewable: bool
    ttl: float
    issued: float

    def due(self, now: float, fraction: float) -> bool:
        """Whether `fraction` of the lease has passed, so it is time to renew."""
        return self.ttl > 0 and now >= self.issued + self.ttl * fraction

    def expired(self, now: float) -> bool:
        """Whether the lease has run out."""
        return self.ttl > 0 and now >= self.issued + self.ttl


class Credentials:
    """The token of one cluster.

    Invariant: ``_lease`` is replaced whole (a frozen value) with ``_lock`` held and read under
    it; no lock is held across I/O. ``_refreshing`` is set, under the lock, by the one caller
    that renews a due lease, and cleared by it when done; other callers meanwhile use the
    current token, which is still valid. Only when there is no lease yet, or it has expired, may
    several callers log in at once; the later answer wins, and every token it gave is valid.
    """

    def __init__(
        self,
        cluster: int,
        auth: AuthSettings,
        *,
        timeout: float,
        renew_fraction: float,
        clock: Callable[[], float] = time.monotonic,
        read_text: Callable[[str], str] | None = None,
    ) -> None:
        self._cluster = cluster
        self._auth = auth
        self._timeout = timeout
        self._fraction = renew_fraction
        self._clock = clock
        self._read_text = read_text or _read_text
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        self._refreshing = False
        self.logins = 0
        self.renewals = 0
        reset_in_child(self, Credentials._forked)

    def _forked(self) -> None:
        """In a forked child: a new lock, and no renewal under way (the thread renewing in the
        parent does not run here; the lease itself is whole, replaced in one assignment)."""
        self._lock = threading.Lock()
        self._refreshing = False

    @property
    def can_login(self) -> bool:
        """Whether a new token can be had without the operator (any method but ``token``)."""
        return self._auth.method != "token"

    def lease(self) -> Lease | None:
        """The current lease, if any."""
        with self._lock:
            return self._lease

    def _install(self, lease: Lease) -> Lease:
        with self._lock:
            self._lease = lease
        return lease

    def token(self, timeout: float) -> Flow[str]:
        """Return a usable token: the current one, renewed or replaced when its time has come.

        While one caller renews a token that is due but not expired, the others keep using it;
        when that renewal or login fails, the still-valid token is used and the next call tries
        again.
        """
        now = self._clock()
        with self._lock:
            lease = self._lease
            claimed = (
                lease is not None
                and lease.due(now, self._fraction)
                and not lease.expired(now)
                and not self._refreshing
            )
            if claimed:
                self._refreshing = True
        if lease is None:
            if self.can_login:
                lease = yield from self._login(timeout)
            else:
                lease = yield from self._lookup(timeout)
            return lease.token
        if lease.expired(now):
            lease = yield from self._refresh(lease, timeout)
            return lease.token
        if not claimed:
            return lease.token  # not due, or another caller is renewing it
        try:
            lease = yield from self._refresh(lease, timeout)
        except ClusterError as e:
            log.warning("Vault token renewal failed, the current token is still valid: %s", e)
        finally:
            with self._lock:
                self._refreshing = False
        return lease.token

    def after_denied(self, denied: str, timeout: float) -> Flow[str | None]:
        """A call answered 403 with token `denied`: log in again (once) and return the new
        token, or ``None`` when there is no way to get another one."""
        if not self.can_login:
            return None
        lease = self.lease()
        if lease is not None and lease.token != denied:
            return lease.token  # another thread has logged in meanwhile
        lease = yield from self._login(timeout)
        return lease.token

    def _refresh(self, lease: Lease, timeout: float) -> Flow[Lease]:
        if lease.renewable and not lease.expired(self._clock()):
            renewed = yield from self._renew(lease, timeout)
            if renewed is not None:
                return renewed
        if self.can_login:
            return (yield from self._login(timeout))
        return lease  # a given token that cannot be renewed: use it while Vault accepts it

    def _renew(self, lease: Lease, timeout: float) -> Flow[Lease | None]:
        reply = yield Call(self._cluster, "POST", "auth/token/renew-self", timeout, {}, lease.token)
        if reply.status == 0 or reply.status >= 500:
            return None  # try again at the next call; the token is still valid
        granted = _lease_from_auth(reply.auth, self._clock(), token=lease.token)
        if not reply.ok or granted is None or granted.ttl < _MIN_USEFUL_TTL:
            return None
        self.renewals += 1
        return self._install(granted)

    def _lookup(self, timeout: float) -> Flow[Lease]:
        token = self._auth.token or ""
        reply = yield Call(self._cluster, "GET", "auth/token/lookup-self", timeout, None, token)
        if reply.status == 0 or reply.status >= 500 or reply.status == 429:
            # no answer: fail over at once; 5xx or rate limited: worth a retry
            raise ClusterError(_describe("token look-up", reply), retryable=reply.status != 0)
        now = self._clock()
        data = reply.data or {}
        if reply.ok and _number(data.get("ttl")) is not None:
            ttl = _number(data.get("ttl")) or 0.0
            return self._install(Lease(token, bool(data.get("renewable")), ttl, now))
        # A token that may not look itself up (or a 403): its life is unknown; the Transit call
        # itself will tell whether Vault accepts it.
        return self._install(Lease(token, False, 0.0, now))

    def _login(self, timeout: float) -> Flow[Lease]:
        body = self._login_body()
        reply = yield Call(self._cluster, "POST", self._auth.login_path, timeout, body, None)
        what = f"{self._auth.method} login at {self._auth.login_path}"
        if reply.status == 0 or reply.status >= 500 or reply.status == 429:
            raise ClusterError(_describe(what, reply), retryable=reply.status != 0)
        if not reply.ok:
            raise ClusterError(_describe(what, reply), retryable=False)
        lease = _lease_from_auth(reply.auth, self._clock())
        if lease is None:
            raise ClusterError(f"{what}: the answer held no client token", retryable=False)
        self.logins += 1
        return self._install(lease)

    def _login_body(self) -> dict[str, Any]:
        auth = self._auth
        if auth.method == "approle":
            body: dict[str, Any] = {"role_id": auth.approle_role_id}
            if auth.approle_secret_id:
                body["secret_id"] = auth.approle_secret_id
            return body
        if auth.method == "kubernetes":
            try:
                jwt = self._read_text(auth.k8s_token_path).strip()
            except OSError as e:
                raise ClusterError(
                    f"cannot read the Kubernetes service account token at "
                    f"{auth.k8s_token_path!r}: {e.strerror}",
                    retryable=False,
                    final=True,
                ) from None
            return {"role": auth.role, "jwt": jwt}
        return {"name": auth.role} if auth.role else {}  # cert: the TLS client cert is the proof


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")  # read at each login: Kubernetes rotates it


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value) if value >= 0 else None


def _lease_from_auth(
    auth: Mapping[str, Any] | None, now: float, *, token: str | None = None
) -> Lease | None:
    if auth is None:
        return None
    client_token = auth.get("client_token") or token
    if not isinstance(client_token, str) or not client_token:
        return None
    ttl = _number(auth.get("lease_duration")) or 0.0
    return Lease(client_token, bool(auth.get("renewable")), ttl, now)


def _describe(what: str, reply: Reply) -> str:
    if reply.status == 0:
        return f"{what}: {reply.problem}"
    detail = f": {reply.problem}" if reply.problem else ""
    return f"{what}: HTTP {reply.status}{detail}"
