"""Run LocalStack (KMS only) on this host for the integration tests, and stop it afterwards.

LocalStack runs in host mode (``python -m localstack.runtime.main``, no Docker) from a cached
venv of its own on Python 3.13, on a free loopback port. When ``ASHERAH_LOCALSTACK_ENDPOINT`` is
set, that endpoint is used instead and nothing is started (for example a ``localstack/localstack``
container on a machine with Docker).

As a module (stdlib only, importable from ``noxfile.py`` and from pytest)::

    with localstack() as endpoint:
        ...  # http://127.0.0.1:<port>

As a script::

    python tools/localstack.py run -- pytest -m integration   # CMD sees ASHERAH_LOCALSTACK_ENDPOINT
    python tools/localstack.py serve                          # start, print the endpoint, wait
    python tools/localstack.py provision                      # only build the cached venv

The started process (and its process group) is stopped on success, on exceptions, on Ctrl-C and
on SIGTERM to the harness. Only SIGKILL of the harness itself can leave it behind.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

__all__ = [
    "ENDPOINT_ENV",
    "PINS",
    "PYTHON_ENV",
    "EndpointUnavailableError",
    "LocalStackError",
    "ProvisionError",
    "PythonNotFoundError",
    "StartupError",
    "Terminated",
    "find_interpreter",
    "find_python",
    "localstack",
    "main",
    "provision",
    "venv_dir",
]

ENDPOINT_ENV = "ASHERAH_LOCALSTACK_ENDPOINT"
"""An already running LocalStack to use instead of starting one, e.g. ``http://localhost:4566``."""

PYTHON_ENV = "ASHERAH_LOCALSTACK_PYTHON"
"""The Python 3.13 interpreter to build LocalStack's venv with (a full path)."""

PINS: tuple[str, ...] = (
    "localstack-core[runtime]==2026.3.0",
    "service_identity",
    # Each of these was found by a failed start without it.
    "cryptography<45",
    "pyopenssl==24.3.0",
    "cbor2<5.7",
    "joserfc<1.2",
)
"""What goes into LocalStack's venv; changing it (or the interpreter) makes a new venv."""

REQUIRED_PYTHON = (3, 13)
HEALTH_PATH = "/_localstack/health"
READY_STATES = frozenset({"available", "running"})
START_TIMEOUT = 120.0
GIVEN_ENDPOINT_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3
LOG_TAIL_LINES = 40
_MARKER = ".asherah-provisioned"
_READY_MARKER = "Ready."  # localstack.constants.READY_MARKER_OUTPUT
_BIND_FAILED = ("CannotListenError", "Address already in use")
_PREFIX = "localstack:"


class LocalStackError(Exception):
    """LocalStack could not be provided; the message says what to do."""


class PythonNotFoundError(LocalStackError):
    """No Python 3.13 interpreter to run LocalStack with, and no endpoint given."""


class ProvisionError(LocalStackError):
    """Installing LocalStack into its venv failed."""


class StartupError(LocalStackError):
    """The LocalStack process did not become healthy."""


