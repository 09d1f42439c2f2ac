"""The framework's asherah-kms commands: encrypt, decrypt, keys, revoke-key, create-table."""

from __future__ import annotations

import io
import json
import sqlite3
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asherah_core import PluginHost
from asherah_core.cli import main

from .conftest import MASTER_KEY

CONFIG = f"""
[asherah]
service = "svc"
product = "prod"

[kms]
plugin = "static"

[plugins.static]
master_key = "{MASTER_KEY.decode()}"

[metastore]
plugin = "sql"

[metastores.sql]
url = "sqlite:///keys.db"
"""


@pytest.fixture
def workdir(
    isolated_env: None,
    default_host: Callable[[PluginHost], PluginHost],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """An empty current directory with plugins.toml (static KMS, SQLite keys.db, no table)."""
    default_host(PluginHost(autoload=False))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plugins.toml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def feed(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    buffer = io.BytesIO(data)
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=buffer, isatty=lambda: False))


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def rows(workdir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(workdir / "keys.db") as db:
        return db.execute("SELECT id, created FROM encryption_key ORDER BY id").fetchall()


def test_create_table_then_encrypt_and_decrypt_a_row(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "create-table")[0] == 0
    feed(monkeypatch, "naïve secret".encode())
    code, out, err = run(capsys, "encrypt", "-p", "customer-42")
    assert code == 0, err
    record = json.loads(out)
    assert record["Key"]["ParentKeyMeta"]["KeyId"] == "_IK_customer-42_svc_prod"
    assert "secret" not in out
    assert [key_id for key_id, _ in rows(workdir)] == ["_IK_customer-42_svc_prod", "_SK_svc_prod"]

    feed(monkeypatch, out.encode())
    code, text, err = run(capsys, "decrypt", "-p", "customer-42", "--text")
    assert (code, text) == (0, "naïve secret\n"), err
    feed(monkeypatch, out.encode())
    code, encoded, _ = run(capsys, "decrypt", "-p", "customer-42", "--base64")
    assert encoded.strip() == "bmHDr3ZlIHNlY3JldA=="


def test_decrypt_for_another_partition_fails_with_exit_1(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "create-table")
    feed(monkeypatch, b"data")
    _, record, _ = run(capsys, "encrypt", "-p", "a")
    feed(monkeypatch, record.encode())
    code, out, err = run(capsys, "decrypt", "-p", "b", "--text")
    assert code == 1
    assert out == ""
    assert "another partition" in err


def test_encrypt_without_the_table_names_the_command_that_makes_it(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed(monkeypatch, b"data")
    code, _, err = run(capsys, "encrypt", "-p", "a")
    assert code == 1
    assert "asherah-kms create-table" in err


def test_keys_lists_ids_dates_and_parents_but_no_key_bytes(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "create-table")
    feed(monkeypatch, b"data")
    run(capsys, "encrypt", "-p", "a")
    code, out, _ = run(capsys, "keys", "--json")
    assert code == 0
    listing = json.loads(out)
    kinds = {row["id"]: row["kind"] for row in listing["keys"]}
    assert kinds == {"_IK_a_svc_prod": "intermediate", "_SK_svc_prod": "system"}
    (ik,) = [row for row in listing["keys"] if row["kind"] == "intermediate"]
    assert ik["parent"]["id"] == "_SK_svc_prod"
    assert ik["revoked"] is False
    assert set(ik) == {"id", "kind", "created", "created_utc", "parent", "revoked", "sealed_bytes"}
    code, table, _ = run(capsys, "keys", "--prefix", "_SK_")
    assert "_SK_svc_prod" in table
    assert "_IK_a_svc_prod" not in table


def test_revoke_key_makes_the_next_encrypt_use_a_new_key(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "create-table")
    feed(monkeypatch, b"old")
    _, old, _ = run(capsys, "encrypt", "-p", "a")
    meta = json.loads(old)["Key"]["ParentKeyMeta"]
    code, out, _ = run(capsys, "revoke-key", meta["KeyId"], str(meta["Created"]))
    assert code == 0
    assert "revoked _IK_a_svc_prod" in out
    feed(monkeypatch, b"new")
    _, new, _ = run(capsys, "encrypt", "-p", "a")
    assert json.loads(new)["Key"]["ParentKeyMeta"]["Created"] > meta["Created"]
    feed(monkeypatch, old.encode())
    assert run(capsys, "decrypt", "-p", "a", "--text")[1] == "old\n"  # revoked still decrypts


def test_revoke_of_a_missing_key_fails(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "create-table")
    code, _, err = run(capsys, "revoke-key", "_IK_nobody_svc_prod", "1")
    assert code == 1
    assert "no key '_IK_nobody_svc_prod'" in err


def test_encrypt_with_the_memory_metastore_warns_that_nothing_can_decrypt_it(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "plugins.toml").write_text(
        CONFIG.replace('plugin = "sql"', 'plugin = "memory"').replace(
            'url = "sqlite:///keys.db"', ""
        ),
        encoding="utf-8",
    )
    feed(monkeypatch, b"data")
    code, out, err = run(capsys, "encrypt", "-p", "a")
    assert code == 0
    assert json.loads(out)["Data"]
    assert "memory metastore forgets its keys" in err


def test_decrypt_refuses_binary_output_to_a_terminal(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed(monkeypatch, b'{"Key":{}}')
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, _, err = run(capsys, "decrypt", "-p", "a")
    assert code == 2
    assert "refusing to write binary data to a terminal" in err


def test_keys_lists_every_other_key_when_one_row_does_not_parse(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "create-table")
    for partition in ("a", "b"):
        feed(monkeypatch, b"data")
        run(capsys, "encrypt", "-p", partition)
    with sqlite3.connect(workdir / "keys.db") as db:
        db.execute(
            "INSERT INTO encryption_key VALUES ('_IK_aa_svc_prod', '2026-01-01 00:00:00', "
            '\'{"Created": "not a number"\')'
        )
    code, out, err = run(capsys, "keys")
    assert code == 1
    listed = [line.split()[0] for line in out.splitlines()[1:]]
    assert listed == ["_IK_a_svc_prod", "_IK_aa_svc_prod", "_IK_b_svc_prod", "_SK_svc_prod"]
    (bad,) = [line for line in out.splitlines() if line.startswith("_IK_aa_")]
    assert "UNREADABLE" in bad
    assert "_IK_aa_svc_prod" in err
    assert "1 key row(s)" in err

    code, out, _ = run(capsys, "keys", "--json")
    assert code == 1
    rows = {row["id"]: row for row in json.loads(out)["keys"]}
    assert "does not parse" in rows["_IK_aa_svc_prod"]["error"]
    assert rows["_IK_b_svc_prod"]["parent"]["id"] == "_SK_svc_prod"


def test_encrypt_and_decrypt_with_an_empty_partition_are_usage_errors(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for command in ("encrypt", "decrypt"):
        feed(monkeypatch, b"data")
        code, out, err = run(capsys, command, "-p", "")
        assert (code, out) == (2, ""), command
        assert "partition id must not be empty" in err


@pytest.mark.parametrize(
    "created",
    ["1764967000000000000", "1764967000000", "-1", "9223372036854775808", "soon"],
)
def test_revoke_key_with_a_created_out_of_range_is_a_usage_error_naming_it(
    workdir: Path, capsys: pytest.CaptureFixture[str], created: str
) -> None:
    run(capsys, "create-table")
    code, _, err = run(capsys, "revoke-key", "_IK_a_svc_prod", created)
    assert code == 2
    assert created in err
    assert "unexpected" not in err
