"""The ``asherah`` PyPI package's PascalCase configuration, translated to our factory's arguments.

Every key that package reads (its ``asherah-config`` crate is the list) is read here, with its
unit (durations in seconds) and its default; a key we do not support, or a value of the wrong
type, is a `ConfigError` naming it. ``KMS = "aws"`` builds our ``aws-v2`` plugin with the same
``RegionMap`` and ``PreferredRegion``; ``"secrets-manager"`` the ``secrets-manager`` KMS of
``asherah-aws-kms-v2``; ``"vault"`` the ``vault`` plugin of ``asherah-vault-transit``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from .config import PluginConfig
from .errors import ConfigError
from .factoryargs import assemble
from .kms import KeyManagementService
from .metastore.base import Metastore
from .metastore.memory import InMemoryMetastore
from .plugins import PluginHost
from .policy import MAX_CACHE_SIZE, CryptoPolicy
from .sqlurl import rdbms_target, sqlite_url
from .static import StaticKms

__all__ = [
    "KNOWN_KEYS",
    "TEST_DEBUG_STATIC_MASTER_KEY",
    "factory_arguments_from_asherah_config",
]

logger = logging.getLogger(__name__)

WHERE = "asherah configuration"
AWS_PLUGIN = "aws-v2"
AWS_DISTRIBUTION = "asherah-aws-kms-v2"
SECRETS_MANAGER_PLUGIN = "secrets-manager"
VAULT_PLUGIN = "vault"
VAULT_DISTRIBUTION = "asherah-vault-transit"

TEST_DEBUG_STATIC_MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
"""The public test key ``KMS: "test-debug-static"`` uses without ``StaticMasterKeyHex`` (as the
``asherah`` package does): anyone can read it, so it protects nothing."""

STATIC_KEY_WARNING = "Using static master key. This is for testing only — do NOT use in production."

# The package's test-only names and what they mean.
METASTORE_ALIASES = {"test-debug-memory": "memory", "test-debug-sqlite": "sqlite"}
VAULT_NAMES = ("vault", "vault-transit")

# PascalCase Vault key -> the asherah-vault-transit plugin's setting.
VAULT_SETTINGS = {
    "VaultAddr": "address",
    "VaultTransitKey": "transit_key",
    "VaultTransitMount": "transit_mount",
    "VaultToken": "token",
    "VaultAuthMethod": "auth_method",
    "VaultAuthRole": "auth_role",
    "VaultAuthMount": "auth_mount",
    "VaultApproleRoleId": "approle_role_id",
    "VaultApproleSecretId": "approle_secret_id",
    "VaultClientCert": "client_cert",
    "VaultClientKey": "client_key",
    "VaultK8sTokenPath": "k8s_token_path",
}

KNOWN_KEYS: dict[str, str] = {
    "ServiceName": "service name (required)",
    "ProductID": "product id (required)",
    "Metastore": "memory, sqlite, rdbms or dynamodb; test-debug-memory and test-debug-sqlite "
    "are the package's test names for memory and sqlite (required)",
    "ConnectionString": "sqlite file path or rdbms connection string",
    "SQLMetastoreDBType": "rdbms dialect: mysql or postgres",
    "KMS": "static, test-debug-static, aws, secrets-manager or vault (required)",
    "StaticMasterKeyHex": "the static KMS master key, 64 hex digits (test-debug-static: "
    "the public test key when absent)",
    "KmsKeyId": "aws: one key ARN (single-region form, instead of RegionMap)",
    "SecretsManagerSecretId": "secrets-manager: the secret holding the master key",
    "RegionMap": "aws: region -> KMS key ARN",
    "PreferredRegion": "aws: the region tried first",
    "EnableRegionSuffix": "append the region to key ids (DynamoDB global tables)",
    "AwsProfileName": "aws: a named profile of the shared AWS configuration",
    "DynamoDBEndpoint": "dynamodb: endpoint URL",
    "DynamoDBRegion": "dynamodb: region",
    "DynamoDBSigningRegion": "dynamodb: the region requests are signed for (DynamoDBRegion "
    "then only picks the endpoint)",
    "DynamoDBTableName": "dynamodb: table name (EncryptionKey)",
    "ReplicaReadConsistency": "rdbms (Aurora MySQL): eventual, global or session; reads here "
    "always go to the connection's server, so only eventual (the default) is accepted",
    "ExpireAfter": "key expiry, seconds",
    "CheckInterval": "revocation check interval, seconds",
    "EnableSessionCaching": "cache sessions",
    "SessionCacheMaxSize": "session cache size",
    "SessionCacheDuration": "session cache duration, seconds",
    "Verbose": "debug logging: lowers the asherah loggers to DEBUG",
    "DisableZeroCopy": "accepted for compatibility; no effect here",
    "NullDataCheck": "accepted for compatibility; no effect here",
    "EnableCanaries": "accepted for compatibility; no effect here",
    "ConfigDriftForceRun": "accepted; this library keeps no configuration drift guard",
    "ConfigDriftForceUpdate": "accepted; this library keeps no configuration drift guard",
    "ForceRunWithConfigDrift": "the package's other name for ConfigDriftForceRun; accepted",
    "ForceUpdateConfigDriftGuard": "the package's other name for ConfigDriftForceUpdate; accepted",
    "PoolMaxOpen": "rdbms: most open connections (0 = unlimited)",
    "PoolMaxIdle": "rdbms: connections kept open when idle (default 2)",
    "PoolMaxLifetime": "rdbms: seconds before a connection is replaced (0 = unlimited)",
    "PoolMaxIdleTime": "rdbms: seconds idle before a connection is replaced (0 = unlimited)",
    **{key: f"vault: {setting}" for key, setting in VAULT_SETTINGS.items()},
}

UNSUPPORTED: dict[str, str] = {
    "RecoveryRegionSuffixes": "cross-region key recovery",
    "SelfHealRecoveredKeys": "cross-region key recovery",
}


def factory_arguments_from_asherah_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Translate the ``asherah`` package's configuration into `SessionFactory` arguments."""
    reader = _Reader(config)
    service = reader.text("ServiceName", required=True)
    product = reader.text("ProductID", required=True)
    policy = _policy(reader)
    suffix_enabled = reader.flag("EnableRegionSuffix", False)
    if reader.flag("Verbose", False):
        verbose_logging()
    return assemble(
        service=service,
        product=product,
        policy=policy,
        metastore=_metastore(reader, suffix_enabled),
        build_kms=lambda: _kms(reader),
    )


