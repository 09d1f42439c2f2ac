"""SqlMetastore: credentials in URLs never shown, one in-memory SQLite database per process,
out-of-range ``created`` values refused cleanly."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from asherah_core import MetastoreError, SessionFactory, StaticKms
from asherah_core.metastore import EnvelopeKeyRecord, InMemoryMetastore

pytestmark = pytest.mark.usefixtures("isolated_env")
sa = pytest.importorskip("sqlalchemy")
from asherah_core._sqlsecrets import (  # noqa: E402
    driver_failure,
    scrubbed_line,
    url_secrets,
    without_query_secrets,
)
from asherah_core.metastore.sql import SqlMetastore, is_secret_parameter, shown_url  # noqa: E402

ForkedChild = Callable[[Callable[[], str]], str]
"""The ``in_forked_child`` fixture (conftest.py at the root)."""

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
SECRETS = ("hunter2", "s3cr3tpass", "keypassphrase", "tok3n")


def record(created: int) -> EnvelopeKeyRecord:
    return EnvelopeKeyRecord(created, b"k" * 40, None)


# Credentials in the query string ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["password", "PASSWORD", "passwd", "sslpassword", "pwd", "odbc_connect", "auth_token",
     "aws_secret_access_key", "api_key"],
)  # fmt: skip
def test_credential_bearing_parameters_are_secret(name: str) -> None:
    assert is_secret_parameter(name)


@pytest.mark.parametrize("name", ["passfile", "sslmode", "application_name", "charset", "host"])
def test_other_parameters_are_shown(name: str) -> None:
    assert not is_secret_parameter(name)


def test_shown_url_masks_the_password_and_every_credential_parameter() -> None:
    url = sa.make_url(
        "postgresql+psycopg://app:hunter2@db.example:5432/keys"
        "?password=s3cr3tpass&sslpassword=keypassphrase&sslmode=require&application_name=a+b"
    )
    shown = shown_url(url)
    assert not any(secret in shown for secret in SECRETS)
    assert shown == (
        "postgresql+psycopg://app:***@db.example:5432/keys"
        "?password=***&sslpassword=***&sslmode=require&application_name=a+b"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app@db.example/keys?password=hunter2&sslpassword=keypassphrase",
        "postgresql+psycopg2://app@db.example/keys?password=hunter2",
        "mysql+pymysql://app@db.example/keys?passwd=hunter2",
        "mysql+mysqldb://app@db.example/keys?passwd=hunter2&auth_token=tok3n",
        "postgresql+nosuchdriver://app@db.example/keys?password=hunter2",
    ],
)
def test_query_credentials_never_show_in_engine_errors(url: str) -> None:
    try:
        store = SqlMetastore(url)
    except MetastoreError as error:  # the driver is not installed here, or does not exist
        message = str(error)
    else:  # the driver is installed: the failure comes when connecting to a host that is not
        message = repr(store)
        assert not any(secret in repr(store.engine) for secret in SECRETS)
        store.close()
    assert "app@db.example" in message
    assert not any(secret in message for secret in SECRETS)


def test_query_credentials_never_show_in_repr_or_operation_errors(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    engine.url = sa.make_url(  # an engine the application built from such a URL
        f"sqlite:///{tmp_path / 'keys.db'}?passwd=hunter2&password=s3cr3tpass"
    )
    store = SqlMetastore(engine)
    assert "passwd=***" in repr(store)
    assert "password=***" in repr(store)
    with pytest.raises(MetastoreError) as info:
        store.load("k", 1)  # no table
    assert "passwd=***" in str(info.value)
    assert not any(secret in str(info.value) + repr(store) for secret in SECRETS)


def test_a_driver_message_holding_a_query_credential_is_scrubbed(tmp_path: Path) -> None:
    # SQLite names the missing table in its message; let that name be the "password".
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    engine.url = sa.make_url(f"sqlite:///{tmp_path / 'keys.db'}?password=hunter2table")
    store = SqlMetastore(engine, table="hunter2table")
    with pytest.raises(MetastoreError) as info:
        store.load_latest("k")
    assert "no such table: ***" in str(info.value)


def test_a_driver_failure_is_scrubbed_before_it_is_cut_to_one_short_line() -> None:
    url = sa.make_url("postgresql+psycopg://app:hunter2@db/keys?password=s3cr3tpass")
    driver_error = Exception("x" * 194 + "s3cr3tpass, hunter2\nDETAIL: hunter2")
    secrets = url_secrets(url, {})
    message = driver_failure(sa.exc.OperationalError("SELECT 1", {}, driver_error), secrets)
    assert message == "Exception: " + "x" * 194 + "***, *"
    # SQLAlchemy's own error: its message holds the statement and its parameters.
    assert driver_failure(sa.exc.StatementError("hunter2", "SELECT", {}, None), secrets) == (
        "StatementError"
    )


def test_query_credentials_move_to_the_connection_arguments() -> None:
    url = sa.make_url(
        "postgresql+psycopg://app:hunter2@db/keys"
        "?password=s3cr3tpass&sslpassword=keypassphrase&sslmode=require"
    )
    given = {"connect_timeout": 5, "sslpassword": "tok3n"}  # the caller's entry wins
    moved, connect_args, secrets = without_query_secrets(url, given)
    assert moved == sa.make_url("postgresql+psycopg://app:hunter2@db/keys?sslmode=require")
    assert connect_args == {"password": "s3cr3tpass", "sslpassword": "tok3n", "connect_timeout": 5}
    assert secrets == ("keypassphrase", "s3cr3tpass", "hunter2", "tok3n")


def test_other_urls_keep_their_query_and_odd_values_are_passed_over() -> None:
    url = sa.make_url("sqlite:///file:app.db?uri=true&authtoken=tok3n")
    assert without_query_secrets(url, {}) == (url, {}, ("tok3n",))
    # A number or a callable under a credential's name is no text to scrub (and no error).
    connect_args = {"auth_timeout": 5, "password": "hunter2", "keys": ["s3cr3tpass", 1]}
    assert url_secrets(url, connect_args) == ("s3cr3tpass", "hunter2", "tok3n")


def test_a_scrubbed_line_is_the_first_line_and_empty_for_a_blank_message() -> None:
    assert scrubbed_line("  \n  ", ("hunter2",)) == ""
    assert scrubbed_line("", ("hunter2",)) == ""
    assert scrubbed_line("\n bad hunter2 here \nDETAIL: hunter2", ("hunter2",)) == "bad *** here"
    driver_error = Exception("   ")
    error = sa.exc.OperationalError("SELECT 1", {}, driver_error)
    assert driver_failure(error, ("hunter2",)) == "Exception"


# One in-memory SQLite database for the process --------------------------------------------

MEMORY_URLS = ["sqlite://", "sqlite:///:memory:", "sqlite:///file:keys?mode=memory&uri=true"]


@pytest.mark.parametrize("url", MEMORY_URLS)
def test_an_in_memory_database_is_the_same_in_every_thread(url: str) -> None:
    store = SqlMetastore(url, create_table=True)
    assert store.store("_SK_main", 60, record(60))

    def work(worker: int) -> list[bool]:
        seen = [store.load("_SK_main", 60) == record(60)]
        for i in range(25):
            seen.append(store.store(f"_IK_{worker}", 60 + i, record(60 + i)))
            seen.append(store.load_latest(f"_IK_{worker}") == record(60 + i))
        return seen

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    assert all(all(seen) for seen in results)
    rows = list(store.keys())
    assert len(rows) == 1 + 8 * 25
    store.close()


def test_an_in_memory_database_serves_the_coroutine_paths() -> None:
    factory = SessionFactory(
        "svc",
        "prod",
        kms=StaticKms(MASTER_KEY),
        metastore=SqlMetastore("sqlite://", create_table=True),
    )

    async def encrypt_all() -> list[tuple[str, str]]:
        async def one(partition: str) -> tuple[str, str]:
            session = factory.get_session(partition)
            return partition, await session.encrypt_bytes_async(partition.encode())

        return await asyncio.gather(*(one(f"p{i}") for i in range(16)))

    rows = asyncio.run(encrypt_all())

    def decrypt(row: tuple[str, str]) -> bytes:
        return factory.get_session(row[0]).decrypt_bytes(row[1])

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(decrypt, rows)) == [p.encode() for p, _ in rows]
    factory.close()


@pytest.mark.parametrize("connection_string", [":memory:", "sqlite://"])
def test_the_packages_in_memory_connection_string_is_one_database(connection_string: str) -> None:
    from asherah_core.compat import SessionFactory as CompatFactory  # noqa: PLC0415

    factory = CompatFactory(
        {
            "ServiceName": "svc",
            "ProductID": "prod",
            "KMS": "static",
            "StaticMasterKeyHex": MASTER_KEY.hex(),
            "Metastore": "sqlite",
            "ConnectionString": connection_string,
        }
    )
    drr = factory.get_session("p").encrypt_bytes(b"shared")
    got: list[bytes] = []

    def elsewhere() -> None:
        factory.get_session("q").encrypt_bytes(b"a new partition: stores keys")
        got.append(factory.get_session("p").decrypt_bytes(drr))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert got == [b"shared"]
    factory.close()


def test_a_file_database_keeps_its_pool() -> None:
    store = SqlMetastore("sqlite:///unused.db")
    assert type(store.engine.pool).__name__ != "StaticPool"
    store.close()


# Out-of-range created ---------------------------------------------------------------------

NANOSECONDS = 1_796_221_020_000_000_000


@pytest.mark.parametrize(
    ("created", "shown"),
    [
        (NANOSECONDS, str(NANOSECONDS)),
        (253402300800, "253402300800"),  # 10000-01-01
        (-62135596801, "-62135596801"),  # before year 1
        (10**5000, "bits"),
    ],
    ids=["nanoseconds", "year-10000", "before-year-1", "5001-digits"],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda s, c: s.load("_SK_s_p", c),
        lambda s, c: s.store("_SK_s_p", c, record(60)),
        lambda s, c: s.revoke("_SK_s_p", c),
    ],
    ids=["load", "store", "revoke"],
)
def test_an_out_of_range_created_is_a_metastore_error(
    tmp_path: Path, created: int, shown: str, call: Callable[[SqlMetastore, int], object]
) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'keys.db'}", create_table=True)
    with pytest.raises(MetastoreError, match=rf"created .*{shown}.* is out of range"):
        call(store, created)
    store.close()


def test_the_edges_of_the_range_round_trip(tmp_path: Path) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'keys.db'}", create_table=True)
    for created in (-62135596800, 0, 253402300799):
        assert store.store("k", created, record(60))
        assert store.load("k", created) == record(60)
        assert store.revoke("k", created)
    assert [c for _, c, _ in store.keys("")] == [-62135596800, 0, 253402300799]
    store.close()


def test_a_non_integer_created_is_a_metastore_error(tmp_path: Path) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'keys.db'}", create_table=True)
    with pytest.raises(MetastoreError, match="created must be an integer"):
        store.load("k", 1.5)  # type: ignore[arg-type]
    store.close()


def test_the_memory_metastore_takes_any_created() -> None:
    store = InMemoryMetastore()
    assert store.load("k", NANOSECONDS) is None
    assert store.revoke("k", 10**5000) is False
    assert store.store("k", NANOSECONDS, record(60))
    assert store.load("k", NANOSECONDS) == record(60)


# The hot statements on the driver, and through SQLAlchemy when someone listens --------------


def test_the_hot_statements_run_on_the_driver_and_read_what_they_wrote(tmp_path: Path) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'k.db'}", create_table=True)
    seen: list[str] = []
    with store:
        assert store.store("_IK_a_s_p", 10, record(10))
        assert not store.store("_IK_a_s_p", 10, record(10))  # the duplicate: False, not raised
        assert store.store("_IK_a_s_p", 20, record(20))
        assert store.load("_IK_a_s_p", 10) == record(10)
        assert store.load("_IK_a_s_p", 15) is None
        assert store.load_latest("_IK_a_s_p") == record(20)
        assert store.load_latest("_IK_b_s_p") is None
        sa.event.listen(store.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        assert store.load("_IK_a_s_p", 20) == record(20)  # now through the Connection
        assert store.load_latest("_IK_a_s_p") == record(20)
        assert not store.store("_IK_a_s_p", 20, record(20))
        assert store.store("_IK_a_s_p", 30, record(30))
    assert [s.split()[0] for s in seen] == ["SELECT", "SELECT", "INSERT", "INSERT"]


def test_a_driver_failure_on_a_hot_statement_is_a_metastore_error(tmp_path: Path) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'k.db'}")  # no table
    with store:
        for call in (
            lambda: store.load("_IK_a_s_p", 10),
            lambda: store.load_latest("_IK_a_s_p"),
            lambda: store.store("_IK_a_s_p", 10, record(10)),
        ):
            with pytest.raises(MetastoreError, match=r"no such table.*create_table"):
                call()
        store.create_table()  # the pool's connection was returned: it goes on working
        assert store.store("_IK_a_s_p", 10, record(10))
        assert store.load("_IK_a_s_p", 10) == record(10)


# A forked child ---------------------------------------------------------------------------


def test_a_forked_child_takes_none_of_its_parents_pooled_connections(
    tmp_path: Path, in_forked_child: ForkedChild
) -> None:
    store = SqlMetastore(f"sqlite:///{tmp_path / 'k.db'}", create_table=True)
    assert store.store("_IK_a_s_p", 10, record(10))
    assert store.revoke("_IK_a_s_p", 10)  # through the pool: its connection goes back there
    parents_pool = store.engine.pool
    idle = parents_pool.checkedin()
    assert idle >= 1

    def child() -> str:
        fresh = store.engine.pool is not parents_pool and store.engine.pool.checkedin() == 0
        loaded = store.load("_IK_a_s_p", 10)
        stored = store.store("_IK_a_s_p", 11, record(11))
        revoked = store.revoke("_IK_a_s_p", 11)
        untouched = parents_pool.checkedin() == idle  # the parent's, neither taken nor closed
        return f"{fresh} {loaded is not None and loaded.revoked} {stored} {revoked} {untouched}"

    assert in_forked_child(child) == "True True True True True"
    assert store.engine.pool is parents_pool  # the parent keeps its own
    latest = store.load_latest("_IK_a_s_p")  # what the child wrote, read by the parent
    assert latest is not None
    assert (latest.created, latest.revoked) == (11, True)
    store.close()


def test_a_forked_child_leaves_an_engine_passed_in_and_an_in_memory_database_alone(
    tmp_path: Path, in_forked_child: ForkedChild
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'k.db'}")
    passed = SqlMetastore(engine, create_table=True)
    memory = SqlMetastore("sqlite://", create_table=True)
    assert memory.store("_IK_a_s_p", 10, record(10))
    pools = (engine.pool, memory.engine.pool)

    def child() -> str:
        same = (engine.pool, memory.engine.pool) == pools
        return f"{same} {memory.load('_IK_a_s_p', 10) == record(10)}"  # the child's own copy

    assert in_forked_child(child) == "True True"
    passed.close()
    memory.close()
    engine.dispose()


def test_without_sqlalchemy_the_module_says_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # "not installed", for this test
    for name in ("sql", "_kept", "_forked"):  # imported afresh, then put back by monkeypatch
        monkeypatch.delitem(sys.modules, f"asherah_core.metastore.{name}")
    with pytest.raises(ImportError, match=r"pip install 'asherah-core\[sql\]'"):
        importlib.import_module("asherah_core.metastore.sql")
