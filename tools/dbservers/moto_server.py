"""DynamoDB for the tests: moto in server mode on a free loopback port, behind a `Relay` so that
`stop` and `start` make the endpoint unreachable and reachable again without losing the tables
(moto keeps them in memory only).

``ASHERAH_DYNAMODB_ENDPOINT`` (e.g. ``http://localhost:8000`` for DynamoDB Local) names an
existing endpoint instead; then nothing is started.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from pathlib import Path

from ._process import (
    Daemon,
    DbServerError,
    RunAs,
    free_port,
    make_workdir,
    remove_workdir,
    say,
    tail,
    wait_until,
)
from .relay import Relay

__all__ = ["ENDPOINT_ENV", "MotoServer"]

ENDPOINT_ENV = "ASHERAH_DYNAMODB_ENDPOINT"
START_TIMEOUT = 60.0


def _answers(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/moto-api/", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class MotoServer:
    """moto's server (this interpreter's ``moto[server]``) and a relay in front of it."""

    name = "dynamodb"
    restartable = True

    def __init__(self, *, quiet: bool = True, python: str | None = None) -> None:
        self._quiet = quiet
        python = python or sys.executable
        if python == sys.executable and (
            importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None
        ):
            raise DbServerError(
                f"moto's server mode is not installed in {python}: pip install 'moto[server]', "
                f"or set {ENDPOINT_ENV} to a running DynamoDB endpoint"
            )
        owner = RunAs.current()
        self._workdir = make_workdir("asherah-moto-", owner)
        self._port = free_port()
        self._relay: Relay | None = None
        log = self._workdir / "moto.log"
        self._daemon = Daemon(
            "moto",
            [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self._port)],
            owner,
            log,
            self._workdir,
            env={"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
        )
        try:
            self._daemon.spawn()
            daemon = self._daemon
            ok = wait_until(
                lambda: not daemon.alive() or _answers(self._port), START_TIMEOUT, every=0.2
            )
            if not ok or not daemon.alive():
                raise DbServerError(f"moto did not start on port {self._port}:\n{tail(log)}")
            self._relay = Relay(self._port)
            say(f"moto ready on {self.url} (pid {daemon.pid})", quiet=quiet)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        assert self._relay is not None
        return f"http://127.0.0.1:{self._relay.port}"

    @property
    def log(self) -> Path:
        return self._daemon.log

    def stop(self) -> None:
        """Cut the relay: connection refused, open connections reset; the tables stay."""
        if self._relay is not None:
            self._relay.cut()

    def start(self) -> None:
        """Restore the relay on the same port."""
        if self._relay is not None:
            self._relay.restore()

    def close(self) -> None:
        """Stop moto and the relay, remove the folder."""
        try:
            if self._relay is not None:
                self._relay.cut()
            self._daemon.stop(grace=5.0)
        finally:
            remove_workdir(self._workdir)