def verbose_logging() -> None:
    """What ``Verbose: true`` does: the asherah loggers pass DEBUG records (to `set_log_hook`
    and any handler); a logger already set lower stays as it is."""
    for name in ("asherah_core", "asherah_aws_kms_v2", "asherah_vault_transit"):
        named = logging.getLogger(name)
        if named.getEffectiveLevel() > logging.DEBUG:
            named.setLevel(logging.DEBUG)


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
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number of seconds, got {value}")
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
    if size is not None and not 0 <= size <= MAX_CACHE_SIZE:
        raise reader.error("SessionCacheMaxSize", f"must be 0 to {MAX_CACHE_SIZE:,}, got {size}")
    if size:  # 0 is that package's "not set": its default, 1000 sessions, as ours
        values["session_cache_max_size"] = size
    try:
        return CryptoPolicy(**values)
    except ConfigError as e:
        raise ConfigError(f"{WHERE}: {e}") from None


def _metastore(reader: _Reader, region_suffix: bool) -> Metastore:
    given = reader.text("Metastore", required=True).strip().lower()
    kind = METASTORE_ALIASES.get(given, given)
    builders: dict[str, Callable[[_Reader, bool], Metastore]] = {
        "memory": lambda r, s: InMemoryMetastore(),
        "sqlite": _sqlite,
        "rdbms": _rdbms,
        "dynamodb": _dynamodb,
    }
    if kind not in builders:
        raise reader.error(
            "Metastore",
            f"expected one of {', '.join([*builders, *METASTORE_ALIASES])}, got {given!r}",
        )
    return builders[kind](reader, region_suffix)