class EndpointUnavailableError(LocalStackError):
    """The endpoint given in ``ASHERAH_LOCALSTACK_ENDPOINT`` does not serve KMS."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) reached the harness; raised so that clean-up code runs.

    It subclasses :class:`KeyboardInterrupt` so that code which already stops its children on
    Ctrl-C (nox, subprocess.run) does the same on SIGTERM.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _say(message: str, *, quiet: bool) -> None:
    if not quiet:
        print(f"{_PREFIX} {message}", file=sys.stderr, flush=True)


# --- Finding Python 3.13 -------------------------------------------------------------------------


def _interpreter(executable: str) -> tuple[tuple[int, int, int], str] | None:
    """Return (version, sys.executable) of the interpreter at ``executable``, or None.

    ``sys.executable`` resolves shims (pyenv) to the real interpreter.
    """
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print(*sys.version_info[:3], sys.executable)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.strip().split(" ", 3)
    if out.returncode != 0 or len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    return (int(parts[0]), int(parts[1]), int(parts[2])), parts[3] or executable


def _python_version(executable: str) -> tuple[int, int, int] | None:
    """Return the version of the interpreter at ``executable``, or None if it does not run."""
    info = _interpreter(executable)
    return None if info is None else info[0]


def _pyenv_root() -> Path:
    given = os.environ.get("PYENV_ROOT")
    if given:
        return Path(given)
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=30, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
    return Path.home() / ".pyenv"


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in folder.name.split("."))


def find_interpreter(version: str, *, tried: list[str] | None = None) -> str | None:
    """Return the full path of a working ``python<version>`` (e.g. ``"3.13"``), or None.

    Looks on ``PATH`` first (skipping what does not run, such as a pyenv shim without
    ``PYENV_VERSION``), then at the highest ``$(pyenv root)/versions/<version>.*/bin``. The path
    returned is the interpreter's own ``sys.executable``, so a working shim is resolved.

    :param tried: if given, every candidate looked at is appended to it.
    """
    looked = tried if tried is not None else []
    want = tuple(int(part) for part in version.split("."))
    name = f"python{version}"

    def works(candidate: Path) -> str | None:
        looked.append(str(candidate))
        info = _interpreter(str(candidate))
        return info[1] if info is not None and info[0][: len(want)] == want else None

    for entry in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(entry or ".") / name
        if candidate.is_file() and os.access(candidate, os.X_OK) and (found := works(candidate)):
            return found

    pattern = re.compile(rf"{re.escape(version)}\.\d+")
    folders = sorted(
        (f for f in (_pyenv_root() / "versions").glob(f"{version}.*") if pattern.fullmatch(f.name)),
        key=_version_key,
        reverse=True,
    )
    for folder in folders:
        if found := works(folder / "bin" / name):
            return found
    return None


def find_python() -> str:
    """Return the path of a working Python 3.13 interpreter for LocalStack.

    Looks at ``ASHERAH_LOCALSTACK_PYTHON``, then ``python3.13`` on ``PATH`` (if it runs: a pyenv
    shim may not), then the highest ``$(pyenv root)/versions/3.13.*/bin/python3.13``.

    :raises PythonNotFoundError: none works; the message says what to install or set.
    """
    want = ".".join(map(str, REQUIRED_PYTHON))
    given = os.environ.get(PYTHON_ENV)
    if given:
        version = _python_version(given)
        if version is not None and version[:2] == REQUIRED_PYTHON:
            return given
        found = "does not run" if version is None else f"is Python {'.'.join(map(str, version))}"
        raise PythonNotFoundError(
            f"{PYTHON_ENV}={given} {found}, but LocalStack needs Python {want}. "
            f"Point {PYTHON_ENV} at a Python {want} interpreter (full path), or unset it to "
            f"search PATH and pyenv."
        )

    tried: list[str] = []
    python = find_interpreter(want, tried=tried)
    if python is not None:
        return python
    looked = ", ".join(tried) or f"no python{want} on PATH or in {_pyenv_root() / 'versions'}"
    raise PythonNotFoundError(
        f"LocalStack (localstack-core 2026.3.0, run on the host without Docker) needs Python "
        f"{want}, and none was found (looked at: {looked}). Do one of: install Python {want} "
        f"(e.g. `pyenv install {want}` or your system's python{want} package); or set "
        f"{PYTHON_ENV}=/full/path/to/python{want}; or start LocalStack yourself (e.g. "
        f"`docker run -p 4566:4566 localstack/localstack`) and set "
        f"{ENDPOINT_ENV}=http://localhost:4566."
    )


# --- Provisioning the venv -----------------------------------------------------------------------


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def venv_dir(python: str) -> Path:
    """Return where LocalStack's venv for ``python`` lives (its name hashes pins and Python)."""
    version = _python_version(python)
    if version is None:
        raise PythonNotFoundError(f"{python} does not run; cannot build LocalStack's venv with it.")
    identity = json.dumps(
        {"pins": PINS, "python": version, "executable": os.path.realpath(python)}, sort_keys=True
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return _cache_home() / "asherah-py" / f"localstack-{digest}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def provision(python: str | None = None, *, quiet: bool = False) -> Path:
    """Build (once) LocalStack's venv and return its Python interpreter.

    The venv is cached under ``${XDG_CACHE_HOME:-~/.cache}/asherah-py/`` and only counts as built
    once its marker file is written, so an interrupted install is redone. A file lock keeps
    concurrent runs from installing into the same folder.

    :param python: a Python 3.13 interpreter; found with :func:`find_python` when omitted.
    :raises PythonNotFoundError: no interpreter.
    :raises ProvisionError: the install failed; the message holds the tail of pip's log.
    """
    python = python or find_python()
    venv = venv_dir(python)
    venv.parent.mkdir(parents=True, exist_ok=True)
    marker = venv / _MARKER
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and _venv_python(venv).exists():
            return _venv_python(venv)
        if venv.exists():
            shutil.rmtree(venv)
        _say(
            f"installing LocalStack into {venv} with {python} (about 70 s, once) ...",
            quiet=quiet,
        )
        started = time.monotonic()
        venv.mkdir(parents=True)
        log = venv / "pip-install.log"
        with open(log, "w") as out:
            steps: list[list[str]] = [
                [python, "-m", "venv", str(venv)],
                [
                    str(_venv_python(venv)),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    *PINS,
                ],
            ]
            for step in steps:
                out.write(f"$ {' '.join(step)}\n")
                out.flush()
                result = subprocess.run(
                    step,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
                if result.returncode != 0:
                    raise ProvisionError(
                        f"Installing LocalStack failed ({' '.join(step[:4])} ... exited with "
                        f"{result.returncode}). The full log is {log}; its end:\n{_tail(log)}"
                    )
        marker.write_text(json.dumps({"pins": PINS, "python": python}) + "\n")
        _say(f"installed in {time.monotonic() - started:.0f} s", quiet=quiet)
        return _venv_python(venv)


# --- Signals -------------------------------------------------------------------------------------


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, _frame: FrameType | None) -> NoReturn:
    raise Terminated(signum)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into :class:`Terminated` while the block runs (main thread)."""
    if not _in_main_thread():
        yield
        return
    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    for signum in (int(signal.SIGTERM), int(signal.SIGHUP)):
        if signal.getsignal(signum) is signal.SIG_DFL:  # leave deliberate handlers and nohup alone
            previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM/SIGHUP instead of acting on them while the block runs.

    Used around starting (so a signal cannot fall between Popen and remembering the process) and
    stopping (so clean-up cannot itself be interrupted). Stopping is bounded in time.
    """
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    for signum in (int(signal.SIGINT), int(signal.SIGTERM), int(signal.SIGHUP)):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, record)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _raise_received(received: Sequence[int]) -> None:
    if not received:
        return
    for signum in received:
        if signum != signal.SIGINT:
            raise Terminated(signum)
    raise KeyboardInterrupt


