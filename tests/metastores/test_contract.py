"""The metastore contract, run against every metastore: memory, SQLite, PostgreSQL, MySQL and
DynamoDB (the last three on real servers, see conftest.py)."""

from __future__ import annotations

import threading
from types import MappingProxyType

import pytest

from asherah_core.errors import MetastoreError
from asherah_core.records import EnvelopeKeyRecord, KeyMeta

from ._backends import KINDS, Backend, kind_params

pytestmark = pytest.mark.parametrize("backend", kind_params(*KINDS), indirect=True)

T0 = 1_796_221_020  # 2026-12-02 14:17 UTC, a whole minute as the key hierarchy makes them
SK = KeyMeta("_SK_svc_prod", T0 - 3600)


def record(created: int = T0, key: bytes = b"\x01" * 60, **kw: object) -> EnvelopeKeyRecord:
    return EnvelopeKeyRecord(created, key, kw.pop("parent", SK), **kw)  # type: ignore[arg-type]


def test_absent_rows_load_as_none(backend: Backend) -> None:
    metastore = backend.make()
    key_id = backend.new_id()
    assert metastore.load(key_id, T0) is None
    assert metastore.load_latest(key_id) is None


def test_a_stored_row_loads_by_id_and_created(backend: Backend) -> None:
    metastore = backend.make()
    key_id = backend.new_id()
    ik = record(key=bytes(range(256)) * 2)
    sk = EnvelopeKeyRecord(T0, b"kms envelope bytes")
    assert metastore.store(key_id, T0, ik)
    assert metastore.store(key_id + "_sk", T0, sk)

    again = backend.make()  # another connection, as another process would have
    loaded = again.load(key_id, T0)
    assert loaded == ik
    assert loaded is not None
    assert loaded.encrypted_key == ik.encrypted_key
    assert loaded.parent_key_meta == SK
    assert again.load(key_id + "_sk", T0) == sk
    assert again.load(key_id, T0 + 1) is None
    assert again.load_latest(key_id) == ik


def test_a_duplicate_store_returns_false_and_keeps_the_first_row(backend: Backend) -> None:
    metastore = backend.make()
    key_id = backend.new_id()
    first = record(key=b"first" * 8)
    assert metastore.store(key_id, T0, first) is True
    assert metastore.store(key_id, T0, record(key=b"second" * 8)) is False
    assert backend.make().store(key_id, T0, record(key=b"third" * 8)) is False
    loaded = metastore.load(key_id, T0)
    assert loaded is not None
    assert loaded.encrypted_key == first.encrypted_key


