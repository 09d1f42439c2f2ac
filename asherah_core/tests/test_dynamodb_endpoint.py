"""DynamoDbMetastore's endpoint, without a server: checked up front with errors that name
``endpoint_url``, and its user information never in a message or the repr."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("boto3")

from botocore.exceptions import ClientError, EndpointConnectionError

from asherah_core.errors import MetastoreError
from asherah_core.metastore.dynamodb import DynamoDbMetastore

SECRET = "S3cretPassw0rd"


class FailingClient:
    """A client whose every call raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.meta = type("Meta", (), {"region_name": "us-east-1"})()
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def call(**_kwargs: Any) -> Any:
            raise self.error

        return call


def failing(error: Exception) -> Any:
    return lambda _region, **_settings: FailingClient(error)


@pytest.mark.parametrize(
    ("endpoint", "problem", "shown"),
    [
        (
            f"https://ak:{SECRET}@dynamo_proxy.internal:8000",
            "botocore refuses",
            "'https://dynamo_proxy.internal:8000'",
        ),
        ("http://localhost:99999", "a port from 0 to 65535", "'http://localhost:99999'"),
        (f"http://u:{SECRET}@localhost:99999", "a port from 0 to 65535", "(not shown)"),
        (f"https://u:{SECRET}@[dynamo.internal:8000", "a port from 0 to 65535", "(not shown)"),
        ("https://[dynamo.internal:8000", "a port from 0 to 65535", "'https://[dynamo.internal"),
        (f"ftp://u:{SECRET}@dynamo.internal", "an http:// or https:// URL", "'ftp://dynamo"),
        ("localhost:8000", "an http:// or https:// URL", "'localhost:8000'"),
    ],
)
def test_a_bad_endpoint_names_the_setting_and_never_its_user_information(
    endpoint: str, problem: str, shown: str
) -> None:
    with pytest.raises(MetastoreError) as caught:
        DynamoDbMetastore(region="us-east-1", endpoint_url=endpoint)
    message = str(caught.value)
    assert "endpoint_url" in message
    assert problem in message
    assert shown in message
    assert SECRET not in message


def test_a_client_that_cannot_be_made_never_shows_the_user_information() -> None:
    endpoint = f"http://proxyuser:{SECRET}@127.0.0.1:1"

    def factory(_region: str | None, *, endpoint_url: str | None, **_settings: Any) -> Any:
        raise ValueError(f"Invalid endpoint: {endpoint_url}")

    with pytest.raises(MetastoreError, match=r"Invalid endpoint: http://127\.0\.0\.1:1") as caught:
        DynamoDbMetastore(region="us-east-1", endpoint_url=endpoint, client_factory=factory)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url=f"http://proxyuser:{SECRET}@127.0.0.1:1/"),
        ClientError(
            {"Error": {"Code": "Oops", "Message": f"no route to https://u:{SECRET}@h/"}}, "Query"
        ),
    ],
)
def test_a_failed_call_never_shows_user_information(error: Exception) -> None:
    metastore = DynamoDbMetastore(
        region="us-east-1",
        endpoint_url=f"http://proxyuser:{SECRET}@127.0.0.1:1",
        client_factory=failing(error),
    )
    with pytest.raises(MetastoreError) as caught:
        metastore.load_latest("_SK_s_p")
    message = str(caught.value)
    assert SECRET not in message
    assert "proxyuser" not in message
    assert "endpoint http://127.0.0.1:1" in message
    assert SECRET not in repr(metastore)


def test_good_endpoints_are_shown_without_user_information() -> None:
    error = ValueError("unused")
    for endpoint, shown in [
        ("http://localhost:8000", "http://localhost:8000"),
        (f"https://u:{SECRET}@dynamodb.local/", "https://dynamodb.local/"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ]:
        metastore = DynamoDbMetastore(
            region="us-east-1", endpoint_url=endpoint, client_factory=failing(error)
        )
        assert repr(metastore) == (
            f"DynamoDbMetastore('EncryptionKey', region='us-east-1', endpoint={shown!r})"
        )