# --- Health --------------------------------------------------------------------------------------


def _is_loopback(endpoint: str) -> bool:
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    return host in {"localhost", "127.0.0.1", "::1"}


def _kms_state(endpoint: str, timeout: float = 2.0) -> str:
    """Return the KMS state from LocalStack's health endpoint, or why it could not be read."""
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(endpoint) else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(endpoint + HEALTH_PATH, timeout=timeout) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as error:  # URLError, refused, timeout, bad JSON
        return f"unreachable ({error})"
    services = body.get("services") if isinstance(body, dict) else None
    if not isinstance(services, dict) or "kms" not in services:
        return "not listed"
    return str(services["kms"])


def _check_given_endpoint(endpoint: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = _kms_state(endpoint)
        if state in READY_STATES:
            return
        if time.monotonic() >= deadline:
            raise EndpointUnavailableError(
                f"{ENDPOINT_ENV}={endpoint} is set, but KMS there is {state} "
                f"(checked {endpoint}{HEALTH_PATH} for {timeout:.0f} s). Start LocalStack with "
                f"KMS at that address, or unset {ENDPOINT_ENV} to let the harness start its own."
            )
        time.sleep(0.5)


# --- The process ---------------------------------------------------------------------------------


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
        SERVICES="kms",
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
            with _signals_held() as received, open(self.log, "wb") as log:
                self.process = subprocess.Popen(
                    [str(self.venv_python), "-m", "localstack.runtime.main"],
                    env=_child_env(self.venv_python, self.port, root),
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            _raise_received(received)
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
        with _signals_held() as received:
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
    with _sigterm_raises():
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
        _raise_received(server.stop())


# --- Command line --------------------------------------------------------------------------------


def _wait_child(child: subprocess.Popen[bytes]) -> int:
    """Wait for ``child``; if interrupted, stop it (bounded) and re-raise."""
    try:
        return child.wait()
    except KeyboardInterrupt as interrupt:
        with _signals_held():
            steps: list[tuple[float, int]] = (
                [(0.0, signal.SIGTERM), (5.0, signal.SIGKILL)]
                if isinstance(interrupt, Terminated)
                # Ctrl-C from a terminal reaches the child too: give it a moment first.
                else [(1.0, signal.SIGINT), (5.0, signal.SIGTERM), (5.0, signal.SIGKILL)]
            )
            for grace, signum in steps:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=grace)
                if child.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)
            child.wait()
        raise


def _run(command: Sequence[str], *, quiet: bool) -> int:
    with localstack(quiet=quiet) as endpoint:
        env = {**os.environ, ENDPOINT_ENV: endpoint}
        try:
            child = subprocess.Popen(list(command), env=env)
        except OSError as error:
            _say(f"cannot run {command[0]}: {error}", quiet=False)
            return 127
        return _wait_child(child)


def _serve(*, quiet: bool) -> int:
    with localstack(quiet=quiet) as endpoint:
        print(f"export {ENDPOINT_ENV}={endpoint}", flush=True)
        _say("running; Ctrl-C to stop", quiet=quiet)
        while True:
            time.sleep(3600)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tools/localstack.py",
        description="Run LocalStack (KMS) on this host for the integration tests.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help=f"start LocalStack, run CMD with {ENDPOINT_ENV} set, stop LocalStack"
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    commands.add_parser("serve", help="start LocalStack, print the endpoint, wait for Ctrl-C")
    commands.add_parser("provision", help="only build LocalStack's cached venv")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "provision":
            with _sigterm_raises():
                python = provision(quiet=args.quiet)
            print(python)
            return 0
        if args.command == "serve":
            return _serve(quiet=args.quiet)
        command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not command:
            parser.error("run needs a command: run -- CMD [ARGS...]")
        return _run(command, quiet=args.quiet)
    except LocalStackError as error:
        print(f"{_PREFIX} error: {error}", file=sys.stderr)
        return 2
    except Terminated as terminated:
        return 128 + terminated.signum
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
