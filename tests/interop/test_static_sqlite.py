"""Both ways against the ``asherah`` package on one SQLite file and one static master key.

The peer runs in a subprocess (conftest ``Peer``); our side runs here through
``SessionFactory.from_config`` with the very configuration mapping the peer takes. Rows in
the file are read with ``sqlite3`` directly, so neither side's code judges the other.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from asherah_core import SessionError, SessionFactory
from asherah_core.metastore import SqlMetastore

from .conftest import (
    CREATED_TEXT,
    DRIFT_GUARD_PREFIX,
    PARTITIONS,
    PAYLOADS,
    Peer,
    key_rows,
    parent_of,
    static_config,
)

MATRIX = [(partition, data) for partition in PARTITIONS for data in PAYLOADS.values()]


def ours_encrypt(config: dict[str, object], items: list[tuple[str, bytes]]) -> list[str]:
    with SessionFactory.from_config(config) as factory:
        out = []
        for partition, data in items:
            with factory.get_session(partition) as session:
                out.append(session.encrypt_bytes(data))
        return out


def ours_decrypt(config: dict[str, object], items: list[tuple[str, str]]) -> list[bytes]:
    with SessionFactory.from_config(config) as factory:
        out = []
        for partition, drr in items:
            with factory.get_session(partition) as session:
                out.append(session.decrypt_bytes(drr))
        return out


def test_rows_the_peer_writes_decrypt_here(peer: Peer, db: Path) -> None:
    config = static_config(db)
    drrs = peer.encrypt(config, MATRIX)
    assert len(set(drrs)) == len(MATRIX)
    plain = ours_decrypt(config, [(p, d) for (p, _), d in zip(MATRIX, drrs, strict=True)])
    assert plain == [data for _, data in MATRIX]
    # The peer's own keys: one SK, one IK per partition, all read by us.
    ids = {row.id for row in key_rows(db)}
    assert ids == {"_SK_interop-svc_interop-prod"} | {
        f"_IK_{p}_interop-svc_interop-prod" for p in PARTITIONS
    }


def test_text_the_peer_writes_decrypts_here(peer: Peer, db: Path) -> None:
    config = static_config(db)
    text = "naïve café — 日本語テキスト 🔐"
    [result] = peer.run(config, [{"op": "encrypt_text", "partition": "user-42", "text": text}])
    with SessionFactory.from_config(config) as factory, factory.get_session("user-42") as s:
        assert s.decrypt_text(result["drr"]) == text


def test_rows_we_write_decrypt_in_the_peer(peer: Peer, db: Path) -> None:
    config = static_config(db)
    drrs = ours_encrypt(config, MATRIX)
    plain = peer.decrypt(config, [(p, d) for (p, _), d in zip(MATRIX, drrs, strict=True)])
    assert plain == [data for _, data in MATRIX]
    text = "naïve café — 日本語テキスト 🔐"
    with SessionFactory.from_config(config) as factory, factory.get_session("user-42") as s:
        drr = s.encrypt_text(text)
    [result] = peer.run(config, [{"op": "decrypt_text", "partition": "user-42", "drr": drr}])
    assert result == {"text": text}


def test_the_peer_reads_and_writes_the_wal_file_we_create(peer: Peer, db: Path) -> None:
    config = static_config(db)
    [ours] = ours_encrypt(config, [("ours-first", b"ours")])  # a new file: put in WAL mode
    with sqlite3.connect(db) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    [theirs] = peer.encrypt(config, [("theirs-then", b"theirs")])  # a new key, into the WAL
    assert peer.decrypt(config, [("ours-first", ours)]) == [b"ours"]
    assert ours_decrypt(config, [("theirs-then", theirs)]) == [b"theirs"]
    assert {
        "_IK_ours-first_interop-svc_interop-prod",
        "_IK_theirs-then_interop-svc_interop-prod",
    } <= {row.id for row in key_rows(db)}


def test_rows_of_another_partition_are_refused_by_both(peer: Peer, db: Path) -> None:
    """Partition isolation holds across implementations (the test can fail both ways)."""
    config = static_config(db)
    [theirs] = peer.encrypt(config, [("user-42", b"secret")])
    ours = ours_encrypt(config, [("user-42", b"secret")])[0]
    with (
        SessionFactory.from_config(config) as factory,
        factory.get_session("user-43") as s,
        pytest.raises(SessionError, match="another partition"),
    ):
        s.decrypt_bytes(theirs)
    [result] = peer.run(config, [{"op": "decrypt", "partition": "user-43", "drr": ours}])
    assert result["error"].startswith("RuntimeError: ")
    assert peer.decrypt(config, [("user-42", ours)]) == [b"secret"]


def test_we_reuse_the_peers_keys(peer: Peer, db: Path) -> None:
    """After the peer made the SK and the IKs, our factory makes no new row and names the
    peer's IKs in its records."""
    config = static_config(db)
    theirs = peer.encrypt(config, [(p, b"x") for p in PARTITIONS])
    before = key_rows(db)
    ours = ours_encrypt(config, [(p, b"y") for p in PARTITIONS for _ in range(3)])
    assert key_rows(db) == before, "our factory wrote keys instead of reusing the peer's"
    assert {parent_of(d) for d in ours} == {parent_of(d) for d in theirs}


