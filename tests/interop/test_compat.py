"""The drop-in API: ``from asherah_core import compat as asherah`` with the configuration
mapping the ``asherah`` package takes, method for method, on one shared SQLite file."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from asherah_core import compat as asherah

from .conftest import PAYLOADS, Peer, key_rows, parent_of, static_config

TEXT = "Grüße aus Köln — 東京 🔐"


@pytest.fixture
def module_api() -> Iterator[None]:
    yield
    asherah.shutdown()


def test_session_methods_round_trip_with_the_peer(peer: Peer, db: Path) -> None:
    config = static_config(db)
    with asherah.SessionFactory(config) as factory, factory.get_session("user-42") as session:
        ours = [session.encrypt_bytes(data) for data in PAYLOADS.values()]
        ours_text = session.encrypt_text(TEXT)
    ops = [{"op": "decrypt", "partition": "user-42", "drr": drr} for drr in ours]
    ops.append({"op": "decrypt_text", "partition": "user-42", "drr": ours_text})
    ops += [
        {"op": "encrypt", "partition": "user-42", "data": base64.b64encode(d).decode()}
        for d in PAYLOADS.values()
    ]
    ops.append({"op": "encrypt_text", "partition": "user-42", "text": TEXT})
    results = peer.run(config, ops)
    n = len(PAYLOADS)
    assert [base64.b64decode(r["data"]) for r in results[:n]] == list(PAYLOADS.values())
    assert results[n] == {"text": TEXT}
    theirs = [r["drr"] for r in results[n + 1 : 2 * n + 1]]
    with asherah.SessionFactory.from_config(config) as factory:
        session = factory.get_session("user-42")
        assert [session.decrypt_bytes(drr) for drr in theirs] == list(PAYLOADS.values())
        assert session.decrypt_text(results[-1]["drr"]) == TEXT
    assert {parent_of(d) for d in theirs} == {parent_of(d) for d in ours}


def test_async_methods_round_trip_with_the_peer(peer: Peer, db: Path) -> None:
    config = static_config(db)
    payload = PAYLOADS["1k"]

    async def ours_encrypt() -> list[str]:
        with asherah.SessionFactory(config) as factory:
            session = factory.get_session("user-42")
            return list(
                await asyncio.gather(*(session.encrypt_bytes_async(payload) for _ in range(4)))
            )

    ours = asyncio.run(ours_encrypt())
    results = peer.run(
        config,
        [{"op": "decrypt", "partition": "user-42", "drr": d, "async": True} for d in ours]
        + [
            {
                "op": "encrypt",
                "partition": "user-42",
                "data": base64.b64encode(payload).decode(),
                "async": True,
            }
        ],
    )
    assert [base64.b64decode(r["data"]) for r in results[:-1]] == [payload] * 4
    theirs = results[-1]["drr"]

    async def ours_decrypt() -> bytes:
        with asherah.SessionFactory(config) as factory:
            return await factory.get_session("user-42").decrypt_bytes_async(theirs)

    assert asyncio.run(ours_decrypt()) == payload


def test_module_level_api_with_the_same_config(peer: Peer, db: Path, module_api: None) -> None:
    """setup / encrypt_string / decrypt_bytes / … as the package's module functions."""
    config = static_config(db)
    asherah.setup(config)
    assert asherah.get_setup_status()
    ours = asherah.encrypt_bytes("user-42", b"module api")
    ours_text = asherah.encrypt_string("user-42", TEXT)
    ours_async = asyncio.run(asherah.encrypt_string_async("user-42", TEXT))
    results = peer.run(
        config,
        [
            {"op": "decrypt", "partition": "user-42", "drr": ours},
            {"op": "decrypt_text", "partition": "user-42", "drr": ours_text},
            {"op": "decrypt_text", "partition": "user-42", "drr": ours_async},
            {"op": "encrypt", "partition": "user-42", "data": base64.b64encode(b"theirs").decode()},
            {"op": "encrypt_text", "partition": "user-42", "text": TEXT},
        ],
        api="module",
    )
    assert base64.b64decode(results[0]["data"]) == b"module api"
    assert results[1] == results[2] == {"text": TEXT}
    assert asherah.decrypt_bytes("user-42", results[3]["drr"]) == b"theirs"
    assert asherah.decrypt_string("user-42", results[4]["drr"]) == TEXT
    assert asyncio.run(asherah.decrypt_bytes_async("user-42", results[3]["drr"])) == b"theirs"
    asherah.shutdown()
    assert not asherah.get_setup_status()
    assert len(key_rows(db)) == 2  # one SK, one IK: shared by both


def test_the_same_records_come_out_of_both(peer: Peer, db: Path) -> None:
    """A record from either side is compact JSON with the same fields in the same order."""
    config = static_config(db)
    with asherah.SessionFactory(config) as factory:
        ours = factory.get_session("user-42").encrypt_bytes(b"shape")
    [theirs] = peer.encrypt(config, [("user-42", b"shape")])

    def skeleton(text: str) -> object:
        def walk(value: object) -> object:
            if isinstance(value, dict):
                return [(k, walk(v)) for k, v in value.items()]
            return type(value).__name__

        return walk(json.loads(text))

    assert skeleton(ours) == skeleton(theirs)
    assert " " not in ours


def test_a_full_configuration_is_taken_by_both(peer: Peer, db: Path) -> None:
    """Every policy and cache key the package documents, one value each, ``None`` as absent."""
    config = {
        **static_config(db),
        "ExpireAfter": 90 * 24 * 3600,
        "CheckInterval": 600,
        "EnableSessionCaching": True,
        "SessionCacheMaxSize": 100,
        "SessionCacheDuration": 300,
        "Verbose": False,
        "EnableRegionSuffix": False,
        "RegionMap": None,
        "PreferredRegion": None,
    }
    [theirs] = peer.encrypt(config, [("user-42", b"full")])
    before = key_rows(db)
    with asherah.SessionFactory(config) as factory:
        session = factory.get_session("user-42")
        assert session.decrypt_bytes(theirs) == b"full"
        ours = session.encrypt_bytes(b"ours")
    assert key_rows(db) == before
    assert peer.decrypt(config, [("user-42", ours)]) == [b"ours"]
