"""Runs flows over HTTP with httpx: blocking for ``encrypt_key``, async for the coroutines.

One `httpx.Client` per cluster serves every thread (httpx clients are thread-safe); async
clients are made per event loop, because a connection pool belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from asherah_core.forksafe import PerProcess, new_locks_in_child

from .protocol import Call, Flow, Pause, Reply, Wait
from .settings import VaultTransitSettings

__all__ = ["HttpTransport"]

_T = TypeVar("_T")
_MAX_PROBLEM = 300
_MAX_RETRY_AFTER = 60.0
_MULTI = re.compile(r"\d+ errors? occurred:")
_TOLD: tuple[type[httpx.HTTPError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
"""Errors whose text is about the network or the server's answer: shown. Any other's text may
quote the request (h11's ``Illegal header value b'<the token>'``) and is never shown."""
_UNTOLD: Mapping[type[Exception], str] = {
    httpx.LocalProtocolError: "the request is not valid HTTP (a header value with a line break "
    "or control character?); not sent",
    UnicodeEncodeError: "a header value is not ASCII; not sent",
}
"""What an error whose own text is not shown means, by type (else a fixed phrase)."""
_UNSENT_OR_UNANSWERED = (httpx.HTTPError, UnicodeEncodeError)
"""A call that got no answer: httpx's errors, and a header value httpx cannot encode."""


class HttpTransport:
    """Sends the calls of a flow to the configured clusters.

    :param settings: the addresses, TLS files and namespace.
    :param transport: an httpx transport used instead of the network (tests pass
        ``httpx.MockTransport``); it must serve both blocking and async requests.
    :param sleep: the blocking sleep of back-offs (tests pass a fake).
    """

    def __init__(
        self,
        settings: VaultTransitSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._sleep = sleep
        self._tls = _tls_context(settings) if transport is None else None
        headers = {"X-Vault-Request": "true"}
        if settings.namespace:
            headers["X-Vault-Namespace"] = settings.namespace
        self._headers = headers
        # Invariants: _sync makes the blocking clients once per process (a forked child makes
        # its own: see asherah_core.forksafe); _async maps a running loop to its clients and
        # is only touched with _lock held. (A child's event loops, and their clients, are its
        # own.)
        self._sync = PerProcess(self._new_blocking)
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[httpx.AsyncClient]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # renewed in a forked child (the loops are its own)
        self._closed = False
        new_locks_in_child(self, "_lock")

    @property
    def addresses(self) -> Sequence[str]:
        """The cluster addresses, by cluster number."""
        return [c.address for c in self._settings.clusters]

    def _client(self, address: str, kind: Any) -> Any:
        options: dict[str, Any] = {
            "base_url": f"{address}/v1/",
            "headers": self._headers,
            "follow_redirects": False,
        }
        if self._transport is not None:
            options["transport"] = self._transport
        else:
            options["verify"] = self._tls
        return kind(**options)

    def _new_blocking(self) -> list[httpx.Client]:
        return [self._client(c.address, httpx.Client) for c in self._settings.clusters]

    def _blocking(self) -> list[httpx.Client]:
        """The blocking clients of this process (the parent's, in a forked child, share their
        connections with the parent: the child makes its own on its first call)."""
        return self._sync.get()

    def run(self, flow: Flow[_T]) -> _T:
        """Run `flow` to its end with blocking calls and return its result."""
        try:
            step = next(flow)
            while True:
                if isinstance(step, Pause):
                    self._sleep(step.seconds)
                    step = flow.send(Reply(0, problem="paused"))
                elif isinstance(step, Wait):
                    step.latch.wait(step.seconds)
                    step = flow.send(Reply(0, problem="waited"))
                else:
                    step = flow.send(self._send(step))
        except StopIteration as done:
            result: _T = done.value
            return result
        finally:
            flow.close()

    async def run_async(self, flow: Flow[_T]) -> _T:
        """Run `flow` to its end on the running event loop and return its result."""
        clients = self._loop_clients()
        try:
            step = next(flow)
            while True:
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(Reply(0, problem="paused"))
                elif isinstance(step, Wait):
                    await step.latch.wait_async(step.seconds)  # the loop runs other tasks
                    step = flow.send(Reply(0, problem="waited"))
                else:
                    step = flow.send(await self._send_async(clients, step))
        except StopIteration as done:
            result: _T = done.value
            return result
        finally:
            flow.close()

    def _send(self, call: Call) -> Reply:
        client = self._blocking()[call.cluster]
        try:
            response = client.request(
                call.method,
                call.path,
                json=call.body,
                headers=_token_header(call.token),
                timeout=call.timeout,
            )
        except _UNSENT_OR_UNANSWERED as e:
            return Reply(0, problem=_transport_problem(e))
        except RuntimeError:  # httpx refuses a closed client: close() ran during the call
            if not self._closed:
                raise
            return Reply(0, problem="the KMS was closed during the call")
        return _reply(response)

    async def _send_async(self, clients: list[httpx.AsyncClient], call: Call) -> Reply:
        try:
            response = await clients[call.cluster].request(
                call.method,
                call.path,
                json=call.body,
                headers=_token_header(call.token),
                timeout=call.timeout,
            )
        except _UNSENT_OR_UNANSWERED as e:
            return Reply(0, problem=_transport_problem(e))
        return _reply(response)

    def _loop_clients(self) -> list[httpx.AsyncClient]:
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._async.get(loop)
            if clients is None:
                clients = [
                    self._client(c.address, httpx.AsyncClient) for c in self._settings.clusters
                ]
                self._async[loop] = clients
            return clients

    def close(self) -> None:
        """Close the blocking clients and forget the async ones (their loops close them)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._async.clear()
        for client in self._sync.mine() or ():  # a parent's, in a forked child, stay open
            client.close()


def _token_header(token: str | None) -> dict[str, str] | None:
    return {"X-Vault-Token": token} if token else None


def _reply(response: httpx.Response) -> Reply:
    try:
        body = json.loads(response.content) if response.content else {}
    except ValueError:
        body = None
    retry_after = _retry_after(response.headers.get("Retry-After"))
    if not isinstance(body, Mapping):
        return Reply(
            response.status_code,
            problem=f"HTTP {response.status_code}, not a JSON body",
            retry_after=retry_after,
        )
    errors = body.get("errors")
    problem = ""
    if isinstance(errors, list) and errors:
        problem = "; ".join(_clean(str(e)) for e in errors)
        if len(problem) > _MAX_PROBLEM:
            problem = problem[:_MAX_PROBLEM] + "…"
    data = body.get("data")
    auth = body.get("auth")
    return Reply(
        response.status_code,
        data=data if isinstance(data, Mapping) else None,
        auth=auth if isinstance(auth, Mapping) else None,
        problem=problem,
        retry_after=retry_after,
    )


def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header given in seconds (an HTTP date is ignored)."""
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        return 0.0
    return min(seconds, _MAX_RETRY_AFTER) if math.isfinite(seconds) and seconds > 0 else 0.0


def _clean(error: str) -> str:
    """One line per Vault error: its multi-error text ("1 error occurred:\n\t* x") as "x"."""
    if _MULTI.match(error):
        items = [line.strip()[2:] for line in error.splitlines() if line.strip().startswith("* ")]
        error = "; ".join(items) or error
    return " ".join(error.split())


def _transport_problem(error: Exception) -> str:
    """The error's type and text, or its type and a fixed description when its text could
    quote a request header (the token)."""
    if not isinstance(error, _TOLD):
        meaning = next((m for kind, m in _UNTOLD.items() if isinstance(error, kind)), None)
        return f"{type(error).__name__}: {meaning or 'details not shown (they may quote a header)'}"
    text = str(error).strip()
    if len(text) > _MAX_PROBLEM:
        text = text[:_MAX_PROBLEM] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _tls_context(settings: VaultTransitSettings) -> ssl.SSLContext:
    """The TLS context: the system CAs or `ca_cert` (no verification when `tls_verify` is
    off), and the client certificate when one is set."""
    context = ssl.create_default_context(cafile=settings.ca_cert)
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert and settings.client_key:
        context.load_cert_chain(settings.client_cert, settings.client_key)
    return context
