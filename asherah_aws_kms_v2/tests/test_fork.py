"""A forked child of a process that used an `AwsKms` (gunicorn's ``--preload``, Celery's prefork
pool): its calls run on worker threads and clients of its own, and the parent's stay open."""

from __future__ import annotations

from collections.abc import Callable

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
