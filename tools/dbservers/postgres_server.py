"""A throwaway PostgreSQL server: ``initdb`` in a temporary folder, ``postgres`` on a free
loopback port as the ``postgres`` user (when we are root), a database and a user with a generated
password for the tests, and everything removed afterwards.

``ASHERAH_POSTGRES_URL`` (a SQLAlchemy URL, ``postgresql+psycopg://user:pw@host:port/db``) names
an existing server to use instead; then nothing is started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
from pathlib import Path

from ._process import (
    Daemon,
    DbServerError,
    RunAs,
    free_port,
    make_workdir,
    port_open,
    remove_workdir,
    run,
    say,
    tail,
    wait_until,
)

__all__ = ["BINDIR_ENV", "URL_ENV", "PostgresServer", "find_bindir"]

URL_ENV = "ASHERAH_POSTGRES_URL"
BINDIR_ENV = "ASHERAH_POSTGRES_BINDIR"
"""The folder with ``initdb`` and ``postgres``, if not the newest /usr/lib/postgresql/*/bin."""

DATABASE = "asherah"
USER = "asherah"
START_TIMEOUT = 60.0
PORT_ATTEMPTS = 3
INSTALL_HINT = "apt-get install -y postgresql"


def find_bindir() -> Path:
    """The folder holding PostgreSQL's server programs.

    :raises DbServerError: none found; the message says what to install or set.
    """
    given = os.environ.get(BINDIR_ENV, "").strip()
    candidates = [Path(given)] if given else []
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise DbServerError(
        f"PostgreSQL's server programs (initdb, postgres) were not found in "
        f"{given or '/usr/lib/postgresql/*/bin'} or on PATH. Install them ({INSTALL_HINT}), set "
        f"{BINDIR_ENV} to their folder, or set {URL_ENV} to a running server."
    )


class PostgresServer:
    """One PostgreSQL cluster owned by the harness; `stop` and `start` keep its data."""

    name = "postgres"
    restartable = True

    def __init__(self, *, quiet: bool = True) -> None:
        self._quiet = quiet
        self._bindir = find_bindir()
        self._owner = RunAs.for_user("postgres")
        self._workdir = make_workdir("asherah-postgres-", self._owner)
        self._password = secrets.token_hex(16)
        self._port = 0
        self._daemon: Daemon | None = None
        try:
            self._init_cluster()
            self._first_start()
            self._create_database()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}:{self._password}@127.0.0.1:{self._port}/{DATABASE}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return None if self._daemon is None else self._daemon.pid

    def __repr__(self) -> str:
        return f"PostgresServer(port={self._port}, workdir={str(self._workdir)!r})"

    # --- lifecycle ----------------------------------------------------------------------------

    def _init_cluster(self) -> None:
        run(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(self._workdir / "data"),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            self._owner,
            what="initdb",
            cwd=self._workdir,
        )
        (self._workdir / "socket").mkdir()
        if self._owner.switches:
            os.chown(self._workdir / "socket", self._owner.uid, self._owner.gid)

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
                say(f"postgres: no start on port {self._port}; trying another", quiet=self._quiet)

    def start(self) -> None:
        """Start (or restart) the server on its port and wait until it accepts connections."""
        if self._daemon is not None and self._daemon.alive():
            return
        log = self._workdir / "postgres.log"
        self._daemon = Daemon(
            "postgres",
            [
                str(self._bindir / "postgres"),
                "-D",
                str(self._workdir / "data"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self._port),
                "-k",
                str(self._workdir / "socket"),
                # A throwaway cluster: durability is not what the tests are about.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=100",
            ],
            self._owner,
            log,
            self._workdir,
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back, disconnect, stop
        )
        self._daemon.spawn()
        daemon = self._daemon
        if not wait_until(lambda: not daemon.alive() or self._ready(), START_TIMEOUT, every=0.2):
            raise DbServerError(f"postgres did not start in {START_TIMEOUT:.0f} s:\n{tail(log)}")
        if not daemon.alive():
            raise DbServerError(f"postgres exited at start:\n{tail(log)}")
        say(f"postgres ready on 127.0.0.1:{self._port} (pid {daemon.pid})", quiet=self._quiet)

    def _ready(self) -> bool:
        if not port_open(self._port):
            return False
        try:
            self._psql("SELECT 1", database="postgres")
        except DbServerError:
            return False
        return True

    def _psql(self, sql: str, *, database: str) -> str:
        return run(
            [
                str(self._bindir / "psql") if (self._bindir / "psql").is_file() else "psql",
                "-h",
                str(self._workdir / "socket"),
                "-p",
                str(self._port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ],
            self._owner,
            what="psql",
            cwd=self._workdir,
            timeout=30.0,
            secrets=(self._password,),
        )

    def _create_database(self) -> None:
        self._psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{self._password}'", database="postgres")
        self._psql(f"CREATE DATABASE {DATABASE} OWNER {USER}", database="postgres")

    def stop(self) -> None:
        """Shut the server down (fast shutdown), keeping its data folder."""
        if self._daemon is not None:
            self._daemon.stop()
            say("postgres stopped", quiet=self._quiet)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop()
        finally:
            remove_workdir(self._workdir)
