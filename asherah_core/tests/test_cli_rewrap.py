"""asherah-kms rewrap and keys --usage over an application table in SQLite."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from asherah_core import PluginHost, SessionFactory
from asherah_core.cli import main
from asherah_core.cli._table import open_engine

from .test_cli_rows import CONFIG

TABLE = ["--url", "sqlite:///app.db", "--table", "secrets", "--record-column", "payload"]
BY_TENANT = [*TABLE, "--partition-column", "tenant"]


@pytest.fixture
def workdir(
    isolated_env: None,
    default_host: Callable[[PluginHost], PluginHost],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """plugins.toml (static KMS, SQLite keys.db) and app.db with 12 rows of 3 tenants."""
    default_host(PluginHost(autoload=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASHERAH_ROWS_URL", raising=False)
    (tmp_path / "plugins.toml").write_text(CONFIG, encoding="utf-8")
    assert main(["create-table"]) == 0
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE secrets (id INTEGER PRIMARY KEY, tenant TEXT, payload TEXT)")
        with SessionFactory.from_config(tmp_path / "plugins.toml") as factory:
            for i in range(1, 13):
                tenant = f"t{i % 3}"
                record = factory.get_session(tenant).encrypt_bytes(f"row {i}".encode())
                db.execute("INSERT INTO secrets VALUES (?, ?, ?)", (i, tenant, record))
    return tmp_path


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def records(workdir: Path) -> dict[int, str]:
    with sqlite3.connect(workdir / "app.db") as db:
        return dict(db.execute("SELECT id, payload FROM secrets").fetchall())


def ik(record: str) -> str:
    meta = json.loads(record)["Key"]["ParentKeyMeta"]
    return f"{meta['KeyId']}@{meta['Created']}"


def decrypt_all(workdir: Path) -> dict[int, bytes]:
    with (
        sqlite3.connect(workdir / "app.db") as db,
        SessionFactory.from_config(workdir / "plugins.toml") as factory,
    ):
        rows = db.execute("SELECT id, tenant, payload FROM secrets").fetchall()
        return {i: factory.get_session(t).decrypt_bytes(p) for i, t, p in rows}


def test_revoke_rewrap_verify_with_usage(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = records(workdir)
    old = ik(before[3])  # tenant t0
    code, out, err = run(capsys, "keys", "--usage", *BY_TENANT, "--json")
    assert code == 0, err
    usage = {f"{k['id']}@{k['created']}": k["rows"] for k in json.loads(out)["keys"]}
    assert usage[old] == 4
    assert sum(n for key, n in usage.items() if key.startswith("_SK_")) == 12

    assert run(capsys, "revoke-key", *old.split("@"))[0] == 0
    code, out, _ = run(capsys, "rewrap", *BY_TENANT, "--dry-run")
    assert code == 0
    assert "to rewrap        4" in out
    assert records(workdir) == before

    code, out, err = run(capsys, "rewrap", *BY_TENANT, "--batch-size", "5", "--progress", "lines")
    assert code == 0, err
    assert "rewrapped        4" in out
    assert "already current  8" in out
    after = records(workdir)
    assert {i for i in after if after[i] != before[i]} == {3, 6, 9, 12}
    assert decrypt_all(workdir) == {i: f"row {i}".encode() for i in range(1, 13)}

    code, out, _ = run(capsys, "keys", "--usage", *BY_TENANT)
    assert code == 0
    (line,) = [line for line in out.splitlines() if line.startswith(old)]
    assert line.split()[-2:] == ["yes", "0"]  # revoked, no rows left: it may be retired

    code, out, _ = run(capsys, "rewrap", *BY_TENANT, "--json")
    summary = json.loads(out)
    assert (code, summary["rewrapped"], summary["current"]) == (0, 0, 12)


def test_key_touches_only_that_keys_rows(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = records(workdir)
    t0, t1 = ik(before[3]), ik(before[1])
    run(capsys, "revoke-key", *t0.split("@"))
    run(capsys, "revoke-key", *t1.split("@"))
    code, out, _ = run(capsys, "rewrap", *BY_TENANT, "--key", t1, "--json")
    summary = json.loads(out)
    assert code == 0
    assert summary["rewrapped"] == 4
    assert summary["skipped"] == {"under a key not selected": 8}
    after = records(workdir)
    assert {i for i in after if after[i] != before[i]} == {1, 4, 7, 10}


def test_a_failed_row_makes_the_exit_status_1(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(workdir / "app.db") as db:
        db.execute("INSERT INTO secrets VALUES (99, 't0', '{\"Key\": 1}')")
    code, out, err = run(capsys, "rewrap", *BY_TENANT)
    assert code == 1
    assert "record does not parse: 1" in out
    assert "id=99" in err


def test_one_partition_for_the_whole_table_and_where(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "rewrap", *TABLE, "--partition", "t1", "--where", "tenant = 't1'", "--json"
    )
    assert (code, json.loads(out)["current"], json.loads(out)["scanned"]) == (0, 4, 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rewrap", *TABLE], "--partition-column or --partition"),
        (["rewrap", "--url", "sqlite:///app.db", "--partition", "a"], "--table, --record-column"),
        (["rewrap", *BY_TENANT, "--key", "@12"], "ID@CREATED"),
        (["rewrap", *BY_TENANT, "--reencrypt"], "--key"),
        (["rewrap", *BY_TENANT[2:], "--partition", "x"], "not allowed with"),
        (["rewrap", "--table", "t", "--record-column", "c", "--partition", "p"], "--url"),
        (["rewrap", *BY_TENANT, "--batch-size", "0"], "between 1"),
        (["keys", "--table", "secrets"], "--usage"),
        (
            [
                "rewrap",
                "--url",
                "nope://",
                "--table",
                "t",
                "--record-column",
                "c",
                "--partition",
                "p",
            ],
            "cannot open",
        ),
    ],
)
def test_usage_errors_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_reencrypt_with_key_makes_new_row_keys(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = records(workdir)
    t2 = ik(before[2])
    code, out, _ = run(capsys, "rewrap", *BY_TENANT, "--key", t2, "--reencrypt", "--json")
    assert (code, json.loads(out)["rewrapped"]) == (0, 4)
    after = records(workdir)
    for i in (2, 5, 8, 11):
        assert json.loads(after[i])["Data"] != json.loads(before[i])["Data"]
    assert decrypt_all(workdir) == {i: f"row {i}".encode() for i in range(1, 13)}


def test_a_missing_table_is_a_clean_failure(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", "sqlite:///app.db", "--table", "nope", "--record-column", "c"]
    code, _, err = run(capsys, "rewrap", *argv, "--partition", "p")
    assert code == 1
    assert "no such table" in err


def test_a_key_that_is_still_current_has_nothing_to_move_to(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = records(workdir)
    code, out, err = run(capsys, "rewrap", *BY_TENANT, "--key", ik(before[3]))
    assert code == 0
    assert "already current  4" in out
    assert "revoke the key first" in err
    assert records(workdir) == before


# Credentials in --url: never shown, whether in the password or in the query ----------------

TOKEN = "S3cretTok3nTable"
"""A query credential; also the name of a missing table, so that SQLite's message holds it."""


