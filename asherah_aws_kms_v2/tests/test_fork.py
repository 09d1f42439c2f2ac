"""A forked child of a process that used an `AwsKms` (gunicorn's ``--preload``, Celery's prefork
pool): its calls run on worker threads and clients of its own, and the parent's stay open."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from asherah_aws_kms_v2.regions import Probe, RegionHealth

from .conftest import MakeKms
from .fakes import FakeAws

ForkedChild = Callable[[Callable[[], str]], str]
"""The ``in_forked_child`` fixture (conftest.py at the root)."""


def test_a_forked_child_uses_worker_threads_and_clients_of_its_own(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, in_forked_child: ForkedChild
) -> None:
    kms = make_kms(arns, operation_timeout=3.0)
    parents = list(aws.clients)  # one client per region
    wrapped = kms.encrypt_key(b"k" * 32)  # an Encrypt in every other region, on the workers
    assert kms.decrypt_key(wrapped) == b"k" * 32

    def child() -> str:
        # The parent's pool believes it has idle workers, none of which exist here: work
        # submitted there would never run, and each call would end at its deadline.
        mine = kms.encrypt_key(b"c" * 32)
        opened = kms.decrypt_key(mine) == b"c" * 32 and kms.decrypt_key(wrapped) == b"k" * 32
        made = aws.clients[len(parents) :]  # the child's own, one per region it called
        kms.close()
        return (
            f"{opened} {len(made)} {all(c.closed for c in made)} "
            f"{sum(c.close_calls for c in parents)}"
        )

    assert in_forked_child(child) == "True 3 True 0"  # the parent's clients: never closed there
    assert len(aws.clients) == len(parents)  # nothing made in the parent meanwhile
    assert kms.decrypt_key(kms.encrypt_key(b"p" * 32)) == b"p" * 32  # the parent goes on


def test_a_call_of_another_thread_under_way_at_the_fork_does_not_hold_the_child_up(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, in_forked_child: ForkedChild
) -> None:
    kms = make_kms(arns, operation_timeout=5.0)
    wrapped = kms.encrypt_key(b"k" * 32)
    aws.delays["us-west-2"] = 0.5  # the parent's next Decrypt is inside the fake for 0.5 s
    slow = threading.Thread(target=kms.decrypt_key, args=(wrapped,))
    slow.start()
    while aws.in_flight == 0:  # wait until that attempt is under way
        time.sleep(0.001)
    made_before = len(aws.clients)

    def child() -> str:
        # That thread does not exist here: its attempt never ends. close() must not wait for
        # it, or the child's own clients would never be closed.
        aws.delays.clear()
        opened = kms.decrypt_key(wrapped) == b"k" * 32
        mine = aws.clients[made_before:]
        kms.close()
        return f"{opened} {len(mine) > 0} {all(c.closed for c in mine)}"

    answer = in_forked_child(child)
    slow.join()
    assert answer == "True True True"


def test_region_health_in_a_forked_child_is_unlocked_and_has_none_of_the_parents_probes(
    held_at_fork: Callable[[Callable[[], Any]], str], in_forked_child: ForkedChild
) -> None:
    now = [100.0]
    health = RegionHealth(["a", "b"], cooldown=1.0, probe_timeout=30.0, clock=lambda: now[0])
    health.record_fault("a", "timeout")
    now[0] += 2.0  # the cool-down has ended: the next caller probes "a"
    granted: list[Probe] = []
    assert health.split(["a", "b"], probes=granted) == (["a", "b"], [])
    assert [p.region for p in granted] == ["a"]  # a probe of a thread that is not in a child
    health.cooling = 5  # as a thread stopped between a change and its count would leave it
    assert held_at_fork(lambda: health._lock) == "taken"

    def child() -> str:
        again: list[Probe] = []
        health.split(["a", "b"], probes=again)
        return f"{[p.region for p in again]} {health.cooling}"

    assert in_forked_child(child) == "['a'] 1"  # probed again at once; the count recounted
    assert health.cooling == 5  # the parent's own state is untouched


def test_the_log_redactions_install_lock_is_free_in_a_forked_child(
    held_at_fork: Callable[[Callable[[], Any]], str],
) -> None:
    from asherah_aws_kms_v2 import redact  # noqa: PLC0415

    assert held_at_fork(lambda: redact._install_lock) == "taken"