def _sqlite(reader: _Reader, region_suffix: bool) -> Metastore:
    from .metastore.sql import SqlMetastore  # noqa: PLC0415 - an extra

    if not reader.present("ConnectionString"):
        raise reader.error(
            "ConnectionString",
            'missing required setting (a file path; "" or ":memory:" for an in-memory database)',
        )
    url = sqlite_url(reader.text("ConnectionString"))  # "" is in memory, as documented
    return SqlMetastore(url, create_table=True)  # as the asherah package does for SQLite


def _rdbms(reader: _Reader, region_suffix: bool) -> Metastore:
    from .metastore.sql import SqlMetastore  # noqa: PLC0415 - an extra

    consistency = reader.text("ReplicaReadConsistency", "eventual").strip().lower()
    if consistency not in ("eventual", "global", "session"):
        raise reader.error(
            "ReplicaReadConsistency", f"expected eventual, global or session, got {consistency!r}"
        )
    if consistency != "eventual":
        raise reader.error(
            "ReplicaReadConsistency",
            f"{consistency!r} sets Aurora MySQL's aurora_replica_read_consistency; this library "
            "sends every read to the server it is connected to, so point ConnectionString at "
            "the writer instead",
        )
    target = rdbms_target(
        reader.text("ConnectionString", required=True),
        reader.text("SQLMetastoreDBType", ""),
        WHERE,
    )
    options = _pool_options(reader)
    if target.connect_args:
        options["connect_args"] = target.connect_args
    return SqlMetastore(target.url, engine_options=options)


def _pool_options(reader: _Reader) -> dict[str, Any]:
    """The package's pool knobs as SQLAlchemy's QueuePool settings (0 means unlimited, as in
    Go's database/sql)."""
    counts: dict[str, int | None] = {}
    for key in ("PoolMaxOpen", "PoolMaxIdle", "PoolMaxLifetime", "PoolMaxIdleTime"):
        value = reader.integer(key)
        if value is not None and value < 0:
            raise reader.error(key, f"must be 0 (unlimited) or more, got {value}")
        counts[key] = value
    most, idle = counts["PoolMaxOpen"], counts["PoolMaxIdle"]
    idle = 2 if idle is None else idle  # the package's default
    options: dict[str, Any] = {}
    if most:  # a bound: at most `most` connections, `idle` of them kept
        options["pool_size"] = max(1, min(idle, most))
        options["max_overflow"] = most - options["pool_size"]
    else:  # 0 or absent: no bound on open connections
        options["pool_size"] = max(1, idle)
        options["max_overflow"] = -1
    lifetimes = [v for v in (counts["PoolMaxLifetime"], counts["PoolMaxIdleTime"]) if v]
    if lifetimes:
        # QueuePool replaces a connection older than pool_recycle when it is checked out; the
        # shorter of the two limits is the one that must hold.
        options["pool_recycle"] = min(lifetimes)
    return options


def _dynamodb(reader: _Reader, region_suffix: bool) -> Metastore:
    try:
        from .metastore.dynamodb import DynamoDbMetastore  # noqa: PLC0415 - an extra
    except ImportError as e:
        raise reader.error(
            "Metastore", f"dynamodb needs boto3: pip install 'asherah-core[dynamodb]' ({e})"
        ) from None
    region = reader.text("DynamoDBRegion", "").strip()
    signing = reader.text("DynamoDBSigningRegion", "").strip()
    endpoint = reader.text("DynamoDBEndpoint", "").strip()
    if not endpoint and region and signing and region != signing:
        # As the package does: the endpoint from DynamoDBRegion, signatures for the other.
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        endpoint = f"https://dynamodb.{region}.{suffix}"
    return DynamoDbMetastore(
        reader.text("DynamoDBTableName", "EncryptionKey") or "EncryptionKey",
        region=(signing or region) or None,
        endpoint_url=endpoint or None,
        region_suffix=region_suffix,
    )


