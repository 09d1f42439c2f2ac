"""The journal of a SQLite file the SQL metastore opens: a new file in WAL mode, an existing
one as it is unless asked, every connection of a WAL file syncing each commit."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from asherah_core import MetastoreError, PluginHost, SessionFactory
from asherah_core.metastore import EnvelopeKeyRecord

pytestmark = pytest.mark.usefixtures("isolated_env")
sa = pytest.importorskip("sqlalchemy")
from asherah_core.metastore._journal import _prepare  # noqa: E402
from asherah_core.metastore.sql import SqlMetastore  # noqa: E402

ForkedChild = Callable[[Callable[[], str]], str]
"""The ``in_forked_child`` fixture (conftest.py at the root)."""

SYNC_FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


def record(created: int) -> EnvelopeKeyRecord:
    return EnvelopeKeyRecord(created, b"k" * 40, None)


def journal_mode(path: Path) -> str:
    """The file's journal mode, read by a plain sqlite3 connection (not the metastore's)."""
    with sqlite3.connect(path) as db:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])


def existing_database(path: Path) -> Path:
    """A database file with a table in it, in SQLite's default rollback journal."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE other (a)")
    assert journal_mode(path) == "delete"
    return path


@pytest.mark.parametrize(
    ("existing", "wal", "mode"),
    [
        (False, None, "wal"),  # a new file: put in WAL mode
        (True, None, "delete"),  # an existing database keeps its journal
        (True, True, "wal"),  # unless asked
        (False, False, "delete"),  # told not to: a new file keeps the rollback journal
    ],
)
def test_the_journal_a_file_ends_up_with(
    tmp_path: Path, existing: bool, wal: bool | None, mode: str
) -> None:
    path = existing_database(tmp_path / "k.db") if existing else tmp_path / "k.db"
    store = SqlMetastore(f"sqlite:///{path}", create_table=True, sqlite_wal=wal)
    assert store.store("_IK_a_s_p", 10, record(10))
    assert store.load("_IK_a_s_p", 10) == record(10)
    store.close()
    assert journal_mode(path) == mode


