"""Settings from plugins.toml and the VAULT_* environment: defaults, validation, and errors
that name the exact key and hold no secret."""

from __future__ import annotations

from typing import Any

import pytest

from asherah_core import ConfigError, PluginConfig
from asherah_vault_transit import settings_from_config
from asherah_vault_transit.settings import DEFAULT_K8S_TOKEN_PATH


def settings(environ: dict[str, str] | None = None, **values: Any) -> Any:
    return settings_from_config(PluginConfig(values, path="plugins.vault"), environ or {})


def test_the_rust_cores_environment_variables_fill_absent_settings() -> None:
    s = settings(
        {
            "VAULT_ADDR": "https://vault.example:8200/",
            "VAULT_TRANSIT_KEY": "asherah-master",
            "VAULT_TRANSIT_MOUNT": "/kms/transit/",
            "VAULT_AUTH_METHOD": "AppRole",
            "VAULT_APPROLE_ROLE_ID": "rid",
            "VAULT_APPROLE_SECRET_ID": "sid",
            "VAULT_NAMESPACE": "team-a",
        }
    )
    assert [c.address for c in s.clusters] == ["https://vault.example:8200"]
    assert (s.transit_mount, s.transit_key) == ("kms/transit", "asherah-master")
    assert s.encrypt_path() == "kms/transit/encrypt/asherah-master"
    assert (s.auth.method, s.auth.login_path) == ("approle", "auth/approle/login")
    assert (s.auth.approle_role_id, s.auth.approle_secret_id) == ("rid", "sid")
    assert s.namespace == "team-a"


def test_settings_win_over_the_environment() -> None:
    s = settings(
        {"VAULT_ADDR": "http://env:1", "VAULT_TOKEN": "env-token"},
        address="http://table:2",
        transit_key="k",
        token="table-token",
    )
    assert s.clusters[0].address == "http://table:2"
    assert s.auth.token == "table-token"


def test_defaults() -> None:
    s = settings(address="http://v:8200", transit_key="k", token="t")
    assert s.transit_mount == "transit"
    assert s.auth.method == "token"
    assert s.tls_verify is True
    assert s.clusters[0].timeout == 5.0
    assert s.max_retries == 2


def test_auth_method_spellings_and_default_mounts() -> None:
    base = {"address": "http://v:8200", "transit_key": "k"}
    k8s = settings(auth_method="k8s", auth_role="app", **base)
    assert (k8s.auth.method, k8s.auth.login_path) == ("kubernetes", "auth/kubernetes/login")
    assert k8s.auth.k8s_token_path == DEFAULT_K8S_TOKEN_PATH
    own = settings(auth_method="kubernetes", auth_role="app", auth_mount="k8s-east", **base)
    assert own.auth.login_path == "auth/k8s-east/login"


def test_addresses_with_their_own_timeouts() -> None:
    s = settings(
        addresses=["http://a:8200", {"address": "http://b:8200", "timeout": 1.5}],
        transit_key="k",
        token="t",
        timeout=3,
    )
    assert [(c.address, c.timeout) for c in s.clusters] == [
        ("http://a:8200", 3.0),
        ("http://b:8200", 1.5),
    ]


