"""Both ways against the ``asherah`` package through LocalStack's KMS in three regions.

Both sides take the same PascalCase configuration (``KMS: aws``, ``RegionMap``,
``PreferredRegion``); ours builds the ``aws-v2`` plugin from it. Both reach LocalStack
through ``KmsCounter``, a proxy that counts KMS requests, so the tests can say which side
called KMS and how often.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from asherah_core import SessionFactory

from .conftest import (
    PAYLOADS,
    PREFERRED,
    Config,
    KmsCounter,
    Peer,
    ids_of,
    key_rows,
    parent_of,
)

PARTITIONS = ("user-1", "user-2")
ITEMS = [(p, data) for p in PARTITIONS for data in PAYLOADS.values()]
WRAP_CALLS = ("GenerateDataKey", "Encrypt")


def ours_encrypt(config: Config, items: list[tuple[str, bytes]]) -> list[str]:
    with SessionFactory.from_config(config) as factory:
        return [factory.get_session(p).encrypt_bytes(d) for p, d in items]


def ours_decrypt(config: Config, items: list[tuple[str, str]]) -> list[bytes]:
    with SessionFactory.from_config(config) as factory:
        return [factory.get_session(p).decrypt_bytes(d) for p, d in items]


def only(calls: Counter[str]) -> dict[str, int]:
    return {name: n for name, n in calls.items() if n}


def test_peer_rows_decrypt_here_with_one_kms_call(
    aws_peer: Peer, aws_config: Config, aws_env: KmsCounter
) -> None:
    theirs = aws_peer.encrypt(aws_config, ITEMS)
    # Rust core: GenerateDataKey in the preferred region, Encrypt in each other one.
    assert only(aws_env.take()) == {"GenerateDataKey": 1, "Encrypt": 2}
    plain = ours_decrypt(aws_config, [(p, d) for (p, _), d in zip(ITEMS, theirs, strict=True)])
    assert plain == [d for _, d in ITEMS]
    assert only(aws_env.take()) == {"Decrypt": 1}


def test_our_rows_decrypt_in_the_peer_with_one_kms_call(
    aws_peer: Peer, aws_config: Config, aws_env: KmsCounter
) -> None:
    ours = ours_encrypt(aws_config, ITEMS)
    assert only(aws_env.take()) == {"GenerateDataKey": 1, "Encrypt": 2}
    plain = aws_peer.decrypt(aws_config, [(p, d) for (p, _), d in zip(ITEMS, ours, strict=True)])
    assert plain == [d for _, d in ITEMS]
    assert only(aws_env.take()) == {"Decrypt": 1}


def test_we_reuse_the_peers_system_key(
    aws_peer: Peer, aws_config: Config, aws_env: KmsCounter
) -> None:
    theirs = aws_peer.encrypt(aws_config, [("user-1", b"x")])
    before = key_rows(aws_config_db(aws_config))
    aws_env.take()
    ours = ours_encrypt(aws_config, [("user-1", b"a"), ("user-new", b"b")])
    assert only(aws_env.take()) == {"Decrypt": 1}, "we wrapped a new system key"
    after = key_rows(aws_config_db(aws_config))
    new = sorted(set(ids_of(after)) - set(ids_of(before)))
    assert [key_id for key_id, _ in new] == ["_IK_user-new_interop-svc_interop-prod"]
    assert parent_of(ours[0]) == parent_of(theirs[0])
    assert aws_peer.decrypt(aws_config, [("user-new", ours[1])]) == [b"b"]


def test_the_peer_reuses_our_system_key(
    aws_peer: Peer, aws_config: Config, aws_env: KmsCounter
) -> None:
    ours = ours_encrypt(aws_config, [("user-1", b"x")])
    before = key_rows(aws_config_db(aws_config))
    aws_env.take()
    theirs = aws_peer.encrypt(aws_config, [("user-1", b"a"), ("user-new", b"b")])
    assert only(aws_env.take()) == {"Decrypt": 1}, "the peer wrapped a new system key"
    after = key_rows(aws_config_db(aws_config))
    new = sorted(set(ids_of(after)) - set(ids_of(before)))
    assert [key_id for key_id, _ in new] == ["_IK_user-new_interop-svc_interop-prod"]
    assert parent_of(theirs[0]) == parent_of(ours[0])
    assert ours_decrypt(aws_config, [("user-new", theirs[1])]) == [b"b"]


def test_both_system_key_envelopes_name_every_region(
    aws_peer: Peer, aws_config: Config, aws_env: KmsCounter, tmp_path: Path
) -> None:
    """Each side's SK ``Key`` is the multi-region envelope with a copy for every region."""
    aws_peer.encrypt(aws_config, [("user-1", b"x")])
    other = {**aws_config, "ConnectionString": str(tmp_path / "ours.db")}
    ours_encrypt(other, [("user-1", b"x")])

    def envelope(config: Config) -> dict[str, Any]:
        [sk] = [r for r in key_rows(aws_config_db(config)) if r.id.startswith("_SK_")]
        document: dict[str, Any] = json.loads(base64.b64decode(sk.record["Key"]))
        return document

    theirs, ours = envelope(aws_config), envelope(other)
    assert list(ours) == list(theirs) == ["encryptedKey", "kmsKeks"]
    regions = {(k["region"], k["arn"]) for k in theirs["kmsKeks"]}
    assert regions == set(aws_config["RegionMap"].items())
    assert {(k["region"], k["arn"]) for k in ours["kmsKeks"]} == regions
    assert [list(k) for k in ours["kmsKeks"]] == [list(k) for k in theirs["kmsKeks"]]


