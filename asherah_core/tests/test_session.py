"""Sessions: round trips of any data, bad input, partition isolation, races, caches, threads."""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import json
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asherah_core import (
    AsherahError,
    CryptoPolicy,
    DataRowRecord,
    ForeignRecordError,
    KeyMeta,
    KeyNotFoundError,
    MetastoreError,
    RecordError,
    RecordUnicodeError,
    SessionError,
    SessionFactory,
    SessionUnicodeError,
)
from asherah_core.cache import CachedKey
from asherah_core.metastore import InMemoryMetastore
from asherah_core.session import Session

if TYPE_CHECKING:
    from conftest import CountingKms, CountingMetastore, FactoryMaker, FakeClock

START = 1_796_221_020
SK = "_SK_svc_prod"
IK = "_IK_p1_svc_prod"
SECRET = b"the plaintext nobody may see"


# Data of any size and kind ----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1024, 1024 * 1024])
def test_round_trip_of_any_size(factory: SessionFactory, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    session = factory.get_session("p1")
    assert session.decrypt_bytes(session.encrypt_bytes(data)) == data
    assert session.decrypt(session.encrypt(data)) == data


@pytest.mark.parametrize(
    "data",
    [
        bytearray(b"abc"),
        memoryview(b"abcdef")[1:4],
        memoryview(array.array("i", [1, 2, 3])),
        memoryview(b"abcdefgh")[::2],  # not contiguous
        memoryview(bytearray(b"abcd")).cast("B", (2, 2)),  # two dimensions
    ],
    ids=["bytearray", "memoryview", "int-memoryview", "strided", "2d"],
)
def test_bytes_like_input(factory: SessionFactory, data: Any) -> None:
    session = factory.get_session("p1")
    expected = bytes(memoryview(data).tobytes())
    assert session.decrypt_bytes(session.encrypt_bytes(data)) == expected


@pytest.mark.parametrize("data", ["text", 5, None, [1, 2]])
def test_non_bytes_is_a_session_error(factory: SessionFactory, data: Any) -> None:
    session = factory.get_session("p1")
    session.encrypt_bytes(b"warm")
    with pytest.raises(SessionError, match="bytes"):
        session.encrypt_bytes(data)
    cold = factory.get_session("p2")
    with pytest.raises(SessionError):
        cold.encrypt_bytes(data)


def test_text_round_trip(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    assert session.decrypt_text(session.encrypt_text("é ✓ 𝄞")) == "é ✓ 𝄞"
    with pytest.raises(SessionError):
        session.encrypt_text(b"bytes")  # type: ignore[arg-type]


def test_text_with_a_lone_surrogate_is_a_unicode_error_without_the_text(
    factory: SessionFactory,
) -> None:
    session = factory.get_session("p1")
    for attempt in (
        lambda: session.encrypt_text("secret\ud800"),
        lambda: asyncio.run(session.encrypt_text_async("secret\ud800")),
    ):
        # Ours and a UnicodeEncodeError (a ValueError), as the asherah package raises.
        with pytest.raises(SessionUnicodeError) as info:
            attempt()
        assert isinstance(info.value, UnicodeEncodeError)
        assert isinstance(info.value, SessionError)
        assert (info.value.start, info.value.end) == (6, 7)
        assert str(info.value) == "text is not valid Unicode (a lone surrogate at index 6)"
        assert "secret" not in repr(info.value)
        assert info.value.object == ""


def test_decrypt_text_of_non_utf8_data(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    text = session.encrypt_bytes(b"secret\xff\xfe")
    for attempt in (
        lambda: session.decrypt_text(text),
        lambda: asyncio.run(session.decrypt_text_async(text)),
    ):
        with pytest.raises(RecordUnicodeError, match="UTF-8 \\(at byte 6\\)") as info:
            attempt()
        assert isinstance(info.value, UnicodeDecodeError)
        assert isinstance(info.value, RecordError)
        assert (info.value.start, info.value.end) == (6, 7)
        assert "secret" not in repr(info.value)
        assert info.value.object == b""


def test_encrypt_bytes_returns_compact_json_text(factory: SessionFactory, clock: FakeClock) -> None:
    clock.advance(42)
    text = factory.get_session("p1").encrypt_bytes(b"x")
    assert isinstance(text, str)
    assert " " not in text
    value = json.loads(text)
    assert list(value) == ["Key", "Data"]
    assert list(value["Key"]) == ["Created", "Key", "ParentKeyMeta"]
    assert value["Key"]["Created"] == START + 42
    assert value["Key"]["ParentKeyMeta"] == {"KeyId": IK, "Created": START}
    assert DataRowRecord.from_json(text).to_json() == text


# Bad records ------------------------------------------------------------------------------


def tampered(text: str, path: tuple[str, ...], value: Any) -> str:
    row = json.loads(text)
    target = row
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return json.dumps(row)


def flip_last_byte(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


BAD_ROWS = [
    lambda t: "{",
    lambda t: "",
    lambda t: "null",
    lambda t: "[]",
    lambda t: t[: len(t) // 2],
    lambda t: tampered(t, ("Data",), "AAAA"),
    lambda t: tampered(t, ("Data",), json.loads(t)["Data"].rstrip("=")),
    lambda t: tampered(t, ("Data",), "-_" + json.loads(t)["Data"][2:]),  # urlsafe alphabet
    lambda t: tampered(t, ("Data",), flip_last_byte(json.loads(t)["Data"])),
    lambda t: tampered(t, ("Data",), 5),
    lambda t: tampered(t, ("Key", "Key"), flip_last_byte(json.loads(t)["Key"]["Key"])),
    lambda t: tampered(t, ("Key", "Key"), "AAAA"),
    lambda t: tampered(t, ("Key", "Key"), base64.b64encode(bytes(60)).decode()),
    lambda t: tampered(t, ("Key", "ParentKeyMeta", "Created"), START + 1),
    lambda t: tampered(t, ("Key", "ParentKeyMeta", "Created"), "1"),
    lambda t: tampered(t, ("Key", "ParentKeyMeta", "Created"), -1),
    lambda t: tampered(t, ("Key", "ParentKeyMeta", "KeyId"), None),
    lambda t: tampered(t, ("Key", "ParentKeyMeta"), None),
    lambda t: tampered(t, ("Key", "Created"), "now"),
    lambda t: tampered(t, ("Key",), "x"),
    lambda t: t.replace('"Created"', '"Created":NaN,"X"', 1),
    lambda t: t.replace(IK, "\\ud800"),
]


@pytest.mark.parametrize("bad", BAD_ROWS, ids=[str(i) for i in range(len(BAD_ROWS))])
def test_bad_rows_raise_asherah_errors_without_secrets(factory: SessionFactory, bad: Any) -> None:
    session = factory.get_session("p1")
    good = session.encrypt_bytes(SECRET)
    cached = factory.keys.intermediate_keys.get(IK, START)
    assert cached is not None
    for decrypt in (session.decrypt_bytes, lambda t: session.decrypt_bytes(t.encode())):
        with pytest.raises(AsherahError) as info:
            decrypt(bad(good))
        message = str(info.value)
        assert SECRET.decode() not in message
        assert bytes(cached.key).hex() not in message
        assert base64.b64encode(bytes(cached.key)).decode() not in message
        assert json.loads(good)["Data"] not in message


@pytest.mark.parametrize("size", [0, 16, 31, 33, 48])
def test_a_row_key_of_another_size_is_named_whichever_way_the_row_comes(
    factory: SessionFactory, size: int
) -> None:
    # A row key sealed properly by the partition's key, but not 32 bytes: its sealed form is
    # not 60 bytes, so the row is read by the general reader and opened from where the key
    # really ends (a reader that took 60 would find no tag and say something else).
    session = factory.get_session("p1")
    good = json.loads(session.encrypt_bytes(SECRET))
    cached = factory.keys.intermediate_keys.get(IK, START)
    assert cached is not None
    nonce = bytes(range(12))
    sealed_key = cached.cipher().encrypt(nonce, bytes(range(size)), None) + nonce
    good["Key"]["Key"] = base64.b64encode(sealed_key).decode()
    text = json.dumps(good, separators=(",", ":"))
    for decrypt in (
        session.decrypt_bytes,
        lambda t: asyncio.run(session.decrypt_bytes_async(t)),
        lambda t: session.decrypt(DataRowRecord.from_json(t)),
    ):
        with pytest.raises(AsherahError, match=rf"the data row key is {size} bytes, not 32"):
            decrypt(text)


@pytest.mark.parametrize("value", [None, 5, ["x"], {"Key": 1}, object()])
def test_decrypt_bytes_of_non_text(factory: SessionFactory, value: Any) -> None:
    with pytest.raises(AsherahError):
        factory.get_session("p1").decrypt_bytes(value)


def test_decrypt_takes_a_record_only(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    with pytest.raises(SessionError, match="DataRowRecord"):
        session.decrypt(session.encrypt_bytes(b"x"))  # type: ignore[arg-type]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_input_never_escapes_as_another_error(factory: SessionFactory, text: Any) -> None:
    with contextlib.suppress(AsherahError):
        factory.get_session("p1").decrypt_bytes(text)


# Partition isolation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partition", "service", "product"),
    [("p2", "svc", "prod"), ("p1", "svc2", "prod"), ("p1", "svc", "prod2"), ("p", "1_svc", "prod")],
)
def test_rows_of_another_partition_fail_before_any_key_is_loaded(
    make_factory: FactoryMaker,
    kms: CountingKms,
    metastore: CountingMetastore,
    partition: str,
    service: str,
    product: str,
) -> None:
    text = make_factory().get_session("p1").encrypt_bytes(SECRET)
    other = make_factory(service=service, product=product).get_session(partition)
    before = (metastore.total, kms.calls)
    for attempt in (
        lambda: other.decrypt_bytes(text),
        lambda: other.decrypt(DataRowRecord.from_json(text)),
    ):
        with pytest.raises(ForeignRecordError, match="another partition") as info:
            attempt()
        # The asherah package's words first, then both key ids: code and alerts that look for
        # that package's text keep working after the move.
        assert str(info.value).startswith("invalid IK id '_IK_p1_svc_prod': ")
        assert repr(other.partition.ik_id) in str(info.value)
        assert SECRET.decode() not in str(info.value)
    assert (metastore.total, kms.calls) == before


def test_a_row_whose_key_is_not_in_the_metastore_is_key_not_found(
    make_factory: FactoryMaker,
) -> None:
    text = make_factory().get_session("p1").encrypt_bytes(SECRET)
    elsewhere = make_factory(metastore=InMemoryMetastore()).get_session("p1")
    with pytest.raises(KeyNotFoundError, match="intermediate key _IK_p1_svc_prod@") as info:
        elsewhere.decrypt_bytes(text)
    assert isinstance(info.value, MetastoreError)
    assert SECRET.decode() not in str(info.value)


def test_rows_of_another_partition_fail_on_a_shared_warm_cache(factory: SessionFactory) -> None:
    text = factory.get_session("p1").encrypt_bytes(b"x")
    with pytest.raises(SessionError):
        factory.get_session("p2").decrypt_bytes(text)


# The duplicate-store race -----------------------------------------------------------------


def test_two_factories_racing_for_the_first_row_agree_on_the_keys(
    make_factory: FactoryMaker, metastore: CountingMetastore, kms: CountingKms
) -> None:
    first, second = make_factory(), make_factory()
    raced: list[str] = []

    def second_stores_first(key_id: str, created: int) -> None:
        metastore.before_store = None
        raced.append(second.get_session("p1").encrypt_bytes(b"second"))

    metastore.before_store = second_stores_first
    mine = first.get_session("p1").encrypt_bytes(b"first")
    assert raced
    assert metastore.calls["store"] == 4  # two won, two lost
    stored = [(key_id, created) for key_id, created, _ in metastore.keys("")]
    assert stored == [(IK, START), (SK, START)]
    assert len(set(stored)) == len(stored)
    assert DataRowRecord.from_json(mine).parent_key_meta == KeyMeta(IK, START)
    third = make_factory(metastore=type(metastore)(metastore.inner)).get_session("p1")
    assert third.decrypt_bytes(mine) == b"first"
    assert third.decrypt_bytes(raced[0]) == b"second"
    assert kms.encrypts == 2  # each made a system key; only one is in use


def test_losing_the_intermediate_key_race_only(
    make_factory: FactoryMaker, metastore: CountingMetastore
) -> None:
    first, second = make_factory(), make_factory()
    first.get_session("warm").encrypt(b"x")  # the system key exists now
    raced: list[DataRowRecord] = []

    def race(key_id: str, created: int) -> None:
        metastore.before_store = None
        raced.append(second.get_session("p1").encrypt(b"second"))

    metastore.before_store = race
    mine = first.get_session("p1").encrypt(b"first")
    assert mine.parent_key_meta == raced[0].parent_key_meta
    assert first.get_session("p1").decrypt(raced[0]) == b"second"


def test_a_store_that_fails_after_committing_still_works(
    factory: SessionFactory, metastore: CountingMetastore
) -> None:
    def fail_after(key_id: str, created: int, stored: bool) -> None:
        raise MetastoreError(f"connection lost after storing {key_id}")

    metastore.after_store = fail_after
    text = factory.get_session("p1").encrypt_bytes(b"x")
    meta = DataRowRecord.from_json(text).parent_key_meta
    assert metastore.inner.load(meta.key_id, meta.created) is not None
    metastore.after_store = None
    assert factory.get_session("p1").decrypt_bytes(text) == b"x"


def test_a_store_that_fails_with_another_exception_after_committing(
    factory: SessionFactory, metastore: CountingMetastore
) -> None:
    def fail_after(key_id: str, created: int, stored: bool) -> None:
        raise OSError("socket closed")

    metastore.after_store = fail_after
    assert factory.get_session("p1").decrypt_bytes(factory.get_session("p1").encrypt_bytes(b"x"))


@pytest.mark.parametrize("fails", [SK, IK])
def test_a_store_that_fails_without_committing_fails_the_encrypt(
    factory: SessionFactory, metastore: CountingMetastore, fails: str
) -> None:
    def fail_before(key_id: str, created: int) -> None:
        if key_id == fails:
            raise MetastoreError("database is down")

    metastore.before_store = fail_before
    session = factory.get_session("p1")
    with pytest.raises(MetastoreError, match="database is down"):
        session.encrypt_bytes(b"x")
    assert list(metastore.keys(fails)) == []
    metastore.before_store = None
    text = session.encrypt_bytes(b"x")
    meta = DataRowRecord.from_json(text).parent_key_meta
    assert metastore.inner.load(meta.key_id, meta.created) is not None


def test_a_failed_store_with_an_expired_key_present_reports_the_failure(
    make_factory: FactoryMaker, metastore: CountingMetastore, clock: FakeClock
) -> None:
    policy = CryptoPolicy(expire_after=timedelta(days=1))
    make_factory(policy=policy).get_session("p1").encrypt(b"old")
    clock.advance(2 * 86400)

    def fail_before(key_id: str, created: int) -> None:
        raise MetastoreError("database is down")

    metastore.before_store = fail_before
    stores = metastore.calls["store"]
    with pytest.raises(MetastoreError, match="database is down"):
        make_factory(policy=policy).get_session("p1").encrypt(b"new")
    assert metastore.calls["store"] == stores + 1  # no retries against a store that fails


def test_metastore_errors_of_load_propagate(
    factory: SessionFactory, metastore: CountingMetastore
) -> None:
    class Broken(InMemoryMetastore):
        def load_latest(self, key_id: str) -> Any:
            raise RuntimeError("boom")

    metastore.inner = Broken()
    with pytest.raises(MetastoreError, match="RuntimeError"):
        factory.get_session("p1").encrypt(b"x")


def test_a_metastore_returning_garbage(
    factory: SessionFactory, metastore: CountingMetastore
) -> None:
    class Garbage(InMemoryMetastore):
        def load_latest(self, key_id: str) -> Any:
            return "not a record"

    metastore.inner = Garbage()
    with pytest.raises(MetastoreError, match="str"):
        factory.get_session("p1").encrypt(b"x")


# Caches -----------------------------------------------------------------------------------


def test_intermediate_key_cache_is_bounded_and_zeroes_what_it_evicts(
    make_factory: FactoryMaker,
) -> None:
    factory = make_factory(policy=CryptoPolicy(intermediate_key_cache_max_size=3))
    cache = factory.keys.intermediate_keys
    first = factory.get_session("p0")
    text = first.encrypt_bytes(b"zero")
    entry = cache.get("_IK_p0_svc_prod", START)
    assert entry is not None
    key = entry.key  # the bytes, without holding the key itself
    assert any(key)
    del entry
    for i in range(1, 6):
        factory.get_session(f"p{i}").encrypt(b"x")
        assert len(cache) <= 3
    assert cache.get("_IK_p0_svc_prod", START) is None
    assert key == bytearray(32)  # evicted and held by nobody: wiped
    assert first.decrypt_bytes(text) == b"zero"  # loaded again
    assert first.encrypt(b"again").parent_key_meta == KeyMeta("_IK_p0_svc_prod", START)


@pytest.mark.parametrize("typed", [True, False], ids=["decrypt", "decrypt_bytes"])
def test_a_key_evicted_after_its_look_up_still_opens_the_row(
    factory: SessionFactory, monkeypatch: pytest.MonkeyPatch, typed: bool
) -> None:
    session = factory.get_session("p1")
    record = session.encrypt(b"row")
    text = record.to_json().encode()  # bytes: not the inline path of decrypt_bytes
    opened = []
    original = Session._open

    def evicted_then_opened(self: Session, entry: Any, *args: Any) -> bytes:
        entry.zero()  # another thread evicted and wiped the key right after the look-up
        opened.append(entry)
        return original(self, entry, *args)

    monkeypatch.setattr(Session, "_open", evicted_then_opened)
    assert (session.decrypt(record) if typed else session.decrypt_bytes(text)) == b"row"
    assert len(opened) == 1
    assert opened[0].aead is None


def evicted_on_load(
    monkeypatch: pytest.MonkeyPatch, factory: SessionFactory, name: str
) -> list[Any]:
    """Make each load of `name` on the factory's key hierarchy hand back a key that "another
    thread" evicted right after: a key of another partition put into the one-key cache.
    Return the keys handed back."""
    load = getattr(factory.keys, name)
    handed: list[Any] = []

    def evicted_at_once(*args: Any) -> Any:
        entry = load(*args)
        other = CachedKey(KeyMeta(f"_IK_other{len(handed)}_svc_prod", START), bytes(32))
        factory.keys.intermediate_keys.put(other)
        assert factory.keys.intermediate_keys.get(entry.meta.key_id, entry.created) is None
        assert entry.aead is not None  # evicted, but held: whole
        assert any(entry.key)
        handed.append(entry)
        return entry

    monkeypatch.setattr(factory.keys, name, evicted_at_once)
    return handed


ONE_KEY = CryptoPolicy(intermediate_key_cache_max_size=1)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_key_evicted_between_its_load_and_its_use_serves_the_call_then_is_wiped(
    make_factory: FactoryMaker, monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    text = make_factory().get_session("p1").encrypt_bytes(b"row")
    factory = make_factory(policy=ONE_KEY)  # nothing cached: every call below loads its key
    session = factory.get_session("p1")
    loads = evicted_on_load(monkeypatch, factory, "intermediate_key")
    decrypted = (
        asyncio.run(session.decrypt_bytes_async(text))
        if asynchronous
        else session.decrypt_bytes(text)
    )
    assert decrypted == b"row"
    loads_for_encrypt = evicted_on_load(monkeypatch, factory, "intermediate_key_for_encrypt")
    new = (
        asyncio.run(session.encrypt_bytes_async(b"new"))
        if asynchronous
        else session.encrypt_bytes(b"new")
    )
    assert len(loads) == len(loads_for_encrypt) == 1  # one load per call
    monkeypatch.undo()
    keys = [loads[0].key, loads_for_encrypt[0].key]
    del loads, loads_for_encrypt
    assert all(key == bytearray(32) for key in keys)  # the calls let go: wiped
    assert session.decrypt_bytes(new) == b"new"


def test_system_key_cache_is_bounded(make_factory: FactoryMaker, clock: FakeClock) -> None:
    policy = CryptoPolicy(system_key_cache_max_size=1, expire_after=timedelta(days=1))
    factory = make_factory(policy=policy)
    factory.get_session("p1").encrypt(b"x")
    old = factory.keys.system_keys.get(SK, START)
    assert old is not None
    key = old.key
    del old
    clock.advance(2 * 86400)
    factory.get_session("p2").encrypt(b"x")
    assert len(factory.keys.system_keys) == 1
    assert key == bytearray(32)


def test_close_zeroes_every_cached_key(factory: SessionFactory) -> None:
    for i in range(5):
        factory.get_session(f"p{i}").encrypt(b"x")
    entries = [
        factory.keys.intermediate_keys.get(f"_IK_p{i}_svc_prod", START) for i in range(5)
    ] + [factory.keys.system_keys.get(SK, START)]
    assert all(e is not None and any(e.key) for e in entries)
    factory.close()
    for e in entries:
        assert e is not None
        assert e.key == bytearray(32)
        assert e.aead is None
    assert len(factory.keys.intermediate_keys) == len(factory.keys.system_keys) == 0


@pytest.mark.parametrize(
    "policy",
    [
        CryptoPolicy(cache_system_keys=False, cache_intermediate_keys=False),
        CryptoPolicy(cache_system_keys=False),
        CryptoPolicy(cache_intermediate_keys=False),
    ],
    ids=["none", "no-sk", "no-ik"],
)
def test_caches_off_still_work_and_keep_nothing(
    make_factory: FactoryMaker, kms: CountingKms, metastore: CountingMetastore, policy: CryptoPolicy
) -> None:
    factory = make_factory(policy=policy)
    session = factory.get_session("p1")
    texts = [session.encrypt_bytes(b"%d" % i) for i in range(5)]
    assert [session.decrypt_bytes(t) for t in texts] == [b"%d" % i for i in range(5)]
    assert metastore.calls["store"] == 2
    if not policy.cache_system_keys:
        assert len(factory.keys.system_keys) == 0
    if not policy.cache_intermediate_keys:
        assert len(factory.keys.intermediate_keys) == 0
    assert {DataRowRecord.from_json(t).parent_key_meta for t in texts} == {KeyMeta(IK, START)}


def test_uncached_keys_are_zeroed_after_use(
    make_factory: FactoryMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asherah_core import cache  # noqa: PLC0415

    made: list[Any] = []
    original = cache.CachedKey.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self.key)  # the bytes: holding the key itself would keep it whole

    monkeypatch.setattr(cache.CachedKey, "__init__", recording_init)
    factory = make_factory(
        policy=CryptoPolicy(cache_system_keys=False, cache_intermediate_keys=False)
    )
    session = factory.get_session("p1")
    session.decrypt_bytes(session.encrypt_bytes(b"x"))
    assert made
    assert all(key == bytearray(32) for key in made)


# Closed factories and sessions; the session cache -----------------------------------------


def test_closed_factory_refuses_everything(factory: SessionFactory, kms: CountingKms) -> None:
    session = factory.get_session("p1")
    text = session.encrypt_bytes(b"x")
    factory.close()
    factory.close()
    assert factory.closed
    assert kms.closed == 1
    with pytest.raises(SessionError, match="closed"):
        factory.get_session("p1")
    with pytest.raises(SessionError, match="closed"):
        session.encrypt_bytes(b"x")
    with pytest.raises(SessionError, match="closed"):
        session.decrypt_bytes(text)


def test_closed_session_refuses_everything_even_with_warm_keys(factory: SessionFactory) -> None:
    with factory.get_session("p1") as session:
        text = session.encrypt_bytes(b"x")
    with pytest.raises(SessionError, match="closed"):
        session.encrypt_bytes(b"x")
    with pytest.raises(SessionError, match="closed"):
        session.decrypt_bytes(text)
    assert factory.get_session("p1").decrypt_bytes(text) == b"x"


def test_factory_as_context_manager_closes_kms_and_metastore(
    make_factory: FactoryMaker, kms: CountingKms, metastore: CountingMetastore
) -> None:
    with make_factory() as factory:
        factory.get_session("p1").encrypt(b"x")
    assert (kms.closed, metastore.closed) == (1, 1)


def test_session_cache_returns_the_same_session_and_is_bounded(make_factory: FactoryMaker) -> None:
    factory = make_factory(policy=CryptoPolicy(cache_sessions=True, session_cache_max_size=2))
    first = factory.get_session("p1")
    assert factory.get_session("p1") is first
    first.close()  # a shared session stays usable
    first.encrypt(b"x")
    factory.get_session("p2")
    factory.get_session("p3")
    assert factory.get_session("p1") is not first


def test_session_cache_expires_on_the_factory_clock(
    make_factory: FactoryMaker, clock: FakeClock
) -> None:
    policy = CryptoPolicy(cache_sessions=True, session_cache_duration=timedelta(minutes=5))
    factory = make_factory(policy=policy)
    first = factory.get_session("p1")
    clock.advance(299)
    assert factory.get_session("p1") is first
    clock.advance(301)
    assert factory.get_session("p1") is not first


def test_session_cache_evicts_the_least_recently_used_session(
    make_factory: FactoryMaker, clock: FakeClock
) -> None:
    policy = CryptoPolicy(
        cache_sessions=True, session_cache_max_size=2, session_cache_duration=timedelta(minutes=5)
    )
    factory = make_factory(policy=policy)
    factory.get_session("p1")
    second = factory.get_session("p2")
    clock.advance(301)
    remade = factory.get_session("p1")  # idle too long: made again, and now the most recent
    assert factory.get_session("p3") is not None  # evicts p2, the least recently used
    assert factory.get_session("p1") is remade
    assert factory.get_session("p2") is not second
    hit = factory.get_session("p1")  # a hit is the most recent too: p3 goes next
    factory.get_session("p4")
    assert factory.get_session("p1") is hit


def test_without_session_cache_sessions_are_new(factory: SessionFactory) -> None:
    assert factory.get_session("p1") is not factory.get_session("p1")


def test_factory_checks_its_arguments(kms: CountingKms) -> None:
    with pytest.raises(SessionError, match="Metastore"):
        SessionFactory("s", "p", kms=kms, metastore="x")  # type: ignore[arg-type]
    with pytest.raises(SessionError, match="KeyManagementService"):
        SessionFactory("s", "p", kms="x", metastore=InMemoryMetastore())  # type: ignore[arg-type]
    with pytest.raises(SessionError, match="empty"):
        SessionFactory("", "p", kms=kms, metastore=InMemoryMetastore())


def test_reprs_hold_no_key_bytes(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    session.encrypt(b"x")
    entry = factory.keys.intermediate_keys.get(IK, START)
    assert entry is not None
    for text in (repr(factory), repr(session), repr(entry), repr(factory.keys.intermediate_keys)):
        assert bytes(entry.key).hex()[:8] not in text


# Threads ----------------------------------------------------------------------------------


def test_threads_on_a_cold_shared_factory_make_one_key_each(
    factory: SessionFactory, kms: CountingKms, metastore: CountingMetastore
) -> None:
    barrier = threading.Barrier(8)
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(200):
                partition = f"p{(n + i) % 4}"
                text = factory.get_session(partition).encrypt_bytes(b"%d-%d" % (n, i))
                with lock:
                    results.append((partition, text))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert kms.encrypts == 1
    assert sorted(metastore.stored) == sorted(
        [(SK, START)] + [(f"_IK_p{i}_svc_prod", START) for i in range(4)]
    )
    assert len(results) == 1600
    for partition, text in results:
        factory.get_session(partition).decrypt_bytes(text)
