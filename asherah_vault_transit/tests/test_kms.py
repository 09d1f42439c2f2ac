"""The KMS on a fake Vault: wire format, retries, failover, tokens, metrics, async, close."""

from __future__ import annotations

import asyncio
import base64
import threading

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from asherah_core import KmsError, load_kms
from asherah_vault_transit import describe_ciphertext, key_version, parse_ciphertext

from .conftest import MakeKms
from .fakes import FakeClock, FakeVault

KEY = bytes(range(32))


def test_the_encrypted_key_is_transits_ciphertext_text(make_kms: MakeKms, vault: FakeVault) -> None:
    kms = make_kms()
    wrapped = kms.encrypt_key(KEY)
    assert wrapped.startswith(b"vault:v1:")
    assert vault.ciphertexts[wrapped.decode()] == KEY
    (method, path, headers, body) = vault.cluster("a").seen[-1]
    assert (method, path) == ("POST", "transit/encrypt/k")
    assert body == {"plaintext": base64.b64encode(KEY).decode()}  # what the Rust core sends
    assert headers["x-vault-token"] == "root"
    assert kms.decrypt_key(wrapped) == KEY


def test_a_ciphertext_written_elsewhere_unwraps(make_kms: MakeKms, vault: FakeVault) -> None:
    vault.ciphertexts["vault:v1:AAAA"] = b"k" * 32
    assert make_kms().decrypt_key(b"vault:v1:AAAA") == b"k" * 32


@pytest.mark.parametrize(
    "bad", [b"", b"vault:v1:", b"vault:v0:AAAA", b"AAAA", b"\xff\xfe", b"vault:vx:AAAA"]
)
def test_what_is_not_a_transit_ciphertext_is_refused_before_any_call(
    make_kms: MakeKms, vault: FakeVault, bad: bytes
) -> None:
    kms = make_kms()
    with pytest.raises(KmsError, match="not a Vault Transit ciphertext"):
        kms.decrypt_key(bad)
    assert not vault.calls


def test_describe_and_key_version() -> None:
    assert describe_ciphertext(b"vault:v12:QUJD") == {
        "kms": "vault",
        "key_version": 12,
        "ciphertext_chars": 14,
    }
    assert describe_ciphertext(b'{"encryptedKey": 1}') is None
    assert key_version(parse_ciphertext(b"vault:v3:QUJD")) == 3


def test_namespace_header(make_kms: MakeKms, vault: FakeVault) -> None:
    make_kms(namespace="team-a/prod").encrypt_key(KEY)
    assert vault.cluster("a").seen[-1][2]["x-vault-namespace"] == "team-a/prod"


def test_a_5xx_is_retried_on_the_same_cluster(make_kms: MakeKms, vault: FakeVault) -> None:
    kms = make_kms()
    kms.encrypt_key(KEY)  # the token looked up
    vault.cluster("a").forced = [503, 500]
    assert kms.encrypt_key(KEY).startswith(b"vault:v1:")
    assert vault.calls["transit/encrypt/k"] == 4


def test_a_cluster_that_does_not_answer_fails_over_at_once(
    make_kms: MakeKms, vault: FakeVault, reader: InMemoryMetricReader
) -> None:
    vault.cluster("a").down = True
    kms = make_kms(addresses=["http://a:8200", "http://b:8200"])
    wrapped = kms.encrypt_key(KEY)
    assert len(vault.cluster("a").seen) == 1  # no retry against a dead cluster
    assert vault.cluster("b").seen[-1][1] == "transit/encrypt/k"
    # a is cooling down: the next call goes to b first.
    vault.cluster("a").seen.clear()
    assert kms.decrypt_key(wrapped) == KEY
    assert not vault.cluster("a").seen
    assert _sum(reader, "ael.kms.vault.failover") == 1


def test_a_cooled_down_cluster_is_tried_first_again(
    make_kms: MakeKms, vault: FakeVault, clock: FakeClock
) -> None:
    vault.cluster("a").down = True
    kms = make_kms(addresses=["http://a:8200", "http://b:8200"], cluster_cooldown=10)
    kms.encrypt_key(KEY)
    vault.cluster("a").down = False
    clock.now += 11
    kms.encrypt_key(KEY)
    assert vault.cluster("a").seen[-1][1] == "transit/encrypt/k"


