"""The LocalStack process, and `localstack()`, which provides an endpoint for a block."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.signals import raise_received, signals_held, sigterm_raises

from .common import (
    _BIND_FAILED,
    _READY_MARKER,
    ENDPOINT_ENV,
    GIVEN_ENDPOINT_TIMEOUT,
    HEALTH_PATH,
    PORT_ATTEMPTS,
    READY_STATES,
    START_TIMEOUT,
    STOP_TIMEOUT,
    StartupError,
    _say,
)
from .health import _check_given_endpoint, _kms_state
from .venv import _tail, provision


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _child_env(venv_python: Path, port: int, root: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "PYTHON", "LOCALSTACK_")) and key != ENDPOINT_ENV
    }
    bin_dir = str(venv_python.parent)
    env.update(
        PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
        VIRTUAL_ENV=str(venv_python.parent.parent),
        PYTHONUNBUFFERED="1",
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        LOCALSTACK_HOST=f"127.0.0.1:{port}",
        SERVICES="kms,secretsmanager",  # secretsmanager: the secrets-manager KMS tests
        FILESYSTEM_ROOT=str(root),
        TMPDIR=str(root / "tmp"),  # its temp files go away with the rest
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        DNS_ADDRESS="0",  # no DNS server: nothing else to bind, nothing to clash with
        DISABLE_EVENTS="1",  # no analytics calls (no network here anyway)
        SKIP_SSL_CERT_DOWNLOAD="1",
    )
    return env


@dataclass
class _Server:
    """One LocalStack process started by this harness, in its own session."""

    venv_python: Path
    quiet: bool
    workdir: Path
    port: int = 0
    log: Path = Path(os.devnull)
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float) -> None:
        """Start LocalStack on a free port and wait until KMS is available.

        :raises StartupError: it exited, timed out, or could not get a port; the caller stops it.
        """
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = _free_port()
            root = self.workdir / f"root-{attempt}"
            (root / "tmp").mkdir(parents=True)
            self.log = self.workdir / f"localstack-{attempt}.log"
            started = time.monotonic()
            with signals_held() as received, open(self.log, "wb") as log:
                self.process = subprocess.Popen(
                    [str(self.venv_python), "-m", "localstack.runtime.main"],
                    env=_child_env(self.venv_python, self.port, root),
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            raise_received(received)
            pid = self.process.pid
            _say(f"started LocalStack (pid {pid}) on {self.endpoint}", quiet=self.quiet)
            outcome = self._wait_ready(timeout)
            if outcome == "ready":
                self.ready = True
                _say(f"ready in {time.monotonic() - started:.1f} s", quiet=self.quiet)
                return
            if outcome != "port taken" or attempt == PORT_ATTEMPTS:
                break
            # Another process bound the port between our probe and LocalStack's bind.
            _say(f"port {self.port} was taken meanwhile; trying another", quiet=self.quiet)
            self._stop_process(grace=1.0)  # it would hang in its shutdown

        code = self.process.poll() if self.process else None
        why = {
            "exited": f"it exited with {code}",
            "timeout": f"KMS still {_kms_state(self.endpoint)} after {timeout:.0f} s",
            "port taken": f"its port was taken by another process {PORT_ATTEMPTS} times",
        }[outcome]
        raise StartupError(
            f"LocalStack did not become healthy at {self.endpoint}{HEALTH_PATH}: {why}. "
            f"End of its log ({self.log}):\n{_tail(self.log)}"
        )

    def _wait_ready(self, timeout: float) -> str:
        """Wait for our process to log that it is ready and for KMS to be available.

        Health alone is not enough: LocalStack does not exit when its port is taken, it logs the
        error and carries on, and the health check would then answer from whoever holds the port.
        """
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return "exited"
            log = self.log.read_text(errors="replace")
            if any(sign in log for sign in _BIND_FAILED):
                return "port taken"
            if _READY_MARKER in log and _kms_state(self.endpoint) in READY_STATES:
                return "ready"
            time.sleep(0.2)
        return "timeout"

    def _stop_process(self, grace: float = STOP_TIMEOUT) -> None:
        process = self.process
        if process is None:
            return
        pgid = process.pid  # start_new_session: the process leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _say(f"LocalStack (pid {pgid}) ignored SIGTERM; killing it", quiet=self.quiet)
        # SIGKILL whatever is left of the group (the leader, or children it left behind).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait()
        self.process = None

    def stop(self) -> list[int]:
        """Stop the process group and remove the working folder; return signals held meanwhile."""
        with signals_held() as received:
            process = self.process
            if self.ready and process is not None and process.poll() is not None:
                _say(
                    f"LocalStack exited on its own with {process.returncode} while in use; "
                    f"end of its log:\n{_tail(self.log)}",
                    quiet=False,
                )
            self._stop_process()
            shutil.rmtree(self.workdir, ignore_errors=True)
            if process is not None:
                _say("stopped LocalStack", quiet=self.quiet)
        return received


@contextlib.contextmanager
def localstack(*, quiet: bool = False, start_timeout: float = START_TIMEOUT) -> Iterator[str]:
    """Provide a LocalStack KMS endpoint for the block and yield its URL.

    Uses ``ASHERAH_LOCALSTACK_ENDPOINT`` when set (after checking its health) and starts nothing;
    otherwise provisions the venv, starts LocalStack on a free loopback port and stops it (the
    whole process group) when the block ends, however it ends.

    :param quiet: no progress lines on stderr.
    :param start_timeout: seconds to wait for KMS to become available.
    :raises LocalStackError: a subclass saying what went wrong and what to do.
    """
    given = os.environ.get(ENDPOINT_ENV, "").strip().rstrip("/")
    with sigterm_raises():
        if given:
            _check_given_endpoint(given, min(start_timeout, GIVEN_ENDPOINT_TIMEOUT))
            _say(f"using {given} from {ENDPOINT_ENV}", quiet=quiet)
            yield given
            return

        venv_python = provision(quiet=quiet)
        workdir = Path(tempfile.mkdtemp(prefix="asherah-localstack-"))
        server = _Server(venv_python, quiet, workdir)
        try:
            server.start(start_timeout)
            yield server.endpoint
        except BaseException:
            server.stop()
            raise
        raise_received(server.stop())
