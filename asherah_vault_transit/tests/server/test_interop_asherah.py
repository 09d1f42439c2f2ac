"""Both ways with the pinned ``asherah`` package (0.5.56) on one SQLite file.

Its wheel is built without the Vault KMS, so the peer writes and reads with its static KMS and
the test moves the system key between the two wrappings itself, the way the Rust core's Vault
KMS stores it: the record's ``Key`` is the base64 of Transit's ``vault:v1:…`` text. Transit calls
of the test go through the operator client (plain httpx), not the plugin.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from asherah_core import Aes256Gcm, SessionFactory
from asherah_core.static import StaticKms

from ._admin import Admin
from .conftest import MakeKms

pytestmark = pytest.mark.vault

PEER_SCRIPT = Path(__file__).resolve().parents[3] / "tests" / "interop" / "peer.py"
PEER_VERSION = "0.5.56"
SERVICE, PRODUCT = "vault-svc", "vault-prod"
SK_ID = f"_SK_{SERVICE}_{PRODUCT}"
MASTER = bytes.fromhex("3c" * 32)
DRIFT_GUARD_PREFIX = "__asherah_internal_config_drift_guard_v1__:"
ITEMS = [("user-42", b"hello"), ("p_under", os.urandom(2000)), ("partition-ü", b"")]


def static_config(db: Path) -> dict[str, Any]:
    return {
        "ServiceName": SERVICE,
        "ProductID": PRODUCT,
        "Metastore": "sqlite",
        "ConnectionString": str(db),
        "KMS": "static",
        "StaticMasterKeyHex": MASTER.hex(),
    }


def peer(db: Path, ops: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run `ops` through the asherah package in a subprocess (tests/interop/peer.py)."""
    request = json.dumps({"config": static_config(db), "ops": list(ops)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASHERAH_CONFIG_DRIFT")}
    done = subprocess.run(
        [sys.executable, str(PEER_SCRIPT)],
        input=request,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert answer["version"] == PEER_VERSION
    results: list[dict[str, Any]] = answer["results"]
    assert not [r for r in results if "error" in r], results
    return results


def peer_encrypt(db: Path) -> list[str]:
    ops = [{"op": "encrypt", "partition": p, "data": _b64(d)} for p, d in ITEMS]
    return [r["drr"] for r in peer(db, ops)]


def peer_decrypt(db: Path, drrs: Sequence[str]) -> list[bytes]:
    ops = [
        {"op": "decrypt", "partition": p, "drr": d} for (p, _), d in zip(ITEMS, drrs, strict=True)
    ]
    return [base64.b64decode(r["data"]) for r in peer(db, ops)]


def sk_key(db: Path) -> bytes:
    """The encrypted system key of the one SK row (the record's ``Key``, base64-decoded)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT key_record FROM encryption_key WHERE id = ?", (SK_ID,)
        ).fetchall()
    assert len(rows) == 1
    return base64.b64decode(json.loads(rows[0][0])["Key"])


def set_sk_key(db: Path, encrypted: bytes) -> None:
    with sqlite3.connect(db) as conn:
        [(record,)] = conn.execute(
            "SELECT key_record FROM encryption_key WHERE id = ?", (SK_ID,)
        ).fetchall()
        value = json.loads(record)
        value["Key"] = _b64(encrypted)
        conn.execute(
            "UPDATE encryption_key SET key_record = ? WHERE id = ?",
            (json.dumps(value, separators=(",", ":")), SK_ID),
        )


def all_rows(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, created, key_record FROM encryption_key ORDER BY id"
        ).fetchall()


def guard_rows(db: Path) -> list[tuple[str, str, str]]:
    return [row for row in all_rows(db) if row[0].startswith(DRIFT_GUARD_PREFIX)]


def test_the_packages_rows_decrypt_here_with_its_sk_wrapped_in_vault(
    admin: Admin, key: str, make_kms: MakeKms, tmp_path: Path
) -> None:
    db = tmp_path / "keys.db"
    drrs = peer_encrypt(db)
    guard = guard_rows(db)
    assert guard, "the package keeps a config drift-guard row in the table"
    # Re-wrap the SK in Vault, the Rust way: Key = base64 of the "vault:v1:…" text.
    system_key = StaticKms(MASTER, Aes256Gcm()).decrypt_key(sk_key(db))
    set_sk_key(db, admin.encrypt(key, system_key).encode())
    assert sk_key(db).startswith(b"vault:v1:")
    before = all_rows(db)
    kms = make_kms(address=admin.address, transit_key=key, token=admin.token)
    with SessionFactory.from_config(static_config(db), kms=kms) as factory:
        for (partition, data), drr in zip(ITEMS, drrs, strict=True):
            with factory.get_session(partition) as session:
                assert session.decrypt_bytes(drr) == data
                assert session.decrypt_bytes(session.encrypt_bytes(data)) == data
    assert all_rows(db) == before, "we reused the package's keys and left its guard row alone"


def test_our_rows_under_vault_decrypt_in_the_package(
    admin: Admin, key: str, make_kms: MakeKms, tmp_path: Path
) -> None:
    db = tmp_path / "keys.db"
    kms = make_kms(address=admin.address, transit_key=key, token=admin.token)
    with SessionFactory.from_config(static_config(db), kms=kms) as factory:
        ours = []
        for partition, data in ITEMS:
            with factory.get_session(partition) as session:
                ours.append(session.encrypt_bytes(data))
    stored = sk_key(db)
    assert stored.startswith(b"vault:v1:")  # as the Rust core stores it
    system_key = admin.decrypt(key, stored.decode())
    assert len(system_key) == 32
    # Hand the file to the package: the SK re-wrapped with its static master key.
    set_sk_key(db, StaticKms(MASTER, Aes256Gcm()).encrypt_key(system_key))
    assert peer_decrypt(db, ours) == [data for _, data in ITEMS]
    guard = guard_rows(db)
    assert guard
    # And back: with the SK in Vault again and the package's guard row now in the table.
    set_sk_key(db, admin.encrypt(key, system_key).encode())
    kms = make_kms(address=admin.address, transit_key=key, token=admin.token)  # (closed above)
    with SessionFactory.from_config(static_config(db), kms=kms) as factory:
        for (partition, data), drr in zip(ITEMS, ours, strict=True):
            with factory.get_session(partition) as session:
                assert session.decrypt_bytes(drr) == data
    assert guard_rows(db) == guard


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
