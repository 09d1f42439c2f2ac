"""rewrap_table and key_usage over an application table in SQLite (PostgreSQL: tests/metastores)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asherah_core import SessionError, SessionFactory, StaticKms
from asherah_core import table_rotation as tr
from asherah_core.metastore.sql import SqlMetastore
from asherah_core.records import KeyMeta
from asherah_core.table_rotation import KeySelector, RowTable, key_usage, rewrap_table

from .conftest import MASTER_KEY

ROWS = RowTable("secrets", "payload", "id", partition_column="tenant")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE secrets (id INTEGER PRIMARY KEY, tenant TEXT, payload TEXT)"
        )
    yield engine
    engine.dispose()


@pytest.fixture
def keys_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    SqlMetastore(url, create_table=True).close()
    return url


def make_factory(keys_url: str) -> SessionFactory:
    return SessionFactory(
        "svc", "prod", kms=StaticKms(MASTER_KEY), metastore=SqlMetastore(keys_url)
    )


def fill(engine: sa.Engine, keys_url: str, count: int, tenants: int = 3) -> dict[int, bytes]:
    expected: dict[int, bytes] = {}
    with make_factory(keys_url) as factory, engine.begin() as conn:
        for i in range(1, count + 1):
            tenant = f"t{i % tenants}"
            data = f"row {i} of {tenant}".encode()
            record = factory.get_session(tenant).encrypt_bytes(data)
            conn.execute(
                sa.text("INSERT INTO secrets VALUES (:i, :t, :p)"),
                {"i": i, "t": tenant, "p": record},
            )
            expected[i] = data
    return expected


def table(engine: sa.Engine) -> dict[int, tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, tenant, payload FROM secrets")).all()
    return {i: (t, p) for i, t, p in rows}


def ik_of(record: str) -> KeyMeta:
    meta = json.loads(record)["Key"]["ParentKeyMeta"]
    return KeyMeta(meta["KeyId"], meta["Created"])


def revoke(keys_url: str, meta: KeyMeta) -> None:
    with SqlMetastore(keys_url) as metastore:
        assert metastore.revoke(meta.key_id, meta.created)


def check_all_open(engine: sa.Engine, keys_url: str, expected: dict[int, bytes]) -> None:
    with make_factory(keys_url) as factory:
        for i, (tenant, record) in table(engine).items():
            assert factory.get_session(tenant).decrypt_bytes(record) == expected[i]


def test_nothing_to_do_when_every_key_is_current(engine: sa.Engine, keys_url: str) -> None:
    expected = fill(engine, keys_url, 20)
    before = table(engine)
    with make_factory(keys_url) as factory:
        summary = rewrap_table(engine, ROWS, factory, batch_size=7)
    assert (summary.scanned, summary.current, summary.rewrapped) == (20, 20, 0)
    assert summary.ok
    assert table(engine) == before
    check_all_open(engine, keys_url, expected)


def test_a_revoked_key_is_moved_off_and_only_its_rows_change(
    engine: sa.Engine, keys_url: str
) -> None:
    expected = fill(engine, keys_url, 30)
    before = table(engine)
    target = ik_of(before[1][1])  # tenant t1
    revoke(keys_url, target)
    with make_factory(keys_url) as factory:
        dry = rewrap_table(engine, ROWS, factory, dry_run=True, batch_size=8)
        assert (dry.rewrapped, dry.current, dry.dry_run) == (10, 20, True)
        assert table(engine) == before
        summary = rewrap_table(engine, ROWS, factory, batch_size=8, count=True)
    assert (summary.scanned, summary.rewrapped, summary.current, summary.total) == (30, 10, 20, 30)
    after = table(engine)
    for i, (tenant, record) in after.items():
        if tenant == "t1":
            assert ik_of(record) != target
            assert json.loads(record)["Data"] == json.loads(before[i][1])["Data"]
        else:
            assert record == before[i][1]
    check_all_open(engine, keys_url, expected)
    with make_factory(keys_url) as factory:  # idempotent
        again = rewrap_table(engine, ROWS, factory)
    assert (again.rewrapped, again.current) == (0, 30)
    assert table(engine) == after


def test_key_selects_the_rows_of_one_intermediate_key(engine: sa.Engine, keys_url: str) -> None:
    fill(engine, keys_url, 12)
    before = table(engine)
    t0, t1 = ik_of(before[3][1]), ik_of(before[1][1])
    for meta in (t0, t1):
        revoke(keys_url, meta)
    with make_factory(keys_url) as factory:
        summary = rewrap_table(engine, ROWS, factory, key=f"{t0.key_id}@{t0.created}")
        assert summary.rewrapped == 4
        assert summary.skipped["under a key not selected"] == 8
        after = table(engine)
        assert {i for i in after if after[i] != before[i]} == {3, 6, 9, 12}
        assert rewrap_table(engine, ROWS, factory, key=KeySelector(t1.key_id)).rewrapped == 4
        now = table(engine)
        assert {i for i in now if now[i] != before[i]} == {1, 3, 4, 6, 7, 9, 10, 12}


def test_a_revoked_system_key_moves_every_row_to_a_new_one(
    engine: sa.Engine, keys_url: str
) -> None:
    expected = fill(engine, keys_url, 9)
    with make_factory(keys_url) as factory:
        before = key_usage(engine, ROWS, factory)
    ((old_sk, n),) = before.system.items()
    assert n == 9
    revoke(keys_url, old_sk)
    with make_factory(keys_url) as factory:
        summary = rewrap_table(
            engine, ROWS, factory, system_key=str(KeySelector(old_sk.key_id, old_sk.created))
        )
        assert (summary.rewrapped, summary.current) == (9, 0)
        after = key_usage(engine, ROWS, factory)
    assert old_sk not in after.system
    ((new_sk, n),) = after.system.items()
    assert (new_sk.key_id, n) == (old_sk.key_id, 9)
    assert new_sk.created > old_sk.created
    assert not set(after.intermediate) & set(before.intermediate)
    check_all_open(engine, keys_url, expected)


def test_a_row_the_application_rewrites_meanwhile_is_never_overwritten(
    engine: sa.Engine, keys_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = fill(engine, keys_url, 6, tenants=1)
    app = make_factory(keys_url)  # it keeps writing under the old key until it sees the revocation
    app.get_session("t0").encrypt_bytes(b"warm")
    revoke(keys_url, ik_of(table(engine)[1][1]))
    original = tr._Run._decide
    written: list[int] = []

    def decide(self: Any, row_key: Any, partition: object, text: object) -> str | None:
        if row_key == 4 and not written:  # the application writes row 4 after our read
            written.append(row_key)
            expected[4] = b"written by the application"
            with engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE secrets SET payload = :p WHERE id = 4"),
                    {"p": app.get_session("t0").encrypt_bytes(expected[4])},
                )
        return original(self, row_key, partition, text)

    monkeypatch.setattr(tr._Run, "_decide", decide)
    with make_factory(keys_url) as factory:
        summary = rewrap_table(engine, ROWS, factory)
    app.close()
    assert written == [4]
    assert summary.ok
    assert summary.rewrapped == 6  # row 4 in a second transaction, from the new record
    check_all_open(engine, keys_url, expected)


def test_failures_are_counted_by_reason_and_leave_the_row(
    engine: sa.Engine, keys_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    fill(engine, keys_url, 3, tenants=1)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO secrets VALUES (10, 't0', 'garbage'), (11, 't0', NULL)"))
        conn.execute(
            sa.text("INSERT INTO secrets VALUES (12, 'other', :p)"), {"p": table(engine)[1][1]}
        )
        unknown = json.loads(table(engine)[1][1])  # names a key the metastore does not have
        unknown["Key"]["ParentKeyMeta"]["Created"] -= 3600
        conn.execute(
            sa.text("INSERT INTO secrets VALUES (13, 't0', :p)"), {"p": json.dumps(unknown)}
        )
    revoke(keys_url, ik_of(table(engine)[1][1]))
    before = table(engine)
    caplog.set_level(logging.WARNING, "asherah_core.table_rotation")
    with make_factory(keys_url) as factory:
        summary = rewrap_table(engine, ROWS, factory)
    assert not summary.ok
    assert summary.rewrapped == 3
    assert dict(summary.failed) == {
        "record does not parse": 1,
        "record of another partition, service or product": 1,
        "key not in the metastore": 1,
    }
    assert summary.skipped["no record"] == 1
    after = table(engine)
    assert after[10] == before[10]
    assert after[12] == before[12]
    assert after[13] == before[13]
    assert "id=10" in caplog.text
    assert "garbage" not in caplog.text


def test_key_usage_counts_rows_per_intermediate_and_system_key(
    engine: sa.Engine, keys_url: str
) -> None:
    fill(engine, keys_url, 9)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO secrets VALUES (100, 't0', 'x'), (101, 't0', NULL)"))
    with make_factory(keys_url) as factory:
        usage = key_usage(engine, ROWS, factory)
    assert usage.rows == 11
    assert (usage.unreadable, usage.empty, usage.unknown_parent) == (1, 1, 0)
    assert sorted(usage.intermediate.values()) == [3, 3, 3]
    assert {m.key_id for m in usage.intermediate} == {f"_IK_t{i}_svc_prod" for i in range(3)}
    ((sk, n),) = usage.system.items()
    assert (sk.key_id, n) == ("_SK_svc_prod", 9)
    only_t1 = key_usage(
        engine, RowTable("secrets", "payload", "id", "tenant", where="tenant = 't1'")
    )
    assert only_t1.rows == 3
    assert only_t1.system == {}


def test_mapped_columns_and_a_connection(engine: sa.Engine, keys_url: str) -> None:
    class Base(DeclarativeBase):
        pass

    class Secret(Base):
        __tablename__ = "secrets"
        id: Mapped[int] = mapped_column(primary_key=True)
        tenant: Mapped[str]
        payload: Mapped[str]

    expected = fill(engine, keys_url, 5, tenants=1)
    revoke(keys_url, ik_of(table(engine)[1][1]))
    rows = RowTable.for_columns(Secret.payload, partition=Secret.tenant)
    with make_factory(keys_url) as factory, engine.connect() as conn:
        summary = rewrap_table(conn, rows, factory, batch_size=2)
    assert summary.rewrapped == 5
    check_all_open(engine, keys_url, expected)


def test_start_after_resumes_from_a_key(engine: sa.Engine, keys_url: str) -> None:
    fill(engine, keys_url, 10, tenants=1)
    revoke(keys_url, ik_of(table(engine)[1][1]))
    seen: list[Any] = []
    with make_factory(keys_url) as factory:
        summary = rewrap_table(
            engine,
            ROWS,
            factory,
            start_after=6,
            batch_size=2,
            progress=lambda s: seen.append(s.last_key),
        )
    assert summary.scanned == 4
    assert seen == [8, 10]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"table": "x; drop", "record_column": "p", "key_column": "id", "partition": "a"},
            "table name",
        ),
        (
            {"table": "t", "record_column": "p p", "key_column": "id", "partition": "a"},
            "column name",
        ),
        ({"table": "t", "record_column": "p", "key_column": "id"}, "partition"),
        ({"table": "t", "record_column": "p", "key_column": "id", "partition": ""}, "empty"),
    ],
)
def test_bad_table_descriptions(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SessionError, match=message):
        RowTable(**kwargs)


@pytest.mark.parametrize("text", ["", "@5", "_IK_x@soon", "_IK_x@-1"])
def test_bad_key_selectors(text: str) -> None:
    with pytest.raises(SessionError):
        KeySelector.parse(text)


def test_key_selector_forms() -> None:
    assert KeySelector.parse("_IK_a@b_svc_prod@12") == KeySelector("_IK_a@b_svc_prod", 12)
    assert KeySelector.parse("_IK_a_svc_prod") == KeySelector("_IK_a_svc_prod")
    assert KeySelector("_IK_a").matches(KeyMeta("_IK_a", 5))
    assert not KeySelector("_IK_a", 4).matches(KeyMeta("_IK_a", 5))
