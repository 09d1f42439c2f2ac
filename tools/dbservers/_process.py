"""Processes of the harness: a free loopback port, a working folder the server's user owns,
one-shot commands, and a long-running server in a process group of its own."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.signals import raise_received, signals_held

__all__ = [
    "Daemon",
    "DbServerError",
    "RunAs",
    "free_port",
    "make_workdir",
    "port_open",
    "remove_workdir",
    "run",
    "say",
    "tail",
    "wait_until",
]

LOG_TAIL_LINES = 30


class DbServerError(Exception):
    """A database server could not be provided; the message says what to do."""


def say(message: str, *, quiet: bool) -> None:
    """Print a progress line on stderr (unless `quiet`)."""
    if not quiet:
        print(f"dbservers: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, *, every: float = 0.1) -> bool:
    """Call `check` until it returns True (then True) or `timeout` seconds pass (then False)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


@dataclass(frozen=True)
class RunAs:
    """Who runs the server: the package's unprivileged user when we are root, else ourselves."""

    uid: int
    gid: int
    name: str

    @classmethod
    def current(cls) -> RunAs:
        """The user running the harness."""
        me = pwd.getpwuid(os.geteuid())
        return cls(me.pw_uid, me.pw_gid, me.pw_name)

    @classmethod
    def for_user(cls, name: str) -> RunAs:
        """`name` when running as root (servers refuse to run as root), else the current user."""
        if os.geteuid() != 0:
            return cls.current()
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise DbServerError(
                f"user {name!r} does not exist; it is created by the server's Debian package "
                f"(apt-get install -y postgresql mariadb-server)"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()

    def popen_args(self) -> dict[str, object]:
        """Keyword arguments for `subprocess.Popen` that switch to this user when needed."""
        if not self.switches:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A small environment for the server's processes (no credentials of ours)."""
        home = pwd.getpwuid(self.uid).pw_dir
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}
        env.update(extra or {})
        return env


def make_workdir(prefix: str, owner: RunAs) -> Path:
    """A new temporary folder owned by `owner`, readable by nobody else.

    When the server runs as another user, the folder goes where that user can reach it: the
    temporary directory if every folder above it lets others through (nox points TMPDIR into
    the checkout, which may sit in a private folder such as one from ``mktemp -d``), else /tmp.
    """
    parent = tempfile.gettempdir()
    if owner.switches and not _others_can_traverse(Path(parent)):
        parent = "/tmp"
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if owner.switches:
        os.chown(workdir, owner.uid, owner.gid)
    workdir.chmod(0o700)
    return workdir


def _others_can_traverse(folder: Path) -> bool:
    for part in (folder.resolve(), *folder.resolve().parents):
        if not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def run(
    argv: Sequence[str],
    owner: RunAs,
    *,
    what: str,
    cwd: Path,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
) -> str:
    """Run a one-shot command as `owner`; return its output, or raise `DbServerError` with it.

    Strings in `secrets` (a generated password) are blanked in the message.
    """
    try:
        result = subprocess.run(
            list(argv),
            cwd=cwd,
            env=owner.env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **owner.popen_args(),  # type: ignore[call-overload]
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DbServerError(f"{what} failed: {error}") from None
    output = (result.stdout or "") + (result.stderr or "")
    if result.returncode != 0:
        for secret in secrets:
            output = output.replace(secret, "***")
        last = "\n".join(output.splitlines()[-LOG_TAIL_LINES:])
        raise DbServerError(f"{what} failed (exit {result.returncode}):\n{last}")
    return output


@dataclass
class Daemon:
    """One server process, started as `owner` in a session (and process group) of its own."""

    name: str
    argv: list[str]
    owner: RunAs
    log: Path
    cwd: Path
    stop_signal: int = signal.SIGTERM
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        """Start the process (appending to its log); signals wait until it is remembered."""
        with signals_held() as received, open(self.log, "ab") as log:
            if self.owner.switches:
                os.chown(self.log, self.owner.uid, self.owner.gid)
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                self.argv,
                cwd=self.cwd,
                env=self.owner.env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.owner.popen_args(),
            )
        raise_received(received)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """Ask the server to shut down, wait up to `grace` seconds, then kill its group."""
        process = self.process
        if process is None:
            return
        with signals_held() as received:
            pgid = process.pid  # start_new_session: it leads its own group
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, self.stop_signal)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=grace)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            process.wait()
            self.process = None
        raise_received(received)


def remove_workdir(workdir: Path) -> None:
    """Remove a working folder made by `make_workdir`."""
    shutil.rmtree(workdir, ignore_errors=True)
