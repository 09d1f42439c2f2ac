"""The ``asherah`` PyPI package's PascalCase configuration, translated to our factory's arguments.

Every key that package documents is read here, with its unit (durations in seconds) and its
default; a key we do not support, or a value of the wrong type, is a `ConfigError` naming it.
``KMS = "aws"`` builds our ``aws-v2`` plugin with the same ``RegionMap`` and
``PreferredRegion``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from .appconfig import assemble
from .config import PluginConfig
from .errors import ConfigError
from .kms import KeyManagementService
from .metastore.base import Metastore
from .metastore.memory import InMemoryMetastore
from .plugins import PluginHost
from .policy import CryptoPolicy
from .static import StaticKms

__all__ = ["KNOWN_KEYS", "factory_arguments_from_asherah_config"]

WHERE = "asherah configuration"
AWS_PLUGIN = "aws-v2"
AWS_DISTRIBUTION = "asherah-aws-kms-v2"

KNOWN_KEYS: dict[str, str] = {
    "ServiceName": "service name (required)",
    "ProductID": "product id (required)",
    "Metastore": "memory, sqlite, rdbms or dynamodb (required)",
    "ConnectionString": "sqlite file path or rdbms connection string",
    "SQLMetastoreDBType": "rdbms dialect: mysql or postgres",
    "KMS": "static or aws (required)",
    "StaticMasterKeyHex": "the static KMS master key, 64 hex digits",
    "RegionMap": "aws: region -> KMS key ARN",
    "PreferredRegion": "aws: the region tried first",
    "EnableRegionSuffix": "append the region to key ids (DynamoDB global tables)",
    "AwsProfileName": "aws: a named profile of the shared AWS configuration",
    "DynamoDBEndpoint": "dynamodb: endpoint URL",
    "DynamoDBRegion": "dynamodb: region",
    "DynamoDBSigningRegion": "dynamodb: signing region (same as DynamoDBRegion here)",
    "DynamoDBTableName": "dynamodb: table name (EncryptionKey)",
    "ReplicaReadConsistency": "dynamodb: eventual, global or session (reads here are strong)",
    "ExpireAfter": "key expiry, seconds",
    "CheckInterval": "revocation check interval, seconds",
    "EnableSessionCaching": "cache sessions",
    "SessionCacheMaxSize": "session cache size",
    "SessionCacheDuration": "session cache duration, seconds",
    "Verbose": "more logging (accepted; use the logging module's levels)",
    "DisableZeroCopy": "accepted for compatibility; no effect here",
    "NullDataCheck": "accepted for compatibility; no effect here",
    "EnableCanaries": "accepted for compatibility; no effect here",
    "ConfigDriftForceRun": "accepted; this library keeps no configuration drift guard",
    "ConfigDriftForceUpdate": "accepted; this library keeps no configuration drift guard",
    "PoolMaxOpen": "rdbms: most open connections",
    "PoolMaxIdle": "rdbms: connections kept open when idle",
    "PoolMaxLifetime": "rdbms: seconds before a connection is replaced",
    "PoolMaxIdleTime": "rdbms: accepted; SQLAlchemy's pool has no idle timeout",
}

UNSUPPORTED: dict[str, str] = {
    "SecretsManagerSecretId": "secrets-manager KMS",
    "RecoveryRegionSuffixes": "cross-region key recovery",
    "SelfHealRecoveredKeys": "cross-region key recovery",
    **dict.fromkeys(
        (
            "VaultAddr",
            "VaultToken",
            "VaultAuthMethod",
            "VaultAuthRole",
            "VaultAuthMount",
            "VaultApproleRoleId",
            "VaultApproleSecretId",
            "VaultClientCert",
            "VaultClientKey",
            "VaultK8sTokenPath",
            "VaultTransitKey",
            "VaultTransitMount",
        ),
        "Vault KMS",
    ),
}


def factory_arguments_from_asherah_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Translate the ``asherah`` package's configuration into `SessionFactory` arguments."""
    reader = _Reader(config)
    service = reader.text("ServiceName", required=True)
    product = reader.text("ProductID", required=True)
    policy = _policy(reader)
    suffix_enabled = reader.flag("EnableRegionSuffix", False)
    return assemble(
        service=service,
        product=product,
        policy=policy,
        metastore=_metastore(reader, suffix_enabled),
        build_kms=lambda: _kms(reader),
    )


