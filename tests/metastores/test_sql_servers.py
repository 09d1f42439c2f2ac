"""SqlMetastore on real PostgreSQL and MySQL/MariaDB: the anchors' schema, UTC ``created``,
errors that name the key and never the password, and recovery after the server comes back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from asherah_core.errors import MetastoreError
from asherah_core.metastore.sql import SqlMetastore
from asherah_core.records import EnvelopeKeyRecord

from ._backends import Backend, kind_params

T0 = 1_796_221_020
RECORD = EnvelopeKeyRecord(T0, b"\x02" * 48)
SERVER_KINDS = kind_params("postgres", "mysql")
ForkedChild = Callable[[Callable[[], str]], str]
"""The ``in_forked_child`` fixture (conftest.py at the root)."""


def password_of(url: str) -> str:
    password = sa.make_url(url).password
    assert password
    return str(password)


WALL_CLOCK_SQL = {
    "postgres": "SELECT to_char(created, 'YYYY-MM-DD HH24:MI:SS') FROM encryption_key "
    "WHERE id = :id",
    "mysql": "SELECT DATE_FORMAT(created, '%Y-%m-%d %H:%i:%s') FROM encryption_key WHERE id = :id",
}


@pytest.mark.parametrize("backend", SERVER_KINDS, indirect=True)
def test_created_holds_the_utc_wall_clock_as_the_other_implementations_write_it(
    backend: Backend,
) -> None:
    """Go's driver, Java and the Rust core bind the UTC wall-clock time without a zone, and
    MySQL reads it in the session's zone (the harness's MariaDB runs at +05:00). Rows must land
    where theirs do, so the session's zone is not changed."""
    metastore = backend.make()
    assert isinstance(metastore, SqlMetastore)
    key_id = backend.new_id()
    assert metastore.store(key_id, T0, RECORD)
    with metastore.engine.connect() as conn:
        shown = conn.execute(sa.text(WALL_CLOCK_SQL[backend.kind]), {"id": key_id}).scalar()
    assert shown == "2026-12-02 14:17:00"


@pytest.mark.servers  # (run with the drivers; no server is started)
@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("postgresql+psycopg://app:hunter2@127.0.0.1:1/keys", "postgresql"),
        ("mysql+pymysql://app:hunter2@127.0.0.1:1/keys", "mysql"),
    ],
)
def test_sqlite_wal_for_a_server_database_is_an_error_before_any_connection(
    url: str, name: str
) -> None:
    with pytest.raises(MetastoreError, match=f"this is a {name} database") as raised:
        SqlMetastore(url, sqlite_wal=False)  # port 1: nothing listens, nothing is tried
    assert "hunter2" not in str(raised.value)


@pytest.mark.mysql
@pytest.mark.servers
def test_an_engine_passed_in_is_used_and_left_open(mysql_server: object) -> None:
    engine = sa.create_engine(mysql_server.url)  # type: ignore[attr-defined]
    try:
        metastore = SqlMetastore(engine)
        metastore.create_table()
        key_id = "_IK_engine_svc_prod"
        metastore.store(key_id, T0, RECORD)
        assert metastore.load(key_id, T0) == RECORD
        metastore.close()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.servers
def test_a_jsonb_key_record_column_is_read_and_written(postgres_server: object) -> None:
    """The asherah package's Postgres metastore binds the record as JSONB."""
    url = postgres_server.url  # type: ignore[attr-defined]
    metastore = SqlMetastore(url, table="encryption_key_jsonb")
    try:
        metastore.create_table(jsonb=True)
        extra = {"Future": [1, "two"]}
        record = EnvelopeKeyRecord.from_dict({**RECORD.to_dict(), **extra})
        assert metastore.store("_SK_svc_prod", T0, record)
        assert metastore.store("_SK_svc_prod", T0, record) is False
        loaded = metastore.load("_SK_svc_prod", T0)
        assert loaded == record
        assert loaded is not None
        assert dict(loaded.extra) == extra
        assert metastore.revoke("_SK_svc_prod", T0)
        assert metastore.load_latest("_SK_svc_prod") == record.with_revoked()
        listed = metastore.keys("_SK_")
        assert [key_id for key_id, _, _ in listed] == ["_SK_svc_prod"]
        with metastore.engine.connect() as conn:
            kind = conn.exec_driver_sql(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'encryption_key_jsonb' AND column_name = 'key_record'"
            ).scalar()
        assert kind == "jsonb"
    finally:
        metastore.close()


@pytest.mark.parametrize("backend", kind_params("sqlite", "mysql"), indirect=True)
def test_jsonb_is_refused_outside_postgresql(backend: Backend) -> None:
    with pytest.raises(MetastoreError, match="PostgreSQL only"):
        backend.make().create_table(jsonb=True)  # type: ignore[call-arg]


COLUMNS_SQL = (
    "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
    "WHERE table_name = 'encryption_key' AND table_schema = {schema} ORDER BY ordinal_position"
)


