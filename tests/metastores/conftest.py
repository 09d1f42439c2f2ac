"""Fixtures for the metastore tests: one `Backend` per metastore, and the servers behind them.

The servers (PostgreSQL, MariaDB, moto for DynamoDB) are started once per test session by
tools/dbservers, only when a test needs them, unless ``ASHERAH_POSTGRES_URL``,
``ASHERAH_MYSQL_URL`` or ``ASHERAH_DYNAMODB_ENDPOINT`` names one already running. Tests that
need a server carry the marker ``servers`` and one of ``postgres``, ``mysql``, ``dynamodb``;
``nox -s metastores`` runs them, ``nox -s tests`` leaves them out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asherah_core.metastore import InMemoryMetastore, Metastore

from . import _harness
from ._backends import Backend, aws_session, dynamodb_put_raw, sql_put_raw

dbservers = _harness.load()


def _serve(provider: Callable[..., Any]) -> Iterator[Any]:
    try:
        with provider() as server:
            yield server
    except dbservers.DbServerError as error:
        pytest.fail(f"cannot provide the server: {error}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL server (`tools.dbservers.DbServer`), for the whole test session."""
    yield from _serve(dbservers.postgres)


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Any]:
    """A MariaDB (or given MySQL) server, for the whole test session."""
    yield from _serve(dbservers.mariadb)


@pytest.fixture(scope="session")
def dynamodb_server() -> Iterator[Any]:
    """A DynamoDB endpoint (moto), for the whole test session."""
    yield from _serve(dbservers.dynamodb)


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The metastore kind named by the test's ``kind`` parameter (see `kind_params`)."""
    kind: str = request.param
    made: list[Metastore] = []

    def remember(metastore: Metastore) -> Metastore:
        made.append(metastore)
        return metastore

    if kind == "memory":
        shared = InMemoryMetastore()
        yield Backend(kind, lambda: shared, None)
    elif kind in ("sqlite", "postgres", "mysql"):
        from asherah_core.metastore.sql import SqlMetastore  # noqa: PLC0415

        server = None
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / 'keys.db'}"
        else:
            server = request.getfixturevalue(f"{kind}_server")
            url = server.url
        first = remember(SqlMetastore(url))
        first.create_table()
        yield Backend(kind, lambda: remember(SqlMetastore(url)), sql_put_raw(first), server)
    else:
        from asherah_core.metastore.dynamodb import DynamoDbMetastore  # noqa: PLC0415

        server = request.getfixturevalue("dynamodb_server")

        def make() -> Metastore:
            return remember(
                DynamoDbMetastore("EncryptionKey", endpoint_url=server.url, session=aws_session())
            )

        first = make()
        first.create_table()
        yield Backend(kind, make, dynamodb_put_raw(first), server)
    for metastore in made:
        metastore.close()
