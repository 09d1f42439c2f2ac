"""The plugin's settings: one validated, frozen model built from a ``plugins.toml`` table.

A setting that is absent falls back to the ``VAULT_*`` environment variable the Rust Asherah
core reads (``VAULT_ADDR``, ``VAULT_TOKEN``, ``VAULT_AUTH_METHOD`` …) or that the Vault CLI
reads (``VAULT_NAMESPACE``, ``VAULT_CACERT``). Error messages name the exact key
(``plugins.vault.timeout``) or the variable; never a token, secret id or key bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from asherah_core import ConfigError, PluginConfig

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_K8S_TOKEN_PATH",
    "DEFAULT_TIMEOUT",
    "ENVIRONMENT",
    "OPTIONS",
    "AuthSettings",
    "ClusterSettings",
    "VaultTransitSettings",
    "settings_from_config",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_DEADLINE = 15.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_RETRY_BASE_DELAY = 0.1
DEFAULT_CLUSTER_COOLDOWN = 30.0
DEFAULT_RENEW_FRACTION = 0.5
DEFAULT_K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path
AUTH_METHODS = {
    "token": "token",
    "approle": "approle",
    "kubernetes": "kubernetes",
    "k8s": "kubernetes",
    "cert": "cert",
    "tls": "cert",
}
"""Accepted ``auth_method`` spellings (those of the Rust core) and what each means."""
_DEFAULT_AUTH_MOUNT = {"approle": "approle", "kubernetes": "kubernetes", "cert": "cert"}
_MAX_SECONDS = 3600.0
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MOUNT = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_VISIBLE_ASCII = re.compile(r"[!-~]+")
"""What an HTTP header value of ours may hold: no space, control or non-ASCII character."""

ENVIRONMENT: Mapping[str, str] = {
    "address": "VAULT_ADDR",
    "transit_key": "VAULT_TRANSIT_KEY",
    "transit_mount": "VAULT_TRANSIT_MOUNT",
    "token": "VAULT_TOKEN",
    "auth_method": "VAULT_AUTH_METHOD",
    "auth_role": "VAULT_AUTH_ROLE",
    "auth_mount": "VAULT_AUTH_MOUNT",
    "approle_role_id": "VAULT_APPROLE_ROLE_ID",
    "approle_secret_id": "VAULT_APPROLE_SECRET_ID",
    "client_cert": "VAULT_CLIENT_CERT",
    "client_key": "VAULT_CLIENT_KEY",
    "k8s_token_path": "VAULT_K8S_TOKEN_PATH",
    "namespace": "VAULT_NAMESPACE",
    "ca_cert": "VAULT_CACERT",
}
"""The environment variable each string setting falls back to when it is absent."""

OPTIONS = (
    *ENVIRONMENT,
    "addresses",
    "timeout",
    "deadline",
    "max_retries",
    "retry_base_delay",
    "cluster_cooldown",
    "renew_fraction",
    "tls_verify",
)


@dataclass(frozen=True)
class ClusterSettings:
    """One Vault cluster: its base address and how long one HTTP call to it may take."""

    address: str
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class AuthSettings:
    """How to get a token: a given one, or a login (AppRole, Kubernetes, TLS certificate).

    Secrets are left out of the ``repr``.
    """

    method: str = "token"
    token: str | None = field(default=None, repr=False)
    mount: str | None = None
    role: str | None = None
    approle_role_id: str | None = None
    approle_secret_id: str | None = field(default=None, repr=False)
    k8s_token_path: str = DEFAULT_K8S_TOKEN_PATH

    @property
    def login_path(self) -> str:
        """The path of the login endpoint (``auth/<mount>/login``); not for ``token``."""
        return f"auth/{self.mount}/login"


@dataclass(frozen=True)
class VaultTransitSettings:
    """Every option of the Vault Transit plugin, validated.

    ``clusters`` are tried in this order (healthy ones first); each call to one is bounded by
    its ``timeout`` and the whole ``encrypt_key`` / ``decrypt_key`` by ``deadline``.
    """

    clusters: tuple[ClusterSettings, ...]
    transit_key: str
    transit_mount: str = "transit"
    auth: AuthSettings = AuthSettings()
    namespace: str | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_verify: bool = True
    deadline: float = DEFAULT_DEADLINE
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_base_delay: float = DEFAULT_RETRY_BASE_DELAY
    cluster_cooldown: float = DEFAULT_CLUSTER_COOLDOWN
    renew_fraction: float = DEFAULT_RENEW_FRACTION

    def encrypt_path(self) -> str:
        """The Transit encrypt endpoint, below ``/v1/``."""
        return f"{self.transit_mount}/encrypt/{self.transit_key}"

    def decrypt_path(self) -> str:
        """The Transit decrypt endpoint, below ``/v1/``."""
        return f"{self.transit_mount}/decrypt/{self.transit_key}"


class _Reader:
    """Reads one setting from the table, or from its environment variable when absent."""

    def __init__(self, config: PluginConfig, environ: Mapping[str, str]) -> None:
        self.config = config
        self.environ = environ

    def where(self, key: str) -> str:
        if key in self.config:
            return self.config.key_path(key)
        return f"${ENVIRONMENT[key]} (for {self.config.key_path(key)})"

    def error(self, key: str, problem: str) -> ConfigError:
        if key in self.config:
            return self.config.error(key, problem)
        return ConfigError(f"{self.config.source}: {self.where(key)}: {problem}")

    def text(self, key: str) -> str | None:
        if key in self.config:
            value: str = self.config.get_str(key)
            return value.strip()
        variable = ENVIRONMENT.get(key)
        if variable is None:
            return None
        value = self.environ.get(variable, "").strip()
        return value or None

    def seconds(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.config.get_float(key, default)
        low_ok = value >= 0 if allow_zero else value > 0
        if not math.isfinite(value) or not low_ok or value > _MAX_SECONDS:
            low = "0" if allow_zero else "more than 0"
            raise self.config.error(key, f"expected {low} to {_MAX_SECONDS:g} seconds")
        return value


def settings_from_config(
    config: PluginConfig, environ: Mapping[str, str] | None = None
) -> VaultTransitSettings:
    """Validate ``[plugins.vault]`` (falling back to the ``VAULT_*`` variables of `environ`,
    ``os.environ`` by default) and return the settings."""
    import os  # noqa: PLC0415 - the default environment is read at call time

    config.check_keys(OPTIONS)
    read = _Reader(config, os.environ if environ is None else environ)
    timeout = read.seconds("timeout", DEFAULT_TIMEOUT)
    clusters = _clusters(read, timeout)
    transit_key = read.text("transit_key")
    if transit_key is None:
        raise read.error("transit_key", "missing required setting (the Transit key's name)")
    if not _NAME.fullmatch(transit_key):
        raise read.error("transit_key", "use letters, digits, '.', '_' or '-'")
    mount = (read.text("transit_mount") or "transit").strip("/")
    if not _MOUNT.fullmatch(mount):
        raise read.error("transit_mount", "expected a mount path such as 'transit'")
    max_retries = config.get_int("max_retries", DEFAULT_MAX_RETRIES)
    if not 0 <= max_retries <= 10:
        raise config.error("max_retries", "expected 0 to 10")
    renew_fraction = config.get_float("renew_fraction", DEFAULT_RENEW_FRACTION)
    if not 0.05 <= renew_fraction <= 0.95:
        raise config.error("renew_fraction", "expected a fraction from 0.05 to 0.95")
    client_cert, client_key = read.text("client_cert"), read.text("client_key")
    if (client_cert is None) != (client_key is None):
        missing = "client_key" if client_key is None else "client_cert"
        raise read.error(missing, "client_cert and client_key go together; set both or neither")
    settings = VaultTransitSettings(
        clusters=clusters,
        transit_key=transit_key,
        transit_mount=mount,
        auth=_auth(read, client_cert is not None),
        namespace=_header_value(read, "namespace"),
        ca_cert=read.text("ca_cert"),
        client_cert=client_cert,
        client_key=client_key,
        tls_verify=config.get_bool("tls_verify", True),
        deadline=read.seconds("deadline", DEFAULT_DEADLINE),
        max_retries=max_retries,
        retry_base_delay=read.seconds(
            "retry_base_delay", DEFAULT_RETRY_BASE_DELAY, allow_zero=True
        ),
        cluster_cooldown=read.seconds(
            "cluster_cooldown", DEFAULT_CLUSTER_COOLDOWN, allow_zero=True
        ),
        renew_fraction=renew_fraction,
    )
    for path_key in ("ca_cert", "client_cert", "client_key"):
        path = getattr(settings, path_key)
        if path is not None and not os.path.isfile(path):
            raise read.error(path_key, f"no such file: {path!r}")
    return settings


def _clusters(read: _Reader, default_timeout: float) -> tuple[ClusterSettings, ...]:
    config = read.config
    if "addresses" in config and "address" in config:
        raise config.error("addresses", "set either address or addresses, not both")
    if "addresses" not in config:
        address = read.text("address")
        if address is None:
            raise read.error("address", "missing required setting (the Vault server's URL)")
        return (ClusterSettings(_check_address(read, "address", address), default_timeout),)
    raw = config["addresses"]
    if not isinstance(raw, list) or not raw:
        raise config.error("addresses", "expected a non-empty list of URLs or tables")
    clusters: list[ClusterSettings] = []
    for i, item in enumerate(raw):
        where = f"{config.key_path('addresses')}[{i}]"
        if isinstance(item, str):
            address, timeout = item, default_timeout
        elif isinstance(item, PluginConfig):
            item.check_keys(("address", "timeout"))
            address = item.get_str("address")
            timeout = item.get_float("timeout", default_timeout)
            if not math.isfinite(timeout) or not 0 < timeout <= _MAX_SECONDS:
                raise item.error("timeout", f"expected more than 0 to {_MAX_SECONDS:g} seconds")
        else:
            raise ConfigError(f"{config.source}: {where}: expected a URL or a table")
        clusters.append(ClusterSettings(_check_url(config.source, where, address), timeout))
    seen = [c.address for c in clusters]
    if len(set(seen)) != len(seen):
        raise config.error("addresses", "an address is listed twice")
    return tuple(clusters)


def _check_address(read: _Reader, key: str, address: str) -> str:
    return _check_url(read.config.source, read.where(key), address)


def _check_url(source: str, where: str, address: str) -> str:
    try:
        parts = urlsplit(address.strip())
    except ValueError:  # an unclosed [ of an IPv6 host, or what is inside [ ] is no address
        raise ConfigError(
            f"{source}: {where}: expected an http:// or https:// URL; the [ ] of an IPv6 host "
            "do not match or do not hold an IPv6 address"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{source}: {where}: expected an http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{source}: {where}: the URL may hold no credentials, query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"{source}: {where}: invalid port") from None
    return address.strip().rstrip("/")


def _header_value(read: _Reader, key: str) -> str | None:
    """The text of `key`, which is sent in an HTTP header: the error never shows the value."""
    value = read.text(key)
    if value is None or _VISIBLE_ASCII.fullmatch(value):
        return value
    found = "a non-ASCII character"
    if value.isascii():
        found = "a space or control character (a line break?)"
    raise read.error(key, f"holds {found}; expected printable ASCII only (value not shown)")


def _auth(read: _Reader, have_client_cert: bool) -> AuthSettings:
    spelled = read.text("auth_method")
    if spelled is None:
        method = "token"
    else:
        method = AUTH_METHODS.get(spelled.lower(), "")
        if not method:
            raise read.error(
                "auth_method",
                f"unsupported method {spelled!r}; expected token, approle, kubernetes or cert",
            )
    if method == "token":
        token = _header_value(read, "token")
        if token is None:
            raise read.error(
                "token",
                "Vault authentication required: set token (or VAULT_TOKEN), or auth_method "
                "(approle, kubernetes, cert) with its credentials",
            )
        return AuthSettings(method="token", token=token)
    mount = (read.text("auth_mount") or _DEFAULT_AUTH_MOUNT[method]).strip("/")
    if not _MOUNT.fullmatch(mount):
        raise read.error("auth_mount", "expected a mount path such as 'approle'")
    role = read.text("auth_role")
    if method == "approle":
        role_id = read.text("approle_role_id")
        if role_id is None:
            raise read.error("approle_role_id", "required for auth_method approle")
        return AuthSettings(
            method=method,
            mount=mount,
            role=role,
            approle_role_id=role_id,
            approle_secret_id=read.text("approle_secret_id"),
        )
    if method == "kubernetes":
        if role is None:
            raise read.error("auth_role", "required for auth_method kubernetes")
        return AuthSettings(
            method=method,
            mount=mount,
            role=role,
            k8s_token_path=read.text("k8s_token_path") or DEFAULT_K8S_TOKEN_PATH,
        )
    if not have_client_cert:
        raise read.error("client_cert", "auth_method cert needs client_cert and client_key")
    return AuthSettings(method=method, mount=mount, role=role)
