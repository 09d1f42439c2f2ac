"""Helpers of the metastore tests: the kinds, their markers, and `Backend`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from asherah_core.metastore import Metastore

REGION = "us-west-2"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

SERVER_MARKS = {
    "postgres": (pytest.mark.postgres, pytest.mark.servers),
    "mysql": (pytest.mark.mysql, pytest.mark.servers),
    "dynamodb": (pytest.mark.dynamodb, pytest.mark.servers),
}
KINDS = ("memory", "sqlite", "postgres", "mysql", "dynamodb")
SQL_KINDS = ("sqlite", "postgres", "mysql")


def kind_params(*kinds: str) -> list[Any]:
    """``pytest.param`` per metastore kind, with the server markers where one is needed."""
    return [pytest.param(kind, marks=SERVER_MARKS.get(kind, ()), id=kind) for kind in kinds]


def aws_session() -> Any:
    """A boto3 session with test credentials (the process's AWS settings are not used)."""
    import boto3  # noqa: PLC0415 - only the DynamoDB tests need it

    return boto3.session.Session(region_name=REGION, **CREDENTIALS)


@dataclass
class Backend:
    """A metastore under test, and a way to write a row behind its back (bad records)."""

    kind: str
    make: Callable[[], Metastore]
    put_raw: Callable[[str, int, object], None] | None
    server: Any = None

    def new_id(self, what: str = "key") -> str:
        """A key id nobody else uses (the servers are shared by the whole session)."""
        return f"_IK_{what}-{uuid.uuid4().hex[:12]}_svc_prod"


def sql_put_raw(metastore: Any) -> Callable[[str, int, object], None]:
    import sqlalchemy as sa  # noqa: PLC0415

    def put(key_id: str, created: int, value: object) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        table = sa.table(
            "encryption_key", sa.column("id"), sa.column("created"), sa.column("key_record")
        )
        with metastore.engine.begin() as conn:
            conn.execute(
                sa.insert(table).values(
                    id=key_id, created=metastore.dialect.created(created), key_record=text
                )
            )

    return put


def dynamodb_put_raw(metastore: Any) -> Callable[[str, int, object], None]:
    from asherah_core.metastore.dynamodb import _to_attribute  # noqa: PLC0415

    def put(key_id: str, created: int, value: object) -> None:
        item: dict[str, Any] = {"Id": {"S": key_id}, "Created": {"N": str(created)}}
        if value is not None:
            item["KeyRecord"] = {"S": value} if isinstance(value, str) else _to_attribute(value)
        metastore.client.put_item(TableName=metastore.table_name, Item=item)

    return put
