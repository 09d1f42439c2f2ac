"""A counting, delaying HTTP proxy in front of LocalStack's KMS, run as a process of its own.

``python -m tools.bench.kmsproxy UPSTREAM DELAY_MS`` listens on a loopback port, prints
``{"port": N}`` and then forwards every request to `UPSTREAM` after sleeping `DELAY_MS`,
counting KMS requests by their ``X-Amz-Target`` (``TrentService.GenerateDataKey`` ->
``GenerateDataKey``). ``GET /_bench/counts`` returns the counts as JSON; ``POST /_bench/reset``
zeroes them.

Both sides of the framework benchmark reach KMS through it (``AWS_ENDPOINT_URL``), so they pay
the same latency and are counted the same way, ours in Python and the ``asherah`` package's
Rust SDK alike. It must be another process: that package holds the GIL while it waits on I/O,
so a server thread in the benchmark's own process would never get to answer.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["KmsProxy"]

ROOT = Path(__file__).resolve().parents[2]
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class KmsProxy:
    """Starts the proxy process; `endpoint` is its URL. Use as a context manager."""

    def __init__(self, upstream: str, delay_ms: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.kmsproxy", upstream, str(delay_ms)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.kill()
            raise RuntimeError("the KMS proxy did not start")
        self.endpoint = f"http://127.0.0.1:{json.loads(line)['port']}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def counts(self) -> dict[str, int]:
        """KMS requests forwarded since the last `reset`, by API name."""
        with self._opener.open(self.endpoint + "/_bench/counts", timeout=10) as response:
            counts: dict[str, int] = json.loads(response.read())
        return counts

    def reset(self) -> None:
        """Zero the counts."""
        request = urllib.request.Request(self.endpoint + "/_bench/reset", data=b"", method="POST")
        with self._opener.open(request, timeout=10):
            pass

    def close(self) -> None:
        """Stop the proxy process."""
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _serve(upstream: str, delay: float) -> None:
    target = urllib.parse.urlsplit(upstream)
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    local = threading.local()

    def connection() -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(
                target.hostname or "127.0.0.1", target.port, timeout=30
            )
            local.conn = conn
        return conn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in HOP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/_bench/counts":
                with lock:
                    body = json.dumps(dict(counts)).encode()
                self._reply(200, body, [("Content-Type", "application/json")])
            else:
                self._forward()

        def do_POST(self) -> None:
            if self.path == "/_bench/reset":
                with lock:
                    counts.clear()
                self._reply(200, b"{}", [("Content-Type", "application/json")])
            else:
                self._forward()

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            api = (self.headers.get("X-Amz-Target") or "other").rsplit(".", 1)[-1]
            with lock:
                counts[api] += 1
            if delay > 0:
                time.sleep(delay)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Host"] = self.headers.get("Host") or target.netloc
            for attempt in range(2):
                conn = connection()
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    local.conn = None
                    if attempt:
                        raise
            self._reply(response.status, data, response.getheaders())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tools.bench.kmsproxy UPSTREAM DELAY_MS")
    _serve(sys.argv[1].rstrip("/"), int(sys.argv[2]) / 1000)
