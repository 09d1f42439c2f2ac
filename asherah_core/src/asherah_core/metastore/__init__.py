"""Metastores: where system and intermediate keys live, shared by every process of a service.

`InMemoryMetastore` is always here; `SqlMetastore` needs ``asherah-core[sql]`` (SQLAlchemy)
and `DynamoDbMetastore` needs ``asherah-core[dynamodb]`` (boto3); they are imported on first
use so that a missing extra fails with a message saying which one to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from asherah_core.errors import MetastoreError
from asherah_core.records import EnvelopeKeyRecord, KeyMeta

from .base import Metastore, StoredKey
from .memory import InMemoryMetastore

if TYPE_CHECKING:
    from .dynamodb import DynamoDbMetastore
    from .sql import SqlMetastore

__all__ = [
    "DynamoDbMetastore",
    "EnvelopeKeyRecord",
    "InMemoryMetastore",
    "KeyMeta",
    "Metastore",
    "MetastoreError",
    "SqlMetastore",
    "StoredKey",
]

_LAZY = {"SqlMetastore": ".sql", "DynamoDbMetastore": ".dynamodb"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
