"""A throwaway MariaDB server: ``mariadb-install-db`` in a temporary folder, ``mariadbd`` on a
free loopback port as the ``mysql`` user (when we are root), a database and a user with a
generated password for the tests, and everything removed afterwards.

The server's own time zone is set to ``+05:00`` on purpose: the metastore must store
``created`` in UTC whatever the server's zone is, and a UTC server would hide a mistake.

``ASHERAH_MYSQL_URL`` (``mysql+pymysql://user:pw@host:port/db``) names an existing MySQL or
MariaDB instead; then nothing is started.
"""

from __future__ import annotations

import secrets
import shutil
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

__all__ = ["SERVER_TIME_ZONE", "URL_ENV", "MariaDbServer"]

URL_ENV = "ASHERAH_MYSQL_URL"
SERVER_TIME_ZONE = "+05:00"
DATABASE = "asherah"
USER = "asherah"
START_TIMEOUT = 60.0
PORT_ATTEMPTS = 3
INSTALL_HINT = "apt-get install -y mariadb-server"


def _program(*names: str) -> str:
    for name in names:
        for folder in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            if Path(folder, name).is_file():
                return str(Path(folder, name))
        found = shutil.which(name)
        if found:
            return found
    raise DbServerError(
        f"{names[0]} was not found. Install MariaDB ({INSTALL_HINT}) or set {URL_ENV} to a "
        f"running MySQL or MariaDB."
    )


class MariaDbServer:
    """One MariaDB server owned by the harness; `stop` and `start` keep its data."""

    name = "mariadb"
    restartable = True

    def __init__(self, *, quiet: bool = True) -> None:
        self._quiet = quiet
        self._server = _program("mariadbd", "mysqld")
        self._install_db = _program("mariadb-install-db", "mysql_install_db")
        self._client = _program("mariadb", "mysql")
        self._owner = RunAs.for_user("mysql")
        self._workdir = make_workdir("asherah-mariadb-", self._owner)
        self._password = secrets.token_hex(16)
        self._port = 0
        self._daemon: Daemon | None = None
        try:
            run(
                [
                    self._install_db,
                    "--no-defaults",
                    f"--datadir={self._workdir / 'data'}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
                self._owner,
                what="mariadb-install-db",
                cwd=self._workdir,
            )
            self._first_start()
            self._sql(
                f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4; "
                f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{self._password}'; "
                f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';"
            )
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return (
            f"mysql+pymysql://{USER}:{self._password}@127.0.0.1:{self._port}/{DATABASE}"
            "?charset=utf8mb4"
        )

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return None if self._daemon is None else self._daemon.pid

    def __repr__(self) -> str:
        return f"MariaDbServer(port={self._port}, workdir={str(self._workdir)!r})"

    @property
    def _socket(self) -> Path:
        return self._workdir / "mariadb.sock"

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
                say(f"mariadb: no start on port {self._port}; trying another", quiet=self._quiet)

    def start(self) -> None:
        """Start (or restart) the server on its port and wait until it accepts connections."""
        if self._daemon is not None and self._daemon.alive():
            return
        log = self._workdir / "mariadb.log"
        self._daemon = Daemon(
            "mariadb",
            [
                self._server,
                "--no-defaults",
                f"--datadir={self._workdir / 'data'}",
                f"--socket={self._socket}",
                f"--pid-file={self._workdir / 'mariadb.pid'}",
                f"--tmpdir={self._workdir}",
                "--bind-address=127.0.0.1",
                f"--port={self._port}",
                "--skip-name-resolve",
                "--skip-log-bin",
                f"--default-time-zone={SERVER_TIME_ZONE}",
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=200",
            ],
            self._owner,
            log,
            self._workdir,
        )
        self._daemon.spawn()
        daemon = self._daemon
        if not wait_until(lambda: not daemon.alive() or self._ready(), START_TIMEOUT, every=0.2):
            raise DbServerError(f"mariadb did not start in {START_TIMEOUT:.0f} s:\n{tail(log)}")
        if not daemon.alive():
            raise DbServerError(f"mariadb exited at start:\n{tail(log)}")
        say(f"mariadb ready on 127.0.0.1:{self._port} (pid {daemon.pid})", quiet=self._quiet)

    def _ready(self) -> bool:
        if not port_open(self._port) or not self._socket.exists():
            return False
        try:
            self._sql("SELECT 1")
        except DbServerError:
            return False
        return True

    def _sql(self, sql: str) -> str:
        return run(
            [self._client, "--no-defaults", f"--socket={self._socket}", "-u", "root", "-e", sql],
            self._owner,
            what="mariadb client",
            cwd=self._workdir,
            timeout=30.0,
            secrets=(self._password,),
        )

    def stop(self) -> None:
        """Shut the server down, keeping its data folder."""
        if self._daemon is not None:
            self._daemon.stop()
            say("mariadb stopped", quiet=self._quiet)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop()
        finally:
            remove_workdir(self._workdir)
