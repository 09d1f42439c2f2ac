"""Fixtures of the interop tests: the ``asherah`` package in a subprocess, a shared SQLite
file, and a KMS call counter in front of LocalStack.

Run through ``nox -s interop``: it installs both our distributions, SQLAlchemy and the pinned
``asherah`` package, and starts LocalStack.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

PEER_SCRIPT = Path(__file__).with_name("peer.py")
PEER_VERSION = "0.5.56"
SERVICE, PRODUCT = "interop-svc", "interop-prod"
MASTER_KEY_HEX = "3c" * 32
DRIFT_GUARD_PREFIX = "__asherah_internal_config_drift_guard_v1__:"
CREATED_TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
PREFERRED = "us-west-2"

PARTITIONS = ("user-42", "p_under_score", "partição-ü")
"""Partition ids: plain, with the separator character of key ids, and non-ASCII."""
PAYLOADS: dict[str, bytes] = {
    "empty": b"",
    "one": b"\x00",
    "1k": bytes(range(256)) * 4,
    "100k": os.urandom(100 * 1024),
    "text": "Grüße, 東京, emoji 🔐, ✓".encode(),
}

Config = dict[str, Any]


def static_config(db: Path) -> Config:
    """The configuration both sides take: SQLite file, static master key."""
    return {
        "ServiceName": SERVICE,
        "ProductID": PRODUCT,
        "Metastore": "sqlite",
        "ConnectionString": str(db),
        "KMS": "static",
        "StaticMasterKeyHex": MASTER_KEY_HEX,
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parent_of(drr: str) -> tuple[str, int]:
    """The (IK id, IK created) a data row record names."""
    meta = json.loads(drr)["Key"]["ParentKeyMeta"]
    return meta["KeyId"], meta["Created"]


# --- The metastore file, read with sqlite3 (neither side's code) -----------------------------


@dataclass(frozen=True)
class Row:
    id: str
    created: str
    record: dict[str, Any]


def key_rows(db: Path) -> list[Row]:
    """Every key row of the file, the peer's drift-guard rows left out, by id and created."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT id, created, key_record FROM encryption_key ORDER BY id, created"
        ).fetchall()
    return [Row(i, c, json.loads(r)) for i, c, r in rows if not i.startswith(DRIFT_GUARD_PREFIX)]


def ids_of(rows: Sequence[Row]) -> list[tuple[str, int]]:
    return [(row.id, row.record["Created"]) for row in rows]


# --- The peer ------------------------------------------------------------------------------------


class PeerError(AssertionError):
    """The helper process failed as a whole (not one op)."""


@dataclass
class Peer:
    """Runs batches of operations through the ``asherah`` package, one process per batch
    (so one fresh factory per batch)."""

    env: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        config: Mapping[str, Any],
        ops: Sequence[Mapping[str, Any]],
        *,
        api: str = "factory",
        env: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
        # The package reads no config drift variables unless asked; keep the caller's out.
        environment.pop("ASHERAH_CONFIG_DRIFT_FORCE_RUN", None)
        environment.update(self.env)
        environment.update(env or {})
        request = json.dumps({"config": dict(config), "api": api, "ops": list(ops)})
        done = subprocess.run(
            [sys.executable, str(PEER_SCRIPT)],
            input=request,
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise PeerError(f"peer helper exited {done.returncode}: {done.stderr[-2000:]}")
        answer = json.loads(done.stdout)
        assert answer["version"] == PEER_VERSION, "the nox session pins the asherah package"
        results: list[dict[str, Any]] = answer["results"]
        return results

    def encrypt(
        self, config: Mapping[str, Any], items: Sequence[tuple[str, bytes]], **kw: Any
    ) -> list[str]:
        ops = [{"op": "encrypt", "partition": p, "data": b64(d)} for p, d in items]
        return [_value(r, "drr") for r in self.run(config, ops, **kw)]

    def decrypt(
        self, config: Mapping[str, Any], items: Sequence[tuple[str, str]], **kw: Any
    ) -> list[bytes]:
        ops = [{"op": "decrypt", "partition": p, "drr": d} for p, d in items]
        return [base64.b64decode(_value(r, "data")) for r in self.run(config, ops, **kw)]


def _value(result: Mapping[str, Any], name: str) -> str:
    if "error" in result:
        raise AssertionError(f"the asherah package refused an operation: {result['error']}")
    value: str = result[name]
    return value


@pytest.fixture
def peer() -> Peer:
    """The ``asherah`` package in a subprocess of the nox venv's Python."""
    return Peer()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A SQLite file shared by both sides (not created yet)."""
    return tmp_path / "keys.db"


# --- A KMS call counter in front of LocalStack --------------------------------------------------


class KmsCounter:
    """An HTTP proxy to LocalStack that counts KMS requests by (operation, region).

    Both sides are pointed at it with ``AWS_ENDPOINT_URL``; it forwards each request as it
    came and returns LocalStack's answer. The region is read from the SigV4 credential scope.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 4566)
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = self.headers.get("X-Amz-Target", "")
                scope = re.search(
                    r"Credential=[^/]+/\d+/([^/]+)/", self.headers.get("Authorization", "")
                )
                counter.count(target.rsplit(".", 1)[-1], scope.group(1) if scope else "?")
                conn = http.client.HTTPConnection(*counter.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request("POST", self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    payload = answer.read()
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in (
                            "transfer-encoding",
                            "content-length",
                            "connection",
                        ):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    conn.close()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, operation: str, region: str) -> None:
        with self._lock:
            self.calls[(operation, region)] += 1

    def by_region(self) -> dict[tuple[str, str], int]:
        """The calls since the last `take`, by (operation, region)."""
        with self._lock:
            return {key: n for key, n in self.calls.items() if n}

    def take(self) -> Counter[str]:
        """The calls since the last `take`, by operation, and reset."""
        with self._lock:
            by_operation: Counter[str] = Counter()
            for (operation, _region), n in self.calls.items():
                by_operation[operation] += n
            self.calls.clear()
        return by_operation

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def kms_counter(localstack_endpoint: str) -> Iterator[KmsCounter]:
    counter = KmsCounter(localstack_endpoint)
    yield counter
    counter.close()


@pytest.fixture
def aws_config(db: Path, regional_keys: dict[str, str]) -> Config:
    """The configuration both sides take for LocalStack's KMS in three regions."""
    return {
        "ServiceName": SERVICE,
        "ProductID": PRODUCT,
        "Metastore": "sqlite",
        "ConnectionString": str(db),
        "KMS": "aws",
        "RegionMap": dict(regional_keys),
        "PreferredRegion": PREFERRED,
    }


@pytest.fixture
def aws_peer(kms_counter: KmsCounter) -> Peer:
    """The peer pointed at LocalStack through the counter."""
    return Peer(
        env={
            "AWS_ENDPOINT_URL": kms_counter.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": PREFERRED,
        }
    )


@pytest.fixture
def aws_env(
    monkeypatch: pytest.MonkeyPatch, kms_counter: KmsCounter, regional_keys: dict[str, str]
) -> KmsCounter:
    """Point our side's aws-v2 plugin (built by from_config) at LocalStack through the counter.

    Depends on ``regional_keys`` so the keys exist before ``AWS_ENDPOINT_URL`` is set (the root
    fixtures' client refuses to run with it set).
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL", kms_counter.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    kms_counter.take()
    return kms_counter