def test_kms_calls_per_thousand_rows(
    aws_peer: Peer,
    aws_config: Config,
    aws_env: KmsCounter,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """1,000 rows over 10 partitions, each side on its own file: KMS calls to write them in
    one factory, then to read them in a fresh one. Both wrap one SK and unwrap it once."""
    items = [(f"tenant-{i % 10}", b"r" * 1024) for i in range(1000)]
    theirs_config = {**aws_config, "ConnectionString": str(tmp_path / "theirs.db")}
    ours_config = {**aws_config, "ConnectionString": str(tmp_path / "ours.db")}
    aws_env.take()
    theirs = aws_peer.encrypt(theirs_config, items)
    peer_write = only(aws_env.take())
    aws_peer.decrypt(theirs_config, [(p, d) for (p, _), d in zip(items, theirs, strict=True)])
    peer_read = only(aws_env.take())
    ours = ours_encrypt(ours_config, items)
    our_write = only(aws_env.take())
    ours_decrypt(ours_config, [(p, d) for (p, _), d in zip(items, ours, strict=True)])
    our_read = only(aws_env.take())
    with capsys.disabled():
        print(
            f"\nKMS calls per 1,000 rows over 10 partitions (LocalStack, 3 regions): "
            f"asherah {json.dumps(peer_write)} to write, {json.dumps(peer_read)} to read; "
            f"ours {json.dumps(our_write)} to write, {json.dumps(our_read)} to read"
        )
    assert peer_write == our_write == {"GenerateDataKey": 1, "Encrypt": 2}
    assert peer_read == our_read == {"Decrypt": 1}
    assert len(key_rows(tmp_path / "ours.db")) == len(key_rows(tmp_path / "theirs.db")) == 11


def aws_config_db(config: Config) -> Path:
    return Path(str(config["ConnectionString"]))


def test_preferred_region_is_asked_first_by_both(
    aws_peer: Peer, aws_config: Config, aws_env: KmsCounter
) -> None:
    """Both sides unwrap in the preferred region when it answers."""
    [theirs] = aws_peer.encrypt(aws_config, [("user-1", b"x")])
    aws_env.take()
    ours_decrypt(aws_config, [("user-1", theirs)])
    assert aws_env.by_region() == {("Decrypt", PREFERRED): 1}
    aws_env.take()
    aws_peer.decrypt(aws_config, [("user-1", theirs)])
    assert aws_env.by_region() == {("Decrypt", PREFERRED): 1}
