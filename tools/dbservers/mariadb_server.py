"""A throwaway MariaDB server: ``mariadb-install-db`` in a temporary folder, ``mariadbd`` on a
free loopback port as the ``mysql`` user (when we are root), a database and a user with a
generated password for the tests, and everything removed afterwards.

The server's own time zone is set to ``+05:00`` on purpose: the metastore must store
``created`` in UTC whatever the server's zone is, and a UTC server would hide a mistake.

``ASHERAH_MYSQL_URL`` (``mysql+pymysql://user:pw@host:port/db``) names an existing MySQL or
MariaDB instead; then nothing is started.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ._local import LocalServer
from ._process import DbServerError, RunAs, port_open, run

__all__ = ["SERVER_TIME_ZONE", "URL_ENV", "MariaDbServer"]

URL_ENV = "ASHERAH_MYSQL_URL"
SERVER_TIME_ZONE = "+05:00"
DATABASE = "asherah"
USER = "asherah"
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


class MariaDbServer(LocalServer):
    """One MariaDB server owned by the harness; `stop` and `start` keep its data."""

    name = "mariadb"

    def __init__(self, *, quiet: bool = True) -> None:
        self._server = _program("mariadbd", "mysqld")
        self._install_db = _program("mariadb-install-db", "mysql_install_db")
        self._client = _program("mariadb", "mysql")
        super().__init__(RunAs.for_user("mysql"), quiet=quiet)
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
    def _socket(self) -> Path:
        return self._workdir / "mariadb.sock"

    def _command(self) -> list[str]:
        return [
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
        ]

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