def _kms(reader: _Reader) -> KeyManagementService:
    kind = reader.text("KMS", required=True).strip().lower()
    if kind in ("static", "test-debug-static"):
        return _static_kms(reader, test_key=kind == "test-debug-static")
    if kind == "aws":
        return _aws_kms(reader)
    if kind == "secrets-manager":
        return _secrets_manager_kms(reader)
    if kind in VAULT_NAMES:
        return _vault_kms(reader)
    raise reader.error(
        "KMS", f"expected static, test-debug-static, aws, secrets-manager or vault, got {kind!r}"
    )


def _static_kms(reader: _Reader, *, test_key: bool) -> KeyManagementService:
    hex_key = reader.text("StaticMasterKeyHex", "").strip()
    if not hex_key and not test_key:
        raise reader.error(
            "StaticMasterKeyHex",
            "required when KMS is static (64 hex digits); KMS test-debug-static uses the "
            "public test key",
        )
    if hex_key:
        try:
            key = bytes.fromhex(hex_key)
        except ValueError:
            raise reader.error("StaticMasterKeyHex", "not valid hex") from None
        if len(key) != 32:
            raise reader.error(
                "StaticMasterKeyHex", f"must be 32 bytes (64 hex digits), got {len(key)}"
            )
    else:
        key = TEST_DEBUG_STATIC_MASTER_KEY
    logger.warning(STATIC_KEY_WARNING)
    return StaticKms(key)


def _plugin(reader: _Reader, name: str, distribution: str, kms: str) -> PluginHost:
    host = PluginHost.default()
    if name not in host.available():
        raise reader.error(
            "KMS",
            f"{kms!r} needs a plugin that is not installed: pip install {distribution} "
            f"(it registers the KMS {name!r})",
        )
    return host


def _secrets_manager_kms(reader: _Reader) -> KeyManagementService:
    host = _plugin(reader, SECRETS_MANAGER_PLUGIN, AWS_DISTRIBUTION, "secrets-manager")
    secret = reader.text("SecretsManagerSecretId", "").strip()
    if not secret:
        raise reader.error("SecretsManagerSecretId", "required when KMS is secrets-manager")
    settings: dict[str, Any] = {"secret_id": secret}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        settings["region"] = region
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    if endpoint:
        settings["endpoint"] = endpoint
    if reader.present("AwsProfileName"):
        settings["profile"] = reader.text("AwsProfileName")
    return host.load_kms(
        SECRETS_MANAGER_PLUGIN,
        PluginConfig(settings, path=WHERE, source="SecretsManagerSecretId"),
    )


def _vault_kms(reader: _Reader) -> KeyManagementService:
    host = _plugin(reader, VAULT_PLUGIN, VAULT_DISTRIBUTION, "vault")
    settings = {
        setting: reader.text(key) for key, setting in VAULT_SETTINGS.items() if reader.present(key)
    }
    return host.load_kms(VAULT_PLUGIN, PluginConfig(settings, path=WHERE, source="VaultAddr"))


def _aws_kms(reader: _Reader) -> KeyManagementService:
    host = _plugin(reader, AWS_PLUGIN, AWS_DISTRIBUTION, "aws")
    region_map = reader.config.get("RegionMap")
    key_id = reader.text("KmsKeyId", "").strip()
    if region_map is None and key_id:
        # The single-key form: the key's region is the ARN's (arn:aws:kms:REGION:…).
        parts = key_id.split(":")
        region = parts[3] if len(parts) > 5 and parts[0] == "arn" else ""
        region = (
            region
            or reader.text("DynamoDBSigningRegion", "")
            or reader.text("DynamoDBRegion", "")
            or os.environ.get("AWS_REGION", "")
        )
        if not region:
            raise reader.error("KmsKeyId", "give a key ARN (it names the region) or set AWS_REGION")
        region_map = {region: key_id}
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
