"""A small fake of Vault's HTTP API behind ``httpx.MockTransport``: Transit encrypt and decrypt,
token look-up and renewal, and logins, on any number of clusters, with an injected clock. It
answers any number of threads and tasks at once (one request at a time, after its hook)."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeToken:
    ttl: float  # 0: never expires
    issued: float
    renewable: bool = True
    max_end: float | None = None  # the clock time past which renewal grants nothing

    def alive(self, now: float) -> bool:
        return self.ttl == 0 or now < self.issued + self.ttl


@dataclass
class FakeCluster:
    """One cluster: up or down, and a queue of statuses to answer before serving normally."""

    down: bool = False
    forced: list[int] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)


class FakeVault:
    """Clusters by host name (``http://a:8200`` is cluster ``a``) sharing one Transit key ring
    and one token store, as replicas do."""

    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self.clock = clock
        self.clusters: dict[str, FakeCluster] = {}
        self.versions = 1
        self.min_decryption_version = 1
        self.ciphertexts: dict[str, bytes] = {}
        self.tokens: dict[str, FakeToken] = {"root": FakeToken(0, 0.0, renewable=False)}
        self.role_id, self.secret_id = "role-1", "secret-1"
        self.login_ttl = 60.0
        self.login_max_ttl: float | None = None
        self.calls: Counter[str] = Counter()
        self.issued = 0
        self.on_request: Callable[[httpx.Request], None] | None = None
        self.on_request_async: Callable[[httpx.Request], Awaitable[None]] | None = None
        """Awaited before an async request is answered (`on_request` blocks the loop)."""
        self._lock = threading.Lock()

    def cluster(self, host: str) -> FakeCluster:
        return self.clusters.setdefault(host, FakeCluster())

    def transport(self) -> httpx.MockTransport:
        return _Transport(self)

    def issue(self, ttl: float, *, renewable: bool = True, max_ttl: float | None = None) -> str:
        self.issued += 1
        token = f"s.token-{self.issued}"
        now = self.clock()
        end = None if max_ttl is None else now + max_ttl
        self.tokens[token] = FakeToken(ttl, now, renewable, end)
        return token

    # The API ----------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.on_request is not None:
            self.on_request(request)
        with self._lock:
            return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        cluster = self.cluster(request.url.host)
        path = request.url.path.removeprefix("/v1/")
        body = json.loads(request.content) if request.content else None
        cluster.seen.append((request.method, path, dict(request.headers), body))
        self.calls[path] += 1
        if cluster.down:
            raise httpx.ConnectError("connection refused", request=request)
        if cluster.forced:
            status = cluster.forced.pop(0)
            if status in (301, 302, 307, 308):  # a standby pointing at "the active node"
                where = f"http://evil:8200{request.url.path}"
                return httpx.Response(status, headers={"Location": where}, json={})
            if status == 429:  # rate limited, as Vault's quotas answer
                return httpx.Response(
                    429, headers={"Retry-After": "1"}, json={"errors": ["rate limited"]}
                )
            return _json(status, {"errors": [f"forced {status}"]})
        token = request.headers.get("X-Vault-Token")
        if path.endswith("/login"):
            return self._login(path, body or {})
        if not self._valid(token):
            return _json(403, {"errors": ["permission denied"]})
        if path == "auth/token/lookup-self":
            held = self.tokens[token or ""]
            left = 0 if held.ttl == 0 else held.issued + held.ttl - self.clock()
            return _json(200, {"data": {"ttl": int(left), "renewable": held.renewable}})
        if path == "auth/token/renew-self":
            return self._renew(token or "")
        if path.startswith("transit/encrypt/"):
            plaintext = base64.b64decode(body["plaintext"], validate=True)
            blob = base64.b64encode(os.urandom(12)).decode()
            text = f"vault:v{self.versions}:{blob}"
            self.ciphertexts[text] = plaintext
            return _json(200, {"data": {"ciphertext": text, "key_version": self.versions}})
        if path.startswith("transit/decrypt/"):
            text = body["ciphertext"]
            version = int(text.split(":")[1][1:])
            if version < self.min_decryption_version:
                return _json(400, {"errors": ["ciphertext version is disallowed by policy"]})
            if text not in self.ciphertexts:
                return _json(400, {"errors": ["cipher: message authentication failed"]})
            plain = base64.b64encode(self.ciphertexts[text]).decode()
            return _json(200, {"data": {"plaintext": plain}})
        return _json(404, {"errors": [f"no handler for route {path!r}"]})

    def _valid(self, token: str | None) -> bool:
        held = self.tokens.get(token or "")
        return held is not None and held.alive(self.clock())

    def _login(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if path == "auth/approle/login" and (
            body.get("role_id") != self.role_id or body.get("secret_id") != self.secret_id
        ):
            return _json(400, {"errors": ["invalid role or secret ID"]})
        if path == "auth/kubernetes/login" and not body.get("jwt"):
            return _json(400, {"errors": ["missing jwt"]})
        token = self.issue(self.login_ttl, max_ttl=self.login_max_ttl)
        return _json(
            200,
            {"auth": {"client_token": token, "lease_duration": self.login_ttl, "renewable": True}},
        )

    def _renew(self, token: str) -> httpx.Response:
        held = self.tokens[token]
        if not held.renewable:
            return _json(400, {"errors": ["lease is not renewable"]})
        now = self.clock()
        ttl = held.ttl
        if held.max_end is not None:
            ttl = max(0.0, min(ttl, held.max_end - now))
        self.tokens[token] = FakeToken(held.ttl, now, held.renewable, held.max_end)
        if ttl < held.ttl:
            self.tokens[token] = FakeToken(ttl, now, held.renewable, held.max_end)
        return _json(
            200, {"auth": {"client_token": token, "lease_duration": ttl, "renewable": True}}
        )


class _Transport(httpx.MockTransport):
    """The fake's transport: async requests await `FakeVault.on_request_async` first."""

    def __init__(self, vault: FakeVault) -> None:
        super().__init__(vault.handle)
        self._vault = vault

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._vault.on_request_async is not None:
            await self._vault.on_request_async(request)
        return await super().handle_async_request(request)


def _json(status: int, payload: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=payload)


class FakeClock:
    """A clock the test moves by hand; `sleep` moves it too."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
