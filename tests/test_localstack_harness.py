"""tools/localstack/: it starts LocalStack only when no endpoint is given, and never leaves a
LocalStack process behind: not after success, an exception, Ctrl-C, or SIGTERM to the harness.

The tests marked ``integration`` start LocalStacks of their own (a few seconds each once the
venv is cached), even when ``ASHERAH_LOCALSTACK_ENDPOINT`` is set; the others need none.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
HARNESS_PATH = REPO / "tools" / "localstack"  # runnable as a folder: python tools/localstack
ENDPOINT_ENV = "ASHERAH_LOCALSTACK_ENDPOINT"
PYTHON_ENV = "ASHERAH_LOCALSTACK_PYTHON"

needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")


def load_harness() -> ModuleType:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("tools.localstack")


harness = load_harness()


# --- Looking at processes and ports --------------------------------------------------------------


def port_of(endpoint: str) -> int:
    port = urlsplit(endpoint).port
    assert port is not None, endpoint
    return port


def localstack_pids(port: int) -> set[int]:
    """Live processes of the LocalStack told to listen on ``port`` (found by their environment)."""
    needle = f"GATEWAY_LISTEN=127.0.0.1:{port}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.add(int(entry.name))
    return pids


def our_localstack_children() -> set[int]:
    """LocalStack processes that this test process started itself."""
    me = os.getpid()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == me and b"localstack.runtime.main" in (entry / "cmdline").read_bytes():
                    pids.add(int(entry.name))
    return pids


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_all_gone(port: int) -> None:
    assert localstack_pids(port) == set(), f"LocalStack on port {port} is still running"
    assert not port_is_open(port), f"port {port} still accepts connections"


@pytest.fixture
def own_localstack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the harness start its own LocalStack even where one is given to the test session.

    Skipped where it cannot (no Python 3.13, e.g. a Docker machine whose LocalStack is given):
    without a given endpoint the integration session would already have failed, saying why.
    """
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    try:
        harness.find_python()
    except harness.PythonNotFoundError as error:
        pytest.skip(f"cannot start a LocalStack here: {error}")


