"""Encrypted SQLAlchemy columns: records in the table, plaintext on the objects, per partition."""

from __future__ import annotations

import asyncio
import contextvars
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import (  # noqa: E402
    Integer,
    String,
    Text,
    bindparam,
    create_engine,
    func,
    insert,
    literal,
    null,
    select,
    text,
    update,
)
from sqlalchemy.orm import (  # noqa: E402
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
)

from asherah_core import SessionFactory, StaticKms  # noqa: E402
from asherah_core.integrations.sqlalchemy import (  # noqa: E402
    EncryptedBytes,
    EncryptedColumnError,
    EncryptedText,
    Record,
    render_item,
)
from asherah_core.metastore import InMemoryMetastore  # noqa: E402
from asherah_core.records import EnvelopeKeyRecord  # noqa: E402

SERVICE, PRODUCT = "svc", "prod"


class CountingMetastore(InMemoryMetastore):
    """The in-memory metastore, counting the key rows written."""

    def __init__(self) -> None:
        super().__init__()
        self.stores: list[str] = []
        self.threads: set[int] = set()

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        self.stores.append(key_id)
        self.threads.add(threading.get_ident())
        return super().store(key_id, created, record)


class Holder:
    """The factory the models use, replaced per test (models are made once per module)."""

    factory: SessionFactory | None = None

    def __call__(self) -> SessionFactory:
        assert self.factory is not None
        return self.factory


HOLDER = Holder()
TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(EncryptedText(HOLDER, partition_from="tenant"))
    scan: Mapped[bytes | None] = mapped_column(EncryptedBytes(HOLDER, partition_from="tenant"))


class Memo(Base):
    """A table whose tenant comes from a context variable, for Core statements."""

    __tablename__ = "memo"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str | None] = mapped_column(EncryptedText(HOLDER, partition=TENANT.get))


class Plain(Base):
    __tablename__ = "plain"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(Text)


@pytest.fixture
def metastore() -> CountingMetastore:
    return CountingMetastore()


@pytest.fixture
def factory(metastore: CountingMetastore) -> Iterator[SessionFactory]:
    made = SessionFactory(SERVICE, PRODUCT, kms=StaticKms(b"k" * 32), metastore=metastore)
    HOLDER.factory = made
    yield made
    HOLDER.factory = None
    made.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture
def engine(db: Path, factory: SessionFactory) -> Iterator[Any]:
    made = create_engine(f"sqlite:///{db}")
    Base.metadata.create_all(made)
    yield made
    made.dispose()


