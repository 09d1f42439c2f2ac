"""A throwaway PostgreSQL server: ``initdb`` in a temporary folder, ``postgres`` on a free
loopback port as the ``postgres`` user (when we are root), a database and a user with a generated
password for the tests, and everything removed afterwards.

``ASHERAH_POSTGRES_URL`` (a SQLAlchemy URL, ``postgresql+psycopg://user:pw@host:port/db``) names
an existing server to use instead; then nothing is started.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from ._local import LocalServer
from ._process import DbServerError, RunAs, port_open, run

__all__ = ["BINDIR_ENV", "URL_ENV", "PostgresServer", "find_bindir"]

URL_ENV = "ASHERAH_POSTGRES_URL"
BINDIR_ENV = "ASHERAH_POSTGRES_BINDIR"
"""The folder with ``initdb`` and ``postgres``, if not the newest /usr/lib/postgresql/*/bin."""

DATABASE = "asherah"
USER = "asherah"
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


class PostgresServer(LocalServer):
    """One PostgreSQL cluster owned by the harness; `stop` and `start` keep its data."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back, disconnect, stop

    def __init__(self, *, quiet: bool = True) -> None:
        self._bindir = find_bindir()
        super().__init__(RunAs.for_user("postgres"), quiet=quiet)
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

    def _command(self) -> list[str]:
        return [
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
        ]

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