def test_the_peer_reuses_our_keys(peer: Peer, db: Path) -> None:
    config = static_config(db)
    ours = ours_encrypt(config, [(p, b"x") for p in PARTITIONS])
    before = key_rows(db)
    assert len(before) == 1 + len(PARTITIONS)
    theirs = peer.encrypt(config, [(p, b"y") for p in PARTITIONS for _ in range(3)])
    assert key_rows(db) == before, "the peer wrote keys instead of reusing ours"
    assert {parent_of(d) for d in theirs} == {parent_of(d) for d in ours}


def test_a_new_partition_goes_under_the_other_sides_system_key(peer: Peer, db: Path) -> None:
    """Each side adds only an IK for a new partition, sealed under the other side's SK."""
    config = static_config(db)
    peer.encrypt(config, [("made-by-peer", b"x")])
    [sk] = [row for row in key_rows(db) if row.id.startswith("_SK_")]
    [ours] = ours_encrypt(config, [("made-by-us", b"ours")])
    rows = key_rows(db)
    [new_ik] = [row for row in rows if row.id == "_IK_made-by-us_interop-svc_interop-prod"]
    assert new_ik.record["ParentKeyMeta"] == {"KeyId": sk.id, "Created": sk.record["Created"]}
    assert [row for row in rows if row.id.startswith("_SK_")] == [sk]
    # And the other way round: the peer's new IK goes under the same SK, which we read.
    [theirs] = peer.encrypt(config, [("made-by-peer-2", b"theirs")])
    [peer_ik] = [r for r in key_rows(db) if r.id == "_IK_made-by-peer-2_interop-svc_interop-prod"]
    assert peer_ik.record["ParentKeyMeta"] == new_ik.record["ParentKeyMeta"]
    assert peer.decrypt(config, [("made-by-us", ours)]) == [b"ours"]
    assert ours_decrypt(config, [("made-by-peer-2", theirs)]) == [b"theirs"]


def test_we_revoke_a_peer_key_and_make_a_later_one_the_peer_then_uses(peer: Peer, db: Path) -> None:
    """Revoked in the same minute it was made: we make a new IK with a later ``Created``
    (not the revoked key's), and the peer's fresh factory encrypts under ours."""
    config = static_config(db)
    [old] = peer.encrypt(config, [("user-42", b"before")])
    ik_id, ik_created = parent_of(old)
    with SqlMetastore(f"sqlite:///{db}") as metastore:
        assert metastore.revoke(ik_id, ik_created)
    [row] = [r for r in key_rows(db) if r.id == ik_id]
    assert row.record["Revoked"] is True
    assert peer.decrypt(config, [("user-42", old)]) == [b"before"]  # the peer reads our flag
    [ours] = ours_encrypt(config, [("user-42", b"after")])
    assert parent_of(ours)[0] == ik_id
    assert parent_of(ours)[1] > ik_created
    [theirs] = peer.encrypt(config, [("user-42", b"later")])
    assert parent_of(theirs) == parent_of(ours)
    assert ours_decrypt(config, [("user-42", old), ("user-42", theirs)]) == [b"before", b"later"]


