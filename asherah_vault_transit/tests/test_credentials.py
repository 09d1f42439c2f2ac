"""`Credentials` driven step by step: who renews a due token, and what the others do."""

from __future__ import annotations

import pytest

from asherah_vault_transit import Credentials
from asherah_vault_transit.auth import ClusterError
from asherah_vault_transit.protocol import Call, Flow, Reply
from asherah_vault_transit.settings import AuthSettings

from .conftest import MakeKms
from .fakes import FakeClock, FakeVault

APPROLE = AuthSettings(
    method="approle", mount="approle", approle_role_id="r", approle_secret_id="s"
)


def login_reply(token: str, ttl: float) -> Reply:
    return Reply(200, auth={"client_token": token, "lease_duration": ttl, "renewable": True})


def finish(flow: Flow[str], reply: Reply) -> str:
    with pytest.raises(StopIteration) as done:
        flow.send(reply)
    result: str = done.value.value
    return result


def immediate(flow: Flow[str]) -> str:
    with pytest.raises(StopIteration) as done:
        next(flow)
    result: str = done.value.value
    return result


def test_one_caller_renews_a_due_token_while_the_others_keep_using_it() -> None:
    clock = FakeClock()
    credentials = Credentials(0, APPROLE, timeout=1, renew_fraction=0.5, clock=clock)
    first = credentials.token(1)
    assert isinstance(next(first), Call)
    assert finish(first, login_reply("t1", 10)) == "t1"
    clock.now += 6  # due (half the TTL passed), not expired
    renewing = credentials.token(1)
    call = next(renewing)
    assert (call.path, call.token) == ("auth/token/renew-self", "t1")
    assert immediate(credentials.token(1)) == "t1"  # no second renewal meanwhile
    assert finish(renewing, Reply(200, auth={"lease_duration": 10, "renewable": True})) == "t1"
    assert credentials.renewals == 1
    clock.now += 4  # renewed at +6: not due yet at +10
    assert immediate(credentials.token(1)) == "t1"


def test_a_failed_refresh_keeps_the_valid_token() -> None:
    clock = FakeClock()
    credentials = Credentials(0, APPROLE, timeout=1, renew_fraction=0.5, clock=clock)
    first = credentials.token(1)
    next(first)
    finish(first, login_reply("t1", 10))
    clock.now += 6
    flow = credentials.token(1)
    next(flow)  # renew-self
    login = flow.send(Reply(403, problem="permission denied"))  # renewal refused: log in
    assert isinstance(login, Call)
    assert login.path == "auth/approle/login"
    assert finish(flow, Reply(503, problem="sealed")) == "t1"
    # The claim was released: the next caller tries again.
    assert isinstance(next(credentials.token(1)), Call)


def test_an_expired_token_without_a_working_login_is_an_error() -> None:
    clock = FakeClock()
    credentials = Credentials(0, APPROLE, timeout=1, renew_fraction=0.5, clock=clock)
    first = credentials.token(1)
    next(first)
    finish(first, login_reply("t1", 10))
    clock.now += 11
    flow = credentials.token(1)
    assert next(flow).path == "auth/approle/login"
    with pytest.raises(ClusterError, match="HTTP 400"):
        flow.send(Reply(400, problem="invalid secret id"))


def test_renewal_failing_at_a_call_does_not_fail_the_call(
    make_kms: MakeKms, vault: FakeVault, clock: FakeClock
) -> None:
    vault.login_ttl = 10
    kms = make_kms(auth_method="approle", approle_role_id="role-1", approle_secret_id="secret-1")
    kms.encrypt_key(b"k" * 32)
    token = kms.credentials[0].lease()
    assert token is not None
    vault.tokens[token.token].renewable = False  # renewal refused
    vault.secret_id = "rotated"  # and the re-login too
    clock.now += 6
    assert kms.decrypt_key(kms.encrypt_key(b"k" * 32)) == b"k" * 32
    assert kms.credentials[0].logins == 1