def test_concurrent_stores_of_one_row_have_one_winner(backend: Backend) -> None:
    key_id = backend.new_id()
    metastores = [backend.make() for _ in range(6)]
    start = threading.Barrier(len(metastores))
    results: list[bool] = []
    errors: list[BaseException] = []

    def store(index: int) -> None:
        try:
            start.wait()
            results.append(metastores[index].store(key_id, T0, record(key=bytes([index]) * 32)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=store, args=(i,)) for i in range(len(metastores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == [False] * (len(metastores) - 1) + [True]
    loaded = metastores[0].load(key_id, T0)
    assert loaded is not None
    assert len(set(loaded.encrypted_key)) == 1


def test_load_latest_orders_by_created_not_by_insertion(backend: Backend) -> None:
    metastore = backend.make()
    key_id = backend.new_id()
    times = [T0 + 60, T0 + 7 * 86400, T0, T0 + 1, T0 + 86400]
    for created in times:
        assert metastore.store(key_id, created, record(created, key=created.to_bytes(8, "big")))
        latest = metastore.load_latest(key_id)
        assert latest is not None
        assert latest.created == max(times[: times.index(created) + 1])
    for created in times:
        loaded = metastore.load(key_id, created)
        assert loaded is not None
        assert loaded.created == created
        assert loaded.encrypted_key == created.to_bytes(8, "big")
    other = backend.new_id()
    metastore.store(other, T0 + 30 * 86400, record(T0 + 30 * 86400))
    latest = metastore.load_latest(key_id)
    assert latest is not None
    assert latest.created == T0 + 7 * 86400  # another id's later row does not count


def test_the_revoked_flag_is_stored_and_set(backend: Backend) -> None:
    metastore = backend.make()
    key_id = backend.new_id()
    assert metastore.store(key_id, T0, record(revoked=True))
    loaded = metastore.load(key_id, T0)
    assert loaded is not None
    assert loaded.revoked is True

    assert metastore.store(key_id, T0 + 60, record(T0 + 60))
    assert metastore.revoke(key_id, T0 + 60) is True
    revoked = backend.make().load(key_id, T0 + 60)
    assert revoked is not None
    assert revoked.revoked is True
    assert revoked.encrypted_key == record().encrypted_key
    assert revoked.created == T0 + 60
    latest = metastore.load_latest(key_id)
    assert latest is not None
    assert latest.created == T0 + 60  # revoking does not move the row
    assert metastore.revoke(key_id, T0 + 120) is False


def test_large_records_round_trip(backend: Backend) -> None:
    metastore = backend.make()
    key_id = backend.new_id()
    big = bytes(range(256)) * 64  # 16 KiB: a KMS envelope with many regions is far smaller
    assert metastore.store(key_id, T0, record(key=big))
    loaded = backend.make().load_latest(key_id)
    assert loaded is not None
    assert loaded.encrypted_key == big


def test_unknown_fields_of_a_record_are_kept(backend: Backend) -> None:
    metastore = backend.make()
    key_id = backend.new_id()
    extra = {"Future": {"Level": 2, "Tags": ["a", "b"], "On": True, "None": None}, "Note": "é"}
    written = EnvelopeKeyRecord.from_dict({**record().to_dict(), **extra})
    assert written.extra == MappingProxyType(extra)
    assert metastore.store(key_id, T0, written)
    loaded = backend.make().load(key_id, T0)
    assert loaded is not None
    assert dict(loaded.extra) == extra
    assert loaded.to_dict() == written.to_dict()
    if backend.kind != "memory":
        metastore.revoke(key_id, T0)
        revoked = metastore.load(key_id, T0)
        assert revoked is not None
        assert dict(revoked.extra) == extra


BAD_RECORDS = {
    "not JSON": "{this is not json",
    "not an object": "[1, 2, 3]",
    "no Key": {"Created": T0},
    "Key not base64": {"Created": T0, "Key": "not*base64!"},
    "Created a string": {"Created": "yesterday", "Key": "AAAA"},
    "ParentKeyMeta without KeyId": {"Created": T0, "Key": "AAAA", "ParentKeyMeta": {"Created": 1}},
    "Revoked a string": {"Created": T0, "Key": "AAAA", "Revoked": "yes"},
}


@pytest.mark.parametrize("bad", list(BAD_RECORDS))
def test_a_bad_record_raises_metastore_error_naming_the_key(backend: Backend, bad: str) -> None:
    if backend.put_raw is None:
        pytest.skip("the in-memory metastore holds parsed records only")
    metastore = backend.make()
    key_id = backend.new_id("bad")
    backend.put_raw(key_id, T0, BAD_RECORDS[bad])
    for call in (lambda: metastore.load(key_id, T0), lambda: metastore.load_latest(key_id)):
        with pytest.raises(MetastoreError) as caught:
            call()
        message = str(caught.value)
        assert key_id in message
        assert (
            backend.kind.replace("sqlite", "sql").replace("postgres", "sql").replace("mysql", "sql")
            in message
        )
        assert "not*base64" not in message  # the stored value itself is not repeated
    # The next good call on the same metastore works.
    good = backend.new_id()
    assert metastore.store(good, T0, record())
    assert metastore.load(good, T0) == record()


def test_keys_lists_rows_by_id_then_created(backend: Backend) -> None:
    metastore = backend.make()
    prefix = backend.new_id("list")
    for key_id, created in (
        (prefix + "_b", T0 + 60),
        (prefix + "_a", T0 + 60),
        (prefix + "_b", T0),
    ):
        metastore.store(key_id, created, record(created))
    listed = [(key_id, created) for key_id, created, _ in metastore.keys(prefix)]
    assert listed == [(prefix + "_a", T0 + 60), (prefix + "_b", T0), (prefix + "_b", T0 + 60)]


def test_list_keys_marks_a_bad_row_and_lists_every_other(backend: Backend) -> None:
    if backend.put_raw is None:
        pytest.skip("the in-memory metastore holds parsed records only")
    metastore = backend.make()
    prefix = backend.new_id("listbad")
    metastore.store(prefix + "_a", T0, record())
    backend.put_raw(prefix + "_b", T0, BAD_RECORDS["Key not base64"])
    metastore.store(prefix + "_c", T0, record())
    listed = list(metastore.list_keys(prefix))
    assert [(row.key_id, row.created) for row in listed] == [
        (prefix + "_a", T0),
        (prefix + "_b", T0),
        (prefix + "_c", T0),
    ]
    assert [row.record is None for row in listed] == [False, True, False]
    assert listed[1].problem is not None
    assert prefix + "_b" in listed[1].problem
    assert "not*base64" not in listed[1].problem  # the stored value itself is not repeated
    # keys() is the strict form: it stops at the bad row.
    with pytest.raises(MetastoreError, match=prefix + "_b"):
        list(metastore.keys(prefix))


def test_a_closed_metastore_raises_metastore_error(backend: Backend) -> None:
    if backend.kind == "memory":
        pytest.skip("the in-memory metastore has nothing to close")
    metastore = backend.make()
    metastore.close()
    metastore.close()
    key_id = backend.new_id()
    with pytest.raises(MetastoreError, match="closed"):
        metastore.load(key_id, T0)


def test_create_table_twice_is_harmless(backend: Backend) -> None:
    metastore = backend.make()
    metastore.create_table()
    metastore.create_table()
    key_id = backend.new_id()
    assert metastore.store(key_id, T0, record())