def test_every_cluster_failing_names_each_cause(make_kms: MakeKms, vault: FakeVault) -> None:
    vault.cluster("a").down = True
    vault.cluster("b").forced = [403]
    kms = make_kms(addresses=["http://a:8200", "http://b:8200"], token="s.SECRET")
    with pytest.raises(KmsError) as caught:
        kms.encrypt_key(KEY)
    message = str(caught.value)
    assert "failed on every cluster (2)" in message
    assert "http://a:8200: token look-up: ConnectError: connection refused" in message
    assert "http://b:8200: encrypt: HTTP 403: permission denied" in message
    assert "s.SECRET" not in message
    assert KEY.hex() not in message


def test_a_400_is_final_and_not_sent_to_other_clusters(make_kms: MakeKms, vault: FakeVault) -> None:
    kms = make_kms(addresses=["http://a:8200", "http://b:8200"])
    with pytest.raises(KmsError, match="refused at http://a:8200: decrypt: HTTP 400: cipher"):
        kms.decrypt_key(b"vault:v1:QUJD")
    assert not vault.cluster("b").seen


def test_the_deadline_bounds_the_retries(
    make_kms: MakeKms, vault: FakeVault, clock: FakeClock
) -> None:
    kms = make_kms(max_retries=10, retry_base_delay=1.0, deadline=2)
    kms.encrypt_key(KEY)
    vault.calls.clear()
    vault.cluster("a").forced = [503] * 50
    start = clock.now
    with pytest.raises(KmsError, match="503"):
        kms.encrypt_key(KEY)
    assert clock.now - start <= 2.0  # back-offs (up to 1, 2, 2 … s) never sleep past it
    assert vault.calls["transit/encrypt/k"] >= 2  # but it did retry


def test_a_renewable_token_is_renewed_before_it_expires(
    make_kms: MakeKms, vault: FakeVault, clock: FakeClock
) -> None:
    token = vault.issue(10)
    kms = make_kms(token=token)
    for _ in range(10):  # 40 s of use with a 10 s token
        assert kms.decrypt_key(kms.encrypt_key(KEY)) == KEY
        clock.now += 4
    assert vault.calls["auth/token/renew-self"] >= 4
    assert kms.credentials[0].renewals >= 4


def test_a_given_token_that_expires_fails_with_a_clear_error(
    make_kms: MakeKms, vault: FakeVault, clock: FakeClock
) -> None:
    token = vault.issue(10, renewable=False)
    kms = make_kms(token=token)
    kms.encrypt_key(KEY)
    clock.now += 11
    with pytest.raises(KmsError, match="HTTP 403: permission denied") as caught:
        kms.encrypt_key(KEY)
    assert token not in str(caught.value)


def test_approle_logs_in_again_when_renewal_is_refused(
    make_kms: MakeKms, vault: FakeVault, clock: FakeClock
) -> None:
    vault.login_ttl, vault.login_max_ttl = 10, 15
    kms = make_kms(auth_method="approle", approle_role_id="role-1", approle_secret_id="secret-1")
    for _ in range(12):
        assert kms.decrypt_key(kms.encrypt_key(KEY)) == KEY
        clock.now += 4
    assert kms.credentials[0].logins >= 3
    login = next(s for s in vault.cluster("a").seen if s[1] == "auth/approle/login")
    assert login[3] == {"role_id": "role-1", "secret_id": "secret-1"}
    assert "x-vault-token" not in login[2]


def test_a_403_for_a_revoked_token_logs_in_again_once(
    make_kms: MakeKms, vault: FakeVault, reader: InMemoryMetricReader
) -> None:
    kms = make_kms(auth_method="approle", approle_role_id="role-1", approle_secret_id="secret-1")
    kms.encrypt_key(KEY)
    vault.tokens.clear()  # every token revoked
    assert kms.decrypt_key(kms.encrypt_key(KEY)) == KEY
    assert kms.credentials[0].logins == 2
    assert _sum(reader, "ael.kms.vault.token") == 1


def test_a_refused_login_is_reported_without_the_secret(make_kms: MakeKms) -> None:
    kms = make_kms(auth_method="approle", approle_role_id="role-1", approle_secret_id="WRONG-SID")
    with pytest.raises(KmsError, match="approle login at auth/approle/login: HTTP 400") as caught:
        kms.encrypt_key(KEY)
    assert "WRONG-SID" not in str(caught.value)


def test_kubernetes_login_sends_the_service_account_jwt(
    make_kms: MakeKms, vault: FakeVault
) -> None:
    kms = make_kms(auth_method="kubernetes", auth_role="app", k8s_token_path="/sa/token")
    kms.encrypt_key(KEY)
    login = next(s for s in vault.cluster("a").seen if s[1] == "auth/kubernetes/login")
    assert login[3] == {"role": "app", "jwt": "jwt-from-/sa/token"}


