"""The environment variables ``asherah.SessionFactory()`` reads (the ``asherah`` package, 0.5.56).

`config_from_env` turns them into that package's PascalCase configuration plus the few
settings it has no key for (`EnvExtras`). Defaults are the package's: service ``"service"``,
product ``"product"``, the in-memory metastore, SQLite when ``SQLITE_PATH`` is set (``:memory:``
when ``Metastore=sqlite`` alone), DynamoDB when ``DDB_TABLE`` is set, SQL when ``POSTGRES_URL`` or
``MYSQL_URL`` is set. ``KMS`` has no default: ``static`` needs ``STATIC_MASTER_KEY_HEX``,
``test-debug-static`` falls back to the public test key. A value that does not parse is a
`ConfigError` naming the variable (the package ignores it silently).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .errors import ConfigError

__all__ = ["ALSO_READ", "ENVIRONMENT", "EnvExtras", "config_from_env"]

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _count(text: str) -> int:
    value = int(text.strip())
    if value < 0:
        raise ValueError(text)
    return value


def _region_map(text: str) -> dict[str, str]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(text)
    return value


# Variable -> (PascalCase key, parser, meaning). Read in this order.
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "SERVICE_NAME": ("ServiceName", str, "service name (default service)"),
    "PRODUCT_ID": ("ProductID", str, "product id (default product)"),
    "Metastore": ("Metastore", str, "memory (default), sqlite, rdbms, dynamodb"),
    "SQLITE_PATH": ("ConnectionString", str, "SQLite file; selects sqlite"),
    "POSTGRES_URL": ("ConnectionString", str, "PostgreSQL URL; selects rdbms"),
    "MYSQL_URL": ("ConnectionString", str, "MySQL URL or Go DSN; selects rdbms"),
    "REPLICA_READ_CONSISTENCY": ("ReplicaReadConsistency", str, "rdbms: Aurora read mode"),
    "ASHERAH_POOL_MAX_OPEN": ("PoolMaxOpen", _count, "rdbms: most open connections"),
    "ASHERAH_POOL_SIZE": ("PoolMaxOpen", _count, "alias of ASHERAH_POOL_MAX_OPEN"),
    "ASHERAH_POOL_MAX_IDLE": ("PoolMaxIdle", _count, "rdbms: idle connections kept"),
    "ASHERAH_POOL_MAX_LIFETIME": ("PoolMaxLifetime", _count, "rdbms: seconds"),
    "ASHERAH_POOL_MAX_IDLE_TIME": ("PoolMaxIdleTime", _count, "rdbms: seconds"),
    "DDB_TABLE": ("DynamoDBTableName", str, "DynamoDB table; selects dynamodb"),
    "DDB_REGION_SUFFIX": ("EnableRegionSuffix", _flag, "dynamodb: region suffix on key ids"),
    "KMS": ("KMS", str, "static, test-debug-static, aws, secrets-manager, vault (required)"),
    "STATIC_MASTER_KEY_HEX": ("StaticMasterKeyHex", str, "static: 64 hex digits"),
    "REGION_MAP": ("RegionMap", _region_map, "aws: JSON object region -> key ARN"),
    "PREFERRED_REGION": ("PreferredRegion", str, "aws: region tried first"),
    "KMS_KEY_ID": ("KmsKeyId", str, "aws: one key ARN"),
    "SECRETS_MANAGER_SECRET_ID": ("SecretsManagerSecretId", str, "secrets-manager: secret"),
    "VAULT_ADDR": ("VaultAddr", str, "vault: server URL"),
    "VAULT_TRANSIT_KEY": ("VaultTransitKey", str, "vault: transit key name"),
    "VAULT_TRANSIT_MOUNT": ("VaultTransitMount", str, "vault: transit mount"),
    "EXPIRE_AFTER_SECS": ("ExpireAfter", _count, "key expiry, seconds"),
    "REVOKE_CHECK_INTERVAL_SECS": ("CheckInterval", _count, "revocation check, seconds"),
    "SESSION_CACHE_MAX_SIZE": ("SessionCacheMaxSize", _count, "session cache size"),
    "SESSION_CACHE_DURATION_SECS": ("SessionCacheDuration", _count, "session cache, seconds"),
}


# Variables read beside ENVIRONMENT, with their meaning.
ALSO_READ: dict[str, str] = {
    "AWS_REGION": "dynamodb: the region (DynamoDBRegion); aws: KmsKeyId's default region",
    "AWS_ENDPOINT_URL": "dynamodb: the endpoint (DynamoDBEndpoint)",
    "MYSQL_TLS_MODE": "MySQL: the tls option (true, skip-verify, false) of MYSQL_URL",
    "REGION_SUFFIX": "the region suffix of key ids",
    "CREATE_DATE_PRECISION_SECS": "CryptoPolicy.create_date_precision, seconds",
    "INTERMEDIATE_KEY_CACHE_MAX_SIZE": "CryptoPolicy.intermediate_key_cache_max_size",
    "SHARED_INTERMEDIATE_KEY_CACHE": "nothing: every session of a factory shares one cache",
    "SESSION_CACHE": "nothing: false is ignored with a warning, as in the package",
    "CACHE_SYSTEM_KEYS": "nothing: false is ignored with a warning, as in the package",
    "CACHE_INTERMEDIATE_KEYS": "nothing: false is ignored with a warning, as in the package",
}


@dataclass(frozen=True)
class EnvExtras:
    """Settings the environment gives that the PascalCase configuration has no key for."""

    region_suffix: str | None = None
    create_date_precision: timedelta | None = None
    intermediate_key_cache_max_size: int | None = None


def config_from_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], EnvExtras]:
    """The PascalCase configuration and extras that `environ` describes (the package's reading)."""
    config: dict[str, Any] = {"ServiceName": "service", "ProductID": "product"}
    for name, (key, parse, meaning) in ENVIRONMENT.items():
        text = environ.get(name)
        if text is None:
            continue
        if key == "PoolMaxOpen" and "PoolMaxOpen" in config:
            continue  # ASHERAH_POOL_MAX_OPEN wins over its alias
        try:
            config[key] = parse(text)
        except ValueError:
            raise ConfigError(f"environment variable {name}: not valid ({meaning})") from None
    _select_metastore(config, environ)
    if "KMS" not in environ:
        raise ConfigError(
            "environment: KMS is required; set KMS=aws for production or KMS=test-debug-static "
            "for the public test key (tests only)"
        )
    return config, _extras(environ)


def _select_metastore(config: dict[str, Any], environ: Mapping[str, str]) -> None:
    """As the package decides: SQLite, then DynamoDB, then SQL servers, else memory."""
    store = environ.get("Metastore", "memory").strip().lower()
    if store in ("sqlite", "test-debug-sqlite") or "SQLITE_PATH" in environ:
        config["Metastore"] = "sqlite"
        config["ConnectionString"] = environ.get("SQLITE_PATH", ":memory:")
    elif store == "dynamodb" or "DDB_TABLE" in environ:
        config["Metastore"] = "dynamodb"
        if environ.get("AWS_REGION"):
            config["DynamoDBRegion"] = environ["AWS_REGION"]
        if environ.get("AWS_ENDPOINT_URL"):
            config["DynamoDBEndpoint"] = environ["AWS_ENDPOINT_URL"]
    elif store == "rdbms" or "POSTGRES_URL" in environ or "MYSQL_URL" in environ:
        config["Metastore"] = "rdbms"
        url = environ.get("POSTGRES_URL") or environ.get("MYSQL_URL")
        if url is None:
            raise ConfigError("environment: Metastore=rdbms needs POSTGRES_URL or MYSQL_URL")
        config["SQLMetastoreDBType"] = "postgres" if "POSTGRES_URL" in environ else "mysql"
        tls = environ.get("MYSQL_TLS_MODE")
        if tls is not None and "POSTGRES_URL" not in environ:
            url += ("&" if "?" in url.rpartition("@")[2] else "?") + f"tls={tls.strip()}"
        config["ConnectionString"] = url
    else:
        config["Metastore"] = store


def _extras(environ: Mapping[str, str]) -> EnvExtras:
    for name in ("SESSION_CACHE", "CACHE_SYSTEM_KEYS", "CACHE_INTERMEDIATE_KEYS"):
        if environ.get(name, "").strip().lower() in _FALSE:
            logger.warning("%s=false is ignored: that cache is always on here", name)
    # SHARED_INTERMEDIATE_KEY_CACHE needs nothing: every session of a factory shares its
    # intermediate-key cache here. The two counts below have no PascalCase key.
    counts: dict[str, int | None] = {}
    for name in ("CREATE_DATE_PRECISION_SECS", "INTERMEDIATE_KEY_CACHE_MAX_SIZE"):
        text = environ.get(name)
        try:
            counts[name] = None if text is None else _count(text)
        except ValueError:
            raise ConfigError(f"environment variable {name}: not a whole number") from None
    precision = counts["CREATE_DATE_PRECISION_SECS"]
    return EnvExtras(
        region_suffix=environ.get("REGION_SUFFIX") or None,
        create_date_precision=None if not precision else timedelta(seconds=precision),
        intermediate_key_cache_max_size=counts["INTERMEDIATE_KEY_CACHE_MAX_SIZE"] or None,
    )
