"""Tokens: the one configured, or one from a login; renewed before expiry, replaced when denied.

Each cluster has its own `Credentials` (a login on one cluster gives a token for that cluster
only), which runs one login at a time: callers that need a new token meanwhile wait for it.
All I/O is in flows (`protocol`), so the same logic serves blocking and async calls.
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

from .latch import Latch
from .protocol import Call, Flow, Reply, Wait
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

    def again(self) -> ClusterError:
        """The same error as a new object, to raise in another caller (one exception object
        raised by several threads would share one traceback)."""
        return ClusterError(self.problem, retryable=self.retryable, final=self.final)


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


class _Login:
    """A login (or look-up of the given token) under way: `latch` opens when it is done, and
    `failure`, set before, is the error it failed with. After `until` (clock time) its caller's
    timeout has passed: it counts as abandoned."""

    __slots__ = ("failure", "latch", "until")

    def __init__(self, until: float) -> None:
        self.until = until
        self.latch = Latch()
        self.failure: ClusterError | None = None


class Credentials:
    """The token of one cluster.

    Invariant: ``_lease`` is replaced whole (a frozen value) with ``_lock`` held and read under
    it; no lock is held across I/O. ``_refreshing`` is set, under the lock, by the one caller
    that renews a due lease, and cleared by it when done; other callers meanwhile use the
    current token, which is still valid. ``_under_way`` is the one login under way (the first
    look-up, for a given token), set under the lock by the caller that runs it, when there is
    none, and cleared by it, after the lease is installed and before its latch opens. Every
    caller that needs a new token (there is none yet, it expired, Vault denied it, or its
    renewal was refused) and finds none valid either runs that login or waits, for at most its
    own timeout, until it is done; it then takes the token the login installed, or raises the
    error it failed with. So at most one login per cluster is under way at a time, except that
    one still under way after its caller's timeout (a caller that stopped driving it) counts as
    abandoned and the next caller runs another; one that ends with neither a token nor an error
    (its caller was cancelled) lets the next waiter run one. A forked child forgets its
    parent's login (no one there would finish it).
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
        self._under_way: _Login | None = None
        self.logins = 0  # counted under the lock, as the lease is installed
        self.renewals = 0
        reset_in_child(self, Credentials._forked)

    def _forked(self) -> None:
        """In a forked child: a new lock, and no renewal or login under way (the threads running
        them in the parent do not run here; the lease itself is whole, replaced in one
        assignment)."""
        self._lock = threading.Lock()
        self._refreshing = False
        self._under_way = None

    @property
    def can_login(self) -> bool:
        """Whether a new token can be had without the operator (any method but ``token``)."""
        return self._auth.method != "token"

    def lease(self) -> Lease | None:
        """The current lease, if any."""
        with self._lock:
            return self._lease

    def _install(self, lease: Lease, *, login: bool = False, renewal: bool = False) -> Lease:
        with self._lock:
            self._lease = lease
            self.logins += login
            self.renewals += renewal
        return lease

    def token(self, timeout: float) -> Flow[str]:
        """Return a usable token: the current one, renewed or replaced when its time has come.

        While one caller renews a token that is due but not expired, the others keep using it;
        when that renewal or login fails, the still-valid token is used and the next call tries
        again. With no token yet, or an expired one, one caller logs in and the others wait for
        it (`_replace`).
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
            lease = yield from self._replace(None, timeout)
            return lease.token
        if lease.expired(now):
            if not self.can_login:
                return lease.token  # a given token: use it while Vault accepts it
            lease = yield from self._replace(lease.token, timeout)
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
        """A call answered 403 with token `denied`: return a new token, from the login another
        caller has made or is making meanwhile, else from one made here; ``None`` when there is
        no way to get another one."""
        if not self.can_login:
            return None
        lease = yield from self._replace(denied, timeout)
        return lease.token

    def _replace(self, stale: str | None, timeout: float) -> Flow[Lease]:
        """A valid lease whose token is not `stale`: the one another caller's login installed,
        or, when no login is under way, the one this caller's gives (`_lead`). Waits for a login
        under way, and runs one, within `timeout` seconds in all; past them, raises a retryable
        `ClusterError`."""
        end = self._clock() + timeout
        while True:
            now = self._clock()
            left = end - now
            if left <= 0:  # after a wait for a login that was given up
                raise ClusterError(
                    f"no new token within {timeout:g}s: another caller's login was given up",
                    retryable=True,
                )
            with self._lock:
                lease = self._lease
                if lease is not None and lease.token != stale and not lease.expired(now):
                    return lease  # another caller's login gave a new token meanwhile
                login = self._under_way
                if login is not None and now < login.until:
                    leading = False
                else:  # none under way, or one abandoned by its caller: run one
                    login = self._under_way = _Login(now + left)
                    leading = True
            if leading:
                return (yield from self._lead(login, left))
            yield Wait(login.latch, left)
            if not login.latch.is_open():
                raise ClusterError(
                    f"another caller's login to this cluster did not end within {left:g}s",
                    retryable=True,
                )
            if login.failure is not None:
                raise login.failure.again()
            # It installed a lease (taken above), or its caller gave it up (run one, above).

    def _lead(self, login: _Login, timeout: float) -> Flow[Lease]:
        """Run `login`, which this caller claimed: log in (or look the given token up); however
        it ends, release the claim and let the waiters go."""
        try:
            if self.can_login:
                return (yield from self._login(timeout))
            return (yield from self._lookup(timeout))
        except ClusterError as e:
            login.failure = e  # before the latch opens: every waiter sees it
            raise
        finally:
            with self._lock:
                if self._under_way is login:  # not taken over as abandoned
                    self._under_way = None
            login.latch.open()

    def _refresh(self, lease: Lease, timeout: float) -> Flow[Lease]:
        if lease.renewable and not lease.expired(self._clock()):
            renewed = yield from self._renew(lease, timeout)
            if renewed is not None:
                return renewed
        if self.can_login:
            return (yield from self._replace(lease.token, timeout))
        return lease  # a given token that cannot be renewed: use it while Vault accepts it

    def _renew(self, lease: Lease, timeout: float) -> Flow[Lease | None]:
        reply = yield Call(self._cluster, "POST", "auth/token/renew-self", timeout, {}, lease.token)
        if reply.status == 0 or reply.status >= 500:
            return None  # try again at the next call; the token is still valid
        granted = _lease_from_auth(reply.auth, self._clock(), token=lease.token)
        if not reply.ok or granted is None or granted.ttl < _MIN_USEFUL_TTL:
            return None
        return self._install(granted, renewal=True)

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
        return self._install(lease, login=True)

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
