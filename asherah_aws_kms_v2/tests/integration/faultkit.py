"""Faults for the integration tests: a flaky TCP endpoint, injected KMS answers, recorded keys.

- `FlakyEndpoint`: a proxy on 127.0.0.1 in front of LocalStack that forwards, holds (accepts
  connections and never answers), or refuses (no listener at all), switchable at any time and
  able to flap between modes on a schedule.
- `KmsFactory`: a ``with_kms_factory`` factory that makes real boto3 clients (counting them),
  hooks ``before-send.kms`` on each client to answer for its region with an injected fault
  (throttling, 5xx, access denied, a data key of the wrong length), counts the requests each
  region received, and records every data key that passes through (to look for it in logs).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import selectors
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config

# --- A flaky endpoint ----------------------------------------------------------------------------

FORWARD, HOLD, REFUSE = "forward", "hold", "refuse"


class FlakyEndpoint:
    """A loopback TCP proxy to `upstream` whose behaviour is switched with `set_mode`.

    ``forward``: pass bytes both ways. ``hold``: accept, read and discard, never answer (the
    client's read timeout fires). ``refuse``: close the listening socket, so connecting fails
    at once with ECONNREFUSED; the same port is listened on again when the mode changes back.
    Changing mode closes every connection made under the old mode before `set_mode` returns.
    One thread serves everything through a selector.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._mode = FORWARD
        self._wanted = FORWARD
        self._cond = threading.Condition()
        self._requested = 0  # mode changes asked for, and applied
        self._applied = 0
        self._stop = False
        self._listener: socket.socket | None = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._peers: dict[socket.socket, socket.socket | None] = {}
        self.accepted: Counter[str] = Counter()  # connections accepted, per mode
        self.changes = 0
        self._flapper: threading.Thread | None = None
        self._flapping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="flaky-endpoint", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str, timeout: float = 5.0) -> None:
        """Switch to `mode`; on return, the old mode's connections are closed."""
        assert mode in (FORWARD, HOLD, REFUSE), mode
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._wanted = mode
        self._wake_w.send(b"x")
        with self._cond:
            if not self._cond.wait_for(lambda: self._applied >= ticket, timeout):
                raise RuntimeError("the flaky endpoint did not switch mode")

    def flap(self, schedule: Sequence[tuple[str, float]]) -> None:
        """Cycle through ``(mode, seconds)`` steps in a thread until `stop_flapping`."""

        def run() -> None:
            while not self._flapping.is_set():
                for mode, seconds in schedule:
                    if self._flapping.is_set():
                        break
                    self.set_mode(mode)
                    self._flapping.wait(seconds)

        self._flapping.clear()
        self._flapper = threading.Thread(target=run, name="flaky-endpoint-flapper", daemon=True)
        self._flapper.start()

    def stop_flapping(self, mode: str = FORWARD) -> None:
        self._flapping.set()
        if self._flapper is not None:
            self._flapper.join(10)
            self._flapper = None
        self.set_mode(mode)

    def close(self) -> None:
        if self._flapper is not None:
            self._flapping.set()
            self._flapper.join(10)
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join(10)
        self._close_connections()
        if self._listener is not None:
            self._listener.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # The serving thread -------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listener.setblocking(False)
        return listener

    def _serve(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(timeout=0.5):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                elif key.data == "listen":
                    self._accept()
                else:
                    self._pump(key.fileobj)  # type: ignore[arg-type]
            with self._cond:
                wanted, ticket = self._wanted, self._requested
            if wanted != self._mode:
                self._switch(wanted)
            with self._cond:
                self._applied = ticket
                self._cond.notify_all()

    def _switch(self, mode: str) -> None:
        self._close_connections()
        if mode == REFUSE and self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        elif mode != REFUSE and self._listener is None:
            self._listener = self._listen(self.port)
            self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._mode = mode
        self.changes += 1

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted[self._mode] += 1
        upstream: socket.socket | None = None
        if self._mode == FORWARD:
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                return
            upstream.settimeout(5)
            self._peers[upstream] = client
            self._selector.register(upstream, selectors.EVENT_READ, "conn")
        client.settimeout(5)
        self._peers[client] = upstream
        self._selector.register(client, selectors.EVENT_READ, "conn")

    def _pump(self, sock: socket.socket) -> None:
        if sock not in self._peers:
            return
        peer = self._peers[sock]
        try:
            data = sock.recv(65536)
            if data and peer is not None:
                peer.sendall(data)
        except OSError:
            data = b""
        if not data:
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            with contextlib.suppress(OSError):
                s.close()

    def _close_connections(self) -> None:
        for sock in list(self._peers):
            self._drop(sock)


def closed_port_endpoint() -> str:
    """An endpoint nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --- Injected KMS answers, counted requests, recorded data keys ---------------------------------

THROTTLED, SERVER_ERROR, ACCESS_DENIED, SHORT_DATA_KEY = "throttled", "5xx", "denied", "short"
_ERRORS = {
    THROTTLED: (400, "ThrottlingException", "Rate exceeded"),
    SERVER_ERROR: (500, "KMSInternalException", "injected internal failure"),
    ACCESS_DENIED: (400, "AccessDeniedException", "User is not authorized to perform kms:*"),
}


@dataclass
class Injection:
    """Answer `region`'s requests with `kind` instead of KMS: all of them, or the next `times`."""

    kind: str
    times: int | None = None


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def _answer(kind: str, operation: str, request: Any) -> AWSResponse | None:
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": str(uuid.uuid4())}
    if kind in _ERRORS:
        status, code, message = _ERRORS[kind]
        body: dict[str, Any] = {"__type": code, "message": message}
    elif kind == SHORT_DATA_KEY:
        if operation not in ("GenerateDataKey", "Decrypt"):
            return None  # Encrypt returns no data key: let KMS answer
        status = 200
        body = {
            "KeyId": "arn:aws:kms:us-west-2:000000000000:key/injected",
            "Plaintext": base64.b64encode(os.urandom(16)).decode(),
            "CiphertextBlob": base64.b64encode(os.urandom(100)).decode(),
        }
    else:
        raise AssertionError(kind)
    return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))


