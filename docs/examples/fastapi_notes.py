"""FastAPI with an encrypted SQLAlchemy column: the lifespan makes the factory, a dependency
gives each request its database session, the row's ``tenant`` is the partition.

Run: ``uvicorn fastapi_notes:app`` (with ``ASHERAH_CONFIG`` naming a plugins.toml).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asherah_core import SessionFactory
from asherah_core.integrations.sqlalchemy import EncryptedText


class Factories:
    """The factory the lifespan made; the column type asks for it at each use."""

    current: SessionFactory | None = None

    @classmethod
    def get(cls) -> SessionFactory:
        if cls.current is None:
            raise RuntimeError("the application is not started (no lifespan ran)")
        return cls.current


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    body: Mapped[str | None] = mapped_column(EncryptedText(Factories.get, partition_from="tenant"))


class NoteIn(BaseModel):
    body: str | None


class NoteOut(BaseModel):
    id: int
    body: str | None


async def db(request: Request) -> AsyncIterator[AsyncSession]:
    """The dependency that gives a request its database session."""
    async with request.app.state.sessions() as session:
        yield session


Db = Annotated[AsyncSession, Depends(db)]
Tenant = Annotated[str, Header(alias="X-Tenant", min_length=1)]


def create_app(config: str | Mapping[str, Any], database_url: str) -> FastAPI:
    """The application: `config` is a plugins.toml path or the asherah package's mapping."""
    engine = create_async_engine(database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        Factories.current = SessionFactory.from_config(config)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        try:
            yield
        finally:
            Factories.current.close()  # zeroes the cached keys
            Factories.current = None
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.state.sessions = sessions

    @app.post("/notes", status_code=201)
    async def add(note: NoteIn, tenant: Tenant, session: Db) -> NoteOut:
        row = Note(tenant=tenant, body=note.body)
        session.add(row)
        await session.commit()  # body is sealed for `tenant` here
        return NoteOut(id=row.id, body=row.body)

    @app.get("/notes/{note_id}")
    async def read(note_id: int, tenant: Tenant, session: Db) -> NoteOut:
        row = await session.get(Note, note_id)  # body opened on load
        if row is None or row.tenant != tenant:
            raise HTTPException(404)
        return NoteOut(id=row.id, body=row.body)

    return app


if __name__ != "__main__" and "ASHERAH_CONFIG" in os.environ:  # pragma: no cover
    app = create_app(os.environ["ASHERAH_CONFIG"], os.environ["DATABASE_URL"])
