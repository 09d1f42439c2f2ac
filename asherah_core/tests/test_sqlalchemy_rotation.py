"""rewrap_column and column_key_usage: the rows of a mapped encrypted column, on a SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import Integer, String, create_engine, text  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from asherah_core import SessionError, SessionFactory, StaticKms  # noqa: E402
from asherah_core.integrations.sqlalchemy import EncryptedBytes, EncryptedText  # noqa: E402
from asherah_core.integrations.sqlalchemy_rotation import (  # noqa: E402
    column_key_usage,
    column_rows,
    rewrap_column,
)
from asherah_core.metastore import InMemoryMetastore  # noqa: E402
from asherah_core.records import KeyMeta  # noqa: E402

from .conftest import MASTER_KEY  # noqa: E402


class Holder:
    """The factory the models use: a new one per step, over one metastore (a new factory sees
    a key revoked since, as a process started after the revocation would)."""

    def __init__(self) -> None:
        self.metastore = InMemoryMetastore()
        self.factory: SessionFactory | None = None

    def renew(self) -> SessionFactory:
        if self.factory is not None:
            self.factory.close()
        self.factory = SessionFactory(
            "svc", "prod", kms=StaticKms(MASTER_KEY), metastore=self.metastore
        )
        return self.factory

    def __call__(self) -> SessionFactory:
        assert self.factory is not None
        return self.factory


HOLDER = Holder()
ONE_TENANT = "solo"


class Base(DeclarativeBase):
    pass


class Doc(Base):
    """The partition attribute is not named like its column: the mapper is asked, not the
    table."""

    __tablename__ = "doc"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column("tenant_col", String(64))
    body: Mapped[str | None] = mapped_column(EncryptedText(HOLDER, partition_from="owner"))
    scan: Mapped[bytes | None] = mapped_column(EncryptedBytes(HOLDER, partition_from="owner"))


class Solo(Base):
    __tablename__ = "solo"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str | None] = mapped_column(EncryptedText(HOLDER, partition=lambda: ONE_TENANT))


class Plain(Base):
    __tablename__ = "plain"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    HOLDER.metastore = InMemoryMetastore()
    HOLDER.renew()
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()
    assert HOLDER.factory is not None
    HOLDER.factory.close()
    HOLDER.factory = None


def fill(engine: Any, count: int = 12) -> dict[int, str]:
    expected: dict[int, str] = {}
    with Session(engine) as session, session.begin():
        for i in range(1, count + 1):
            tenant = f"t{i % 3}"
            expected[i] = f"note {i} of {tenant}"
            session.add(Doc(id=i, owner=tenant, body=expected[i], scan=expected[i].encode()))
    return expected


def stored(engine: Any, column: str = "body") -> dict[int, tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, tenant_col, {column} FROM doc")).all()
    return {i: (t, r) for i, t, r in rows}


def ik_of(record: str) -> KeyMeta:
    meta = json.loads(record)["Key"]["ParentKeyMeta"]
    return KeyMeta(meta["KeyId"], meta["Created"])


def sk_of(meta: KeyMeta) -> KeyMeta:
    record = HOLDER.metastore.load(meta.key_id, meta.created)
    assert record is not None
    assert record.parent_key_meta is not None
    return record.parent_key_meta


def revoke(meta: KeyMeta) -> None:
    assert HOLDER.metastore.revoke(meta.key_id, meta.created)
    HOLDER.renew()


def loaded(engine: Any) -> dict[int, tuple[str | None, bytes | None]]:
    with Session(engine) as session:
        return {d.id: (d.body, d.scan) for d in session.query(Doc).all()}


def test_rows_under_a_revoked_intermediate_key_move_and_the_orm_still_opens_them(
    engine: Any,
) -> None:
    expected = fill(engine)
    before = stored(engine)
    target = ik_of(before[1][1])  # tenant t1
    revoke(target)
    dry = rewrap_column(engine, Doc.body, dry_run=True, batch_size=5)
    assert (dry.scanned, dry.rewrapped, dry.current) == (12, 4, 8)
    assert stored(engine) == before
    summary = rewrap_column(engine, Doc.body, batch_size=5)
    assert (summary.scanned, summary.rewrapped, summary.current, summary.ok) == (12, 4, 8, True)
    after = stored(engine)
    for i, (tenant, record) in after.items():
        if tenant == "t1":
            assert ik_of(record) != target
            assert ik_of(record).key_id == target.key_id  # a newer version of the same key
            assert json.loads(record)["Data"] == json.loads(before[i][1])["Data"]
        else:
            assert record == before[i][1]
    assert loaded(engine) == {i: (v, v.encode()) for i, v in expected.items()}
    # The other encrypted column of the table was not touched: it still names the old key.
    scans = stored(engine, "scan")
    assert {i for i, (_, r) in scans.items() if ik_of(r) == target} == {1, 4, 7, 10}
    assert rewrap_column(engine, Doc.scan).rewrapped == 4
    again = rewrap_column(engine, Doc.body)  # idempotent
    assert (again.rewrapped, again.current) == (0, 12)


def test_key_selects_only_that_keys_rows(engine: Any) -> None:
    expected = fill(engine)
    before = stored(engine)
    t1, t2 = ik_of(before[1][1]), ik_of(before[2][1])
    revoke(t1)
    revoke(t2)
    summary = rewrap_column(engine, Doc.body, key=f"{t2.key_id}@{t2.created}")
    assert (summary.rewrapped, summary.skipped["under a key not selected"]) == (4, 8)
    after = stored(engine)
    changed = {i for i in after if after[i][1] != before[i][1]}
    assert changed == {2, 5, 8, 11}
    assert all(ik_of(after[i][1]) == t1 for i in (1, 4, 7, 10))
    usage = column_key_usage(engine, Doc.body)
    assert usage.intermediate[t1] == 4
    assert t2 not in usage.intermediate
    assert loaded(engine) == {i: (v, v.encode()) for i, v in expected.items()}


def test_a_revoked_system_key_moves_every_row_and_usage_shows_it_empty(engine: Any) -> None:
    expected = fill(engine, 9)
    system = sk_of(ik_of(stored(engine)[1][1]))
    usage = column_key_usage(engine, Doc.body)
    assert (usage.rows, usage.system) == (9, {system: 9})
    revoke(system)
    summary = rewrap_column(engine, Doc.body, system_key=system.key_id)
    assert (summary.rewrapped, summary.ok) == (9, True)
    usage = column_key_usage(engine, Doc.body)
    assert usage.rows == 9
    assert system not in usage.system
    assert sum(usage.system.values()) == 9
    assert {i: b for i, (b, _) in loaded(engine).items()} == expected


def test_an_orm_session_and_a_where_condition(engine: Any) -> None:
    fill(engine)
    before = stored(engine)
    revoke(ik_of(before[1][1]))
    with Session(engine) as session:
        summary = rewrap_column(session, Doc.body, where="id <= 4")
    assert (summary.scanned, summary.rewrapped) == (4, 2)
    changed = {i for i, (_, r) in stored(engine).items() if r != before[i][1]}
    assert changed == {1, 4}


def test_a_partition_callable_column_is_walked_under_its_partition(engine: Any) -> None:
    with Session(engine) as session, session.begin():
        session.add_all([Solo(id=i, body=f"solo {i}") for i in range(1, 4)])
    with engine.connect() as conn:
        first = conn.execute(text("SELECT body FROM solo WHERE id = 1")).scalar_one()
    assert ik_of(first).key_id == "_IK_solo_svc_prod"
    rows, _ = column_rows(Solo.body)
    assert (rows.partition, rows.partition_column) == (ONE_TENANT, None)
    revoke(ik_of(first))
    assert rewrap_column(engine, Solo.body).rewrapped == 3
    with Session(engine) as session:
        assert [s.body for s in session.query(Solo).order_by(Solo.id)] == [
            "solo 1",
            "solo 2",
            "solo 3",
        ]


def test_a_column_that_is_not_encrypted_is_refused(engine: Any) -> None:
    with pytest.raises(SessionError, match=r"plain\.body is not an EncryptedText"):
        rewrap_column(engine, Plain.body)
    with pytest.raises(SessionError, match="mapped attribute or Column"):
        column_key_usage(engine, "doc.body")
    with pytest.raises(SessionError, match="Engine, a Connection or an ORM Session"):
        rewrap_column(object(), Doc.body)  # type: ignore[arg-type]


def test_a_core_table_column_takes_its_partition_from_the_column_key(engine: Any) -> None:
    core = sqlalchemy.Table(
        "core_note",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("id", Integer, primary_key=True),
        sqlalchemy.Column("tenant", String(64)),
        sqlalchemy.Column("body", EncryptedText(HOLDER, partition_from="tenant")),
    )
    core.create(engine)
    with engine.begin() as conn:  # sealed per parameter set with its own tenant
        conn.execute(
            core.insert(), [{"id": i, "tenant": f"c{i % 2}", "body": f"core {i}"} for i in range(6)]
        )
    with engine.connect() as conn:
        before = dict(conn.execute(text("SELECT id, body FROM core_note")).all())
    revoke(ik_of(before[1]))  # tenant c1
    with engine.connect() as conn:
        summary = rewrap_column(conn, core.c.body, batch_size=4)
    assert (summary.rewrapped, summary.current) == (3, 3)
    with engine.connect() as conn:
        after = dict(conn.execute(text("SELECT id, body FROM core_note")).all())
    assert {i for i in after if after[i] != before[i]} == {1, 3, 5}
    with pytest.raises(SessionError, match="has no column 'owner'"):
        column_rows(Doc.__table__.c.body)  # the attribute name is the mapper's, not the table's