class _Reader:
    """Typed access to the PascalCase mapping; errors name the key."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        if not isinstance(config, Mapping):
            raise ConfigError(f"{WHERE}: expected a mapping, got {type(config).__name__}")
        for key in config:
            if key in UNSUPPORTED and config[key] is not None:
                raise ConfigError(
                    f"{WHERE}: {key} is not supported: this library has no {UNSUPPORTED[key]}"
                )
            if key not in KNOWN_KEYS and key not in UNSUPPORTED:
                raise ConfigError(
                    f"{WHERE}: unknown or unsupported key {key!r}; supported keys: "
                    f"{', '.join(KNOWN_KEYS)}"
                )
        self.config = config

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{WHERE}: {key}: {problem}")

    def present(self, key: str) -> bool:
        return self.config.get(key) is not None

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        value = self.config.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing required setting")
            return default if default is not None else ""
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        if required and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.config.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise self.error(key, f"expected true or false, got {value!r}")

    def integer(self, key: str) -> int | None:
        value = self.config.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {type(value).__name__}")
        return value

    def seconds(self, key: str) -> timedelta | None:
        value = self.config.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number of seconds, got {type(value).__name__}")
        if value <= 0:
            raise self.error(key, f"must be a positive number of seconds, got {value}")
        try:
            return timedelta(seconds=value)
        except OverflowError:
            raise self.error(key, f"{value} seconds is too long") from None


def _policy(reader: _Reader) -> CryptoPolicy:
    values: dict[str, Any] = {}
    for key, field in (
        ("ExpireAfter", "expire_after"),
        ("CheckInterval", "revoke_check_interval"),
        ("SessionCacheDuration", "session_cache_duration"),
    ):
        duration = reader.seconds(key)
        if duration is not None:
            values[field] = duration
    expire = values.get("expire_after")
    if expire is not None and expire < timedelta(minutes=1):
        # As the asherah package does: the created precision is min(60 s, ExpireAfter).
        values["create_date_precision"] = timedelta(seconds=max(1, int(expire.total_seconds())))
    values["cache_sessions"] = reader.flag("EnableSessionCaching", True)
    size = reader.integer("SessionCacheMaxSize")
    if size is not None:
        values["session_cache_max_size"] = size
    try:
        return CryptoPolicy(**values)
    except ConfigError as e:
        raise ConfigError(f"{WHERE}: {e}") from None


def _metastore(reader: _Reader, region_suffix: bool) -> Metastore:
    kind = reader.text("Metastore", required=True).strip().lower()
    builders: dict[str, Callable[[_Reader, bool], Metastore]] = {
        "memory": lambda r, s: InMemoryMetastore(),
        "sqlite": _sqlite,
        "rdbms": _rdbms,
        "dynamodb": _dynamodb,
    }
    if kind not in builders:
        raise reader.error("Metastore", f"expected one of {', '.join(builders)}, got {kind!r}")
    return builders[kind](reader, region_suffix)


def _sqlite(reader: _Reader, region_suffix: bool) -> Metastore:
    from .metastore.sql import SqlMetastore  # noqa: PLC0415 - an extra

    target = reader.text("ConnectionString", required=True).strip()
    # As the asherah package reads it: "sqlite://" is cut off and the rest is a file path, so
    # "sqlite:///srv/keys.db" is the absolute /srv/keys.db (SQLAlchemy would read it relative).
    for prefix in ("sqlite://", "sqlite:", "file:"):
        if target.startswith(prefix):
            target = target[len(prefix) :]
            break
    url = "sqlite://" if target in ("", ":memory:") else f"sqlite:///{target}"
    return SqlMetastore(url, create_table=True)  # as the asherah package does for SQLite


def _rdbms(reader: _Reader, region_suffix: bool) -> Metastore:
    from .metastore.sql import SqlMetastore  # noqa: PLC0415 - an extra

    options: dict[str, Any] = {}
    size = reader.integer("PoolMaxOpen")
    idle = reader.integer("PoolMaxIdle")
    lifetime = reader.seconds("PoolMaxLifetime")
    if idle is not None:
        options["pool_size"] = max(1, idle)
    if size is not None:
        options["max_overflow"] = max(0, size - options.get("pool_size", min(5, size)))
        options.setdefault("pool_size", max(1, min(5, size)))
    if lifetime is not None:
        options["pool_recycle"] = lifetime.total_seconds()
    return SqlMetastore(rdbms_url(reader), engine_options=options)


def rdbms_url(reader: _Reader) -> str:
    """A SQLAlchemy URL from ``ConnectionString`` (a URL, or Go's MySQL DSN)."""
    text = reader.text("ConnectionString", required=True).strip()
    kind = reader.text("SQLMetastoreDBType", "").strip().lower()
    schemes = {
        "mysql": "mysql+pymysql",
        "postgres": "postgresql+psycopg",
        "postgresql": "postgresql+psycopg",
    }
    if "://" in text:
        scheme, rest = text.split("://", 1)
        driver = schemes.get(scheme.lower(), scheme)
        return f"{driver}://{rest}"
    if kind in ("", "mysql") and "@" in text and "(" in text:
        return _mysql_dsn_url(reader, text)
    raise reader.error(
        "ConnectionString",
        "expected a URL such as mysql://user:pass@host:3306/db or postgres://user@host/db, "
        "or a Go MySQL DSN such as user:pass@tcp(host:3306)/db",
    )


def _mysql_dsn_url(reader: _Reader, dsn: str) -> str:
    credentials, _, rest = dsn.rpartition("@")
    user, _, password = credentials.partition(":")
    if not rest.startswith("tcp(") or ")" not in rest:
        raise reader.error(
            "ConnectionString", "a MySQL DSN must look like user:pass@tcp(host:port)/db"
        )
    address, _, tail = rest[4:].partition(")")
    database = tail.lstrip("/").split("?", 1)[0]
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"mysql+pymysql://{auth}@{address}/{database}"


def _dynamodb(reader: _Reader, region_suffix: bool) -> Metastore:
    try:
        from .metastore.dynamodb import DynamoDbMetastore  # noqa: PLC0415 - an extra
    except ImportError as e:
        raise reader.error(
            "Metastore", f"dynamodb needs boto3: pip install 'asherah-core[dynamodb]' ({e})"
        ) from None
    region = reader.text("DynamoDBRegion", "") or reader.text("DynamoDBSigningRegion", "")
    return DynamoDbMetastore(
        reader.text("DynamoDBTableName", "EncryptionKey") or "EncryptionKey",
        region=region or None,
        endpoint_url=reader.text("DynamoDBEndpoint", "") or None,
        region_suffix=region_suffix,
    )


def _kms(reader: _Reader) -> KeyManagementService:
    kind = reader.text("KMS", required=True).strip().lower()
    if kind == "static":
        hex_key = reader.text("StaticMasterKeyHex", "").strip()
        if not hex_key:
            raise reader.error("StaticMasterKeyHex", "required when KMS is static (64 hex digits)")
        try:
            key = bytes.fromhex(hex_key)
        except ValueError:
            raise reader.error("StaticMasterKeyHex", "not valid hex") from None
        if len(key) != 32:
            raise reader.error(
                "StaticMasterKeyHex", f"must be 32 bytes (64 hex digits), got {len(key)}"
            )
        return StaticKms(key)
    if kind != "aws":
        raise reader.error("KMS", f"expected static or aws, got {kind!r}")
    return _aws_kms(reader)


def _aws_kms(reader: _Reader) -> KeyManagementService:
    host = PluginHost.default()
    if AWS_PLUGIN not in host.available():
        raise reader.error(
            "KMS",
            f"'aws' needs our AWS KMS plugin: pip install {AWS_DISTRIBUTION} "
            f"(it registers the KMS {AWS_PLUGIN!r})",
        )
    region_map = reader.config.get("RegionMap")
    if not isinstance(region_map, Mapping) or not region_map:
        raise reader.error("RegionMap", "required for KMS 'aws': a mapping of region to key ARN")
    regions: dict[str, Any] = {}
    for region, arn in region_map.items():
        if not isinstance(region, str) or not isinstance(arn, str):
            raise reader.error("RegionMap", "keys and values must be strings (region: ARN)")
        regions[region] = {"arn": arn}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_KMS") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            regions[region]["endpoint"] = endpoint
    settings: dict[str, Any] = {"regions": regions}
    preferred = reader.text("PreferredRegion", "")
    if not preferred and len(regions) > 1:
        raise reader.error("PreferredRegion", "required when RegionMap has more than one region")
    if preferred and preferred not in regions:
        raise reader.error(
            "PreferredRegion", f"{preferred!r} is not in RegionMap ({', '.join(sorted(regions))})"
        )
    settings["preferred_region"] = preferred or next(iter(regions))
    if reader.present("AwsProfileName"):
        settings["profile"] = reader.text("AwsProfileName")
    return host.load_kms(AWS_PLUGIN, PluginConfig(settings, path=WHERE, source="RegionMap"))
