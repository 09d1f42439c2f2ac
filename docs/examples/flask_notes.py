"""Flask with an encrypted SQLAlchemy column whose partition comes from a context variable: each
request sets the tenant from its header, and a row of another tenant is refused, not decrypted.

Run: ``flask --app flask_notes run`` (with ``ASHERAH_CONFIG`` naming a plugins.toml).
"""

from __future__ import annotations

import atexit
import contextvars
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, abort, g, request
from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from asherah_core import SessionFactory
from asherah_core.integrations.sqlalchemy import EncryptedColumnError, EncryptedText

tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)
factories: list[SessionFactory] = []


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str | None] = mapped_column(
        EncryptedText(lambda: factories[-1], partition=tenant.get)
    )


def create_app(config: str | Mapping[str, Any], database_url: str) -> Flask:
    """The application: `config` is a plugins.toml path or the asherah package's mapping."""
    factory = SessionFactory.from_config(config)
    factories.append(factory)
    atexit.register(factory.close)  # Flask has no lifespan: close (and zero keys) at exit
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    app = Flask(__name__)

    @app.before_request
    def set_tenant() -> None:
        name = request.headers.get("X-Tenant")
        if not name:
            abort(400, "X-Tenant is required")
        g.tenant_token = tenant.set(name)

    @app.teardown_request
    def reset_tenant(error: BaseException | None) -> None:
        if "tenant_token" in g:
            tenant.reset(g.tenant_token)

    @app.post("/notes")
    def add() -> tuple[dict[str, Any], int]:
        with Session(engine) as session:
            note = Note(body=request.get_json()["body"])
            session.add(note)
            session.commit()  # sealed for the request's tenant
            return {"id": note.id}, 201

    @app.get("/notes/<int:note_id>")
    def read(note_id: int) -> dict[str, Any]:
        with Session(engine) as session:
            try:
                note = session.get(Note, note_id)  # opened for the request's tenant
            except EncryptedColumnError:
                abort(404)  # another tenant's row: refused before any key was loaded
            if note is None:
                abort(404)
            return {"id": note.id, "body": note.body}

    return app


if "ASHERAH_CONFIG" in os.environ:  # pragma: no cover
    app = create_app(os.environ["ASHERAH_CONFIG"], os.environ["DATABASE_URL"])
