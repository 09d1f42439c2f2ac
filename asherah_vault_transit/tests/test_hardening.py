"""Odd answers from Vault, and secrets kept out of messages and logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from asherah_core import KmsError, PluginConfig
from asherah_vault_transit import VaultTransitKms, settings_from_config

from .conftest import MakeKms
from .fakes import FakeVault

KEY = bytes(range(32))


def kms_answering(payload: dict[str, object], status: int = 200) -> VaultTransitKms:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("lookup-self"):
            return httpx.Response(200, json={"data": {"ttl": 0, "renewable": False}})
        return httpx.Response(status, json=payload)

    config = PluginConfig(
        {"address": "http://a:8200", "transit_key": "k", "token": "s.T", "max_retries": 0},
        path="plugins.vault",
    )
    return VaultTransitKms(settings_from_config(config, {}), transport=httpx.MockTransport(handle))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data": {"plaintext": "not base64!!"}}, "plaintext is not base64"),
        ({"data": {}}, "held no plaintext"),
        ({"nodata": 1}, "without data"),
    ],
)
def test_a_bad_decrypt_answer_is_a_clear_error(payload: dict[str, object], message: str) -> None:
    with kms_answering(payload) as kms, pytest.raises(KmsError, match=message) as caught:
        kms.decrypt_key(b"vault:v1:QUJD")
    assert "not base64!!" not in str(caught.value)


@pytest.mark.parametrize(
    "payload",
    [{"data": {"ciphertext": "plain text"}}, {"data": {"ciphertext": 7}}, {"data": {}}],
)
def test_a_bad_encrypt_answer_is_a_clear_error(payload: dict[str, object]) -> None:
    with kms_answering(payload) as kms, pytest.raises(KmsError):
        kms.encrypt_key(KEY)


def test_vaults_multi_error_text_is_one_line() -> None:
    payload = {"errors": ["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}
    with kms_answering(payload, 403) as kms, pytest.raises(KmsError) as caught:
        kms.encrypt_key(KEY)
    assert "HTTP 403: permission denied; invalid token" in str(caught.value)


def test_a_non_json_answer_names_the_status() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    config = PluginConfig(
        {"address": "http://a:8200", "transit_key": "k", "token": "s.T", "max_retries": 0}
    )
    kms = VaultTransitKms(settings_from_config(config, {}), transport=httpx.MockTransport(handle))
    with kms, pytest.raises(KmsError, match="HTTP 502, not a JSON body"):
        kms.encrypt_key(KEY)


def test_cert_login_names_the_role_and_sends_no_token(
    make_kms: MakeKms, vault: FakeVault, tmp_path: Path
) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    kms = make_kms(auth_method="cert", auth_role="web", client_cert=str(cert), client_key=str(cert))
    kms.encrypt_key(KEY)
    login = next(s for s in vault.cluster("a").seen if s[1] == "auth/cert/login")
    assert login[3] == {"name": "web"}
    assert "x-vault-token" not in login[2]


def test_an_explicit_auth_method_wins_over_vault_token(make_kms: MakeKms) -> None:
    kms = make_kms(
        auth_method="approle",
        approle_role_id="role-1",
        approle_secret_id="secret-1",
        environ={"VAULT_TOKEN": "root"},
    )
    kms.encrypt_key(KEY)
    assert kms.credentials[0].logins == 1


def test_no_secret_in_logs_messages_or_reprs(
    make_kms: MakeKms, vault: FakeVault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault.secret_id = "the-right-one"
    kms = make_kms(
        addresses=["http://a:8200", "http://b:8200"],
        auth_method="approle",
        approle_role_id="role-1",
        approle_secret_id="SECRET-ID-123",
    )
    vault.cluster("a").down = True
    with pytest.raises(KmsError) as caught:
        kms.encrypt_key(KEY)
    shown = [str(caught.value), repr(kms), repr(kms.settings), caplog.text]
    vault.secret_id = "SECRET-ID-123"
    wrapped = kms.encrypt_key(KEY)
    lease = kms.credentials[1].lease()
    assert lease is not None
    shown += [repr(lease), caplog.text]
    for text in shown:
        assert "SECRET-ID-123" not in text
        assert lease.token not in text
        assert KEY.hex() not in text
    assert kms.decrypt_key(wrapped) == KEY


def kms_over(
    handle: Callable[[httpx.Request], httpx.Response], **values: object
) -> VaultTransitKms:
    values = {"address": "http://a:8200", "transit_key": "k", "max_retries": 0, **values}
    config = PluginConfig(values, path="plugins.vault")
    return VaultTransitKms(settings_from_config(config, {}), transport=httpx.MockTransport(handle))


def test_an_error_quoting_a_request_header_is_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:  # what h11 says of a bad header
        token = request.headers["X-Vault-Token"].encode()
        raise httpx.LocalProtocolError(f"Illegal header value {token!r}", request=request)

    caplog.set_level(logging.DEBUG)
    kms = kms_over(handle, token="hvs.SECRET-TOKEN")
    shown = "LocalProtocolError: the request is not valid HTTP"
    with pytest.raises(KmsError, match=shown) as e:
        kms.encrypt_key(KEY)
    with pytest.raises(KmsError, match=shown) as e_async:
        asyncio.run(kms.encrypt_key_async(KEY))
    for text in (str(e.value), str(e_async.value), caplog.text):
        assert "SECRET-TOKEN" not in text
    kms.close()


def test_a_token_from_a_login_that_is_not_ascii_fails_the_cluster_not_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        auth = {"client_token": "hvs.SECRÉT", "lease_duration": 60, "renewable": False}
        return httpx.Response(200, json={"auth": auth})

    caplog.set_level(logging.DEBUG)
    kms = kms_over(handle, auth_method="approle", approle_role_id="rid")
    with pytest.raises(KmsError, match="UnicodeEncodeError: a header value is not ASCII") as e:
        kms.encrypt_key(KEY)
    for text in (str(e.value), caplog.text):
        assert "SECR" not in text
    kms.close()
