"""Metastores: in-memory, SQL on SQLite in the shared table, and metastore plugins."""

from __future__ import annotations

import sqlite3
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asherah_core import (
    MetastoreError,
    PluginConfig,
    PluginError,
    PluginHost,
    SessionFactory,
    StaticKms,
    hookimpl,
)
from asherah_core.metastore import EnvelopeKeyRecord, InMemoryMetastore, KeyMeta, Metastore

pytestmark = pytest.mark.usefixtures("isolated_env")
sa = pytest.importorskip("sqlalchemy")
from asherah_core.metastore.sql import SqlMetastore  # noqa: E402

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
SCHEMA = (
    "CREATE TABLE encryption_key (id TEXT NOT NULL, created TIMESTAMP NOT NULL, "
    "key_record TEXT NOT NULL, PRIMARY KEY (id, created))"
)


def record(
    created: int, key: bytes = b"k" * 40, parent: KeyMeta | None = None
) -> EnvelopeKeyRecord:
    return EnvelopeKeyRecord(created, key, parent)


@pytest.fixture(params=["memory", "sqlite"])
def any_metastore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Metastore]:
    if request.param == "memory":
        yield InMemoryMetastore()
        return
    store = SqlMetastore(f"sqlite:///{tmp_path / 'keys.db'}", create_table=True)
    yield store
    store.close()


def test_store_is_insert_if_absent(any_metastore: Metastore) -> None:
    assert any_metastore.store("_SK_s_p", 60, record(60, b"first"))
    assert not any_metastore.store("_SK_s_p", 60, record(60, b"second"))
    assert any_metastore.load("_SK_s_p", 60) == record(60, b"first")
    assert any_metastore.load("_SK_s_p", 61) is None
    assert any_metastore.load("_SK_other", 60) is None


def test_load_latest_is_the_largest_created(any_metastore: Metastore) -> None:
    assert any_metastore.load_latest("_IK_a_s_p") is None
    for created in (120, 1796221020, 61, 1796221021):
        any_metastore.store("_IK_a_s_p", created, record(created, parent=KeyMeta("_SK_s_p", 60)))
    any_metastore.store("_IK_b_s_p", 2_000_000_000, record(2_000_000_000))
    latest = any_metastore.load_latest("_IK_a_s_p")
    assert latest is not None
    assert latest.created == 1796221021


def test_revoke_and_keys(any_metastore: Metastore) -> None:
    any_metastore.store("_SK_s_p", 60, record(60))
    assert any_metastore.revoke("_SK_s_p", 60)
    assert not any_metastore.revoke("_SK_s_p", 61)
    loaded = any_metastore.load("_SK_s_p", 60)
    assert loaded is not None
    assert loaded.revoked
    assert [(i, c) for i, c, _ in any_metastore.keys("_SK")] == [("_SK_s_p", 60)]


def test_async_versions(any_metastore: Metastore) -> None:
    import asyncio  # noqa: PLC0415

    async def main() -> None:
        assert await any_metastore.store_async("k", 1, record(1))
        assert await any_metastore.load_async("k", 1) == record(1)
        assert await any_metastore.load_latest_async("k") == record(1)

    asyncio.run(main())