def test_the_peer_makes_a_new_key_after_we_revoke_its_own(peer: Peer, db: Path) -> None:
    """We revoke (SqlMetastore.revoke) an IK the peer made; a fresh peer factory makes a new
    IK; the peer's rows under both IKs decrypt here.

    The peer truncates a new key's ``Created`` to the minute and, when that collides with the
    revoked row (revoked in the minute it was made), 0.5.56 refuses to encrypt for the
    partition until the minute ends. So the test waits for the next minute before asking
    the peer for a new key.
    """
    config = static_config(db)
    [old] = peer.encrypt(config, [("user-42", b"before")])
    ik_id, ik_created = parent_of(old)
    with SqlMetastore(f"sqlite:///{db}") as metastore:
        assert metastore.revoke(ik_id, ik_created)
    time.sleep(max(0.0, ik_created + 60.5 - time.time()))
    [new] = peer.encrypt(config, [("user-42", b"after")])
    new_id, new_created = parent_of(new)
    assert new_id == ik_id
    assert new_created > ik_created
    assert [r.record["Created"] for r in key_rows(db) if r.id == ik_id] == [ik_created, new_created]
    assert ours_decrypt(config, [("user-42", old), ("user-42", new)]) == [b"before", b"after"]
    # Our fresh factory uses the peer's new, valid IK: no new row.
    before = key_rows(db)
    [ours] = ours_encrypt(config, [("user-42", b"ours")])
    assert parent_of(ours) == parent_of(new)
    assert key_rows(db) == before


def _schema(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA table_info(encryption_key)").fetchall()


def _primary_key_index(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        [(name,)] = conn.execute(
            "SELECT name FROM pragma_index_list('encryption_key') WHERE origin = 'pk'"
        ).fetchall()
        return conn.execute(f"PRAGMA index_info({name})").fetchall()


def test_our_table_is_the_peers_table(peer: Peer, tmp_path: Path) -> None:
    """create_table() gives the columns, types, constraints and key the peer creates, and the
    peer works on a table we created."""
    theirs, ours = tmp_path / "theirs.db", tmp_path / "ours.db"
    peer.encrypt(static_config(theirs), [("user-42", b"x")])
    with SqlMetastore(f"sqlite:///{ours}") as metastore:
        metastore.create_table()
    assert _schema(ours) == _schema(theirs)
    assert _primary_key_index(ours) == _primary_key_index(theirs)
    config = static_config(ours)
    [drr] = peer.encrypt(config, [("user-42", b"on our table")])
    assert ours_decrypt(config, [("user-42", drr)]) == [b"on our table"]


def test_created_is_stored_as_the_same_text(peer: Peer, db: Path) -> None:
    """Both sides store ``created`` as UTC text 'YYYY-MM-DD HH:MM:SS' equal to the record's
    ``Created``, so each finds the other's rows by exact (id, created)."""
    config = static_config(db)
    peer.encrypt(config, [("by-peer", b"x")])
    ours_encrypt(config, [("by-us", b"x")])
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT id, typeof(created), created, "
            "datetime(json_extract(key_record, '$.Created'), 'unixepoch') FROM encryption_key"
        ).fetchall()
    assert {r[0] for r in rows} >= {
        "_IK_by-peer_interop-svc_interop-prod",
        "_IK_by-us_interop-svc_interop-prod",
    }
    for key_id, kind, created, expected in rows:
        assert kind == "text"
        assert CREATED_TEXT.fullmatch(created)
        if not key_id.startswith(DRIFT_GUARD_PREFIX):
            assert created == expected


def test_records_have_the_same_shape(peer: Peer, db: Path) -> None:
    """Compact JSON, the same field order, for data rows and for key records."""
    config = static_config(db)
    [theirs] = peer.encrypt(config, [("by-peer", b"x")])
    [ours] = ours_encrypt(config, [("by-us", b"x")])

    def compact(text: str) -> str:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)

    def shape(value: object) -> object:
        if isinstance(value, dict):
            return [(k, shape(v)) for k, v in value.items()]
        return type(value).__name__

    assert theirs == compact(theirs)
    assert ours == compact(ours)
    assert shape(json.loads(ours)) == shape(json.loads(theirs))
    with sqlite3.connect(db) as conn:
        records = dict(
            conn.execute(
                "SELECT id, key_record FROM encryption_key WHERE id LIKE '_IK_by-%'"
            ).fetchall()
        )
    mine, peers = (
        records["_IK_by-us_interop-svc_interop-prod"],
        records["_IK_by-peer_interop-svc_interop-prod"],
    )
    assert mine == compact(mine)
    assert shape(json.loads(mine)) == shape(json.loads(peers))


