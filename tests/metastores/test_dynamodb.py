"""DynamoDbMetastore on moto: the exact item layout, the region suffix, errors and recovery,
the ``dynamodb`` registration, and the client factory."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from asherah_core.errors import MetastoreError
from asherah_core.metastore.dynamodb import DynamoDbMetastore, default_client_factory
from asherah_core.plugins import PluginHost
from asherah_core.records import EnvelopeKeyRecord, KeyMeta

from ._backends import REGION, Backend, aws_session, kind_params

pytestmark = [pytest.mark.dynamodb, pytest.mark.servers]

T0 = 1_796_221_020
ForkedChild = Callable[[Callable[[], str]], str]
"""The ``in_forked_child`` fixture (conftest.py at the root)."""
SK = KeyMeta("_SK_svc_prod", T0 - 60)


def metastore_at(endpoint: str, **kw: Any) -> DynamoDbMetastore:
    kw.setdefault("session", aws_session())
    return DynamoDbMetastore(endpoint_url=endpoint, **kw)


@pytest.mark.parametrize("backend", kind_params("dynamodb"), indirect=True)
def test_items_have_asherahs_layout(backend: Backend) -> None:
    metastore = backend.make()
    assert isinstance(metastore, DynamoDbMetastore)
    key_id = backend.new_id()
    metastore.store(key_id, T0, EnvelopeKeyRecord(T0, b"\x03" * 16, SK))
    metastore.store(key_id, T0 + 60, EnvelopeKeyRecord(T0 + 60, b"\x04" * 16, revoked=True))
    first = metastore.client.get_item(
        TableName="EncryptionKey", Key={"Id": {"S": key_id}, "Created": {"N": str(T0)}}
    )["Item"]
    assert first == {
        "Id": {"S": key_id},
        "Created": {"N": str(T0)},
        "KeyRecord": {
            "M": {
                "Created": {"N": str(T0)},
                "Key": {"S": "AwMDAwMDAwMDAwMDAwMDAw=="},
                "ParentKeyMeta": {
                    "M": {"KeyId": {"S": "_SK_svc_prod"}, "Created": {"N": str(T0 - 60)}}
                },
            }
        },
    }
    second = metastore.client.get_item(
        TableName="EncryptionKey", Key={"Id": {"S": key_id}, "Created": {"N": str(T0 + 60)}}
    )["Item"]
    assert second["KeyRecord"]["M"]["Revoked"] == {"BOOL": True}
    assert "ParentKeyMeta" not in second["KeyRecord"]["M"]
    table = metastore.client.describe_table(TableName="EncryptionKey")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "Id": "HASH",
        "Created": "RANGE",
    }


def test_the_region_suffix_is_the_clients_region(dynamodb_server: Any) -> None:
    assert metastore_at(dynamodb_server.url).region_suffix is None
    suffixed = metastore_at(dynamodb_server.url, region="eu-west-1", region_suffix=True)
    assert suffixed.region_suffix == "eu-west-1"
    assert suffixed.region == "eu-west-1"
    assert "eu-west-1" in repr(suffixed)


def test_a_missing_table_says_how_to_create_it(dynamodb_server: Any) -> None:
    metastore = metastore_at(dynamodb_server.url, table_name="NoSuchTable")
    with pytest.raises(MetastoreError, match="ResourceNotFoundException") as caught:
        metastore.load_latest("_SK_svc_prod")
    message = str(caught.value)
    assert "_SK_svc_prod" in message
    assert "create_table" in message
    assert "NoSuchTable" in message


def test_an_unreachable_endpoint_fails_calls_and_recovers(dynamodb_server: Any) -> None:
    if not dynamodb_server.restartable:
        pytest.skip("the endpoint was given by environment variable")
    metastore = metastore_at(dynamodb_server.url, connect_timeout=1, max_attempts=1)
    metastore.create_table()
    key_id = "_IK_outage_svc_prod"
    record = EnvelopeKeyRecord(T0, b"\x05" * 32, SK)
    metastore.store(key_id, T0, record)
    dynamodb_server.stop()
    try:
        for call in (
            lambda: metastore.load(key_id, T0),
            lambda: metastore.load_latest(key_id),
            lambda: metastore.store(key_id, T0 + 60, record),
        ):
            with pytest.raises(MetastoreError) as caught:
                call()
            assert key_id in str(caught.value)
            assert "test" not in str(caught.value).split("dynamodb metastore")[0]
    finally:
        dynamodb_server.start()
    assert metastore.load(key_id, T0) == record
    assert metastore.store(key_id, T0 + 60, record)


def test_credentials_never_appear_in_errors_or_repr(dynamodb_server: Any) -> None:
    import boto3  # noqa: PLC0415

    secret = "SECRETxSECRETxSECRET0123456789abcdefSECRET"
    session = boto3.session.Session(
        aws_access_key_id="AKIDTESTTESTTEST", aws_secret_access_key=secret, region_name=REGION
    )
    metastore = DynamoDbMetastore("NoSuchTable", endpoint_url=dynamodb_server.url, session=session)
    with pytest.raises(MetastoreError) as caught:
        metastore.load("_IK_p_svc_prod", T0)
    assert secret not in str(caught.value)
    assert secret not in repr(metastore)


def test_user_information_in_the_endpoint_is_never_shown(dynamodb_server: Any) -> None:
    endpoint = dynamodb_server.url.replace("http://", "http://user:hunter2@")
    metastore = metastore_at(endpoint, table_name="NoSuchTable", max_attempts=1)
    assert "hunter2" not in repr(metastore)
    with pytest.raises(MetastoreError) as caught:
        metastore.load("_IK_p_svc_prod", T0)
    assert "hunter2" not in str(caught.value)


def test_no_region_is_a_metastore_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3  # noqa: PLC0415

    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(MetastoreError, match="region"):
        DynamoDbMetastore(session=boto3.session.Session())


def test_the_client_factory_gets_region_endpoint_session_and_config(dynamodb_server: Any) -> None:
    calls: list[dict[str, Any]] = []

    def factory(region: str | None, **kw: Any) -> Any:
        calls.append({"region": region, **kw})
        return default_client_factory(region, **kw)

    session = aws_session()
    metastore = DynamoDbMetastore(
        region="ap-south-1",
        endpoint_url=dynamodb_server.url,
        session=session,
        client_factory=factory,
        read_timeout=3.0,
    )
    assert len(calls) == 1
    assert calls[0]["region"] == "ap-south-1"
    assert calls[0]["endpoint_url"] == dynamodb_server.url
    assert calls[0]["session"] is session
    assert calls[0]["config"].read_timeout == 3.0
    metastore.create_table()
    assert metastore.store("_SK_svc_prod", T0, EnvelopeKeyRecord(T0, b"k" * 8))


def test_registered_as_the_dynamodb_metastore(
    dynamodb_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    host = PluginHost()
    assert "dynamodb" in host.available_metastores()
    metastore = host.load_metastore(
        "dynamodb",
        {
            "table_name": "FromConfig",
            "region": "us-east-2",
            "endpoint": dynamodb_server.url,
            "region_suffix": True,
            "create_table": True,
        },
    )
    assert isinstance(metastore, DynamoDbMetastore)
    assert metastore.table_name == "FromConfig"
    assert metastore.region_suffix == "us-east-2"
    assert metastore.store("_SK_svc_prod_us-east-2", T0, EnvelopeKeyRecord(T0, b"k" * 8))
    assert metastore.load_latest("_SK_svc_prod_us-east-2") is not None


def test_a_forked_child_makes_a_client_of_its_own(
    dynamodb_server: Any, in_forked_child: ForkedChild
) -> None:
    made: list[int] = []

    def factory(region: str | None, **kw: Any) -> Any:
        made.append(os.getpid())
        return default_client_factory(region, **kw)

    metastore = DynamoDbMetastore(
        region=REGION, endpoint_url=dynamodb_server.url, session=aws_session(),
        client_factory=factory,
    )  # fmt: skip
    metastore.create_table()
    record = EnvelopeKeyRecord(T0, b"k" * 8)
    assert metastore.store("_SK_fork_svc_prod", T0, record)  # a connection in the pool now
    parents = metastore.client

    def child() -> str:
        loaded = metastore.load("_SK_fork_svc_prod", T0) == record
        stored = metastore.store("_SK_fork_svc_prod", T0 + 1, record)
        own = metastore.client is not parents and made[-1] == os.getpid()
        metastore.close()  # closes the child's client only
        return f"{loaded} {stored} {own} {len(made)}"

    assert in_forked_child(child) == "True True True 2"  # one client made, in the child
    assert metastore.client is parents
    assert made == [os.getpid()]
    assert metastore.load("_SK_fork_svc_prod", T0 + 1) == record  # the parent's still works
    metastore.close()
