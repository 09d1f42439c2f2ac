"""Metastores on real servers, against hostile input: ids differing only in case are two keys
on MariaDB, a password in the URL's query string connects and never shows, and a ``created``
out of range is a `MetastoreError` naming it."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from asherah_core.errors import MetastoreError
from asherah_core.metastore.sql import SqlMetastore
from asherah_core.records import EnvelopeKeyRecord

from ._backends import SERVER_MARKS, Backend, kind_params

T0 = 1_796_221_020
NANOSECONDS = T0 * 1_000_000_000


@pytest.mark.mysql
@pytest.mark.servers
def test_ids_that_differ_only_in_case_are_two_keys_on_mariadb(mysql_server: Any) -> None:
    metastore = SqlMetastore(mysql_server.url, table="encryption_key_case")
    with metastore.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS encryption_key_case")
    metastore.create_table()
    try:
        upper = EnvelopeKeyRecord(T0, b"\x01" * 48)
        lower = EnvelopeKeyRecord(T0, b"\x02" * 48)
        assert metastore.store("_IK_Alice_svc_prod", T0, upper)
        assert metastore.store("_IK_alice_svc_prod", T0, lower)
        assert metastore.load("_IK_Alice_svc_prod", T0) == upper
        assert metastore.load("_IK_alice_svc_prod", T0) == lower
        assert metastore.load_latest("_IK_ALICE_svc_prod") is None
        with metastore.engine.connect() as conn:
            collation = conn.exec_driver_sql(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                "DATABASE() AND TABLE_NAME = 'encryption_key_case' AND COLUMN_NAME = 'id'"
            ).scalar()
        assert collation == "utf8mb4_bin"
    finally:
        with metastore.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE encryption_key_case")
        metastore.close()


@pytest.mark.filterwarnings("ignore:'passwd' is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    ("kind", "parameter"),
    [
        pytest.param("postgres", "password", marks=SERVER_MARKS["postgres"], id="postgres"),
        pytest.param("mysql", "passwd", marks=SERVER_MARKS["mysql"], id="mysql"),
    ],
)
def test_a_password_in_the_query_string_connects_and_never_shows(
    kind: str, parameter: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(f"{kind}_server")
    url = sa.make_url(server.url)
    password = str(url.password)
    bare = url._replace(password=None)  # URL.set ignores None

    metastore = SqlMetastore(
        bare.update_query_dict({parameter: password}).render_as_string(hide_password=False)
    )
    try:
        metastore.create_table()
        assert metastore.load_latest("_SK_query_password_svc_prod") is None
        for shown in (repr(metastore), repr(metastore.engine), str(metastore.engine.url)):
            assert password not in shown
        assert f"{parameter}=***" in repr(metastore)
    finally:
        metastore.close()

    wrong = f"wrong-{password}"
    refused = SqlMetastore(
        bare.update_query_dict({parameter: wrong}).render_as_string(hide_password=False)
    )
    try:
        with pytest.raises(MetastoreError) as info:
            refused.load_latest("_SK_query_password_svc_prod")
        assert "failed" in str(info.value)
        assert password not in str(info.value)
        assert password not in repr(refused)
    finally:
        refused.close()


@pytest.mark.parametrize("backend", kind_params("postgres", "mysql", "dynamodb"), indirect=True)
@pytest.mark.parametrize(
    "created", [2**63, -(2**63) - 1, 10**5000], ids=["2^63", "-2^63-1", "huge"]
)
def test_a_created_no_implementation_can_read_is_a_metastore_error(
    backend: Backend, created: int
) -> None:
    metastore = backend.make()
    record = EnvelopeKeyRecord(T0, b"\x03" * 48)
    for call in (
        lambda: metastore.load("_SK_range_svc_prod", created),
        lambda: metastore.store("_SK_range_svc_prod", created, record),
        lambda: metastore.revoke("_SK_range_svc_prod", created),
    ):
        with pytest.raises(MetastoreError, match=r"created .* is out of range"):
            call()


@pytest.mark.parametrize("backend", kind_params("postgres", "mysql"), indirect=True)
def test_a_nanosecond_created_is_a_metastore_error_naming_it_on_sql(backend: Backend) -> None:
    metastore = backend.make()
    with pytest.raises(MetastoreError, match=f"created {NANOSECONDS} is out of range"):
        metastore.revoke("_SK_range_svc_prod", NANOSECONDS)
