"""Throwaway database servers for the metastore tests, started on this host without Docker.

- `postgres`: a PostgreSQL cluster (Debian's ``postgresql`` package) in a temporary folder;
  ``ASHERAH_POSTGRES_URL`` names an existing server instead.
- `mariadb`: a MariaDB server (``mariadb-server``); ``ASHERAH_MYSQL_URL`` names an existing
  MySQL or MariaDB instead.
- `dynamodb`: moto in server mode (``moto[server]`` in this interpreter) behind a loopback relay
  that can cut the connection; ``ASHERAH_DYNAMODB_ENDPOINT`` names an existing endpoint instead.

Each is a context manager yielding a `DbServer` (``.url``, and ``.stop()``/``.start()`` when the
harness owns it). Servers run as the package's unprivileged user when we are root, on free
loopback ports, and are always stopped and removed afterwards: on success, on exceptions, on
Ctrl-C and on SIGTERM. Stdlib only, so ``noxfile.py`` can import it too::

    with dbservers.postgres() as server:
        engine = sqlalchemy.create_engine(server.url)

As a script: ``python -m tools.dbservers run postgres mariadb dynamodb -- CMD`` runs CMD with
the three environment variables set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tools.signals import Terminated

from . import mariadb_server as _mysql
from . import moto_server as _moto
from . import postgres_server as _postgres
from ._base import DbServer, ExternalServer, provide
from ._process import DbServerError

__all__ = [
    "ENV_VARS",
    "DbServer",
    "DbServerError",
    "ExternalServer",
    "Terminated",
    "dynamodb",
    "mariadb",
    "postgres",
]

ENV_VARS = {
    "postgres": _postgres.URL_ENV,
    "mariadb": _mysql.URL_ENV,
    "dynamodb": _moto.ENDPOINT_ENV,
}
"""The environment variable naming an existing server, per server name."""


@contextlib.contextmanager
def postgres(*, quiet: bool = True) -> Iterator[DbServer]:
    """Provide a PostgreSQL server; ``.url`` is a ``postgresql+psycopg://`` URL."""
    with provide("postgres", _postgres.URL_ENV, lambda: _postgres.PostgresServer(quiet=quiet)) as s:
        yield s


@contextlib.contextmanager
def mariadb(*, quiet: bool = True) -> Iterator[DbServer]:
    """Provide a MariaDB (or given MySQL) server; ``.url`` is a ``mysql+pymysql://`` URL."""
    with provide("mariadb", _mysql.URL_ENV, lambda: _mysql.MariaDbServer(quiet=quiet)) as s:
        yield s


@contextlib.contextmanager
def dynamodb(*, quiet: bool = True) -> Iterator[DbServer]:
    """Provide a DynamoDB endpoint (moto); ``.url`` is ``http://127.0.0.1:<port>``."""
    with provide("dynamodb", _moto.ENDPOINT_ENV, lambda: _moto.MotoServer(quiet=quiet)) as s:
        yield s
