"""Connections kept between SqlMetastore's hot statements on a SQLite file (_kept.py): never
with an open transaction, never more than the pool can spare, none leaked, none shared with a
forked child."""

from __future__ import annotations

import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from asherah_core import MetastoreError
from asherah_core.metastore import EnvelopeKeyRecord

sa = pytest.importorskip("sqlalchemy")
from asherah_core.metastore._kept import KeptConnections, kept_for  # noqa: E402
from asherah_core.metastore.sql import SqlMetastore, passes_text_statements  # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated_env")


ForkedChild = Callable[[Callable[[], str]], str]
"""The ``in_forked_child`` fixture (conftest.py at the root)."""


def record(created: int) -> EnvelopeKeyRecord:
    return EnvelopeKeyRecord(created, created.to_bytes(8, "big") * 5, None)


@dataclass
class FakeDbapi:
    in_transaction: bool = False


@dataclass
class FakeConnection:
    """What KeptConnections reads of SQLAlchemy's pool-proxied connection."""

    name: str
    dbapi_connection: FakeDbapi | None = field(default_factory=FakeDbapi)
    closed: int = 0

    def close(self) -> None:
        self.closed += 1


# The kept list alone ------------------------------------------------------------------------


def test_the_last_given_is_taken_first_and_no_more_than_the_limit_is_kept() -> None:
    kept = KeptConnections(2)
    a, b, c = FakeConnection("a"), FakeConnection("b"), FakeConnection("c")
    assert kept.take() is None
    assert kept.give(a)
    assert kept.give(b)
    assert not kept.give(c)  # the limit: the caller returns it to the pool
    assert kept.idle() == 2
    assert kept.take() is b
    assert kept.take() is a
    assert kept.take() is None


@pytest.mark.parametrize(
    "dbapi", [FakeDbapi(in_transaction=True), None], ids=["open-transaction", "invalidated"]
)
def test_a_connection_in_a_transaction_or_invalidated_is_not_kept(dbapi: FakeDbapi | None) -> None:
    kept = KeptConnections(3)
    assert not kept.give(FakeConnection("x", dbapi))
    assert kept.idle() == 0


def test_close_returns_every_kept_connection_and_keeps_none_after() -> None:
    kept = KeptConnections(3)
    conns = [FakeConnection(str(i)) for i in range(3)]
    for conn in conns:
        assert kept.give(conn)
    kept.close()
    assert [conn.closed for conn in conns] == [1, 1, 1]
    assert kept.take() is None
    late = FakeConnection("late")
    assert not kept.give(late)  # the caller returns it to the pool
    assert late.closed == 0


def test_release_returns_every_kept_connection_and_keeps_later_ones() -> None:
    kept = KeptConnections(3)
    conns = [FakeConnection(str(i)) for i in range(2)]
    for conn in conns:
        assert kept.give(conn)
    kept.release()
    assert [c.closed for c in conns] == [1, 1]  # back to the pool, each once
    assert (kept.idle(), kept.take()) == (0, None)
    kept.release()  # nothing kept: nothing returned twice
    assert [c.closed for c in conns] == [1, 1]
    assert kept.give(conns[0])  # unlike close, later connections are kept again
    assert kept.take() is conns[0]


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match=f"limit must be at least 1, not {limit}"):
        KeptConnections(limit)


def test_a_forked_child_never_takes_its_parents_connections(in_forked_child: ForkedChild) -> None:
    kept = KeptConnections(2)
    parents = FakeConnection("parent's")
    assert kept.give(parents)

    def child() -> str:
        taken = kept.take()
        mine = FakeConnection("child's")
        return f"{taken is None} {kept.give(mine)} {kept.take() is mine} {parents.closed}"

    assert in_forked_child(child) == "True True True 0"  # none of the parent's, none closed
    assert kept.take() is parents  # the parent's list is untouched


def test_kept_connections_only_for_a_sqlite_file_queue_pool(tmp_path: Path) -> None:
    file_url = f"sqlite:///{tmp_path / 'k.db'}"
    engines = {
        "file": sa.create_engine(file_url),
        "pool-of-one": sa.create_engine(file_url, pool_size=1),
        "null-pool": sa.create_engine(file_url, poolclass=sa.pool.NullPool),
        "recycled": sa.create_engine(file_url, pool_recycle=3600),
        "pinged": sa.create_engine(file_url, pool_pre_ping=True),
        "memory": sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool),
    }
    try:
        kept = {name: kept_for(engine) for name, engine in engines.items()}
        assert kept["file"] is not None
        assert kept["file"].limit == 4  # the pool's five, one left for the rest
        assert kept["pool-of-one"] is None
        assert kept["null-pool"] is None
        assert kept["recycled"] is None  # every use must see the pool's age check
        assert kept["pinged"] is None
        assert kept["memory"] is None
    finally:
        for engine in engines.values():
            engine.dispose()


