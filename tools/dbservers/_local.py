"""`LocalServer`: what the throwaway PostgreSQL and MariaDB servers share (a temporary folder,
a free loopback port tried a few times, start and wait until ready, stop, remove)."""

from __future__ import annotations

import secrets
import signal
from typing import ClassVar

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

__all__ = ["PORT_ATTEMPTS", "START_TIMEOUT", "LocalServer"]

START_TIMEOUT = 60.0
PORT_ATTEMPTS = 3


class LocalServer:
    """One server process owned by the harness; `stop` and `start` keep its data.

    A subclass names itself, says how to run the server (`_command`) and when it is ready
    (`_ready`), and prepares its data folder before calling `_first_start`.
    """

    name: ClassVar[str]
    restartable = True
    stop_signal: ClassVar[int] = signal.SIGTERM

    def __init__(self, owner: RunAs, *, quiet: bool) -> None:
        self._quiet = quiet
        self._owner = owner
        self._workdir = make_workdir(f"asherah-{self.name}-", owner)
        self._password = secrets.token_hex(16)
        self._port = 0
        self._daemon: Daemon | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return None if self._daemon is None else self._daemon.pid

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self._port}, workdir={str(self._workdir)!r})"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _first_start(self) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._port = free_port()
            try:
                self.start()
                return
            except DbServerError:
                self.stop()
                if attempt == PORT_ATTEMPTS:
                    raise
                say(
                    f"{self.name}: no start on port {self._port}; trying another", quiet=self._quiet
                )

    def start(self) -> None:
        """Start (or restart) the server on its port and wait until it accepts connections."""
        if self._daemon is not None and self._daemon.alive():
            return
        log = self._workdir / f"{self.name}.log"
        self._daemon = Daemon(
            self.name,
            self._command(),
            self._owner,
            log,
            self._workdir,
            stop_signal=self.stop_signal,
        )
        self._daemon.spawn()
        daemon = self._daemon
        if not wait_until(lambda: not daemon.alive() or self._ready(), START_TIMEOUT, every=0.2):
            raise DbServerError(f"{self.name} did not start in {START_TIMEOUT:.0f} s:\n{tail(log)}")
        if not daemon.alive():
            raise DbServerError(f"{self.name} exited at start:\n{tail(log)}")
        say(f"{self.name} ready on 127.0.0.1:{self._port} (pid {daemon.pid})", quiet=self._quiet)

    def stop(self) -> None:
        """Shut the server down, keeping its data folder."""
        if self._daemon is not None:
            self._daemon.stop()
            say(f"{self.name} stopped", quiet=self._quiet)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop()
        finally:
            remove_workdir(self._workdir)
