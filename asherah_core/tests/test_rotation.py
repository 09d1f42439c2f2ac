"""Rewrap and re-encrypt: rows moved off an old, revoked or expired intermediate key."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from asherah_core import (
    CryptoError,
    CryptoPolicy,
    DataRowRecord,
    RecordError,
    SessionError,
    SessionFactory,
)

if TYPE_CHECKING:
    from conftest import CountingMetastore, FactoryMaker, FakeClock

IK = "_IK_p1_svc_prod"
DATA = b"a row that must survive every rotation"


def parent(text: str) -> tuple[str, int]:
    meta = json.loads(text)["Key"]["ParentKeyMeta"]
    return meta["KeyId"], meta["Created"]


def revoke_current(factory: SessionFactory, metastore: CountingMetastore, text: str) -> None:
    assert metastore.revoke(*parent(text))


def test_a_record_under_the_current_key_comes_back_as_it_was(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    text = session.encrypt_bytes(DATA)
    assert session.rewrap(text) is text
    record = DataRowRecord.from_json(text)
    assert session.rewrap_record(record) is record
    (result,) = session.rewrap_many([text])
    assert (result.status, result.record, result.error) == ("current", text, None)


def test_rewrap_after_a_revocation_moves_the_row_key_and_keeps_the_data(
    make_factory: FactoryMaker, metastore: CountingMetastore, clock: FakeClock
) -> None:
    writer = make_factory()
    old = writer.get_session("p1").encrypt_bytes(DATA)
    old_ik = parent(old)
    clock.advance(120)
    assert metastore.revoke(*old_ik)

    with make_factory() as operator:  # a fresh process: sees the revocation at once
        session = operator.get_session("p1")
        new = session.rewrap(old)
        assert parent(new)[0] == IK
        assert parent(new)[1] > old_ik[1]
        assert f'"Created":{old_ik[1]}}}' not in new
        before, after = json.loads(old), json.loads(new)
        assert after["Data"] == before["Data"]  # the payload is not encrypted again
        assert after["Key"]["Created"] == before["Key"]["Created"]
        assert after["Key"]["Key"] != before["Key"]["Key"]
        assert session.decrypt_bytes(new) == DATA
        assert session.rewrap(new) is new  # idempotent
    # Any reader (here: the writer's factory with its warm cache) opens the new record.
    assert writer.get_session("p1").decrypt_bytes(new) == DATA


def test_rewrap_of_an_expired_key(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(expire_after=timedelta(days=1))
    factory = make_factory(policy=policy)
    session = factory.get_session("p1")
    old = session.encrypt_bytes(DATA)
    clock.advance(2 * 86400)
    new = session.rewrap(old)
    assert parent(new) != parent(old)
    assert session.decrypt_bytes(new) == DATA
    assert parent(session.encrypt_bytes(b"x")) == parent(new)  # the same current key


def test_reencrypt_makes_a_new_row_key_and_new_data_even_when_current(
    factory: SessionFactory,
) -> None:
    session = factory.get_session("p1")
    old = session.encrypt_bytes(DATA)
    new = session.reencrypt(old)
    assert parent(new) == parent(old)
    assert json.loads(new)["Data"] != json.loads(old)["Data"]
    assert json.loads(new)["Key"]["Key"] != json.loads(old)["Key"]["Key"]
    assert session.decrypt_bytes(new) == DATA
    typed = session.reencrypt_record(DataRowRecord.from_json(old))
    assert session.decrypt(typed) == DATA


def test_reencrypt_after_a_revocation_uses_the_new_key(
    make_factory: FactoryMaker, metastore: CountingMetastore, clock: FakeClock
) -> None:
    old = make_factory().get_session("p1").encrypt_bytes(DATA)
    clock.advance(120)
    metastore.revoke(*parent(old))
    session = make_factory().get_session("p1")
    new = session.reencrypt(old)
    assert parent(new) != parent(old)
    assert session.decrypt_bytes(new) == DATA


def test_a_tampered_record_is_refused_and_never_rewrapped(
    make_factory: FactoryMaker, metastore: CountingMetastore, clock: FakeClock
) -> None:
    old = make_factory().get_session("p1").encrypt_bytes(DATA)
    clock.advance(120)
    metastore.revoke(*parent(old))
    session = make_factory().get_session("p1")
    record = json.loads(old)
    data = bytearray(DataRowRecord.from_json(old).data)
    data[0] ^= 1
    record["Data"] = base64.b64encode(bytes(data)).decode()
    bad = json.dumps(record)
    with pytest.raises(CryptoError, match="does not open"):
        session.rewrap(bad)
    with pytest.raises(CryptoError):
        session.reencrypt(bad)
    (result,) = session.rewrap_many([bad])
    assert result.status == "failed"
    assert isinstance(result.error, CryptoError)
    assert result.record is None


def test_rewrap_refuses_a_record_of_another_partition(factory: SessionFactory) -> None:
    other = factory.get_session("p2").encrypt_bytes(DATA)
    with pytest.raises(SessionError, match="another partition"):
        factory.get_session("p1").rewrap(other)


@pytest.mark.parametrize("bad", ["", "{}", "not json", b"\xff", 42])
def test_rewrap_of_garbage_is_a_record_error(factory: SessionFactory, bad: Any) -> None:
    with pytest.raises(RecordError):
        factory.get_session("p1").rewrap(bad)


def test_rewrap_many_reports_each_record(
    make_factory: FactoryMaker, metastore: CountingMetastore, clock: FakeClock
) -> None:
    writer = make_factory().get_session("p1")
    rows = [writer.encrypt_bytes(bytes([i]) * 100) for i in range(5)]
    clock.advance(120)
    metastore.revoke(*parent(rows[0]))
    session = make_factory().get_session("p1")
    current = session.encrypt_bytes(b"now")
    results = session.rewrap_many([*rows, current, "garbage"])
    assert [r.status for r in results] == ["rewrapped"] * 5 + ["current", "failed"]
    for i, result in enumerate(results[:5]):
        assert result.record is not None
        assert session.decrypt_bytes(result.record) == bytes([i]) * 100
        assert parent(result.record) == parent(current)


def test_coroutine_versions(
    make_factory: FactoryMaker, metastore: CountingMetastore, clock: FakeClock
) -> None:
    old = make_factory().get_session("p1").encrypt_bytes(DATA)
    clock.advance(120)
    metastore.revoke(*parent(old))
    session = make_factory().get_session("p1")

    async def go() -> None:
        new = await session.rewrap_async(old)
        assert parent(new) != parent(old)
        assert await session.rewrap_async(new) is new
        assert await session.decrypt_bytes_async(new) == DATA
        again = await session.reencrypt_async(old)
        assert await session.decrypt_bytes_async(again) == DATA
        typed = await session.rewrap_record_async(DataRowRecord.from_json(old))
        assert session.decrypt(typed) == DATA
        typed2 = await session.reencrypt_record_async(typed)
        assert session.decrypt(typed2) == DATA
        results = await session.rewrap_many_async([old, new, "x"])
        assert [r.status for r in results] == ["rewrapped", "current", "failed"]

    asyncio.run(go())


def test_rewrap_with_caches_off_zeroes_and_still_works(
    make_factory: FactoryMaker, metastore: CountingMetastore, clock: FakeClock
) -> None:
    policy = CryptoPolicy(cache_intermediate_keys=False, cache_system_keys=False)
    old = make_factory(policy=policy).get_session("p1").encrypt_bytes(DATA)
    clock.advance(120)
    metastore.revoke(*parent(old))
    session = make_factory(policy=policy).get_session("p1")
    new = session.rewrap(old)
    assert parent(new) != parent(old)
    assert session.decrypt_bytes(new) == DATA


def test_rewrap_on_a_closed_session_fails(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    text = session.encrypt_bytes(DATA)
    session.close()
    with pytest.raises(SessionError, match="closed"):
        session.rewrap(text)
