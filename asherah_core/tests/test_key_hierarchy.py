"""The key hierarchy: ids, Created precision, one key per new key, expiry and revocation."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from asherah_core import (
    ConfigError,
    CryptoPolicy,
    DataRowRecord,
    KeyMeta,
    SessionError,
    SessionFactory,
    SessionTypeError,
    SessionUnicodeError,
)
from asherah_core.cache import CachedKey, KeyCache
from asherah_core.keys import Partition

if TYPE_CHECKING:
    from conftest import CountingKms, CountingMetastore, FactoryMaker, FakeClock

START = 1_796_221_020  # on a whole minute, as the fake clock
SK = "_SK_svc_prod"


def ik(partition: str) -> str:
    return f"_IK_{partition}_svc_prod"


def ids_and_created(metastore: CountingMetastore, prefix: str = "") -> list[tuple[str, int]]:
    return [(key_id, created) for key_id, created, _ in metastore.keys(prefix)]


# Key ids ----------------------------------------------------------------------------------


def test_key_ids_follow_asherah() -> None:
    partition = Partition("p1", "svc", "prod")
    assert (partition.sk_id, partition.ik_id) == ("_SK_svc_prod", "_IK_p1_svc_prod")


def test_key_ids_with_region_suffix() -> None:
    partition = Partition("p1", "svc", "prod", "us-west-2")
    assert partition.sk_id == "_SK_svc_prod_us-west-2"
    assert partition.ik_id == "_IK_p1_svc_prod_us-west-2"


def test_suffixed_partition_accepts_rows_from_other_regions_only() -> None:
    suffixed = Partition("p1", "svc", "prod", "us-west-2")
    assert suffixed.owns("_IK_p1_svc_prod_us-west-2")
    assert suffixed.owns("_IK_p1_svc_prod_eu-west-1")
    assert suffixed.owns("_IK_p1_svc_prod")
    assert not suffixed.owns("_IK_p2_svc_prod_us-west-2")
    assert not suffixed.owns("_IK_p1_svc_other")
    plain = Partition("p1", "svc", "prod")
    assert plain.owns("_IK_p1_svc_prod")
    assert not plain.owns("_IK_p1_svc_prod_us-west-2")


@pytest.mark.parametrize(("partition", "service", "product"), [("", "s", "p"), ("p", "", "x")])
def test_empty_names_are_refused(partition: str, service: str, product: str) -> None:
    with pytest.raises(SessionError, match="must not be empty"):
        Partition(partition, service, product)


@pytest.mark.parametrize("where", ["partition_id", "service", "product", "region suffix"])
@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (7, SessionTypeError, "must be a string, not int"),
        ("a\ud800", SessionUnicodeError, "is not valid Unicode \\(a lone surrogate at index 1\\)"),
        ("", SessionError, "must not be empty"),
    ],
    ids=["not-a-string", "lone-surrogate", "empty"],
)
def test_every_name_of_a_partition_is_checked(
    where: str, value: object, error: type[Exception], message: str
) -> None:
    names: dict[str, object] = {
        "partition_id": "p",
        "service": "s",
        "product": "x",
        "region suffix": "us-west-2",
    }
    names[where] = value
    if where == "region suffix" and value == "":
        return  # an empty suffix means none
    with pytest.raises(error, match=f"{where} {message}"):
        Partition(*names.values())  # type: ignore[arg-type]


def test_names_outside_ascii_are_accepted() -> None:
    partition = Partition("é", "sérvice", "prødüct", "ü")
    assert partition.ik_id == "_IK_é_sérvice_prødüct_ü"


def test_factory_writes_keys_under_the_ids(
    factory: SessionFactory, metastore: CountingMetastore
) -> None:
    record = factory.get_session("p1").encrypt(b"x")
    assert record.parent_key_meta.key_id == ik("p1")
    assert [key_id for key_id, _ in ids_and_created(metastore)] == [ik("p1"), SK]


def test_region_suffix_in_ids_and_decrypt_of_an_unsuffixed_row(
    make_factory: FactoryMaker, metastore: CountingMetastore
) -> None:
    plain = make_factory().get_session("p1").encrypt_bytes(b"from before the suffix")
    suffixed = make_factory(region_suffix="us-west-2").get_session("p1")
    record = suffixed.encrypt(b"x")
    assert record.parent_key_meta.key_id == "_IK_p1_svc_prod_us-west-2"
    assert ("_SK_svc_prod_us-west-2", START) in ids_and_created(metastore)
    assert suffixed.decrypt_bytes(plain) == b"from before the suffix"


# Created precision ------------------------------------------------------------------------


def test_new_keys_are_truncated_to_the_minute_and_row_keys_are_not(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    clock.advance(37.9)
    record = make_factory().get_session("p1").encrypt(b"x")
    assert ids_and_created(metastore) == [(ik("p1"), START), (SK, START)]
    assert record.parent_key_meta == KeyMeta(ik("p1"), START)
    assert record.key.created == START + 37  # the current second


def test_precision_follows_the_policy(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    clock.advance(3600 + 125)
    policy = CryptoPolicy(create_date_precision=timedelta(hours=1))
    make_factory(policy=policy).get_session("p1").encrypt(b"x")
    assert {created for _, created in ids_and_created(metastore)} == {START - START % 3600 + 3600}


# One KMS call and one store per new key ---------------------------------------------------


def test_ten_thousand_rows_over_ten_partitions_make_one_kms_call_and_eleven_stores(
    factory: SessionFactory, kms: CountingKms, metastore: CountingMetastore, clock: FakeClock
) -> None:
    sessions = [factory.get_session(f"p{i}") for i in range(10)]
    texts = []
    for n in range(10_000):
        texts.append(sessions[n % 10].encrypt_bytes(b"row %d" % n))
        if n % 1000 == 0:
            clock.advance(1)
    assert kms.encrypts == 1
    assert kms.decrypts == 0
    assert metastore.calls["store"] == 11
    assert sorted(metastore.stored) == sorted(
        [(SK, START)] + [(ik(f"p{i}"), START) for i in range(10)]
    )
    for n in (0, 1, 4999, 9999):
        assert sessions[n % 10].decrypt_bytes(texts[n]) == b"row %d" % n


def test_a_second_factory_reuses_the_stored_keys(
    make_factory: FactoryMaker, kms: CountingKms, metastore: CountingMetastore
) -> None:
    text = make_factory().get_session("p1").encrypt_bytes(b"x")
    other = make_factory().get_session("p1")
    assert other.decrypt_bytes(text) == b"x"
    record = other.encrypt(b"y")
    assert record.parent_key_meta == KeyMeta(ik("p1"), START)
    assert (kms.encrypts, kms.decrypts) == (1, 1)
    assert metastore.calls["store"] == 2


def test_a_key_loaded_to_decrypt_then_sealing_rows_writes_its_parent_key_meta(
    make_factory: FactoryMaker, metastore: CountingMetastore
) -> None:
    # The second factory first loads the key for an old row (a key loaded to decrypt has no
    # row texts), then finds it is the latest and seals rows with the same cached key.
    old = make_factory().get_session("p1").encrypt_bytes(b"old")
    session = make_factory().get_session("p1")
    assert session.decrypt_bytes(old) == b"old"
    text = session.encrypt_bytes(b"new")
    assert DataRowRecord.from_json(text).parent_key_meta == KeyMeta(ik("p1"), START)
    assert session.decrypt_bytes(text) == b"new"
    assert metastore.calls["store"] == 2  # the second factory made no key of its own


def test_put_as_latest_makes_the_row_texts_of_the_key_it_returns() -> None:
    meta = KeyMeta(ik("p1"), START)
    loaded = CachedKey(meta, bytes(32))
    with pytest.raises(AttributeError):
        loaded.row_middle  # noqa: B018 - a key loaded to decrypt has none
    cache = KeyCache("intermediate", 10)
    assert cache.put(loaded) is loaded
    with pytest.raises(AttributeError):
        loaded.row_middle  # noqa: B018 - cached for decrypt only: still none
    # An equal key put as latest: the cached one is returned and used, with its texts made.
    returned = cache.put(CachedKey(meta, bytes(32)), latest=True)
    assert returned is loaded
    assert cache.latest(meta.key_id) is loaded
    assert loaded.meta_json == f'{{"KeyId":"{meta.key_id}","Created":{START}}}'
    assert loaded.row_middle == f'","ParentKeyMeta":{loaded.meta_json}}},"Data":"'
    # A cache that keeps nothing still hands back a key ready to seal rows.
    unkept = KeyCache("intermediate", 10, retain=False).put(CachedKey(meta, bytes(32)), latest=True)
    assert unkept.row_middle == loaded.row_middle


# Expiry -----------------------------------------------------------------------------------


def test_expired_intermediate_key_is_replaced_and_still_decrypts(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore, kms: CountingKms
) -> None:
    policy = CryptoPolicy(
        expire_after=timedelta(days=10), revoke_check_interval=timedelta(days=100)
    )
    session = make_factory(policy=policy).get_session("p1")
    old = session.encrypt_bytes(b"old")
    clock.advance(timedelta(days=10).total_seconds() - 1)
    assert DataRowRecord.from_json(session.encrypt_bytes(b"x")).parent_key_meta.created == START
    clock.advance(2)
    new = DataRowRecord.from_json(session.encrypt_bytes(b"new"))
    expected = START + 10 * 86400
    assert new.parent_key_meta == KeyMeta(ik("p1"), expected)
    # the system key expired together with it, so a new one was made too
    assert ids_and_created(metastore) == [
        (ik("p1"), START),
        (ik("p1"), expected),
        (SK, START),
        (SK, expected),
    ]
    assert kms.encrypts == 2
    assert session.decrypt_bytes(old) == b"old"
    assert make_factory(policy=policy).get_session("p1").decrypt_bytes(old) == b"old"


def test_expired_system_key_alone_makes_a_new_system_key(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(expire_after=timedelta(days=10))
    make_factory(policy=policy).get_session("p1").encrypt(b"x")
    clock.advance(9 * 86400)
    make_factory(policy=policy).get_session("p2").encrypt(b"x")  # IK p2 under the old SK
    clock.advance(2 * 86400)
    record = make_factory(policy=policy).get_session("p2").encrypt(b"y")
    new_created = START + 11 * 86400
    assert record.parent_key_meta == KeyMeta(ik("p2"), new_created)
    assert metastore.inner.load(ik("p2"), new_created).parent_key_meta == KeyMeta(SK, new_created)  # type: ignore[union-attr]


def test_old_rows_decrypt_under_expired_keys_on_a_cold_factory(
    make_factory: FactoryMaker, clock: FakeClock
) -> None:
    text = make_factory().get_session("p1").encrypt_bytes(b"old")
    clock.advance(1000 * 86400)
    assert make_factory().get_session("p1").decrypt_bytes(text) == b"old"


# Revocation -------------------------------------------------------------------------------


def test_revocation_by_another_process_is_seen_after_the_check_interval(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(revoke_check_interval=timedelta(minutes=10))
    session = make_factory(policy=policy).get_session("p1")
    old = session.encrypt_bytes(b"old")
    clock.advance(120)
    assert metastore.inner.revoke(ik("p1"), START)
    clock.advance(10 * 60 - 121)  # just before the check is due: still the cached key
    assert session.encrypt(b"x").parent_key_meta.created == START
    clock.advance(1)
    record = session.encrypt(b"new")
    assert record.parent_key_meta == KeyMeta(ik("p1"), START + 600)
    assert session.decrypt(record) == b"new"
    assert session.decrypt_bytes(old) == b"old"
    assert make_factory(policy=policy).get_session("p1").decrypt_bytes(old) == b"old"


def test_revocation_written_by_a_second_factory(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(revoke_check_interval=timedelta(minutes=1))
    first = make_factory(policy=policy).get_session("p1")
    first.encrypt(b"x")
    operator = make_factory(policy=policy)
    assert operator.metastore.revoke(ik("p1"), START)
    clock.advance(61)
    assert first.encrypt(b"y").parent_key_meta == KeyMeta(ik("p1"), START + 60)


def test_revoked_system_key_makes_a_new_system_and_intermediate_key(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore, kms: CountingKms
) -> None:
    policy = CryptoPolicy(revoke_check_interval=timedelta(minutes=5))
    session = make_factory(policy=policy).get_session("p1")
    old = session.encrypt_bytes(b"old")
    metastore.inner.revoke(SK, START)
    clock.advance(299)
    assert session.encrypt(b"x").parent_key_meta.created == START
    clock.advance(2)
    record = session.encrypt(b"y")
    assert record.parent_key_meta == KeyMeta(ik("p1"), START + 300)
    assert metastore.inner.load(ik("p1"), START + 300).parent_key_meta == KeyMeta(SK, START + 300)  # type: ignore[union-attr]
    assert kms.encrypts == 2
    assert make_factory(policy=policy).get_session("p1").decrypt_bytes(old) == b"old"


def test_a_cold_factory_never_encrypts_under_a_revoked_latest_key(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    make_factory().get_session("p1").encrypt(b"x")
    metastore.inner.revoke(ik("p1"), START)
    clock.advance(3600)
    record = make_factory().get_session("p1").encrypt(b"y")
    assert record.parent_key_meta == KeyMeta(ik("p1"), START + 3600)


# The same-minute revocation edge ----------------------------------------------------------


def test_intermediate_key_revoked_in_its_own_minute_gets_a_later_created(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(revoke_check_interval=timedelta(seconds=5))
    clock.advance(10)
    session = make_factory(policy=policy).get_session("p1")
    session.encrypt(b"x")
    metastore.inner.revoke(ik("p1"), START)
    clock.advance(6)  # still the same minute
    record = session.encrypt(b"y")
    assert record.parent_key_meta.key_id == ik("p1")
    assert record.parent_key_meta.created > START
    assert not metastore.inner.load(ik("p1"), record.parent_key_meta.created).revoked  # type: ignore[union-attr]
    # a cold factory in the same minute agrees on it
    other = make_factory(policy=policy).get_session("p1").encrypt(b"z")
    assert other.parent_key_meta == record.parent_key_meta


def test_system_key_revoked_in_its_own_minute_gets_a_later_created(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(revoke_check_interval=timedelta(seconds=5))
    session = make_factory(policy=policy).get_session("p1")
    session.encrypt(b"x")
    metastore.inner.revoke(SK, START)
    clock.advance(6)
    record = session.encrypt(b"y")
    new_ik = metastore.inner.load(ik("p1"), record.parent_key_meta.created)
    assert new_ik is not None
    assert new_ik.parent_key_meta is not None
    assert new_ik.parent_key_meta.created > START
    assert not metastore.inner.load(SK, new_ik.parent_key_meta.created).revoked  # type: ignore[union-attr]


def test_racing_factories_agree_on_one_key_after_a_same_minute_revocation(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    make_factory().get_session("p1").encrypt(b"x")
    metastore.inner.revoke(ik("p1"), START)
    clock.advance(20)
    first, second = make_factory().get_session("p1"), make_factory().get_session("p1")
    raced: list[DataRowRecord] = []

    def second_goes_first(key_id: str, created: int) -> None:
        metastore.before_store = None  # the second factory's own store goes through
        raced.append(second.encrypt(b"second"))

    metastore.before_store = second_goes_first
    mine = first.encrypt(b"first")
    assert raced
    assert mine.parent_key_meta == raced[0].parent_key_meta
    assert mine.parent_key_meta.created > START
    assert len([c for i, c in ids_and_created(metastore) if i == ik("p1")]) == 2


def test_keys_revoked_again_and_again_in_one_minute(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(revoke_check_interval=timedelta(seconds=1))
    session = make_factory(policy=policy).get_session("p1")
    seen = []
    for _ in range(10):
        record = session.encrypt(b"x")
        seen.append(record.parent_key_meta.created)
        metastore.inner.revoke(*astuple(record.parent_key_meta))
        clock.advance(2)
    assert seen == sorted(set(seen))
    for key_id, created, stored in metastore.keys(ik("p1")):
        assert key_id == ik("p1")
        assert stored.revoked
        assert created in seen


def astuple(meta: KeyMeta) -> tuple[str, int]:
    return meta.key_id, meta.created


# No row under a key that is not in the metastore ------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_every_row_is_sealed_under_a_stored_key(
    seed: int, make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    rng = random.Random(seed)
    policy = CryptoPolicy(
        expire_after=timedelta(hours=5),
        revoke_check_interval=timedelta(seconds=rng.choice([1, 30, 600])),
    )
    factories = [make_factory(policy=policy) for _ in range(3)]
    racer = make_factory(policy=policy)  # only ever runs inside another factory's store
    rows: list[tuple[str, str]] = []
    for _ in range(300):
        action = rng.random()
        partition = f"p{rng.randrange(4)}"
        if action < 0.1:
            clock.advance(rng.choice([1, 10, 59, 61, 3600]))
        elif action < 0.18:
            stored = list(metastore.keys(""))
            if stored:
                key_id, created, _ = rng.choice(stored)
                metastore.inner.revoke(key_id, created)
        elif action < 0.22:

            def race(key_id: str, created: int, p: str = partition) -> None:
                metastore.before_store = None  # a process of its own, storing first
                rows.append((p, racer.get_session(p).encrypt_bytes(b"raced")))

            metastore.before_store = race
        else:
            text = rng.choice(factories).get_session(partition).encrypt_bytes(b"row")
            rows.append((partition, text))
        for _, text in rows[-2:]:
            meta = DataRowRecord.from_json(text).parent_key_meta
            stored_ik = metastore.inner.load(meta.key_id, meta.created)
            assert stored_ik is not None, f"row under {meta}, which is not stored"
            assert stored_ik.parent_key_meta is not None
            assert metastore.inner.load(SK, stored_ik.parent_key_meta.created) is not None
    fresh = make_factory(policy=policy)
    for partition, text in rows:
        assert fresh.get_session(partition).decrypt_bytes(text) in (b"row", b"raced")


# A policy whose keys would expire as they are made ----------------------------------------


def test_an_expiry_shorter_than_the_created_precision_is_refused_naming_both() -> None:
    with pytest.raises(
        ConfigError,
        match=r"expire_after \(0:00:30\) is shorter than .*create_date_precision \(0:01:00\)",
    ):
        CryptoPolicy(expire_after=timedelta(seconds=30))


def test_a_short_expiry_with_a_precision_to_match_makes_keys_per_expiry_not_per_second(
    make_factory: FactoryMaker, clock: FakeClock, kms: CountingKms, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(
        expire_after=timedelta(seconds=30), create_date_precision=timedelta(seconds=30)
    )
    session = make_factory(policy=policy).get_session("p1")
    for _ in range(120):  # two simulated minutes, an encrypt a second
        session.decrypt_bytes(session.encrypt_bytes(b"x"))
        clock.advance(1)
    assert kms.encrypts <= 5  # a system key per 30 s, not per second
    assert metastore.calls["store"] <= 10


# Keys deleted from the metastore ----------------------------------------------------------


def test_a_deleted_system_key_stops_sealing_within_the_revoke_check_interval(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(revoke_check_interval=timedelta(minutes=5))
    session = make_factory(policy=policy).get_session("p1")
    old = session.encrypt_bytes(b"old")
    del metastore.inner._rows[SK]  # an operator deleted the system key's row
    clock.advance(299)
    assert session.encrypt(b"x").parent_key_meta.created == START  # not checked yet
    clock.advance(2)
    new = session.encrypt_bytes(b"new")
    meta = DataRowRecord.from_json(new).parent_key_meta
    assert meta == KeyMeta(ik("p1"), START + 300)  # a new IK under a new SK that exists
    record = metastore.inner.load(meta.key_id, meta.created)
    assert record is not None
    assert record.parent_key_meta == KeyMeta(SK, START + 300)
    assert metastore.inner.load(SK, START + 300) is not None
    restarted = make_factory(policy=policy).get_session("p1")  # nothing cached
    assert restarted.decrypt_bytes(new) == b"new"
    assert session.decrypt_bytes(old) == b"old"  # still cached: what it sealed still opens


def test_a_deleted_intermediate_key_is_replaced_within_the_revoke_check_interval(
    make_factory: FactoryMaker, clock: FakeClock, metastore: CountingMetastore
) -> None:
    policy = CryptoPolicy(revoke_check_interval=timedelta(minutes=5))
    session = make_factory(policy=policy).get_session("p1")
    session.encrypt(b"old")
    del metastore.inner._rows[ik("p1")]
    clock.advance(301)
    new = session.encrypt_bytes(b"new")
    assert DataRowRecord.from_json(new).parent_key_meta == KeyMeta(ik("p1"), START + 300)
    assert make_factory(policy=policy).get_session("p1").decrypt_bytes(new) == b"new"


# Names holding "_" ------------------------------------------------------------------------


def test_names_holding_underscores_can_share_keys_as_in_every_asherah(
    make_factory: FactoryMaker,
) -> None:
    one = make_factory(service="c", product="prod").get_session("a_b")
    other = make_factory(service="b_c", product="prod").get_session("a")
    assert one.partition.ik_id == other.partition.ik_id == "_IK_a_b_c_prod"
    assert other.decrypt_bytes(one.encrypt_bytes(b"shared")) == b"shared"


@pytest.mark.parametrize(
    ("service", "product", "partition", "named"),
    [
        ("svc", "prod", "a_b", "partition id 'a_b'"),
        ("b_c", "prod", "a", "service name 'b_c'"),
        ("svc", "pr_od", "a", "product id 'pr_od'"),
    ],
)
def test_strict_names_refuses_names_holding_underscores(
    make_factory: FactoryMaker, service: str, product: str, partition: str, named: str
) -> None:
    def use() -> None:
        factory = make_factory(service=service, product=product, strict_names=True)
        factory.get_session(partition).encrypt_bytes(b"x")

    with pytest.raises(SessionError, match=f"{named} holds '_'.*strict_names=True"):
        use()


def test_strict_names_accepts_other_names(make_factory: FactoryMaker) -> None:
    session = make_factory(strict_names=True).get_session("customer-42.eu")
    assert session.decrypt_bytes(session.encrypt_bytes(b"x")) == b"x"
    with pytest.raises(SessionError, match="strict_names must be True or False"):
        make_factory(strict_names="yes")
