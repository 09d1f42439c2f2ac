"""What the benchmark does to KMS calls: fixed latency, a slow region, a black hole, counting.

The latency is added in-process by a botocore ``before-send`` handler that sleeps before the
request leaves: on the boto3 Session for the latency every call pays (clients copy the
session's handlers when they are made), and on one client for a region that is slower than
the others. A region that is down is an endpoint that accepts connections and never answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from typing import Any

import boto3

__all__ = ["BlackHole", "CallCounter", "add_delay", "latency_session"]

KMS_SEND_EVENT = "before-send.kms"


class _Delay:
    """A ``before-send`` handler that sleeps `seconds` and lets the request go on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, **_kwargs: Any) -> None:
        if self.seconds > 0:
            time.sleep(self.seconds)


def latency_session(latency: float) -> boto3.Session:
    """A boto3 Session (test credentials) whose KMS clients wait `latency` s before each call.

    Register handlers before making clients: a client copies the session's handlers once.
    """
    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test")
    session.events.register(KMS_SEND_EVENT, _Delay(latency))
    return session


def add_delay(client: Any, seconds: float) -> None:
    """Make every call of this one client `seconds` slower (on top of the session's latency)."""
    client.meta.events.register(KMS_SEND_EVENT, _Delay(seconds), unique_id="bench-extra-delay")


class CallCounter:
    """Counts the KMS requests sent by the clients it is attached to, by API name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        """Count the requests of `client` (attach before use; one counter per client is fine)."""
        client.meta.events.register(KMS_SEND_EVENT, self._count, unique_id=f"count-{id(self)}")

    def _count(self, event_name: str = "", **_kwargs: Any) -> None:
        # event_name is "before-send.kms.<Operation>".
        with self._lock:
            self.counts[event_name.rsplit(".", 1)[-1]] += 1

    def total(self) -> int:
        """All requests counted so far."""
        with self._lock:
            return sum(self.counts.values())


class BlackHole:
    """A loopback TCP endpoint that accepts connections and never answers (a region down).

    Use as a context manager; `endpoint` is its ``http://127.0.0.1:<port>`` URL. The
    connections are held open until `close`, so clients wait for their read timeout.
    """

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._server.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="bench-black-hole", daemon=True)
        self._thread.start()
        port: int = self._server.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        """Stop accepting and drop every held connection."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._server.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
