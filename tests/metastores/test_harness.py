"""tools/dbservers: a given server is used as is; the relay cuts and restores; and a server the
harness started is gone, with its folder, after SIGTERM to the harness."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from . import _harness

dbservers = _harness.load()
REPO = _harness.REPO


def test_a_server_named_by_its_variable_is_used_and_nothing_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASHERAH_POSTGRES_URL", "postgresql+psycopg://u:p@db.example:5432/x")
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("asherah-postgres-*"))
    with dbservers.postgres() as server:
        assert server.url == "postgresql+psycopg://u:p@db.example:5432/x"
        assert server.restartable is False
        with pytest.raises(RuntimeError):
            server.stop()
    assert set(tmp.glob("asherah-postgres-*")) == before


def test_the_relay_cuts_and_restores_on_the_same_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as upstream:

        def echo() -> None:
            while True:
                try:
                    conn, _ = upstream.accept()
                except OSError:
                    return
                with conn:
                    while data := conn.recv(1024):
                        conn.sendall(data)

        threading.Thread(target=echo, daemon=True).start()
        relay = dbservers.relay.Relay(upstream.getsockname()[1])
        try:
            with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
                client.sendall(b"ping")
                assert client.recv(16) == b"ping"
                relay.cut()
                assert client.recv(16) == b""  # the open connection is reset
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", relay.port), timeout=1)
            relay.restore()
            with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
                client.sendall(b"pong")
                assert client.recv(16) == b"pong"
        finally:
            relay.cut()


@pytest.mark.postgres
@pytest.mark.servers
def test_sigterm_to_the_harness_stops_postgres_and_removes_its_folder() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ASHERAH_POSTGRES_URL"}
    harness = subprocess.Popen(
        [sys.executable, "-m", "tools.dbservers", "run", "postgres", "--", "sleep", "60"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert harness.stderr is not None
    line = ""
    deadline = time.monotonic() + 60
    while "ready" not in line and time.monotonic() < deadline:
        line = harness.stderr.readline()
        assert line or harness.poll() is None, "the harness exited before postgres was ready"
    match = re.search(r"pid (\d+)", line)
    assert match, line
    pid = int(match.group(1))
    workdirs = {
        Path(part).parent  # postgres -D <workdir>/data
        for part in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        if Path(part).parent.name.startswith("asherah-postgres-")
    }
    assert workdirs
    time.sleep(0.5)  # "sleep" is running under the harness
    harness.send_signal(signal.SIGTERM)
    assert harness.wait(timeout=60) == 128 + signal.SIGTERM
    assert not Path(f"/proc/{pid}").exists(), "postgres outlived the harness"
    assert not any(workdir.exists() for workdir in workdirs)