def test_metrics_time_each_operation_with_the_error_type(
    make_kms: MakeKms, vault: FakeVault, reader: InMemoryMetricReader
) -> None:
    kms = make_kms()
    kms.decrypt_key(kms.encrypt_key(KEY))
    with pytest.raises(KmsError):
        kms.decrypt_key(b"vault:v1:QUJD")
    points = _points(reader, "ael.kms.vault.decryptkey")
    assert sorted(p.count for p in points) == [1, 1]
    assert {p.attributes.get("error.type") for p in points} == {None, "KmsError"}
    assert [p.count for p in _points(reader, "ael.kms.vault.encryptkey")] == [1]


def test_async_calls_use_the_same_logic(make_kms: MakeKms, vault: FakeVault) -> None:
    kms = make_kms()
    kms.encrypt_key(KEY)
    vault.cluster("a").forced = [503]

    async def main() -> bytes:
        wrapped = await kms.encrypt_key_async(KEY)
        return await kms.decrypt_key_async(wrapped)

    assert asyncio.run(main()) == KEY
    assert vault.calls["transit/encrypt/k"] == 3


def test_threads_share_one_kms(make_kms: MakeKms) -> None:
    kms = make_kms(addresses=["http://a:8200", "http://b:8200"])
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                key = bytes([threading.get_ident() % 256]) * 32
                assert kms.decrypt_key(kms.encrypt_key(key)) == key
        except BaseException as e:  # collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_close_makes_later_calls_fail(make_kms: MakeKms) -> None:
    kms = make_kms()
    kms.close()
    kms.close()
    with pytest.raises(KmsError, match="closed"):
        kms.encrypt_key(KEY)


def test_diagnose_reports_each_cluster(make_kms: MakeKms, vault: FakeVault) -> None:
    vault.cluster("b").down = True
    results = make_kms(addresses=["http://a:8200", "http://b:8200"]).diagnose()
    assert [(r.target, r.ok) for r in results] == [
        ("http://a:8200", True),
        ("http://b:8200", False),
    ]
    assert "transit/k v1" in results[0].detail
    assert "ConnectError" in results[1].detail


def test_the_plugin_registers_vault_and_its_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    monkeypatch.setenv("VAULT_TRANSIT_KEY", "k")
    monkeypatch.setenv("VAULT_TOKEN", "s.TOKEN-SECRET")
    for name in ("vault", "vault-transit"):
        with load_kms(name, {}) as kms:
            assert type(kms).__name__ == "VaultTransitKms"
            assert "TOKEN-SECRET" not in repr(kms)


def _points(reader: InMemoryMetricReader, name: str) -> list:  # type: ignore[type-arg]
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def _sum(reader: InMemoryMetricReader, name: str) -> int:
    return sum(p.value for p in _points(reader, name))


def test_close_during_a_call_fails_that_call_cleanly(make_kms: MakeKms, vault: FakeVault) -> None:
    kms = make_kms(addresses=["http://a:8200", "http://b:8200"])
    kms.encrypt_key(KEY)
    # Another thread closes the KMS while this call is under way: the call fails over to b,
    # whose client is closed by then.
    vault.on_request = lambda request: kms.close()
    vault.cluster("a").down = True
    with pytest.raises(KmsError, match="closed during the call"):
        kms.encrypt_key(KEY)


def test_a_redirect_is_not_followed(make_kms: MakeKms, vault: FakeVault) -> None:
    """A standby's 307 would carry the token to the address it names: not followed."""
    kms = make_kms(addresses=["http://a:8200", "http://b:8200"])
    kms.encrypt_key(KEY)
    vault.cluster("a").forced = [307]
    assert kms.encrypt_key(KEY).startswith(b"vault:v1:")
    assert vault.cluster("b").seen[-1][1] == "transit/encrypt/k"
    assert not vault.cluster("evil").seen


def test_retry_after_is_honoured_within_the_deadline(
    make_kms: MakeKms, vault: FakeVault, clock: FakeClock
) -> None:
    kms = make_kms()
    kms.encrypt_key(KEY)
    vault.cluster("a").forced = [429]
    before = clock.now
    assert kms.encrypt_key(KEY).startswith(b"vault:v1:")
    assert clock.now - before >= 1.0  # waited as asked, not the 10 ms back-off
    short = make_kms(deadline=0.5)
    short.encrypt_key(KEY)
    vault.cluster("a").forced = [429]
    with pytest.raises(KmsError, match="no time left to retry"):
        short.encrypt_key(KEY)