def test_we_leave_the_peers_drift_guard_row_alone(peer: Peer, db: Path) -> None:
    """The peer's guard row records its configuration; our writes never touch it, and the
    peer keeps starting (no ASHERAH_CONFIG_DRIFT_FORCE_RUN) after we wrote keys."""
    config = static_config(db)
    peer.encrypt(config, [("user-42", b"x")])

    def guard() -> list[tuple[str, str, str]]:
        with sqlite3.connect(db) as conn:
            return conn.execute(
                "SELECT id, created, key_record FROM encryption_key WHERE id LIKE ?",
                (DRIFT_GUARD_PREFIX + "%",),
            ).fetchall()

    [before] = guard()
    with SessionFactory.from_config(config) as factory:
        listed = [key_id for key_id, _, _ in factory.metastore.keys(prefix="")]
        assert listed
        assert not [key_id for key_id in listed if key_id.startswith(DRIFT_GUARD_PREFIX)]
        factory.get_session("new-partition").encrypt_bytes(b"x")
    assert guard() == [before]
    assert peer.encrypt(config, [("new-partition", b"y")])


@pytest.mark.parametrize(
    "form",
    ["sqlite://{absolute}", "{absolute}", "sqlite://keys.db", "keys.db"],
    ids=["sqlite-url-absolute", "absolute-path", "sqlite-url-relative", "relative-path"],
)
def test_connection_string_forms_open_the_same_file(
    peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """``ConnectionString`` names the same file for both sides, in each form the peer reads
    (``sqlite://`` stripped, the rest a path, relative to the working directory)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # the peer's process inherits it
    expected = workdir / "keys.db"
    config = {**static_config(expected), "ConnectionString": form.format(absolute=expected)}
    [theirs] = peer.encrypt(config, [("user-42", b"x")])
    assert expected.is_file()
    before = key_rows(expected)
    [ours] = ours_encrypt(config, [("user-42", b"y")])
    assert ours_decrypt(config, [("user-42", theirs)]) == [b"x"]
    assert key_rows(expected) == before
    assert parent_of(ours) == parent_of(theirs)
    assert sorted(p.name for p in workdir.rglob("*")) == ["keys.db"]


@pytest.mark.parametrize("name", ["k%41eys.db", "keys?.db", "k%3Fe ys#1.db"])
def test_a_path_with_percent_or_question_mark_opens_the_same_file(
    peer: Peer, tmp_path: Path, name: str
) -> None:
    """The peer takes a SQLite ``ConnectionString`` literally: ``%41`` and ``?`` are part of the
    file name, and ours opens that same file (not ``kAeys.db``, not ``keys``)."""
    expected = tmp_path / name
    config = {**static_config(expected), "ConnectionString": f"sqlite://{expected}"}
    [theirs] = peer.encrypt(config, [("user-42", b"x")])
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    [ours] = ours_encrypt(config, [("user-42", b"y")])
    assert ours_decrypt(config, [("user-42", theirs)]) == [b"x"]
    assert parent_of(ours) == parent_of(theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
