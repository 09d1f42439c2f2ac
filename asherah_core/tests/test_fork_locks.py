"""Every lock of the framework is free in a forked child, whichever thread of the parent held it
at the fork: that thread does not exist in the child, and a lock it held would stay held there
for good (servers that load the application and then fork: gunicorn's ``--preload``, Celery).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from asherah_core import PluginHost, SessionFactory, StaticKms, compat, events, metrics
from asherah_core.cache import KeyCache
from asherah_core.forksafe import new_locks_in_child
from asherah_core.metastore import EnvelopeKeyRecord, InMemoryMetastore
from asherah_core.policy import CryptoPolicy
from asherah_core.session import _SessionCache

ForkedChild = Callable[[Callable[[], str]], str]
HeldAtFork = Callable[[Callable[[], Any]], str]
"""The ``in_forked_child`` and ``held_at_fork`` fixtures (conftest.py at the root)."""

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"


class TwoLocks:
    def __init__(self) -> None:
        self.a = threading.Lock()
        self.b = threading.Lock()
        self.other = "kept"
        new_locks_in_child(self, "a", "b")


def test_new_locks_in_child_renews_the_named_locks_in_the_child_only(
    held_at_fork: HeldAtFork, in_forked_child: ForkedChild
) -> None:
    owner = TwoLocks()
    a, b = owner.a, owner.b
    assert held_at_fork(lambda: owner.a) == "taken"
    assert held_at_fork(lambda: owner.b) == "taken"
    assert (owner.a, owner.b) == (a, b)  # the parent's locks are the same objects

    def child() -> str:
        return f"{owner.a is not a} {owner.b is not b} {owner.other}"

    assert in_forked_child(child) == "True True kept"


def factory() -> SessionFactory:
    return SessionFactory("svc", "prod", kms=StaticKms(MASTER_KEY), metastore=InMemoryMetastore())


OWNERS: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {
    # what owns the lock, made afresh; the lock, read from it (again in the child)
    "a key cache": (lambda: KeyCache("intermediate-key", 4), lambda o: o._lock),
    "the session cache": (
        lambda: _SessionCache(CryptoPolicy(cache_sessions=True), lambda: 0.0),
        lambda o: o._lock,
    ),
    "a factory's close": (factory, lambda o: o._close_lock),
    "a key hierarchy's stripe": (lambda: factory()._keys, lambda o: o._ik_locks[5]),
    "the memory metastore": (InMemoryMetastore, lambda o: o._lock),
    "a plugin host": (lambda: PluginHost(autoload=False), lambda o: o._lock),
    "the metrics' histograms": (metrics.FrameworkMetrics, lambda o: o._lock),
    "the default metrics": (lambda: metrics, lambda o: o._default_lock),
    "the metrics hook": (lambda: events, lambda o: o._lock),
    "the compat module": (lambda: compat, lambda o: o._lock),
    "the default plugin host": (lambda: PluginHost, lambda o: o._default_lock),
}


@pytest.mark.parametrize("owner", OWNERS)
def test_a_lock_held_at_the_fork_is_free_in_the_child(owner: str, held_at_fork: HeldAtFork) -> None:
    make, lock_of = OWNERS[owner]
    made = make()
    assert held_at_fork(lambda: lock_of(made)) == "taken"


def test_an_in_memory_sql_databases_lock_is_free_in_the_child(held_at_fork: HeldAtFork) -> None:
    pytest.importorskip("sqlalchemy")
    from asherah_core.metastore.sql import SqlMetastore  # noqa: PLC0415

    store = SqlMetastore("sqlite://", create_table=True)
    assert held_at_fork(lambda: store._one_at_a_time) == "taken"
    store.close()


class BlockingLoads(InMemoryMetastore):
    """Loads of the thread `blocked` wait until `go` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: threading.Thread | None = None
        self.inside, self.go = threading.Event(), threading.Event()

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        if threading.current_thread() is self.blocked:
            self.inside.set()
            self.go.wait(30)
        return super().load(key_id, created)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_key_load_under_way_in_another_thread_at_the_fork_does_not_stop_the_child(
    in_forked_child: ForkedChild,
) -> None:
    metastore = BlockingLoads()
    writer = SessionFactory("svc", "prod", kms=StaticKms(MASTER_KEY), metastore=metastore)
    row = writer.get_session("p").encrypt_bytes(b"secret")
    writer.close()
    reader = SessionFactory("svc", "prod", kms=StaticKms(MASTER_KEY), metastore=metastore)
    loading = threading.Thread(target=lambda: reader.get_session("p").decrypt_bytes(row))
    metastore.blocked = loading
    loading.start()
    try:
        assert metastore.inside.wait(10)  # inside the load, holding the key id's stripe

        def child() -> str:
            done: list[bytes] = []
            worker = threading.Thread(
                target=lambda: done.append(reader.get_session("p").decrypt_bytes(row)),
                daemon=True,
            )
            worker.start()
            worker.join(5)
            return done[0].decode() if done else "stuck"

        assert in_forked_child(child) == "secret"
    finally:
        metastore.go.set()
        loading.join()
        reader.close()


def test_an_eviction_keeps_every_latest_key_in_its_slot_at_each_step() -> None:
    # A forked child renews the cache's lock: it may find the cache between two statements
    # of a put, so the invariant must hold at each of them (see cache.py).
    cache = KeyCache("intermediate-key", 2)
    seen: list[bool] = []

    def whole() -> bool:
        return all((k, v.created) in cache._keys for k, v in cache._latest.items())

    class Watching(dict[Any, Any]):  # the slots, checked after each removal from them
        def __delitem__(self, key: Any) -> None:
            super().__delitem__(key)
            seen.append(whole())

        def pop(self, key: Any, *default: Any) -> Any:
            value = super().pop(key, *default)
            seen.append(whole())
            return value

    from asherah_core.cache import CachedKey  # noqa: PLC0415
    from asherah_core.records import KeyMeta  # noqa: PLC0415

    cache._keys = Watching()
    for n in range(5):
        entry = CachedKey(KeyMeta(f"_IK_p{n}_svc_prod", 100 + n), bytearray(32))
        cache.put(entry, latest=True)
    assert len(cache) == 2
    assert seen == [True, True, True]  # three evictions, each leaving it whole