# Through SqlMetastore on a SQLite file ------------------------------------------------------


class PoolCounts:
    """Checkouts from and checkins to the engine's pool (events on the engine)."""

    def __init__(self, engine: Any) -> None:
        self.lock = threading.Lock()
        self.out = 0
        self.back = 0
        sa.event.listen(engine, "checkout", self._checkout)
        sa.event.listen(engine, "checkin", self._checkin)

    def _checkout(self, *_: object) -> None:
        with self.lock:
            self.out += 1

    def _checkin(self, *_: object) -> None:
        with self.lock:
            self.back += 1


def writable_now(path: Path) -> bool:
    """Another connection can write the file at once: nobody holds a lock on it."""
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        other.execute("INSERT INTO probe VALUES (1)")
        other.commit()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def test_the_hot_statements_keep_one_connection_with_no_transaction(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = SqlMetastore(f"sqlite:///{path}", create_table=True)
    kept = store._kept
    assert kept is not None
    counts = PoolCounts(store.engine)
    assert store.store("_IK_a_s_p", 10, record(10))
    assert not store.store("_IK_a_s_p", 10, record(10))  # rolled back: still kept
    assert store.load("_IK_a_s_p", 10) == record(10)
    assert store.load_latest("_IK_a_s_p") == record(10)
    assert (counts.out, counts.back, kept.idle()) == (1, 0, 1)  # one checkout for all four
    assert writable_now(path)  # the kept connection holds no lock
    assert store.load("_IK_a_s_p", 10) == record(10)  # and sees what others wrote meanwhile
    store.close()
    assert (counts.out, counts.back, kept.idle()) == (1, 1, 0)


def test_a_failed_statement_returns_its_connection_to_the_pool(tmp_path: Path) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'k.db'}")  # no table yet
    kept = store._kept
    assert kept is not None
    counts = PoolCounts(store.engine)
    with pytest.raises(MetastoreError, match="no such table"):
        store.load("_IK_a_s_p", 10)
    assert (counts.out, counts.back, kept.idle()) == (1, 1, 0)
    store.create_table()
    assert store.store("_IK_a_s_p", 10, record(10))
    assert kept.idle() == 1
    store.close()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sqlite3's autocommit attribute")
def test_a_connection_left_in_a_transaction_goes_back_to_the_pool(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    SqlMetastore(f"sqlite:///{path}", create_table=True).close()
    # PEP 249 mode: every statement opens a transaction, a read one too; none may be kept.
    store = SqlMetastore(
        f"sqlite:///{path}", engine_options={"connect_args": {"autocommit": False}}
    )
    kept = store._kept
    assert kept is not None
    assert store.load("_IK_a_s_p", 10) is None
    assert kept.idle() == 0
    assert writable_now(path)  # the pool rolled the read transaction back
    store.close()


def test_a_listener_that_passes_text_statements_keeps_the_driver_path(tmp_path: Path) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'k.db'}", create_table=True)
    kept = store._kept
    assert kept is not None
    seen: list[object] = []

    def passing(conn: Any, statement: Any, *rest: Any) -> tuple[Any, ...]:
        seen.append(statement)
        return (statement, *rest[:2])

    sa.event.listen(store.engine, "before_execute", passes_text_statements(passing), retval=True)
    assert store.store("_IK_a_s_p", 10, record(10))
    assert store.load("_IK_a_s_p", 10) == record(10)
    assert (seen, kept.idle()) == ([], 1)  # on the kept connection, past the listener

    def other(conn: Any, statement: Any, *rest: Any) -> tuple[Any, ...]:
        seen.append(statement)
        return (statement, *rest[:2])

    sa.event.listen(store.engine, "before_execute", other, retval=True)
    assert store.load("_IK_a_s_p", 10) == record(10)  # now through the Connection
    assert len(seen) == 2  # both listeners saw it
    store.close()