@pytest.mark.parametrize("backend", SERVER_KINDS, indirect=True)
def test_the_table_has_the_anchors_schema(backend: Backend) -> None:
    metastore = backend.make()
    assert isinstance(metastore, SqlMetastore)
    schema = "current_schema()" if backend.kind == "postgres" else "DATABASE()"
    with metastore.engine.connect() as conn:
        columns = [tuple(row) for row in conn.execute(sa.text(COLUMNS_SQL.format(schema=schema)))]
    types = {name.lower(): kind.lower() for name, kind, _ in columns}
    assert [name.lower() for name, _, _ in columns] == ["id", "created", "key_record"]
    assert types["id"] in ("character varying", "varchar")
    assert types["created"] in ("timestamp without time zone", "timestamp")
    assert types["key_record"] == "text"
    assert all(nullable == "NO" for _, _, nullable in columns)
    inspector = sa.inspect(metastore.engine)
    assert inspector.get_pk_constraint("encryption_key")["constrained_columns"] == [
        "id",
        "created",
    ]
    indexed = [index["column_names"] for index in inspector.get_indexes("encryption_key")]
    assert ["created"] in indexed


@pytest.mark.parametrize("backend", SERVER_KINDS, indirect=True)
def test_a_wrong_password_fails_with_metastore_error_without_the_password(
    backend: Backend,
) -> None:
    url = sa.make_url(backend.server.url).set(password="Wr0ng-pa55word-xyzzy")
    metastore = SqlMetastore(url)
    try:
        with pytest.raises(MetastoreError) as caught:
            metastore.load("_IK_p_svc_prod", T0)
        message = str(caught.value)
        assert "_IK_p_svc_prod" in message
        assert "Wr0ng-pa55word-xyzzy" not in message
        assert "Wr0ng-pa55word-xyzzy" not in repr(metastore)
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None or "xyzzy" not in str(caught.value.__context__)
    finally:
        metastore.close()


@pytest.mark.parametrize("backend", SERVER_KINDS, indirect=True)
def test_a_missing_table_says_how_to_create_it(backend: Backend) -> None:
    metastore = SqlMetastore(backend.server.url, table="no_such_table")
    try:
        with pytest.raises(MetastoreError, match="create_table") as caught:
            metastore.load_latest("_SK_svc_prod")
        assert "_SK_svc_prod" in str(caught.value)
        assert password_of(backend.server.url) not in str(caught.value)
    finally:
        metastore.close()


@pytest.mark.parametrize("backend", SERVER_KINDS, indirect=True)
def test_a_stopped_server_fails_calls_and_the_next_call_after_restart_works(
    backend: Backend,
) -> None:
    server = backend.server
    if not server.restartable:
        pytest.skip("the server was given by environment variable; not stopping it")
    metastore = backend.make()
    key_id = backend.new_id()
    assert metastore.store(key_id, T0, RECORD)
    server.stop()
    try:
        for call in (
            lambda: metastore.load(key_id, T0),
            lambda: metastore.load_latest(key_id),
            lambda: metastore.store(key_id, T0 + 60, RECORD),
        ):
            with pytest.raises(MetastoreError) as caught:
                call()
            assert key_id in str(caught.value)
            assert password_of(server.url) not in str(caught.value)
    finally:
        server.start()
    assert metastore.load(key_id, T0) == RECORD
    assert metastore.load(key_id, T0 + 60) is None  # the failed store left nothing behind
    assert metastore.store(key_id, T0 + 60, RECORD)


@pytest.mark.parametrize("backend", SERVER_KINDS, indirect=True)
def test_repr_and_messages_never_hold_the_password(backend: Backend) -> None:
    metastore = backend.make()
    password = password_of(backend.server.url)
    assert password not in repr(metastore)
    assert "***" in repr(metastore)
    with pytest.raises(MetastoreError) as caught:
        SqlMetastore(backend.server.url, table="bad name;")
    assert password not in str(caught.value)


SESSION_ID_SQL = {"postgres": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}


@pytest.mark.parametrize("backend", SERVER_KINDS, indirect=True)
def test_a_forked_child_talks_to_the_server_on_connections_of_its_own(
    backend: Backend, in_forked_child: ForkedChild
) -> None:
    # A preloading server (gunicorn --preload, Celery's prefork pool) forks after the factory
    # was used: a child on the parent's pooled connection would share its socket.
    metastore = backend.make()
    assert isinstance(metastore, SqlMetastore)
    key_id = backend.new_id()
    assert metastore.store(key_id, T0, RECORD)
    assert metastore.load(key_id, T0) == RECORD  # the pool holds the parent's connection now
    session_id = sa.text(SESSION_ID_SQL[backend.kind])
    with metastore.engine.connect() as conn:
        parents = conn.execute(session_id).scalar()

    def child() -> str:
        with metastore.engine.connect() as conn:
            own = conn.execute(session_id).scalar() != parents
        loaded = metastore.load(key_id, T0) == RECORD
        return f"{own} {loaded} {metastore.store(key_id, T0 + 60, RECORD)}"

    assert in_forked_child(child) == "True True True"
    with metastore.engine.connect() as conn:  # the parent's session lives on, untouched
        assert conn.execute(session_id).scalar() == parents
    assert metastore.load(key_id, T0 + 60) == RECORD  # what the child stored