class RecordingClient:
    """A boto3 KMS client that records every data key going in or out."""

    def __init__(self, client: Any, factory: KmsFactory) -> None:
        self._client = client
        self._factory = factory

    def generate_data_key(self, **kwargs: Any) -> Mapping[str, Any]:
        response = self._client.generate_data_key(**kwargs)
        self._factory.record(response.get("Plaintext"))
        return response  # type: ignore[no-any-return]

    def encrypt(self, **kwargs: Any) -> Mapping[str, Any]:
        self._factory.record(kwargs.get("Plaintext"))
        return self._client.encrypt(**kwargs)  # type: ignore[no-any-return]

    def decrypt(self, **kwargs: Any) -> Mapping[str, Any]:
        response = self._client.decrypt(**kwargs)
        self._factory.record(response.get("Plaintext"))
        return response  # type: ignore[no-any-return]

    def close(self) -> None:
        self._client.close()


class KmsFactory:
    """A ``with_kms_factory`` factory: real clients, counted, with injectable faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clients_made: Counter[str] = Counter()  # per region
        self.requests: Counter[tuple[str, str]] = Counter()  # (region, operation) -> attempts
        self.injections: dict[str, Injection] = {}
        self.data_keys: set[bytes] = set()

    def __call__(
        self, region: str, *, session: boto3.Session, endpoint_url: str | None, config: Config
    ) -> RecordingClient:
        client = session.client("kms", region_name=region, endpoint_url=endpoint_url, config=config)
        client.meta.events.register("before-send.kms", functools.partial(self._before_send, region))
        with self._lock:
            self.clients_made[region] += 1
        return RecordingClient(client, self)

    def inject(self, region: str, kind: str, times: int | None = None) -> None:
        with self._lock:
            self.injections[region] = Injection(kind, times)

    def clear(self) -> None:
        with self._lock:
            self.injections.clear()

    def attempts(self, region: str) -> int:
        with self._lock:
            return sum(n for (r, _), n in self.requests.items() if r == region)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def record(self, data_key: object) -> None:
        if isinstance(data_key, bytes) and data_key:
            with self._lock:
                self.data_keys.add(data_key)

    def _before_send(self, region: str, request: Any, event_name: str, **_: Any) -> Any:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.requests[(region, operation)] += 1
            injection = self.injections.get(region)
            if injection is None:
                return None
            if injection.times is not None:
                if injection.times <= 0:
                    return None
                injection.times -= 1
        return _answer(injection.kind, operation, request)


def resource_usage() -> tuple[int, int]:
    """(threads alive, open file descriptors) of this process."""
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def open_sockets() -> set[str]:
    """The sockets this process holds open, as ``socket:[inode]``."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


def wait_for_usage(limit: tuple[int, int], timeout: float = 10.0) -> tuple[int, int]:
    """Wait until threads and fds are back within `limit`; return the last reading."""
    deadline = time.monotonic() + timeout
    usage = resource_usage()
    while (usage[0] > limit[0] or usage[1] > limit[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
        usage = resource_usage()
    return usage


@dataclass(frozen=True)
class ScanCredentials:
    """Distinctive credentials for one test module: the secret parts are what leak scans seek."""

    secret_key: str
    session_token: str

    @classmethod
    def make(cls, label: str) -> ScanCredentials:
        return cls(
            f"asherah{label}SecretKey/" + os.urandom(16).hex(),
            f"asherah{label}SessionToken+" + os.urandom(24).hex(),
        )

    @property
    def secrets(self) -> list[str]:
        return [self.secret_key, self.session_token]

    def session(self) -> boto3.Session:
        """A boto3 Session with these credentials (LocalStack accepts any)."""
        return boto3.Session(
            aws_access_key_id="test",
            aws_secret_access_key=self.secret_key,
            aws_session_token=self.session_token,
            region_name="us-east-1",
        )
