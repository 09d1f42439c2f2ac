"""Rows the ``asherah`` package (PyPI, Rust core) writes through its ``rdbms`` and ``dynamodb``
metastores are read by ours, and the other way round, in one shared table."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from asherah_core import SessionFactory, StaticKms
from asherah_core.metastore.sql import SqlMetastore

from ._backends import CREDENTIALS, REGION, Backend, kind_params
from ._race_worker import MASTER_KEY, make_metastore

PEER = Path(__file__).with_name("_asherah_peer.py")
SCHEMA = "interop"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("asherah") is None,
    reason="the asherah package is not installed (nox -s metastores installs it)",
)


def peer(config: dict[str, Any], **job: Any) -> dict[str, list[str]]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": REGION,
    }
    result = subprocess.run(
        [sys.executable, str(PEER), json.dumps({"config": config, **job})],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def peer_config(backend: Backend, service: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "ServiceName": service,
        "ProductID": "prod",
        "KMS": "static",
        "StaticMasterKeyHex": MASTER_KEY.hex(),
        "ConfigDriftForceRun": True,
    }
    if backend.kind == "dynamodb":
        return {
            **config,
            "Metastore": "dynamodb",
            "DynamoDBEndpoint": backend.server.url,
            "DynamoDBRegion": REGION,
            "DynamoDBTableName": "EncryptionKey",
        }
    url = sa.make_url(backend.server.url)
    scheme = "postgres" if backend.kind == "postgres" else "mysql"
    connection = f"{scheme}://{url.username}:{url.password}@{url.host}:{url.port}/{url.database}"
    if backend.kind == "postgres":
        connection += f"?options=-csearch_path%3D{SCHEMA}"
    return {**config, "Metastore": "rdbms", "ConnectionString": connection}


def target(backend: Backend) -> str:
    """Where both talk to: on PostgreSQL a schema of its own (``search_path``), whose table has
    the JSONB ``key_record`` the asherah package needs, beside the TEXT one of the other tests."""
    if backend.kind != "postgres":
        return str(backend.server.url)
    url = sa.make_url(backend.server.url)
    return url.update_query_dict({"options": f"-csearch_path={SCHEMA}"}).render_as_string(
        hide_password=False
    )


def prepare_table(backend: Backend) -> None:
    if backend.kind != "postgres":
        backend.make()  # the TEXT table of the anchors' schema
        return
    with SqlMetastore(backend.server.url) as metastore, metastore.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    with SqlMetastore(target(backend)) as metastore:
        metastore.create_table(jsonb=True)


def our_factory(backend: Backend, service: str) -> SessionFactory:
    return SessionFactory(
        service,
        "prod",
        kms=StaticKms(MASTER_KEY),
        metastore=make_metastore(backend.kind, target(backend)),
    )


@pytest.mark.parametrize("backend", kind_params("postgres", "mysql", "dynamodb"), indirect=True)
@pytest.mark.parametrize("first", ["asherah", "ours"])
def test_rows_cross_between_the_asherah_package_and_ours(backend: Backend, first: str) -> None:
    """`first` makes the system key and the partitions' intermediate keys; the other one then
    decrypts its rows, encrypts under the same keys, and the first decrypts those."""
    prepare_table(backend)
    service = f"interop{uuid.uuid4().hex[:8]}"
    config = peer_config(backend, service)
    mine = [("p1", "ours one"), ("p2", "ours two"), ("p3", "ours three")]
    theirs = [("p1", "theirs one"), ("p2", "theirs two"), ("p4", "theirs four")]

    def ours_encrypt() -> list[str]:
        with our_factory(backend, service) as factory:
            out = []
            for partition, text in mine:
                with factory.get_session(partition) as session:
                    out.append(session.encrypt_bytes(text.encode()))
            return out

    def ours_decrypt(drrs: list[str]) -> list[str]:
        with our_factory(backend, service) as factory:
            out = []
            for (partition, _), drr in zip(theirs, drrs, strict=True):
                with factory.get_session(partition) as session:
                    out.append(session.decrypt_bytes(drr).decode())
            return out

    if first == "asherah":
        their_rows = peer(config, encrypt=theirs)["encrypted"]
        assert ours_decrypt(their_rows) == [text for _, text in theirs]
        my_rows = ours_encrypt()
        decrypted = peer(config, decrypt=[[p, d] for (p, _), d in zip(mine, my_rows, strict=True)])
        assert decrypted["decrypted"] == [text for _, text in mine]
    else:
        my_rows = ours_encrypt()
        answer = peer(
            config,
            decrypt=[[p, d] for (p, _), d in zip(mine, my_rows, strict=True)],
            encrypt=theirs,
        )
        assert answer["decrypted"] == [text for _, text in mine]
        assert ours_decrypt(answer["encrypted"]) == [text for _, text in theirs]

    # Both used one system key and one intermediate key per partition (same minute), or two
    # when the minute turned: nobody made a key the other could not find.
    metastore = make_metastore(backend.kind, target(backend))
    ids = [key_id for key_id, _, _ in metastore.keys(f"_SK_{service}_")]
    ids += [key_id for key_id, _, _ in metastore.keys("_IK_p") if service in key_id]
    metastore.close()
    assert 1 <= ids.count(f"_SK_{service}_prod") <= 2
    assert {key_id for key_id in ids if key_id.startswith("_IK_")} == {
        f"_IK_{p}_{service}_prod" for p in ("p1", "p2", "p3", "p4")
    }