def test_query_credentials_never_show_in_the_report_or_the_usage(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///file:app.db?uri=true&authtoken={TOKEN}"
    argv = ["--url", url, "--table", "secrets", "--record-column", "payload"]
    for command in (["rewrap"], ["keys", "--usage", "--json"]):
        code, out, err = run(capsys, *command, *argv, "--partition-column", "tenant")
        assert code == 0, err
        assert "authtoken=***" in out
        assert TOKEN not in out + err


def test_a_url_that_cannot_be_opened_is_shown_without_its_query_credentials(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql+nosuchdriver://app@db/appdb?password={TOKEN}&sslmode=require"
    argv = ["--url", url, "--table", "t", "--record-column", "c", "--partition", "p"]
    code, _, err = run(capsys, "rewrap", *argv)
    assert code == 2
    assert "cannot open postgresql+nosuchdriver://app@db/appdb?password=***&sslmode=require" in err
    assert TOKEN not in err


def test_a_database_failure_is_scrubbed_of_query_credentials(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///file:app.db?uri=true&authtoken={TOKEN}"
    argv = ["--url", url, "--table", TOKEN, "--record-column", "c", "--partition", "p"]
    code, _, err = run(capsys, "rewrap", *argv)
    assert code == 1
    assert "no such table: ***" in err
    assert TOKEN not in err


def test_a_database_failure_of_keys_usage_is_scrubbed_of_query_credentials(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///file:app.db?uri=true&authtoken={TOKEN}"
    argv = ["--url", url, "--table", TOKEN, "--record-column", "c", "--partition", "p"]
    code, _, err = run(capsys, "keys", "--usage", *argv)
    assert code == 1
    assert "the database failed: OperationalError: no such table: ***" in err
    assert TOKEN not in err
    assert "SELECT" not in err  # SQLAlchemy's text: the statement


PEP_249_ERRORS = (
    "InterfaceError", "DatabaseError", "DataError", "OperationalError", "IntegrityError",
    "InternalError", "ProgrammingError", "NotSupportedError",
)  # fmt: skip
"""The exceptions of a driver (PEP 249) that SQLAlchemy's dialects look at, besides Error."""


@pytest.fixture
def fake_pymysql(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A stand-in for PyMySQL (not installed here), whose ``connect()`` records its keywords
    and fails with a message repeating them, as a driver may repeat what it was given."""
    pytest.importorskip("sqlalchemy")
    calls: list[dict[str, Any]] = []

    driver = types.ModuleType("pymysql")

    def connect(**kwargs: Any) -> NoReturn:
        calls.append(kwargs)
        raise driver.OperationalError(f"(1045, 'Access denied for {kwargs}')")

    error = type("Error", (Exception,), {})
    vars(driver).update(
        {name: type(name, (error,), {}) for name in PEP_249_ERRORS},
        Error=error,
        paramstyle="pyformat",
        connect=connect,
    )
    monkeypatch.setitem(sys.modules, "pymysql", driver)
    return calls


def test_the_engine_url_holds_no_query_credential(fake_pymysql: list[dict[str, Any]]) -> None:
    import sqlalchemy as sa  # noqa: PLC0415 - fake_pymysql skips without it

    url = f"mysql+pymysql://app@db/appdb?password={TOKEN}&charset=utf8mb4"
    engine, secrets = open_engine(argparse.Namespace(url=url))
    try:
        assert engine.url.render_as_string(hide_password=False) == (
            "mysql+pymysql://app@db/appdb?charset=utf8mb4"
        )
        assert TOKEN not in repr(engine)
        assert secrets == (TOKEN,)
        with pytest.raises(sa.exc.OperationalError):
            engine.connect()
        assert fake_pymysql[0]["password"] == TOKEN  # the driver still gets it
    finally:
        engine.dispose()


def test_a_driver_message_repeating_a_moved_query_credential_is_scrubbed(
    workdir: Path, capsys: pytest.CaptureFixture[str], fake_pymysql: list[dict[str, Any]]
) -> None:
    url = f"mysql+pymysql://app@db/appdb?password={TOKEN}"
    argv = ["--url", url, "--table", "t", "--record-column", "c", "--partition", "p"]
    code, _, err = run(capsys, "rewrap", *argv)
    assert code == 1
    assert "mysql+pymysql://app@db/appdb: the database failed: OperationalError: (1045" in err
    assert "'password': '***'" in err
    assert TOKEN not in err
    assert fake_pymysql[0]["password"] == TOKEN
