"""Encrypted ORM columns read by the ``asherah`` package: a column value is a record the peer
decrypts with partition = the row's tenant, and a row the peer encrypted loads as plaintext."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from asherah_core import SessionFactory
from asherah_core.integrations.sqlalchemy import EncryptedBytes, EncryptedText

from .conftest import Peer, static_config

FACTORY: list[SessionFactory] = []


def current() -> SessionFactory:
    return FACTORY[-1]


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(EncryptedText(current, partition_from="tenant"))
    scan: Mapped[bytes | None] = mapped_column(EncryptedBytes(current, partition_from="tenant"))


def test_column_values_decrypt_in_the_peer_with_the_rows_tenant(
    peer: Peer, db: Path, tmp_path: Path
) -> None:
    config = static_config(db)
    app_db = tmp_path / "app.db"
    engine = create_engine(f"sqlite:///{app_db}")
    Base.metadata.create_all(engine)
    with SessionFactory.from_config(config) as factory:
        FACTORY.append(factory)
        with Session(engine) as session:
            session.add_all(
                [
                    Note(tenant="user-42", body="naïve café 🔐", scan=b"\x00\xff"),
                    Note(tenant="partição-ü", body="second tenant", scan=None),
                ]
            )
            session.commit()
    engine.dispose()
    with sqlite3.connect(app_db) as conn:
        rows = conn.execute("SELECT tenant, body, scan FROM note ORDER BY id").fetchall()
    texts = peer.run(config, [{"op": "decrypt_text", "partition": t, "drr": b} for t, b, _ in rows])
    assert texts == [{"text": "naïve café 🔐"}, {"text": "second tenant"}]
    assert peer.decrypt(config, [(rows[0][0], rows[0][2])]) == [b"\x00\xff"]
    # The peer refuses a value under another row's tenant, as we do.
    [refused] = peer.run(config, [{"op": "decrypt", "partition": "user-43", "drr": rows[0][1]}])
    assert "error" in refused


def test_a_record_the_peer_wrote_loads_as_plaintext(peer: Peer, db: Path, tmp_path: Path) -> None:
    config = static_config(db)
    [result] = peer.run(
        config, [{"op": "encrypt_text", "partition": "user-42", "text": "from the peer"}]
    )
    app_db = tmp_path / "app.db"
    engine = create_engine(f"sqlite:///{app_db}")
    Base.metadata.create_all(engine)
    with sqlite3.connect(app_db) as conn:
        conn.execute(
            "INSERT INTO note (id, tenant, body) VALUES (1, 'user-42', ?)", (result["drr"],)
        )
    with SessionFactory.from_config(config) as factory:
        FACTORY.append(factory)
        with Session(engine) as session:
            assert session.scalars(select(Note)).one().body == "from the peer"
    engine.dispose()