def test_encrypted_columns_leave_the_metastore_on_its_driver_path(tmp_path: Path) -> None:
    from asherah_core import SessionFactory, StaticKms  # noqa: PLC0415
    from asherah_core.integrations.sqlalchemy import EncryptedText  # noqa: PLC0415

    store = SqlMetastore(f"sqlite:///{tmp_path / 'k.db'}", create_table=True)
    factory = SessionFactory(
        "s", "p", kms=StaticKms(b"thisIsAStaticMasterKeyForTesting"), metastore=store
    )
    # Attaching an encrypted column makes the integration listen on every Engine.
    sa.Table(
        "notes", sa.MetaData(), sa.Column("body", EncryptedText(factory, partition=lambda: "t"))
    )
    assert sa.engine.Engine.dispatch.before_execute
    counts = PoolCounts(store.engine)
    with factory:
        session = factory.get_session("tenant-1")
        assert session.decrypt_bytes(session.encrypt_bytes(b"row")) == b"row"
        fresh = SessionFactory(
            "s", "p", kms=StaticKms(b"thisIsAStaticMasterKeyForTesting"), metastore=store
        )
        row = fresh.get_session("tenant-1")
        assert row.decrypt_bytes(session.encrypt_bytes(b"row 2")) == b"row 2"
        assert (counts.out, store._kept.idle() if store._kept else None) == (1, 1)
        fresh.close()


def test_many_threads_on_a_small_pool_leak_no_connection(tmp_path: Path) -> None:
    store = SqlMetastore(
        f"sqlite:///{tmp_path / 'k.db'}",
        create_table=True,
        engine_options={"pool_size": 2, "max_overflow": 1, "pool_timeout": 20},
    )
    kept = store._kept
    assert kept is not None
    assert kept.limit == 1
    counts = PoolCounts(store.engine)
    errors: list[BaseException] = []
    most_idle = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most_idle
        while not stop.is_set():
            most_idle = max(most_idle, kept.idle())
            time.sleep(0.0002)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(150):
                key = f"_IK_{rng.randrange(20)}_s_p"
                created = rng.randrange(1, 6)
                if rng.random() < 0.3:
                    store.store(key, created, record(created))
                got = store.load(key, created)
                assert got is None or got == record(created)
                latest = store.load_latest(key)
                assert latest is None or latest == record(latest.created)
                if i % 50 == 0:
                    with store.engine.connect() as conn:  # the pool serves other work too
                        conn.execute(sa.text("SELECT 1"))
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    assert most_idle <= 1
    assert counts.out - counts.back == kept.idle()  # every other checkout came back
    store.close()
    assert counts.out == counts.back


def test_close_while_threads_run_leaks_no_connection(tmp_path: Path) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'k.db'}", create_table=True)
    counts = PoolCounts(store.engine)
    assert store.store("_IK_a_s_p", 10, record(10))
    loads = [0] * 8
    outcomes: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            while True:
                assert store.load("_IK_a_s_p", 10) == record(10)
                loads[n] += 1
        except MetastoreError as e:
            with lock:
                outcomes.append(str(e))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    while min(loads) < 200:  # every thread is in its loop
        time.sleep(0.01)
    store.close()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == 8
    assert all(o.endswith(": closed") for o in outcomes), outcomes
    assert counts.out > 1  # threads met on the kept connection and took the pool's
    assert counts.out == counts.back


@pytest.mark.parametrize(
    ("target", "event"),
    [("engine", "handle_error"), ("Engine", "after_cursor_execute"), ("engine", "after_execute")],
)
def test_any_statement_listener_sends_the_hot_statements_through_connection(
    tmp_path: Path, target: str, event: str
) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'k.db'}", create_table=True)
    assert store.store("_IK_a_s_p", 10, record(10))
    assert not store._listened()
    on = store.engine if target == "engine" else sa.engine.Engine

    def listener(*_: object) -> None:
        return None

    kept = store._kept
    assert kept is not None
    assert kept.idle() == 1
    sa.event.listen(on, event, listener)
    try:
        counts = PoolCounts(store.engine)
        assert store.load("_IK_a_s_p", 10) == record(10)
        assert counts.out == 1  # a Connection's checkout, not the kept connection
        # The kept connection went back to the pool with the Connection's: none left out.
        assert (kept.idle(), counts.back, store.engine.pool.checkedout()) == (0, 2, 0)
    finally:
        sa.event.remove(on, event, listener)
    assert not store._listened()  # the listener removed: the driver path again
    assert store.load("_IK_a_s_p", 10) == record(10)
    assert (kept.idle(), store.engine.pool.checkedout()) == (1, 1)  # kept again
    store.close()