@pytest.fixture
def no_python_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Python 3.13 to be found: empty PATH, empty pyenv root, nothing given."""
    for name in (ENDPOINT_ENV, PYTHON_ENV):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "bin").mkdir()
    (tmp_path / "pyenv").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))


# --- A missing interpreter, and a given endpoint (no LocalStack needed) -------------------------


def test_a_python_that_does_not_exist_is_named_in_the_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "python3.13"
    monkeypatch.setenv(PYTHON_ENV, str(missing))

    with pytest.raises(harness.PythonNotFoundError) as info:
        harness.find_python()

    message = str(info.value)
    assert f"{PYTHON_ENV}={missing} does not run" in message
    assert "needs Python 3.13" in message


@pytest.mark.usefixtures("no_python_anywhere")
def test_without_python_313_the_message_says_what_to_install_or_set() -> None:
    with pytest.raises(harness.PythonNotFoundError) as info:
        harness.find_python()

    message = str(info.value)
    assert "needs Python 3.13, and none was found" in message
    assert "pyenv install 3.13" in message
    assert f"{PYTHON_ENV}=/full/path/to/python3.13" in message
    assert f"{ENDPOINT_ENV}=http://localhost:4566" in message


@pytest.mark.usefixtures("no_python_anywhere")
def test_the_command_line_prints_the_message_without_a_traceback(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS_PATH),
            "run",
            "--",
            sys.executable,
            "-c",
            f"open({str(ran)!r}, 'w')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.startswith("localstack: error: LocalStack (localstack-core")
    assert "pyenv install 3.13" in result.stderr
    assert "Traceback" not in result.stderr
    assert not ran.exists()


class FakeHealth(http.server.BaseHTTPRequestHandler):
    kms_state = "available"

    def do_GET(self) -> None:
        body = json.dumps({"services": {"kms": self.kms_state, "s3": "disabled"}}).encode()
        self.send_response(200 if self.path == "/_localstack/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def fake_localstack(kms_state: str) -> Iterator[str]:
    handler = type("Handler", (FakeHealth,), {"kms_state": kms_state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.usefixtures("no_python_anywhere")
@pytest.mark.parametrize("state", ["available", "running"])
def test_a_given_healthy_endpoint_is_used_and_nothing_is_started(
    monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    with fake_localstack(state) as endpoint:
        monkeypatch.setenv(ENDPOINT_ENV, endpoint + "/")
        with harness.localstack(quiet=True) as given:
            assert given == endpoint
            assert our_localstack_children() == set()


@pytest.mark.usefixtures("no_python_anywhere")
def test_a_given_endpoint_without_kms_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_localstack("disabled") as endpoint:
        monkeypatch.setenv(ENDPOINT_ENV, endpoint)
        with (
            pytest.raises(harness.EndpointUnavailableError, match="KMS there is disabled"),
            harness.localstack(quiet=True, start_timeout=1),
        ):
            pytest.fail("the block must not run")


@pytest.mark.usefixtures("no_python_anywhere")
def test_a_given_endpoint_that_is_down_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv(ENDPOINT_ENV, closed)

    with (
        pytest.raises(harness.EndpointUnavailableError) as info,
        harness.localstack(quiet=True, start_timeout=1),
    ):
        pytest.fail("the block must not run")

    message = str(info.value)
    assert f"{ENDPOINT_ENV}={closed} is set, but KMS there is unreachable" in message
    assert f"unset {ENDPOINT_ENV}" in message


@pytest.mark.usefixtures("no_python_anywhere")
@pytest.mark.parametrize("exit_code", [0, 7])
def test_run_gives_the_command_the_endpoint_and_returns_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, exit_code: int
) -> None:
    with fake_localstack("available") as endpoint:
        monkeypatch.setenv(ENDPOINT_ENV, endpoint)
        check = (
            f"import os, sys; "
            f"sys.exit({exit_code} if os.environ[{ENDPOINT_ENV!r}] == {endpoint!r} else 99)"
        )
        result = subprocess.run(
            [sys.executable, str(HARNESS_PATH), "run", "--", sys.executable, "-c", check],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == exit_code, result.stderr
    assert f"using {endpoint} from {ENDPOINT_ENV}" in result.stderr


# --- Starting and stopping a real LocalStack -----------------------------------------------------


@pytest.mark.integration
@needs_proc
def test_the_given_real_endpoint_is_used_as_is(
    localstack_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, localstack_endpoint)
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "no-python-here"))  # starting would fail

    with harness.localstack(quiet=True) as endpoint:
        assert endpoint == localstack_endpoint
        assert our_localstack_children() == set()


@pytest.mark.integration
@needs_proc
@pytest.mark.usefixtures("own_localstack")
def test_after_success_nothing_is_left() -> None:
    with harness.localstack(quiet=True) as endpoint:
        port = port_of(endpoint)
        assert localstack_pids(port)
        assert harness._kms_state(endpoint) in {"available", "running"}

    assert_all_gone(port)


@pytest.mark.integration
@needs_proc
@pytest.mark.usefixtures("own_localstack")
def test_after_an_exception_in_the_block_nothing_is_left() -> None:
    class Boom(Exception):
        pass

    ports: list[int] = []

    def fail_inside() -> None:
        with harness.localstack(quiet=True) as endpoint:
            ports.append(port_of(endpoint))
            assert localstack_pids(ports[0])
            raise Boom

    with pytest.raises(Boom):
        fail_inside()

    assert_all_gone(ports[0])


@pytest.mark.integration
@needs_proc
@pytest.mark.usefixtures("own_localstack")
def test_a_port_taken_before_localstack_binds_it_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # LocalStack does not exit when its port is taken: it logs the error and carries on.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        free_port = harness._free_port
        monkeypatch.setattr(harness.process, "_free_port", lambda: next(ports, None) or free_port())

        with harness.localstack(quiet=True) as endpoint:
            assert port_of(endpoint) != taken
            assert harness._kms_state(endpoint) in {"available", "running"}

        assert localstack_pids(taken) == set()
    assert_all_gone(port_of(endpoint))


# A background job of a non-interactive shell (some CI runners) starts with SIGINT ignored, and
# Python then keeps ignoring it; start the harness with the default disposition, as a terminal does.
WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
SLEEPER = (
    "import os, time; "
    f"print(os.environ[{ENDPOINT_ENV!r}], os.getpid(), flush=True); "
    "time.sleep(300)"
)


@pytest.fixture
def run_sleeper(
    own_localstack: None, tmp_path: Path
) -> Iterator[Callable[[], tuple[subprocess.Popen[str], str, int]]]:
    """Start ``tools/localstack run -- python -c <sleep 300>`` in a session of its own.

    Returns the harness process, the endpoint the command saw and the command's pid, once
    LocalStack is healthy (the command only starts then). Kills everything left at the end.
    """
    started: list[tuple[subprocess.Popen[str], str]] = []
    env = {k: v for k, v in os.environ.items() if k != ENDPOINT_ENV}

    def run() -> tuple[subprocess.Popen[str], str, int]:
        sleeper = (sys.executable, "-c", SLEEPER)
        process = subprocess.Popen(
            [sys.executable, "-c", WITH_DEFAULT_SIGINT, str(HARNESS_PATH), "run", "--", *sleeper],
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "harness.log").open("w"),
            text=True,
            env=env,
            start_new_session=True,
        )
        started.append((process, ""))
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 180)
        line = process.stdout.readline() if ready else ""
        assert line, f"the command never started; harness log:\n{harness_log()}"
        endpoint, pid = line.split()
        started[-1] = (process, endpoint)
        return process, endpoint, int(pid)

    def harness_log() -> str:
        return (tmp_path / "harness.log").read_text()

    yield run

    for process, endpoint in started:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if endpoint:
            for pid in localstack_pids(port_of(endpoint)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.integration
@needs_proc
@pytest.mark.parametrize(
    ("how", "signum", "exit_code"),
    [
        pytest.param("harness", signal.SIGINT, 130, id="SIGINT-to-the-harness"),
        pytest.param("group", signal.SIGINT, 130, id="Ctrl-C-to-the-foreground-group"),
        pytest.param("harness", signal.SIGTERM, 143, id="SIGTERM-to-the-harness"),
    ],
)
def test_a_signal_to_the_command_line_stops_localstack_and_the_command(
    run_sleeper: Callable[[], tuple[subprocess.Popen[str], str, int]],
    tmp_path: Path,
    how: str,
    signum: signal.Signals,
    exit_code: int,
) -> None:
    process, endpoint, command_pid = run_sleeper()
    port = port_of(endpoint)
    assert localstack_pids(port)
    assert port_is_open(port)

    if how == "group":
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    returncode = process.wait(timeout=60)

    log = (tmp_path / "harness.log").read_text()
    assert returncode == exit_code, log
    assert "stopped LocalStack" in log
    assert not pid_alive(command_pid), "the command outlived the harness"
    assert_all_gone(port)