@pytest.mark.parametrize(
    ("values", "environ", "where"),
    [
        ({"transit_key": "k", "token": "t"}, {}, "$VAULT_ADDR (for plugins.vault.address)"),
        ({"address": "ftp://v", "transit_key": "k", "token": "t"}, {}, "plugins.vault.address"),
        ({"address": "http://v:1"}, {"VAULT_TOKEN": "t"}, "plugins.vault.transit_key"),
        ({"address": "http://v:1", "transit_key": "a/b", "token": "t"}, {}, "transit_key"),
        ({"address": "http://v:1", "transit_key": "k"}, {}, "plugins.vault.token"),
        (
            {"address": "http://v:1", "transit_key": "k", "auth_method": "ldap"},
            {},
            "plugins.vault.auth_method",
        ),
        (
            {"address": "http://v:1", "transit_key": "k", "auth_method": "approle"},
            {},
            "plugins.vault.approle_role_id",
        ),
        (
            {"address": "http://v:1", "transit_key": "k", "auth_method": "kubernetes"},
            {},
            "plugins.vault.auth_role",
        ),
        (
            {"address": "http://v:1", "transit_key": "k", "auth_method": "cert"},
            {},
            "plugins.vault.client_cert",
        ),
        ({"address": "http://v:1", "transit_key": "k", "token": "t", "timeout": 0}, {}, "timeout"),
        ({"address": "http://v:1", "transit_key": "k", "token": "t", "tiemout": 1}, {}, "tiemout"),
        (
            {"addresses": ["http://a:1", "http://a:1"], "transit_key": "k", "token": "t"},
            {},
            "addresses",
        ),
        (
            {"addresses": [{"address": "http://a:1", "timeout": -1}], "transit_key": "k"},
            {"VAULT_TOKEN": "t"},
            "addresses[0].timeout",
        ),
        (
            {"address": "http://a:1", "transit_key": "k", "token": "t", "ca_cert": "/nope.pem"},
            {},
            "plugins.vault.ca_cert",
        ),
        (
            {"address": "http://a:1", "transit_key": "k", "token": "t", "client_cert": "/c.pem"},
            {},
            "plugins.vault.client_key",
        ),
    ],
)
def test_errors_name_the_key(values: dict[str, Any], environ: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        settings(environ, **values)
    assert where in str(caught.value)


def test_errors_and_reprs_hold_no_secret() -> None:
    secret = "hvs.SECRET-TOKEN-VALUE"
    with pytest.raises(ConfigError) as caught:
        settings(address="https://u:pw@v:1", transit_key="k", token=secret)
    assert secret not in str(caught.value)
    assert "pw" not in str(caught.value)
    s = settings(
        address="http://v:1",
        transit_key="k",
        auth_method="approle",
        approle_role_id="rid",
        approle_secret_id=secret,
    )
    assert secret not in repr(s)
    s = settings(address="http://v:1", transit_key="k", token=secret)
    assert secret not in repr(s)


@pytest.mark.parametrize(
    ("values", "environ", "where", "problem"),
    [
        ({"token": "hvs.SECRET\nX"}, {}, "plugins.vault.token:", "a line break?"),
        ({}, {"VAULT_TOKEN": "hvs.SECRET\nX"}, "$VAULT_TOKEN (for", "a line break?"),
        ({"token": "hvs.SECRET\x00"}, {}, "plugins.vault.token:", "control character"),
        ({"token": "hvs.SECRET two"}, {}, "plugins.vault.token:", "a space"),
        ({}, {"VAULT_TOKEN": "hvs.SECRETé"}, "$VAULT_TOKEN (for", "a non-ASCII character"),
        (
            {"token": "t", "namespace": "team-SECRET\r\nX-Evil: 1"},
            {},
            "plugins.vault.namespace:",
            "control character",
        ),
        ({"token": "t"}, {"VAULT_NAMESPACE": "équipe-SECRET"}, "$VAULT_NAMESPACE", "non-ASCII"),
    ],
)
def test_header_values_are_printable_ascii_and_never_shown(
    values: dict[str, Any], environ: dict[str, str], where: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(environ, address="http://v:8200", transit_key="k", **values)
    message = str(caught.value)
    assert where in message
    assert problem in message
    assert "SECRET" not in message


def test_a_token_left_unused_by_another_auth_method_is_not_checked() -> None:
    s = settings(
        {"VAULT_TOKEN": "stray\nline"},
        address="http://v:8200",
        transit_key="k",
        auth_method="approle",
        approle_role_id="rid",
    )
    assert s.auth.method == "approle"


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"address": "https://[vault.internal:8200"}, "plugins.vault.address:"),
        ({"address": "https://[vault.internal]:8200"}, "plugins.vault.address:"),
        ({"addresses": ["http://a:1", "https://vault.internal]:8200"]}, "addresses[1]:"),
    ],
)
def test_an_address_that_does_not_parse_names_the_setting(
    values: dict[str, Any], where: str
) -> None:
    with pytest.raises(ConfigError, match="expected an http:// or https:// URL") as caught:
        settings(transit_key="k", token="t", **values)
    assert where in str(caught.value)
