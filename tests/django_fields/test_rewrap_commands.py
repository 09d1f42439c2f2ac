"""``asherah_rewrap`` and ``asherah_key_usage``: the stored records of an encrypted field moved
off a revoked key, counted per key; on the SQLite file (or PostgreSQL) of these tests."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import override_settings
from noteapp import crypto
from noteapp.models import Note

from asherah_core.integrations.django import close_factory
from asherah_core.integrations.django.rows import engine_for, field_rows, shown
from asherah_core.metastore import InMemoryMetastore
from asherah_core.records import KeyMeta


@pytest.fixture(autouse=True)
def shared_metastore() -> Iterator[None]:
    crypto.SHARED = InMemoryMetastore()  # a fresh one per test; the factory reads it when made
    with override_settings(ASHERAH={"FACTORY": "noteapp.crypto.make_shared_factory"}):
        yield


def records() -> dict[int, tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, tenant, body FROM noteapp_note ORDER BY id")
        return {i: (t, b) for i, t, b in cursor.fetchall()}


def ik_of(record: str) -> KeyMeta:
    meta = json.loads(record)["Key"]["ParentKeyMeta"]
    return KeyMeta(meta["KeyId"], meta["Created"])


def revoke(meta: KeyMeta) -> None:
    assert crypto.SHARED.revoke(meta.key_id, meta.created)
    close_factory()  # the next use makes a factory that reads the revocation


def fill(count: int = 9) -> dict[int, str]:
    notes = [Note.objects.create(tenant=f"t{i % 3}", body=f"note {i}") for i in range(count)]
    return {n.pk: str(n.body) for n in notes}


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_rows_under_a_revoked_key_are_rewrapped_and_the_models_still_open() -> None:
    expected = fill()
    before = records()
    first = min(before)
    target = ik_of(before[first][1])
    tenant = before[first][0]
    revoke(target)
    out, _ = run("asherah_rewrap", "noteapp.Note.body", "--dry-run", "--batch-size", "2")
    assert "(dry run)" in out
    assert "to rewrap        3" in out
    assert records() == before
    out, _ = run("asherah_rewrap", "noteapp.Note.body", "--batch-size", "2")
    assert out.startswith(f"field noteapp.Note.body on {connection.vendor}")
    assert "rewrapped        3" in out
    assert "already current  6" in out
    after = records()
    for pk, (row_tenant, record) in after.items():
        if row_tenant == tenant:
            assert ik_of(record) != target
            assert json.loads(record)["Data"] == json.loads(before[pk][1])["Data"]
        else:
            assert record == before[pk][1]
    assert {n.pk: n.body for n in Note.objects.all()} == expected
    out, _ = run("asherah_rewrap", "noteapp.Note.body", "--json")
    summary = json.loads(out)
    assert (summary["rewrapped"], summary["current"], summary["field"]) == (
        0,
        9,
        "noteapp.Note.body",
    )


def test_key_touches_only_that_keys_rows_and_usage_shows_it_empty() -> None:
    fill()
    before = records()
    by_tenant = {t: ik_of(r) for t, r in before.values()}
    revoke(by_tenant["t1"])
    revoke(by_tenant["t2"])
    t2 = by_tenant["t2"]
    out, _ = run("asherah_rewrap", "noteapp.Note.body", "--key", f"{t2.key_id}@{t2.created}")
    assert "rewrapped        3" in out
    assert "skipped          6 (under a key not selected: 6)" in out
    after = records()
    changed = {pk for pk in after if after[pk][1] != before[pk][1]}
    assert changed == {pk for pk, (t, _) in before.items() if t == "t2"}
    out, err = run("asherah_key_usage", "noteapp.Note.body", "--json")
    usage = json.loads(out)
    rows = {(k["id"], k["created"]): k for k in usage["keys"]}
    assert usage["rows"] == 9
    assert rows[(t2.key_id, t2.created)]["rows"] == 0
    assert rows[(t2.key_id, t2.created)]["revoked"] is True
    t1 = by_tenant["t1"]
    assert rows[(t1.key_id, t1.created)]["rows"] == 3
    system = [k for k in usage["keys"] if k["kind"] == "system"]
    assert sum(k["rows"] for k in system) == 9
    out, err = run("asherah_key_usage", "noteapp.Note.body")
    assert out.splitlines()[0].split() == ["KEY", "KIND", "CREATED", "(UTC)", "REVOKED", "ROWS"]
    assert any(
        line.startswith(f"{t1.key_id}@{t1.created}") and line.split()[-2:] == ["yes", "3"]
        for line in out.splitlines()
    )
    assert "9 row(s) of noteapp.Note.body" in err


def test_failed_rows_make_the_command_fail_and_keep_their_record() -> None:
    fill(3)
    before = records()
    revoke(ik_of(before[min(before)][1]))
    with connection.cursor() as cursor:  # a record that does not parse
        cursor.execute("UPDATE noteapp_note SET body = %s WHERE id = %s", ["{broken", max(before)])
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"1 row\(s\) failed"):
        call_command("asherah_rewrap", "noteapp.Note.body", stdout=io.StringIO(), stderr=err)
    assert "record does not parse" in err.getvalue()
    assert records()[max(before)][1] == "{broken"
    with pytest.raises(CommandError, match="do not parse"):
        call_command("asherah_key_usage", "noteapp.Note.body", stdout=io.StringIO(), stderr=err)


def test_reencrypt_needs_a_key_and_makes_new_row_keys() -> None:
    fill(3)
    before = records()
    first = ik_of(before[min(before)][1])
    with pytest.raises(CommandError, match=r"--reencrypt.*--key"):
        run("asherah_rewrap", "noteapp.Note.body", "--reencrypt")
    out, _ = run("asherah_rewrap", "noteapp.Note.body", "--reencrypt", "--key", first.key_id)
    assert "rewrapped        1" in out
    pk = min(before)
    assert json.loads(records()[pk][1])["Data"] != json.loads(before[pk][1])["Data"]
    assert Note.objects.get(pk=pk).body == "note 0"


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("noteapp.Note", "app_label.Model.field"),
        ("noteapp.Nope.body", "Nope"),
        ("noteapp.Note.nope", "has no field 'nope'"),
        ("noteapp.Note.title", "not an EncryptedTextField"),
    ],
)
def test_a_bad_field_is_named(label: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("asherah_rewrap", label)
    with pytest.raises(CommandError, match=message):
        run("asherah_key_usage", label)


def test_bad_options_are_refused() -> None:
    with pytest.raises(CommandError, match="CREATED must be Unix seconds"):
        run("asherah_rewrap", "noteapp.Note.body", "--key", "_IK_x@soon")
    with pytest.raises(CommandError, match="not between"):
        run("asherah_rewrap", "noteapp.Note.body", "--batch-size", "0")


def test_inside_a_transaction_the_command_refuses_to_run() -> None:
    with transaction.atomic(), pytest.raises(CommandError, match="outside a transaction"):
        run("asherah_rewrap", "noteapp.Note.body")


def test_the_engine_is_the_django_database_without_its_password() -> None:
    target = field_rows("noteapp.Note.body")
    engine, _ = engine_for(target.database)
    try:
        assert engine.dialect.name == connection.vendor
        password: Any = connection.settings_dict.get("PASSWORD")
        assert not password or password not in engine.url.render_as_string(hide_password=True)
    finally:
        engine.dispose()


@pytest.mark.parametrize("setting", ["OPTIONS", "PASSWORD"])
def test_a_credential_of_the_settings_is_never_shown(
    setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cretsett1ng"  # lower case: PostgreSQL folds the column name it repeats
    if setting == "PASSWORD" and connection.vendor != "sqlite":
        pytest.skip("PostgreSQL logs in with it: another password fails the login")
    settings = connection.settings_dict
    value: Any = {**(settings.get("OPTIONS") or {}), "sslpassword": secret}
    monkeypatch.setitem(settings, setting, value if setting == "OPTIONS" else secret)
    engine, secrets = engine_for(field_rows("noteapp.Note.body").database)
    engine.dispose()
    assert secret in secrets
    assert secret not in repr(engine) + shown(engine)
    # A driver's message repeating it (here the name of a column that does not exist).
    with pytest.raises(CommandError, match="the database failed") as e:
        run("asherah_rewrap", "noteapp.Note.body", "--where", f"{secret} = 1")
    assert secret not in str(e.value)
    assert "***" in str(e.value)


def test_the_binary_field_is_walked_too() -> None:
    notes = [Note.objects.create(tenant="t1", scan=f"scan {i}".encode()) for i in range(3)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT scan FROM noteapp_note WHERE id = %s", [notes[0].pk])
        (record,) = cursor.fetchone()
    revoke(ik_of(record))
    out, _ = run("asherah_rewrap", "noteapp.Note.scan")
    assert "rewrapped        3" in out
    assert "skipped          0" in out
    assert [bytes(n.scan) for n in Note.objects.order_by("pk")] == [b"scan 0", b"scan 1", b"scan 2"]


def test_url_names_the_database_and_its_password_is_never_shown() -> None:
    with pytest.raises(CommandError, match="cannot open it") as e:
        run("asherah_key_usage", "noteapp.Note.body", "--url", "nosuchdb://u:hunter22@h/x")
    assert "hunter22" not in str(e.value)
    if connection.vendor != "sqlite":
        return
    fill(3)
    name = connection.settings_dict["NAME"]
    out, _ = run("asherah_key_usage", "noteapp.Note.body", "--url", f"sqlite:///{name}", "--json")
    assert json.loads(out)["rows"] == 3
    with pytest.raises(CommandError, match="the database failed"):
        run("asherah_key_usage", "noteapp.Note.body", "--url", "sqlite://")  # no such table
    with pytest.raises(CommandError, match="the database failed"):
        run("asherah_rewrap", "noteapp.Note.body", "--url", "sqlite://")
