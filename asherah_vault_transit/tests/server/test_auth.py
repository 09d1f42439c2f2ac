"""Token and AppRole auth on a real server, and tokens that outlive their TTL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from asherah_core import KmsError

from ._admin import Admin
from .conftest import MakeKms

pytestmark = pytest.mark.vault


def test_token_auth_round_trip_in_transits_own_format(
    admin: Admin, key: str, make_kms: MakeKms
) -> None:
    token = admin.new_token([admin.policy(key)], "1h")
    kms = make_kms(address=admin.address, transit_key=key, token=token)
    secret = os.urandom(32)
    wrapped = kms.encrypt_key(secret)
    assert wrapped.startswith(b"vault:v1:")
    assert admin.decrypt(key, wrapped.decode()) == secret  # Vault itself agrees
    theirs = admin.encrypt(key, secret)
    assert kms.decrypt_key(theirs.encode()) == secret
    assert base64.b64encode(secret).decode() not in repr(kms)


def test_a_token_without_the_policy_is_refused_clearly(
    admin: Admin, key: str, make_kms: MakeKms
) -> None:
    other = admin.new_key()
    token = admin.new_token([admin.policy(other)], "1h")
    kms = make_kms(address=admin.address, transit_key=key, token=token, max_retries=0)
    with pytest.raises(KmsError, match="HTTP 403: permission denied") as caught:
        kms.encrypt_key(os.urandom(32))
    assert token not in str(caught.value)


def test_approle_login(admin: Admin, key: str, make_kms: MakeKms) -> None:
    role_id, secret_id = admin.approle([admin.policy(key)], token_ttl="1h")
    kms = make_kms(
        address=admin.address,
        transit_key=key,
        auth_method="approle",
        approle_role_id=role_id,
        approle_secret_id=secret_id,
    )
    secret = os.urandom(32)
    assert kms.decrypt_key(kms.encrypt_key(secret)) == secret
    assert kms.credentials[0].logins == 1


def test_approle_with_a_wrong_secret_id_names_the_login_not_the_secret(
    admin: Admin, key: str, make_kms: MakeKms
) -> None:
    role_id, _ = admin.approle([admin.policy(key)])
    kms = make_kms(
        address=admin.address,
        transit_key=key,
        auth_method="approle",
        approle_role_id=role_id,
        approle_secret_id="not-the-secret-id-4711",
    )
    with pytest.raises(KmsError, match="approle login at auth/approle/login") as caught:
        kms.encrypt_key(os.urandom(32))
    assert "not-the-secret-id-4711" not in str(caught.value)


def test_a_token_with_a_3_second_ttl_outlives_its_expiry(
    admin: Admin, key: str, make_kms: MakeKms
) -> None:
    """The Rust core fails once such a token expires; ours renews it before."""
    token = admin.new_token([admin.policy(key)], "3s", explicit_max_ttl="1h")
    kms = make_kms(address=admin.address, transit_key=key, token=token)
    end = time.monotonic() + 8
    rounds = 0
    while time.monotonic() < end:
        secret = os.urandom(32)
        assert kms.decrypt_key(kms.encrypt_key(secret)) == secret
        rounds += 1
        time.sleep(0.4)
    assert rounds >= 10
    assert kms.credentials[0].renewals >= 2


def test_approle_logs_in_again_when_its_token_cannot_be_renewed(
    admin: Admin, key: str, make_kms: MakeKms
) -> None:
    role_id, secret_id = admin.approle(
        [admin.policy(key)], token_ttl="2s", token_max_ttl="3s", secret_id_num_uses=0
    )
    kms = make_kms(
        address=admin.address,
        transit_key=key,
        auth_method="approle",
        approle_role_id=role_id,
        approle_secret_id=secret_id,
    )
    end = time.monotonic() + 8
    while time.monotonic() < end:
        secret = os.urandom(32)
        assert kms.decrypt_key(kms.encrypt_key(secret)) == secret
        time.sleep(0.4)
    assert kms.credentials[0].logins >= 2


def test_a_revoked_token_is_replaced_by_a_new_login(
    admin: Admin, key: str, make_kms: MakeKms
) -> None:
    role_id, secret_id = admin.approle([admin.policy(key)], token_ttl="1h")
    kms = make_kms(
        address=admin.address,
        transit_key=key,
        auth_method="approle",
        approle_role_id=role_id,
        approle_secret_id=secret_id,
    )
    kms.encrypt_key(os.urandom(32))
    lease = kms.credentials[0].lease()
    assert lease is not None
    admin.revoke(lease.token)
    secret = os.urandom(32)
    assert kms.decrypt_key(kms.encrypt_key(secret)) == secret
    assert kms.credentials[0].logins == 2


@pytest.mark.parametrize("driver", ["threads", "tasks"])
def test_a_burst_of_403s_logs_in_once_and_spares_a_secret_id_of_few_uses(
    admin: Admin, key: str, make_kms: MakeKms, driver: str
) -> None:
    """16 callers denied the same revoked token at once: one login, not 16, so a secret id
    good for 3 logins is not used up (and every later login refused)."""
    role_id, secret_id = admin.approle([admin.policy(key)], token_ttl="1h", secret_id_num_uses=3)
    kms = make_kms(
        address=admin.address,
        transit_key=key,
        auth_method="approle",
        approle_role_id=role_id,
        approle_secret_id=secret_id,
    )
    kms.encrypt_key(os.urandom(32))  # the first of the secret id's uses
    lease = kms.credentials[0].lease()
    assert lease is not None
    admin.revoke(lease.token)
    secrets = [os.urandom(32) for _ in range(16)]
    if driver == "tasks":

        async def burst() -> list[bytes]:
            wrapped = await asyncio.gather(*(kms.encrypt_key_async(s) for s in secrets))
            return list(await asyncio.gather(*(kms.decrypt_key_async(w) for w in wrapped)))

        assert asyncio.run(burst()) == secrets
    else:
        start = threading.Barrier(16)

        def round_trip(secret: bytes) -> bytes:
            start.wait()
            return kms.decrypt_key(kms.encrypt_key(secret))

        with ThreadPoolExecutor(16) as pool:
            assert list(pool.map(round_trip, secrets)) == secrets
    assert kms.credentials[0].logins == 2
    other = kms.credentials[0].lease()
    assert other is not None
    admin.revoke(other.token)
    assert kms.decrypt_key(kms.encrypt_key(secrets[0])) == secrets[0]  # the third use
    assert kms.credentials[0].logins == 3


def test_asherah_kms_doctor_checks_it(admin: Admin, key: str, tmp_path: Path) -> None:
    """The CLI builds the KMS from plugins.toml (token from $VAULT_TOKEN) and probes it."""
    token = admin.new_token([admin.policy(key)], "1h")
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[kms]\nplugin = "vault"\n[plugins.vault]\naddress = "{admin.address}"\n'
        f'transit_key = "{key}"\n',
        encoding="utf-8",
    )
    cli = Path(sys.executable).with_name("asherah-kms")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    done = subprocess.run(
        [str(cli), "doctor", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        env={**env, "VAULT_TOKEN": token},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    [probe] = report["probes"]
    assert probe["target"] == admin.address
    assert f"transit/{key} v1 (token auth" in probe["detail"]
    assert token not in done.stdout


def test_a_forked_child_talks_to_vault_on_connections_of_its_own(
    admin: Admin,
    key: str,
    make_kms: MakeKms,
    in_forked_child: Callable[[Callable[[], str]], str],
) -> None:
    token = admin.new_token([admin.policy(key)], "1h")
    kms = make_kms(address=admin.address, transit_key=key, token=token)
    secret = os.urandom(32)
    wrapped = kms.encrypt_key(secret)  # a kept-alive connection in the client's pool now
    parents = kms._http._blocking()

    def child() -> str:
        mine = os.urandom(32)
        opened = kms.decrypt_key(kms.encrypt_key(mine)) == mine
        theirs = kms.decrypt_key(wrapped) == secret
        own = kms._http._blocking() is not parents
        kms.close()  # closes the child's clients only
        return f"{opened} {theirs} {own}"

    assert in_forked_child(child) == "True True True"
    assert not any(client.is_closed for client in parents)  # the parent's stay open
    assert kms.decrypt_key(wrapped) == secret
