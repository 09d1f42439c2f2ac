"""``KMS: "secrets-manager"`` on LocalStack: the master key read from Secrets Manager.

A row written through it opens with a static KMS over the same 32 bytes (the ``asherah``
package's secrets-manager KMS seals system keys exactly as its static KMS does, and the
interop session checks our static KMS against that package), and the other way round.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from asherah_core import KmsError, StaticKms, compat

pytestmark = pytest.mark.integration
REGION = "us-west-2"


@pytest.fixture
def secrets(localstack_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", localstack_endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=localstack_endpoint)
    made: list[str] = []

    def create(**value: Any) -> str:
        name = f"asherah-master-{uuid.uuid4().hex}"
        client.create_secret(Name=name, **value)
        made.append(name)
        return name

    yield create
    for name in made:
        with contextlib.suppress(Exception):
            client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


def config(secret_id: str) -> dict[str, Any]:
    return {
        "ServiceName": "svc",
        "ProductID": "prod",
        "Metastore": "memory",
        "KMS": "secrets-manager",
        "SecretsManagerSecretId": secret_id,
    }


@pytest.mark.parametrize(
    "stored",
    [
        {"SecretString": "ab" * 32},
        {"SecretString": "  0x" + "AB" * 32 + "\n"},
        {"SecretBinary": b"\xab" * 32},
    ],
    ids=["hex", "hex-0x-whitespace", "binary"],
)
def test_rows_open_with_a_static_kms_over_the_same_key(secrets: Any, stored: Any) -> None:
    secret_id = secrets(**stored)
    with compat.SessionFactory(config(secret_id)) as factory:
        text = factory.get_session("p").encrypt_bytes(b"secret row")
        static = compat.SessionFactory(
            {**config(secret_id), "KMS": "test-debug-static"},
            kms=StaticKms(b"\xab" * 32),
            metastore=factory.metastore,
        )
        assert static.get_session("p").decrypt_bytes(text) == b"secret row"
        back = static.get_session("q").encrypt_bytes(b"other way")
        assert factory.get_session("q").decrypt_bytes(back) == b"other way"


def test_the_wrong_key_does_not_open_the_rows(secrets: Any) -> None:
    with compat.SessionFactory(config(secrets(SecretString="ab" * 32))) as factory:
        text = factory.get_session("p").encrypt_bytes(b"x")
        other = compat.SessionFactory(
            config(secrets(SecretString="cd" * 32)), metastore=factory.metastore
        )
        with pytest.raises(Exception, match=r"system key|KMS|decrypt"):
            other.get_session("p").decrypt_bytes(text)


def test_a_missing_secret_names_it_and_the_error_code(secrets: Any) -> None:
    with pytest.raises(KmsError, match=r"no-such-secret.*ResourceNotFoundException"):
        compat.SessionFactory(config("no-such-secret"))


def test_a_secret_of_the_wrong_size_is_refused_without_showing_it(secrets: Any) -> None:
    secret_id = secrets(SecretString="ab" * 16)
    with pytest.raises(KmsError, match="16 bytes") as raised:
        compat.SessionFactory(config(secret_id))
    assert "ab" * 16 not in str(raised.value)
    assert os.environ["AWS_ENDPOINT_URL"]  # the fixture's endpoint was used