def test_an_empty_file_counts_as_new(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    path.touch()
    SqlMetastore(f"sqlite:///{path}", create_table=True).close()
    assert journal_mode(path) == "wal"


def test_every_connection_of_a_wal_file_syncs_each_commit(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = SqlMetastore(f"sqlite:///{path}", create_table=True)
    held = [store.engine.raw_connection() for _ in range(3)]  # three distinct connections
    try:
        for connection in held:
            cursor = connection.cursor()
            assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert cursor.execute("PRAGMA synchronous").fetchone()[0] == SYNC_FULL
            cursor.close()
    finally:
        for connection in held:
            connection.close()
        store.close()


@pytest.mark.parametrize("wal", [None, True])
def test_a_connection_set_to_sync_less_is_set_back_to_full(
    tmp_path: Path, wal: bool | None
) -> None:
    # SQLite's compiled-in default may be FULL already: start from NORMAL so this can fail.
    connection = sqlite3.connect(tmp_path / "k.db")
    connection.execute("PRAGMA synchronous=NORMAL")
    _prepare(connection, wal, "here")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == SYNC_FULL
    connection.close()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sqlite3's autocommit is Python 3.12+")
def test_a_connection_in_pep_249_mode_is_prepared_and_left_in_it(tmp_path: Path) -> None:
    # autocommit=False: a transaction is always open, where SQLite refuses both pragmas.
    path = tmp_path / "k.db"
    store = SqlMetastore(
        f"sqlite:///{path}",
        create_table=True,
        engine_options={"connect_args": {"autocommit": False}},
    )
    assert store.store("_IK_a_s_p", 10, record(10))
    assert store.load("_IK_a_s_p", 10) == record(10)
    connection = store.engine.raw_connection()
    try:
        assert connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        cursor = connection.cursor()
        assert cursor.execute("PRAGMA synchronous").fetchone()[0] == SYNC_FULL
        cursor.close()
    finally:
        connection.close()
        store.close()
    assert journal_mode(path) == "wal"


def test_a_rollback_journal_file_is_left_at_its_own_sync_setting(tmp_path: Path) -> None:
    connection = sqlite3.connect(existing_database(tmp_path / "k.db"))
    connection.execute("PRAGMA synchronous=NORMAL")
    _prepare(connection, None, "here")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1
    connection.close()


def test_a_database_that_refuses_wal_mode_is_an_error_naming_the_mode_it_kept() -> None:
    connection = sqlite3.connect(":memory:")  # SQLite keeps an in-memory database's journal
    refused = r"^here: cannot put the database in WAL mode.*'memory'"
    with pytest.raises(MetastoreError, match=refused):
        _prepare(connection, True, "here")
    _prepare(connection, None, "here")  # not asked: it keeps its journal quietly
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "memory"
    connection.close()


def test_a_key_committed_by_a_process_that_never_closed_is_read_after_it(
    tmp_path: Path, in_forked_child: ForkedChild
) -> None:
    path = tmp_path / "k.db"
    SqlMetastore(f"sqlite:///{path}", create_table=True).close()

    def child() -> str:  # stores, then leaves at once: no close, no checkpoint
        store = SqlMetastore(f"sqlite:///{path}")
        return str(store.store("_IK_a_s_p", 10, record(10)))

    assert in_forked_child(child) == "True"
    assert (tmp_path / "k.db-wal").stat().st_size > 0  # the key is in the log, not the file
    store = SqlMetastore(f"sqlite:///{path}")
    assert store.load("_IK_a_s_p", 10) == record(10)
    store.close()


@pytest.mark.parametrize(
    ("make", "wal", "message"),
    [
        (lambda path: "sqlite://", True, "this is an in-memory database"),
        (lambda path: "sqlite:///:memory:", False, "this is an in-memory database"),
        (lambda path: sa.create_engine(f"sqlite:///{path}"), False, "an engine passed in"),
        (lambda path: f"sqlite:///{path}", "yes", "must be True, False or None, not str"),
        (lambda path: f"sqlite:///{path}", 1, "must be True, False or None, not int"),
    ],
)
def test_sqlite_wal_where_it_cannot_apply_is_an_error(
    tmp_path: Path, make: Callable[[Path], object], wal: object, message: str
) -> None:
    target = make(tmp_path / "k.db")
    with pytest.raises(MetastoreError, match=message):
        SqlMetastore(target, sqlite_wal=wal)  # type: ignore[arg-type]
    if isinstance(target, sa.Engine):
        target.dispose()
    assert not (tmp_path / "k.db").exists() or journal_mode(tmp_path / "k.db") == "delete"


@pytest.mark.parametrize(("setting", "mode"), [("", "wal"), ("sqlite_wal = false", "delete")])
def test_the_config_files_sqlite_wal(
    tmp_path: Path,
    default_host: Callable[[PluginHost], PluginHost],
    setting: str,
    mode: str,
) -> None:
    default_host(PluginHost(autoload=False))
    path = tmp_path / "k.db"
    config = tmp_path / "plugins.toml"
    config.write_text(
        '[asherah]\nservice = "s"\nproduct = "p"\n'
        '[kms]\nplugin = "static"\n'
        '[plugins.static]\nmaster_key = "thisIsAStaticMasterKeyForTesting"\n'
        '[metastore]\nplugin = "sql"\n'
        f'[metastores.sql]\nurl = "sqlite:///{path}"\ncreate_table = true\n{setting}\n',
        encoding="utf-8",
    )
    with SessionFactory.from_config(config) as factory:
        session = factory.get_session("p1")
        assert session.decrypt_bytes(session.encrypt_bytes(b"x")) == b"x"
    assert journal_mode(path) == mode