def test_a_factory_on_sqlite_round_trips(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    with SessionFactory(
        "svc", "prod", kms=StaticKms(MASTER_KEY), metastore=SqlMetastore(url, create_table=True)
    ) as factory:
        text = factory.get_session("p1").encrypt_bytes(b"row")
    with SessionFactory(
        "svc", "prod", kms=StaticKms(MASTER_KEY), metastore=SqlMetastore(url)
    ) as other:
        assert other.get_session("p1").decrypt_bytes(text) == b"row"


# SQLite: the table the asherah package shares ---------------------------------------------


def test_sqlite_table_and_rows_are_the_asherah_packages(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = SqlMetastore(f"sqlite:///{path}", create_table=True)
    store.store("_SK_s_p", 1796221020, record(1796221020))
    store.close()
    with sqlite3.connect(path) as db:
        (sql,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'encryption_key'"
        ).fetchone()
        rows = db.execute(
            "SELECT id, created, typeof(created), key_record FROM encryption_key"
        ).fetchall()
    assert sql == SCHEMA
    assert rows == [("_SK_s_p", "2026-12-02 14:17:00", "text", record(1796221020).to_json())]


def test_sqlite_reads_rows_written_by_the_asherah_package(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    with sqlite3.connect(path) as db:
        db.execute(SCHEMA)
        db.execute(
            "INSERT INTO encryption_key VALUES (?, datetime(?, 'unixepoch'), ?)",
            ("_SK_s_p", 1796221020, record(1796221020).to_json()),
        )
        db.execute(
            "INSERT INTO encryption_key VALUES (?, datetime('now'), ?)",
            ("__asherah_internal_config_drift_guard_v1__:x", "{}"),
        )
    store = SqlMetastore(f"sqlite:///{path}")
    assert store.load("_SK_s_p", 1796221020) == record(1796221020)
    assert [i for i, _, _ in store.keys("")] == ["_SK_s_p"]
    store.close()


def test_missing_table_is_a_metastore_error_with_a_hint(tmp_path: Path) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(MetastoreError, match=r"create_table\(\)"):
        store.load_latest("_SK_s_p")
    store.close()
    with pytest.raises(MetastoreError, match="closed"):
        store.load_latest("_SK_s_p")


def test_a_row_that_does_not_parse(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    with sqlite3.connect(path) as db:
        db.execute(SCHEMA)
        db.execute("INSERT INTO encryption_key VALUES ('k', '2026-01-01 00:00:00', 'nope')")
    with pytest.raises(MetastoreError, match="does not parse"):
        SqlMetastore(f"sqlite:///{path}").load_latest("k")


def test_passwords_never_show(tmp_path: Path) -> None:
    with pytest.raises(MetastoreError) as info:
        SqlMetastore("postgresql+nosuchdriver://user:hunter2@db.example/keys")
    assert "hunter2" not in str(info.value)
    engine = sa.create_engine("sqlite://")
    engine.url = sa.make_url("sqlite://user:hunter2@/")  # what a URL with a password renders
    store = SqlMetastore(engine)
    assert "hunter2" not in repr(store)
    with pytest.raises(MetastoreError) as info:
        store.load("k", 1)
    assert "hunter2" not in str(info.value)


def test_bad_table_name_and_url() -> None:
    with pytest.raises(MetastoreError, match="table name"):
        SqlMetastore("sqlite://", table="x; DROP TABLE y")
    with pytest.raises(MetastoreError, match="not a valid SQLAlchemy URL"):
        SqlMetastore("not a url")


def test_an_engine_passed_in_is_left_open(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'k.db'}")
    SqlMetastore(engine, create_table=True).close()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM encryption_key")).scalar() == 0


# Metastore plugins ------------------------------------------------------------------------


def metastore_plugin(*names: str) -> types.SimpleNamespace:
    def asherah_register_metastore(register: Any) -> None:
        for name in names:
            register(name, lambda config: InMemoryMetastore())

    return types.SimpleNamespace(asherah_register_metastore=hookimpl(asherah_register_metastore))


def test_builtin_metastores_are_listed() -> None:
    host = PluginHost(autoload=False)
    assert host.available_metastores() == ["dynamodb", "memory", "sql"]
    assert isinstance(host.load_metastore("memory"), InMemoryMetastore)
    store = host.load_metastore("sql", {"url": "sqlite://", "create_table": True})
    assert isinstance(store, SqlMetastore)
    store.close()


def test_a_third_party_metastore_plugin_is_loadable() -> None:
    host = PluginHost(autoload=False, plugins=[("thirdparty", metastore_plugin("redisish"))])
    assert host.available_metastores() == ["dynamodb", "memory", "redisish", "sql"]
    assert isinstance(host.load_metastore("redisish", {}), InMemoryMetastore)
    (info,) = [p for p in host.plugins() if p.name == "thirdparty"]
    assert info.metastores == ("redisish",)


@pytest.mark.parametrize("name", ["memory", "Bad Name", "", "-x"])
def test_duplicate_or_invalid_metastore_names(name: str) -> None:
    host = PluginHost(autoload=False, plugins=[("thirdparty", metastore_plugin(name))])
    with pytest.raises(PluginError):
        host.available_metastores()


def test_unknown_settings_and_unknown_metastores() -> None:
    host = PluginHost(autoload=False)
    with pytest.raises(Exception, match="nope") as info:
        host.load_metastore("memory", {"nope": 1})
    assert isinstance(info.value, Exception)
    with pytest.raises(Exception, match="registered metastores: dynamodb, memory, sql"):
        host.load_metastore("dynamo")


def test_a_factory_returning_something_else() -> None:
    plugin = types.SimpleNamespace(
        asherah_register_metastore=hookimpl(lambda register: register("odd", lambda c: object()))
    )
    host = PluginHost(autoload=False, plugins=[("odd", plugin)])
    with pytest.raises(PluginError, match="not a Metastore"):
        host.load_metastore("odd", PluginConfig({}, path="metastores.odd"))