def raw(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def ik_of(record: str) -> str:
    return str(json.loads(record)["Key"]["ParentKeyMeta"]["KeyId"])


def test_the_table_holds_records_and_the_object_plaintext(engine: Any, db: Path) -> None:
    with Session(engine) as session:
        note = Note(tenant="t1", body="Grüße, secret", scan=b"\x00\x01raw")
        session.add(note)
        session.commit()
        assert note.body == "Grüße, secret"  # expired on commit, loaded and opened again
        note_id = note.id
    ((body, scan),) = raw(db, "SELECT body, scan FROM note")
    assert "secret" not in body
    assert ik_of(body) == ik_of(scan) == f"_IK_t1_{SERVICE}_{PRODUCT}"
    assert set(json.loads(body)) == {"Key", "Data"}
    with Session(engine) as session:
        loaded = session.get(Note, note_id)
        assert loaded is not None
        assert loaded.body == "Grüße, secret"
        assert loaded.scan == b"\x00\x01raw"
        assert not session.dirty  # opening on load leaves the object clean


def test_the_plaintext_stays_on_the_object_after_a_flush(engine: Any) -> None:
    with Session(engine, expire_on_commit=False) as session:
        note = Note(tenant="t1", body="kept")
        session.add(note)
        session.commit()
        assert note.body == "kept"
        assert not isinstance(note.body, Record)


def test_none_stays_null(engine: Any, db: Path) -> None:
    with Session(engine) as session:
        session.add(Note(tenant="t1", body=None, scan=None))
        session.add(Note(tenant=None, body=None))  # no value, so no partition needed
        session.commit()
    assert raw(db, "SELECT body, scan FROM note") == [(None, None), (None, None)]
    with Session(engine) as session:
        assert [n.body for n in session.scalars(select(Note))] == [None, None]


def test_a_missing_partition_names_the_column_and_writes_nothing(engine: Any, db: Path) -> None:
    with Session(engine) as session:
        session.add(Note(tenant="t1", body="fine"))
        session.add(Note(tenant=None, body="lost partition"))
        with pytest.raises(EncryptedColumnError, match=r"note\.body.*'tenant'.*None") as info:
            session.commit()
        assert "lost partition" not in str(info.value)
    assert raw(db, "SELECT count(*) FROM note") == [(0,)]


def test_an_empty_or_mistyped_partition_is_refused(engine: Any) -> None:
    with Session(engine) as session:
        session.add(Note(tenant="", body="x"))
        with pytest.raises(EncryptedColumnError, match=r"note\.body.*empty"):
            session.flush()


def test_changing_the_partition_re_encrypts_at_flush(engine: Any, db: Path) -> None:
    with Session(engine) as session:
        note = Note(tenant="t1", body="moving", scan=b"bytes too")
        session.add(note)
        session.commit()
        note.tenant = "t2"  # after commit: every attribute expired, none loaded yet
        session.commit()
    ((tenant, body, scan),) = raw(db, "SELECT tenant, body, scan FROM note")
    assert tenant == "t2"
    assert ik_of(body) == ik_of(scan) == f"_IK_t2_{SERVICE}_{PRODUCT}"
    with Session(engine) as session:
        (note,) = session.scalars(select(Note))
        assert (note.body, note.scan) == ("moving", b"bytes too")
        note.body = "changed too"
        note.tenant = "t3"  # both at once, loaded first
        session.commit()
        assert note.body == "changed too"
    assert ik_of(raw(db, "SELECT body FROM note")[0][0]) == f"_IK_t3_{SERVICE}_{PRODUCT}"


def test_a_record_of_another_partition_is_refused(engine: Any, db: Path) -> None:
    with Session(engine) as session:
        session.add_all([Note(tenant="t1", body="t1 secret"), Note(tenant="t2", body="t2 own")])
        session.commit()
    raw(
        db, "UPDATE note SET body = (SELECT body FROM note WHERE tenant = 't1') WHERE tenant = 't2'"
    )
    with (
        Session(engine) as session,
        pytest.raises(EncryptedColumnError, match=r"note\.body.*another partition"),
    ):
        session.scalars(select(Note).where(Note.tenant == "t2")).all()


def test_equality_filters_are_refused_with_the_reason(engine: Any) -> None:
    with pytest.raises(EncryptedColumnError, match=r"note\.body.*randomised") as info:
        select(Note).where(Note.body == "x")
    assert "IS NULL" in str(info.value)
    for make in (
        lambda: Note.body.in_(["a"]),
        lambda: Note.body.like("a%"),
        lambda: Note.body != "x",
        lambda: Note.body == "x",
        lambda: Note.scan == b"x",
        Note.body.desc,
        lambda: Note.body.contains("x"),
        lambda: Note.body < "x",
    ):
        with pytest.raises(EncryptedColumnError, match="randomised"):
            make()
    with Session(engine) as session:
        session.add_all([Note(tenant="t1", body=None), Note(tenant="t1", body="x")])
        session.commit()
        assert len(session.scalars(select(Note).where(Note.body.is_(None))).all()) == 1
        assert len(session.scalars(select(Note).where(Note.body.is_not(None))).all()) == 1
        assert len(session.scalars(select(Note).where(Note.body == None)).all()) == 1  # noqa: E711


def test_bulk_inserts_write_one_key_per_new_partition(
    engine: Any, metastore: CountingMetastore, db: Path
) -> None:
    tenants = [f"tenant-{n}" for n in range(10)]
    with Session(engine) as session:
        session.add_all(Note(tenant=tenants[n % 10], body=f"row {n}") for n in range(10_000))
        session.commit()
    assert len(metastore.stores) == 11  # one system key, one intermediate key per tenant
    assert sorted(set(metastore.stores)) == sorted(
        [f"_SK_{SERVICE}_{PRODUCT}", *(f"_IK_{t}_{SERVICE}_{PRODUCT}" for t in tenants)]
    )
    rows = raw(db, "SELECT tenant, body FROM note")
    assert len(rows) == 10_000
    assert all(ik_of(body) == f"_IK_{tenant}_{SERVICE}_{PRODUCT}" for tenant, body in rows)
    with Session(engine) as session:
        bodies = {n.body for n in session.scalars(select(Note))}
    assert bodies == {f"row {n}" for n in range(10_000)}


def test_orm_bulk_statements_seal_with_each_rows_partition(
    engine: Any, metastore: CountingMetastore, db: Path
) -> None:
    with Session(engine) as session:
        session.execute(insert(Note), [{"tenant": f"t{n % 3}", "body": f"b{n}"} for n in range(30)])
        session.bulk_save_objects([Note(tenant="t9", body="legacy bulk", scan=b"s")])
        session.bulk_insert_mappings(Note, [{"tenant": "t8", "body": "mappings"}])  # type: ignore[arg-type]
        session.commit()
    assert len(metastore.stores) == 6
    rows = raw(db, "SELECT tenant, body, scan FROM note")
    assert len(rows) == 32
    assert all(ik_of(body) == f"_IK_{tenant}_{SERVICE}_{PRODUCT}" for tenant, body, _ in rows)
    with Session(engine) as session:
        got = {n.body for n in session.scalars(select(Note))}
        legacy = session.scalars(select(Note).where(Note.tenant == "t9")).one()
    assert {"b0", "b29", "legacy bulk", "mappings"} <= got
    assert legacy.scan == b"s"


def test_core_statements_without_the_partition_fail_naming_the_column(
    engine: Any, db: Path
) -> None:
    # Refused before execution: not wrapped in a StatementError that would show the plaintext
    for run in (
        lambda conn: conn.execute(insert(Note.__table__).values(body="no partition here")),
        lambda conn: conn.execute(insert(Note.__table__), [{"body": "no partition here"}] * 2),
        lambda conn: conn.execute(
            update(Note.__table__).where(Note.__table__.c.id == 1).values(body="no partition here")
        ),
        lambda conn: conn.execute(
            insert(Note.__table__).values(
                [{"tenant": "t1", "body": "fine"}, {"tenant": None, "body": "no partition here"}]
            )
        ),
    ):
        with engine.begin() as conn, pytest.raises(EncryptedColumnError) as info:
            run(conn)
        assert "note.body" in str(info.value)
        assert "'tenant'" in str(info.value)
        assert "no partition here" not in str(info.value)
    assert raw(db, "SELECT count(*) FROM note") == [(0,)]
    with engine.begin() as conn:  # a parameter set carrying its partition is sealed with it
        conn.execute(insert(Note.__table__), [{"tenant": "t1", "body": "a"}])
        conn.execute(insert(Note.__table__).values(tenant="t2", body="b", scan=b"s"))
        conn.execute(insert(Note.__table__).values(tenant="t3", body=None))
    rows = raw(db, "SELECT tenant, body, scan FROM note ORDER BY id")
    assert [ik_of(body) for _, body, _ in rows[:2]] == [
        f"_IK_t1_{SERVICE}_{PRODUCT}",
        f"_IK_t2_{SERVICE}_{PRODUCT}",
    ]
    assert ik_of(rows[1][2]) == f"_IK_t2_{SERVICE}_{PRODUCT}"
    assert rows[2] == ("t3", None, None)
    with Session(engine) as session:
        assert [n.body for n in session.scalars(select(Note).order_by(Note.id))] == ["a", "b", None]


def test_multi_row_values_seal_each_row_with_its_partition(engine: Any, db: Path) -> None:
    table = Note.__table__
    with engine.begin() as conn:
        conn.execute(
            insert(table)
            .values(
                [
                    {"tenant": "t1", "body": "one", "scan": b"s1"},
                    {"tenant": "t2", "body": None, "scan": None},
                ]
            )
            .values([{table.c.tenant: "t3", table.c.body: "three", table.c.scan: b"s3"}])
        )
        conn.execute(insert(table).values([(None, "t4", "four", None)]))  # id, tenant, body, scan
    with Session(engine) as session:
        session.execute(insert(Note).values([{"tenant": "t5", "body": "five"}]))
        session.commit()
    rows = raw(db, "SELECT tenant, body, scan FROM note ORDER BY id")
    assert [tenant for tenant, _, _ in rows] == ["t1", "t2", "t3", "t4", "t5"]
    for tenant, *values in rows:
        for value in values:
            assert value is None or ik_of(value) == f"_IK_{tenant}_{SERVICE}_{PRODUCT}"
    with Session(engine) as session:
        notes = session.scalars(select(Note).order_by(Note.id)).all()
        assert [n.body for n in notes] == ["one", None, "three", "four", "five"]
        assert [n.scan for n in notes] == [b"s1", None, b"s3", None, None]


@pytest.mark.parametrize(
    "statement",
    [
        lambda t: insert(t).values(tenant="t1", body=func.lower("PLAINTEXT-FUNC")),
        lambda t: insert(t).values({t.c.tenant: "t1", t.c.body: func.lower("PLAINTEXT-FUNC")}),
        lambda t: update(t).values(tenant="t1", body=func.upper("PLAINTEXT-FUNC")),
        lambda t: update(t).values(tenant="t1", body=t.c.tenant),
    ],
    ids=["insert-function", "insert-by-column", "update-function", "update-column"],
)
def test_a_sql_expression_for_an_encrypted_column_is_refused(
    engine: Any, db: Path, statement: Callable[[Any], Any]
) -> None:
    # The database would store what it computes, unencrypted.
    with engine.begin() as conn:
        conn.execute(insert(Note.__table__).values(tenant="t0", body="kept"))
    before = raw(db, "SELECT tenant, body FROM note")
    with (
        pytest.raises(
            EncryptedColumnError, match=r"note\.body: takes a value to seal, not a SQL"
        ) as info,
        engine.begin() as conn,
    ):
        conn.execute(statement(Note.__table__))
    assert "PLAINTEXT" not in str(info.value)
    assert raw(db, "SELECT tenant, body FROM note") == before
    with engine.begin() as conn:  # NULL is not a plaintext
        conn.execute(update(Note.__table__).values(body=null()))
    assert raw(db, "SELECT body FROM note") == [(None,)]


def text_insert(partition_name: str) -> Any:
    """An INSERT as text: the partition bound as `partition_name`, the body of our type."""
    return text(f"INSERT INTO note (tenant, body) VALUES (:{partition_name}, :body)").bindparams(
        bindparam("body", type_=EncryptedText(HOLDER, partition_from="tenant"))
    )


def test_text_statements_seal_with_the_partition_of_their_parameters(engine: Any, db: Path) -> None:
    with engine.begin() as conn:
        conn.execute(text_insert("tenant"), {"tenant": "t1", "body": "one"})
        conn.execute(
            text_insert("tenant"), [{"tenant": "t2", "body": "two"}, {"tenant": "t3", "body": None}]
        )
        conn.execute(text_insert("tenant").bindparams(tenant="t4", body="four"))
        conn.execute(text_insert("tenant").bindparams(tenant="t5"), {"body": "five"})
        conn.execute(text_insert("t"), {"t": "t6", "tenant": "t6", "body": "six"})
    rows = raw(db, "SELECT tenant, body FROM note ORDER BY id")
    assert [tenant for tenant, _ in rows] == ["t1", "t2", "t3", "t4", "t5", "t6"]
    for tenant, body in rows:
        assert body is None or ik_of(body) == f"_IK_{tenant}_{SERVICE}_{PRODUCT}"
    with Session(engine) as session:
        bodies = [n.body for n in session.scalars(select(Note).order_by(Note.id))]
    assert bodies == ["one", "two", None, "four", "five", "six"]


def test_a_text_statement_without_the_partition_is_refused_without_the_plaintext(
    engine: Any, db: Path
) -> None:
    with engine.begin() as conn, pytest.raises(EncryptedColumnError) as info:
        conn.execute(text_insert("t"), {"t": "t1", "body": "PLAINTEXT-THREE"})
    message = str(info.value)
    assert "bind parameter 'body'" in message
    assert "'tenant'" in message
    assert "PLAINTEXT" not in message
    assert raw(db, "SELECT count(*) FROM note") == [(0,)]


def test_no_failure_to_seal_is_reported_with_the_parameters(engine: Any, db: Path) -> None:
    """Statements the listener does not seal fail in the bind processing, which SQLAlchemy
    would wrap in a StatementError showing the parameters (the plaintexts): not ours."""

    def broken() -> SessionFactory:
        raise RuntimeError("a library echoing PLAINTEXT")

    table = Note.__table__
    for run in (
        lambda conn: conn.execute(
            insert(table).values(tenant=bindparam("t"), body=bindparam("b")),
            {"t": "t1", "b": "PLAINTEXT"},
        ),
        lambda conn: conn.execute(
            update(table).where(table.c.id == bindparam("i")).values(body=bindparam("b")),
            [{"i": 1, "b": "PLAINTEXT"}, {"i": 2, "b": "PLAINTEXT"}],
        ),
        lambda conn: conn.execute(
            select(literal("PLAINTEXT", EncryptedText(HOLDER, partition_from="tenant")))
        ),
        lambda conn: conn.execute(
            select(literal("PLAINTEXT", EncryptedText(broken, partition=lambda: "t1")))
        ),
    ):
        with engine.begin() as conn, pytest.raises(EncryptedColumnError) as info:
            run(conn)
        assert "PLAINTEXT" not in str(info.value)
        assert "PLAINTEXT" not in repr(info.value)
    assert "failed with RuntimeError" in str(info.value)  # the last one: its type, its cause
    assert isinstance(info.value.__context__, RuntimeError)
    assert raw(db, "SELECT count(*) FROM note") == [(0,)]


def test_core_selects_of_a_partition_from_column_give_records(engine: Any) -> None:
    with Session(engine) as session:
        session.add(Note(tenant="t1", body="x"))
        session.commit()
        value = session.scalar(select(Note.body))
    assert isinstance(value, Record)
    assert value != "x"
    assert ik_of(value) == f"_IK_t1_{SERVICE}_{PRODUCT}"


def test_partition_from_a_context_variable_in_core_statements(engine: Any, db: Path) -> None:
    token = TENANT.set("ctx-tenant")
    try:
        with engine.begin() as conn:
            conn.execute(insert(Memo.__table__).values(body="from context"))
            conn.execute(insert(Memo.__table__), [{"body": "many 1"}, {"body": "many 2"}])
        with engine.connect() as conn:
            assert sorted(conn.scalars(select(Memo.body))) == ["from context", "many 1", "many 2"]
    finally:
        TENANT.reset(token)
    assert {ik_of(b) for (b,) in raw(db, "SELECT body FROM memo")} == {
        f"_IK_ctx-tenant_{SERVICE}_{PRODUCT}"
    }
    with engine.begin() as conn, pytest.raises(EncryptedColumnError, match=r"memo\.body.*None"):
        conn.execute(insert(Memo.__table__).values(body="no tenant in context"))
    with engine.connect() as conn, pytest.raises(EncryptedColumnError, match=r"memo\.body.*None"):
        conn.scalars(select(Memo.body)).all()  # no tenant in this context
    TENANT.set("other")
    try:
        with engine.connect() as conn, pytest.raises(EncryptedColumnError, match="another"):
            conn.scalars(select(Memo.body)).all()
    finally:
        TENANT.set(None)


def test_merge_opens_and_seals_like_any_flush(engine: Any, db: Path) -> None:
    with Session(engine) as session:
        session.add(Note(id=1, tenant="t1", body="before"))
        session.commit()
    detached = Note(id=1, tenant="t1", body="merged")
    with Session(engine) as session:
        merged = session.merge(detached)
        assert merged.body == "merged"
        session.commit()
    with Session(engine) as session:
        note = session.get(Note, 1)
        assert note is not None
        assert note.body == "merged"
    with Session(engine) as session:  # merge of a new row
        session.merge(Note(id=2, tenant="t2", body="new by merge"))
        session.commit()
    assert ik_of(raw(db, "SELECT body FROM note WHERE id = 2")[0][0]).startswith("_IK_t2_")


def test_a_plaintext_of_the_wrong_type_is_refused(engine: Any) -> None:
    with Session(engine) as session:
        session.add(Note(tenant="t1", body=b"bytes in a text column"))  # type: ignore[arg-type]
        with pytest.raises(EncryptedColumnError, match=r"note\.body.*takes str, not bytes"):
            session.flush()


def test_constructor_arguments_are_checked() -> None:
    with pytest.raises(sqlalchemy.exc.ArgumentError, match="not both"):
        EncryptedText(HOLDER, partition_from="a", partition=TENANT.get)
    with pytest.raises(sqlalchemy.exc.ArgumentError, match="factory"):
        EncryptedText("not a factory", partition_from="a")  # type: ignore[arg-type]
    with pytest.raises(sqlalchemy.exc.ArgumentError, match="partition must be a callable"):
        EncryptedText(HOLDER, partition="tenant")  # type: ignore[arg-type]
    assert repr(EncryptedText(HOLDER, partition_from="tenant")) == (
        "EncryptedText(partition_from='tenant')"
    )


def test_the_factory_itself_may_be_given(engine: Any, factory: SessionFactory, db: Path) -> None:
    class Direct(Base):
        __tablename__ = "direct"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        tenant: Mapped[str] = mapped_column(String(64))
        body: Mapped[str | None] = mapped_column(EncryptedText(factory, partition_from="tenant"))

    Direct.__table__.create(engine)  # type: ignore[attr-defined]
    with Session(engine) as session:
        session.add(Direct(tenant="t1", body="direct"))
        session.commit()
        assert session.scalars(select(Direct)).one().body == "direct"
    assert ik_of(raw(db, "SELECT body FROM direct")[0][0]) == f"_IK_t1_{SERVICE}_{PRODUCT}"


def test_no_partition_at_all_names_the_column(engine: Any) -> None:
    class Orphan(Base):
        __tablename__ = "orphan"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        body: Mapped[str | None] = mapped_column(EncryptedText(HOLDER))

    Orphan.__table__.create(engine)  # type: ignore[attr-defined]
    with Session(engine) as session:
        session.add(Orphan(body="x"))
        with pytest.raises(EncryptedColumnError, match=r"orphan\.body: no partition"):
            session.flush()


def test_a_partition_from_that_is_not_an_attribute_fails_at_configuration() -> None:
    class Other(DeclarativeBase):
        pass

    class Bad(Other):
        __tablename__ = "bad"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        body: Mapped[str | None] = mapped_column(EncryptedText(HOLDER, partition_from="nope"))

    try:
        with pytest.raises(sqlalchemy.exc.ArgumentError, match=r"bad\.body.*'nope'.*Bad"):
            Other.registry.configure()
    finally:
        Other.registry.dispose()  # leave no broken mapper for other tests


# Async ---------------------------------------------------------------------------------------


def test_async_session_seals_and_opens(
    db: Path, factory: SessionFactory, metastore: CountingMetastore
) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: PLC0415

    async def scenario() -> list[str | None]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with AsyncSession(engine) as session:
            session.add_all([Note(tenant="a1", body="async one"), Note(tenant="a2", body=None)])
            await session.commit()
            note = (await session.scalars(select(Note).where(Note.tenant == "a1"))).one()
            note.tenant = "a3"
            await session.commit()
        async with AsyncSession(engine) as session:
            await session.execute(insert(Note), [{"tenant": "a4", "body": "bulk async"}])
            await session.commit()
            found = [n.body for n in await session.scalars(select(Note).order_by(Note.id))]
        await engine.dispose()
        return found

    assert asyncio.run(scenario()) == ["async one", None, "bulk async"]
    # New keys were made in worker threads, never on the event loop's (this) thread.
    assert metastore.stores
    assert threading.get_ident() not in metastore.threads
    rows = raw(db, "SELECT tenant, body FROM note WHERE body IS NOT NULL")
    assert all(ik_of(body) == f"_IK_{tenant}_{SERVICE}_{PRODUCT}" for tenant, body in rows)


# Alembic -------------------------------------------------------------------------------------


def test_alembic_sees_plain_text_columns(engine: Any) -> None:
    alembic = pytest.importorskip("alembic")
    from alembic.autogenerate import (  # noqa: PLC0415
        compare_metadata,
        produce_migrations,
        render_python_code,
    )
    from alembic.migration import MigrationContext  # noqa: PLC0415

    del alembic
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []  # the Text columns match
    empty = create_engine("sqlite://")
    with empty.connect() as conn:
        context = MigrationContext.configure(conn)
        code = render_python_code(
            produce_migrations(context, Base.metadata).upgrade_ops,  # type: ignore[arg-type]
            render_item=render_item,
        )
    assert "sa.Column('body', sa.Text(), nullable=True)" in code
    assert "Encrypted" not in code
    assert render_item("type", Text(), None) is False


def test_a_closed_factory_is_refused_and_not_kept(engine: Any, factory: SessionFactory) -> None:
    from asherah_core.integrations import records  # noqa: PLC0415

    with Session(engine) as session:
        session.add(Note(tenant="t1", body="x"))
        session.commit()
    assert factory in records._SESSIONS
    factory.close()
    with Session(engine) as session:
        session.add(Note(tenant="t1", body="after close"))
        with pytest.raises(EncryptedColumnError, match=r"note\.body.*closed"):
            session.flush()
    other = SessionFactory(
        SERVICE, PRODUCT, kms=StaticKms(b"k" * 32), metastore=InMemoryMetastore()
    )
    HOLDER.factory = other
    try:
        with Session(engine) as session:
            session.add(Note(tenant="t2", body="new factory"))
            session.commit()
        assert factory not in records._SESSIONS  # dropped when the new factory's dict was made
    finally:
        other.close()


def test_a_failed_flush_seals_again_with_the_partition_of_the_retry(engine: Any, db: Path) -> None:
    with Session(engine) as session:
        session.add(Note(id=1, tenant="t0", body="taken"))
        session.commit()
    with Session(engine) as session:
        note = Note(id=1, tenant="t1", body="retried")  # the id is taken: the flush fails
        session.add(note)
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            session.flush()
        session.rollback()
        note.id = 2
        note.tenant = "t2"
        session.add(note)
        session.commit()
        assert note.body == "retried"
    (body,) = raw(db, "SELECT body FROM note WHERE id = 2")[0]
    assert ik_of(body) == f"_IK_t2_{SERVICE}_{PRODUCT}"
