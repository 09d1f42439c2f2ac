"""The plugin's locks are free in a forked child, whichever thread of the parent held them at
the fork, and a renewal or login under way in the parent is not under way in the child."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from asherah_core import PluginConfig
from asherah_vault_transit import Credentials, VaultTransitKms, settings_from_config
from asherah_vault_transit.latch import Latch
from asherah_vault_transit.protocol import Call, Wait

from .fakes import FakeClock
from .test_credentials import APPROLE, finish, login_reply

ForkedChild = Callable[[Callable[[], str]], str]
HeldAtFork = Callable[[Callable[[], Any]], str]
"""The ``in_forked_child`` and ``held_at_fork`` fixtures (conftest.py at the root)."""


@pytest.fixture
def kms() -> VaultTransitKms:
    config = PluginConfig(
        {"address": "http://a:8200", "transit_key": "k", "token": "s.T", "max_retries": 0},
        path="plugins.vault",
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    return VaultTransitKms(settings_from_config(config, {}), transport=transport)


@pytest.mark.parametrize("which", ["credentials", "cluster health", "transport", "latch"])
def test_a_lock_held_at_the_fork_is_free_in_the_child(
    kms: VaultTransitKms, held_at_fork: HeldAtFork, which: str
) -> None:
    latch = Latch()
    lock_of = {
        "credentials": lambda: kms._credentials[0]._lock,
        "cluster health": lambda: kms._health._lock,
        "transport": lambda: kms._http._lock,
        "latch": lambda: latch._lock,
    }[which]
    assert held_at_fork(lock_of) == "taken"
    kms.close()


def test_a_renewal_under_way_in_the_parent_is_not_under_way_in_the_child(
    kms: VaultTransitKms, in_forked_child: ForkedChild
) -> None:
    credentials = kms._credentials[0]
    credentials._refreshing = True  # as a thread of the parent renewing the token leaves it
    assert in_forked_child(lambda: str(credentials._refreshing)) == "False"
    assert credentials._refreshing  # the parent's renewal goes on
    kms.close()


def test_a_login_under_way_in_the_parent_is_not_waited_for_in_the_child(
    in_forked_child: ForkedChild,
) -> None:
    credentials = Credentials(0, APPROLE, timeout=1, renew_fraction=0.5, clock=FakeClock())
    leading = credentials.token(1)
    assert isinstance(next(leading), Call)  # a thread of the parent logging in
    assert isinstance(next(credentials.token(1)), Wait)  # the parent's other callers wait

    def child() -> str:
        step = next(credentials.token(1))
        return f"{type(step).__name__} {getattr(step, 'path', '')}"

    assert in_forked_child(child) == "Call auth/approle/login"  # no one there would finish it
    assert finish(leading, login_reply("t1", 60)) == "t1"  # the parent's login goes on
