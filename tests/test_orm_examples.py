"""The FastAPI and Flask examples of the ORM pages (docs/examples/) run as documented."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ._venv import REPO

EXAMPLES = REPO / "docs" / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"orm_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # SQLAlchemy reads the annotations in the module's namespace
    spec.loader.exec_module(module)
    return module


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "ServiceName": "notes",
        "ProductID": "web",
        "Metastore": "sqlite",
        "ConnectionString": str(tmp_path / "keys.db"),
        "KMS": "static",
        "StaticMasterKeyHex": "5a" * 32,
    }


def stored(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM note ORDER BY id").fetchall()


def ik_of(record: str) -> str:
    return str(json.loads(record)["Key"]["ParentKeyMeta"]["KeyId"])


def test_the_fastapi_example(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("aiosqlite")
    from fastapi.testclient import TestClient  # noqa: PLC0415

    example = load("fastapi_notes")
    db = tmp_path / "app.db"
    app = example.create_app(config(tmp_path), f"sqlite+aiosqlite:///{db}")
    with TestClient(app) as client:
        made = client.post("/notes", json={"body": "fastapi secret"}, headers={"X-Tenant": "t1"})
        assert made.status_code == 201, made.text
        assert made.json()["body"] == "fastapi secret"
        note_id = made.json()["id"]
        got = client.get(f"/notes/{note_id}", headers={"X-Tenant": "t1"})
        assert got.json() == {"id": note_id, "body": "fastapi secret"}
        assert client.get(f"/notes/{note_id}", headers={"X-Tenant": "t2"}).status_code == 404
        assert client.post("/notes", json={"body": "x"}).status_code == 422  # no tenant
        factory = example.Factories.current
    assert factory.closed  # the lifespan closed it
    ((_, tenant, body),) = stored(db)
    assert tenant == "t1"
    assert "secret" not in body
    assert ik_of(body) == "_IK_t1_notes_web"


def test_the_flask_example(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    example = load("flask_notes")
    db = tmp_path / "app.db"
    app = example.create_app(config(tmp_path), f"sqlite:///{db}")
    try:
        client = app.test_client()
        made = client.post("/notes", json={"body": "flask secret"}, headers={"X-Tenant": "t1"})
        assert made.status_code == 201, made.text
        note_id = made.get_json()["id"]
        got = client.get(f"/notes/{note_id}", headers={"X-Tenant": "t1"})
        assert got.get_json() == {"id": note_id, "body": "flask secret"}
        # Another tenant's request: its context partition does not own the record.
        assert client.get(f"/notes/{note_id}", headers={"X-Tenant": "t2"}).status_code == 404
        assert client.get(f"/notes/{note_id}").status_code == 400
    finally:
        example.factories[-1].close()
    ((_, body),) = stored(db)
    assert "secret" not in body
    assert ik_of(body) == "_IK_t1_notes_web"
