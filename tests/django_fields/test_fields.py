"""Encrypted Django fields: records in the table, plaintext on the instances, per partition."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import checks
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, models, transaction
from django.db.models import Value
from django.db.models.functions import Concat, Lower
from django.test import Client, override_settings
from noteapp import crypto
from noteapp.models import Note

from asherah_core.integrations.django import (
    EncryptedBinaryField,
    EncryptedColumnError,
    EncryptedTextField,
    close_factory,
    get_factory,
)


def raw(sql: str, *args: object) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(args))
        return [] if cursor.description is None else list(cursor.fetchall())


def ik_of(record: str) -> str:
    return str(json.loads(record)["Key"]["ParentKeyMeta"]["KeyId"])


def test_the_table_holds_records_and_the_instance_plaintext() -> None:
    note = Note.objects.create(tenant="t1", body="Grüße, secret", scan=b"\x00\xffraw")
    assert note.body == "Grüße, secret"  # the instance keeps its plaintext after save
    ((body, scan),) = raw("SELECT body, scan FROM noteapp_note")
    assert "secret" not in body
    assert ik_of(body) == ik_of(scan) == "_IK_t1_svc_prod"
    loaded = Note.objects.get(pk=note.pk)
    assert (loaded.body, loaded.scan) == ("Grüße, secret", b"\x00\xffraw")


def test_none_stays_null() -> None:
    Note.objects.create(tenant="t1", body=None, scan=None)
    Note.objects.create(tenant=None, body=None)
    assert raw("SELECT body, scan FROM noteapp_note") == [(None, None), (None, None)]
    assert [n.body for n in Note.objects.order_by("pk")] == [None, None]


def test_a_missing_partition_names_the_field_and_writes_nothing() -> None:
    with pytest.raises(EncryptedColumnError, match=r"noteapp\.Note\.body.*'tenant'.*None") as e:
        Note.objects.create(tenant=None, body="orphan secret")
    assert "orphan secret" not in str(e.value)
    assert raw("SELECT count(*) FROM noteapp_note") == [(0,)]


def test_changing_the_partition_re_encrypts() -> None:
    note = Note.objects.create(tenant="t1", body="moving", scan=b"b")
    note.tenant = "t2"
    note.save()
    ((body, scan),) = raw("SELECT body, scan FROM noteapp_note")
    assert ik_of(body) == ik_of(scan) == "_IK_t2_svc_prod"
    assert Note.objects.get(pk=note.pk).body == "moving"
    note.tenant = "t3"
    with pytest.raises(EncryptedColumnError, match=r"update_fields.*'tenant'.*'body'"):
        note.save(update_fields=["tenant"])
    note.save(update_fields=["tenant", "body", "scan"])
    assert ik_of(raw("SELECT body FROM noteapp_note")[0][0]) == "_IK_t3_svc_prod"


def test_a_record_of_another_partition_is_refused() -> None:
    Note.objects.create(tenant="t1", body="t1 secret")
    Note.objects.create(tenant="t2", body="t2 own")
    ((record,),) = raw("SELECT body FROM noteapp_note WHERE tenant = 't1'")
    raw("UPDATE noteapp_note SET body = %s WHERE tenant = 't2'", record)
    with pytest.raises(EncryptedColumnError, match=r"noteapp\.Note\.body.*another partition"):
        Note.objects.get(tenant="t2")


def test_lookups_are_refused_with_a_field_error() -> None:
    Note.objects.create(tenant="t1", body="x")
    Note.objects.create(tenant="t1", body=None)
    for lookup in ("body", "body__exact", "body__icontains", "body__in", "scan"):
        with pytest.raises(FieldError, match=r"noteapp\.Note\.(body|scan).*randomised"):
            Note.objects.filter(**{lookup: "x" if lookup != "body__in" else ["x"]})
    with pytest.raises(FieldError, match="randomised"):
        Note.objects.filter(body__lower="x")
    assert Note.objects.filter(body__isnull=True).count() == 1
    assert Note.objects.filter(body=None).count() == 1
    assert Note.objects.exclude(body__isnull=True).get().body == "x"


def test_update_and_bulk_update_cannot_write_plaintext() -> None:
    note = Note.objects.create(tenant="t1", body="x")
    with pytest.raises(EncryptedColumnError, match=r"noteapp\.Note\.body.*plaintext"):
        Note.objects.update(body="leak")
    note.body = "changed"
    with (
        pytest.raises(EncryptedColumnError, match="cannot encrypt per row"),
        transaction.atomic(),
    ):
        Note.objects.bulk_update([note], ["body"])
    assert Note.objects.get().body == "x"
    Note.objects.update(body=None)  # NULL needs no partition
    assert Note.objects.get().body is None


@pytest.mark.parametrize(
    "expression",
    [
        lambda: Lower(Value("PLAINTEXT-EXPR")),
        lambda: Concat(models.F("tenant"), Value("PLAINTEXT-EXPR")),
        lambda: models.F("tenant"),
    ],
    ids=["function", "concat", "another-field"],
)
def test_update_to_a_sql_expression_is_refused(expression: Callable[[], Any]) -> None:
    # The database would store what it computes, unencrypted.
    Note.objects.create(tenant="t1", body="x")
    with pytest.raises(
        EncryptedColumnError, match=r"noteapp\.Note\.body: a SQL expression"
    ) as info:
        Note.objects.update(body=expression())
    assert "PLAINTEXT" not in str(info.value)
    assert Note.objects.get().body == "x"


def test_bulk_create_makes_one_key_per_new_partition() -> None:
    close_factory()  # a fresh factory, so its metastore counts from zero
    tenants = [f"tenant-{n}" for n in range(10)]
    Note.objects.bulk_create(
        [Note(tenant=tenants[n % 10], body=f"row {n}") for n in range(10_000)], batch_size=500
    )
    metastore = get_factory().metastore
    assert isinstance(metastore, crypto.CountingMetastore)
    assert len(metastore.stores) == 11
    rows = raw("SELECT tenant, body FROM noteapp_note")
    assert len(rows) == 10_000
    assert all(ik_of(body) == f"_IK_{tenant}_svc_prod" for tenant, body in rows)
    assert {n.body for n in Note.objects.all()} == {f"row {n}" for n in range(10_000)}


def test_makemigrations_wrote_the_fields_without_the_factory(migrations_dir: Path) -> None:
    (initial,) = migrations_dir.glob("0001_*.py")
    source = initial.read_text()
    assert re.search(
        r"asherah_core\.integrations\.django\.fields\.EncryptedTextField\(\s*blank=True, "
        r"null=True, partition_from='tenant'\s*\)",
        source,
    )
    assert "EncryptedBinaryField(null=True, partition_from='tenant')" in source
    assert "factory" not in source.lower()
    out = io.StringIO()
    call_command("makemigrations", "noteapp", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_the_field_deconstructs_to_its_arguments() -> None:
    field = EncryptedTextField(partition_from="tenant", null=True)
    _, path, args, kwargs = field.deconstruct()
    assert path == "asherah_core.integrations.django.fields.EncryptedTextField"
    assert (args, kwargs) == ([], {"partition_from": "tenant", "null": True})
    assert EncryptedTextField(**kwargs).deconstruct()[3] == kwargs
    _, _, _, kwargs = EncryptedBinaryField(partition_from="t", editable=True).deconstruct()
    assert kwargs == {"partition_from": "t", "editable": True}
    with pytest.raises(TypeError, match="partition_from must name another field"):
        EncryptedTextField(partition_from="")


def test_the_admin_shows_and_edits_plaintext() -> None:
    note = Note.objects.create(tenant="t1", title="hello", body="admin plaintext")
    user = User.objects.create_superuser("admin", "a@example.com", "pw-for-tests")
    try:
        client = Client()
        client.force_login(user)
        url = f"/admin/noteapp/note/{note.pk}/change/"
        page = client.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        assert "admin plaintext" in html
        assert "ParentKeyMeta" not in html
        posted = client.post(url, {"tenant": "t1", "title": "hello", "body": "edited in admin"})
        assert posted.status_code == 302, posted.content.decode()[:2000]
        assert Note.objects.get(pk=note.pk).body == "edited in admin"
        ((record,),) = raw("SELECT body FROM noteapp_note")
        assert "edited" not in record
        assert ik_of(record) == "_IK_t1_svc_prod"
    finally:
        user.delete()


def test_the_asherah_keys_command_lists_the_metastore() -> None:
    close_factory()
    Note.objects.create(tenant="t1", body="x")
    Note.objects.create(tenant="t2", body="y")
    out, err = io.StringIO(), io.StringIO()
    call_command("asherah_keys", stdout=out, stderr=err)
    lines = out.getvalue().splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        "_IK_t1_svc_prod",
        "_IK_t2_svc_prod",
        "_SK_svc_prod",
    ]
    assert all(line.split("\t")[2] == "active" for line in lines)
    assert "3 key(s)" in err.getvalue()
    out = io.StringIO()
    call_command("asherah_keys", "--prefix", "_SK_", "--json", stdout=out)
    (only,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert only["id"] == "_SK_svc_prod"
    assert only["parent"] is None


def test_the_factory_comes_from_settings_once_per_process(tmp_path: Path) -> None:
    assert get_factory() is get_factory()
    config = {
        "ServiceName": "svc",
        "ProductID": "prod",
        "Metastore": "memory",
        "KMS": "static",
        "StaticMasterKeyHex": "22" * 32,
    }
    first = get_factory()
    with override_settings(ASHERAH={"CONFIG": config}):
        assert first.closed  # a settings change closes the old factory
        made = get_factory()
        assert made.service == "svc"
        note = Note.objects.create(tenant="t1", body="via CONFIG")
        assert Note.objects.get(pk=note.pk).body == "via CONFIG"
    assert made.closed
    for bad, message in [
        ({"FACTORY": "noteapp.crypto.not_a_factory"}, r"returned str, not a SessionFactory"),
        ({"FACTORY": "noteapp.crypto.missing"}, r"ASHERAH\['FACTORY'\]"),
        ({"CONFIG": str(tmp_path / "absent.toml")}, r"ASHERAH\['CONFIG'\]"),
        ({"OTHER": 1}, "unknown keys"),
        ("plugins.toml", "must be a dict"),
    ]:
        with override_settings(ASHERAH=bad), pytest.raises(ImproperlyConfigured, match=message):
            get_factory()
    close_factory()


def test_the_checks_name_a_bad_partition_field() -> None:
    class Broken(models.Model):
        body = EncryptedTextField(partition_from="nowhere", null=True)

        class Meta:
            app_label = "noteapp"

    errors = Broken._meta.get_field("body").check()
    assert [(e.id, e.level) for e in errors] == [("asherah.E001", checks.ERROR)]
    assert "'nowhere' is not a field of noteapp.Broken" in errors[0].msg


def test_the_async_orm_seals_and_opens() -> None:
    async def scenario() -> tuple[str | None, str | None]:
        note = await Note.objects.acreate(tenant="a1", body="async django")
        loaded = await Note.objects.aget(pk=note.pk)
        loaded.tenant = "a2"
        await loaded.asave()
        again = await Note.objects.aget(pk=note.pk)
        return loaded.body, again.body

    assert asyncio.run(scenario()) == ("async django", "async django")
    assert ik_of(raw("SELECT body FROM noteapp_note")[0][0]) == "_IK_a2_svc_prod"


def test_a_deferred_partition_is_loaded_to_open_the_value() -> None:
    Note.objects.create(tenant="t1", body="deferred partition")
    (note,) = Note.objects.only("body")
    assert note.body == "deferred partition"
    (note,) = Note.objects.defer("body")
    assert note.body == "deferred partition"  # loaded (and opened) on first access


def test_the_checks_refuse_an_encrypted_partition_field() -> None:
    class Chained(models.Model):
        secret_tenant = EncryptedTextField(partition_from="secret_tenant", null=True)

        class Meta:
            app_label = "noteapp"

    errors = Chained._meta.get_field("secret_tenant").check()
    assert [e.id for e in errors] == ["asherah.E002"]


def test_the_factory_holders_lock_is_free_in_a_forked_child(
    held_at_fork: Callable[[Callable[[], Any]], str],
) -> None:
    from asherah_core.integrations.django import factory  # noqa: PLC0415

    assert held_at_fork(lambda: factory._HOLDER.lock) == "taken"
