"""The key caches under threads: a cache never holds or hands out a wiped key.

Tiny caches (one or two keys), a revocation check due on nearly every call (an injected clock
that moves a millisecond per reading) and many threads over more partitions than the cache
holds: the windows between a look-up and a `put` are hit again and again.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from asherah_core import CryptoPolicy, KeyMeta, SessionFactory
from asherah_core.cache import CachedKey, KeyCache

if TYPE_CHECKING:
    from conftest import FactoryMaker

START = 1_796_221_020


class TickingClock:
    """A thread-safe clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float = 0.001) -> None:
        self.now = float(START)
        self.step = step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.step
            return self.now


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Let the interpreter switch threads far more often than every 5 ms."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def wiped(cache: KeyCache) -> list[CachedKey]:
    """The keys in `cache` (by slot or as a latest) whose bytes or cipher are gone."""
    entries = list(cache._keys.values()) + list(cache._latest.values())
    return [e for e in entries if e.aead is None or not any(e.key)]


def hammer(
    factory: SessionFactory, *, threads: int, partitions: int, rounds: int
) -> tuple[list[BaseException], list[str]]:
    """Encrypt and decrypt from `threads` threads over `partitions` partitions; return the
    errors raised and a note for each moment a cache was seen holding a wiped key."""
    errors: list[BaseException] = []
    seen_wiped: list[str] = []

    def work(n: int) -> None:
        for i in range(rounds):
            session = factory.get_session(f"p{(n + i) % partitions}")
            try:
                text = session.encrypt_bytes(b"row %d %d" % (n, i))
                assert session.decrypt_bytes(text) == b"row %d %d" % (n, i)
            except BaseException as e:  # every failure is the finding
                errors.append(e)
                return
            for cache in (factory.keys.intermediate_keys, factory.keys.system_keys):
                if wiped(cache):
                    seen_wiped.append(f"{cache.name} cache at round {i} of thread {n}")
                    return

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors, seen_wiped


@pytest.mark.usefixtures("busy_switching")
@pytest.mark.parametrize(
    ("ik_cache", "sk_cache"), [(1, 1), (2, 1), (2, 2)], ids=["ik1-sk1", "ik2-sk1", "ik2-sk2"]
)
def test_threads_over_more_partitions_than_a_tiny_cache_never_fail(
    make_factory: FactoryMaker, ik_cache: int, sk_cache: int
) -> None:
    policy = CryptoPolicy(
        intermediate_key_cache_max_size=ik_cache,
        system_key_cache_max_size=sk_cache,
        revoke_check_interval=timedelta(milliseconds=2),
    )
    factory = make_factory(policy=policy, clock=TickingClock())
    errors, seen_wiped = hammer(factory, threads=8, partitions=5, rounds=1500)
    assert not errors, f"{len(errors)} failed calls, the first: {errors[0]!r}"
    assert not seen_wiped, seen_wiped[0]
    for p in range(5):  # no partition is left stuck
        session = factory.get_session(f"p{p}")
        assert session.decrypt_bytes(session.encrypt_bytes(b"after")) == b"after"
    assert not wiped(factory.keys.intermediate_keys)
    assert not wiped(factory.keys.system_keys)


def another_put_first(monkeypatch: pytest.MonkeyPatch, cache: KeyCache, other_id: str) -> None:
    """Make the next `put` into `cache` come right after another thread's `put` of a key of
    `other_id`, which fills the one-key cache and evicts what was there."""
    put = cache.put
    done: list[CachedKey] = []

    def put_after_another(entry: CachedKey, **kwargs: Any) -> CachedKey:
        if not done:
            done.append(put(CachedKey(KeyMeta(other_id, START), bytes(range(32)))))
        return put(entry, **kwargs)

    monkeypatch.setattr(cache, "put", put_after_another)


def test_an_intermediate_key_evicted_during_its_revocation_check_is_not_cached_wiped(
    make_factory: FactoryMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = TickingClock(step=0.0)
    policy = CryptoPolicy(
        intermediate_key_cache_max_size=1, revoke_check_interval=timedelta(seconds=1)
    )
    factory = make_factory(policy=policy, clock=clock)
    session = factory.get_session("p1")
    first = session.encrypt_bytes(b"first")
    clock.now += 2  # the revocation check of p1's key is due: it is re-read and reused
    another_put_first(monkeypatch, factory.keys.intermediate_keys, "_IK_other_svc_prod")
    second = session.encrypt_bytes(b"second")
    monkeypatch.undo()
    assert not wiped(factory.keys.intermediate_keys)
    for _ in range(3):  # the partition works from now on, with or without churn
        assert session.decrypt_bytes(first) == b"first"
        assert session.decrypt_bytes(second) == b"second"
        assert session.decrypt_bytes(session.encrypt_bytes(b"third")) == b"third"


def test_a_system_key_evicted_during_its_revocation_check_is_not_cached_wiped(
    make_factory: FactoryMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = TickingClock(step=0.0)
    policy = CryptoPolicy(system_key_cache_max_size=1, revoke_check_interval=timedelta(seconds=1))
    factory = make_factory(policy=policy, clock=clock)
    session = factory.get_session("p1")
    first = session.encrypt_bytes(b"first")
    clock.now += 2
    another_put_first(monkeypatch, factory.keys.system_keys, "_SK_other_svc_prod")
    second = factory.get_session("p2").encrypt_bytes(b"second")
    monkeypatch.undo()
    assert not wiped(factory.keys.system_keys)
    for p in ("p3", "p4"):  # new partitions seal their keys with the cached system key
        other = factory.get_session(p)
        assert other.decrypt_bytes(other.encrypt_bytes(b"x")) == b"x"
    assert session.decrypt_bytes(first) == b"first"
    assert factory.get_session("p2").decrypt_bytes(second) == b"second"
