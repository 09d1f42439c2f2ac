"""docs/migration.md's tables cannot drift from what compat reads.

The configuration table must list exactly the keys of the ``asherah`` package's
``asherah-config`` crate (0.5.56), and those must be exactly the keys pascalconfig knows (read
or refused by name); the environment table must list exactly the variables compatenv reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from asherah_core.compatenv import ALSO_READ, ENVIRONMENT
from asherah_core.pascalconfig import KNOWN_KEYS, UNSUPPORTED

DOC = Path(__file__).resolve().parent.parent / "docs" / "migration.md"

# The serde names (and aliases) of asherah-config's ConfigOptions in the 0.5.56 release.
PACKAGE_KEYS = {
    "ServiceName", "ProductID", "ExpireAfter", "CheckInterval", "Metastore", "ConnectionString",
    "ReplicaReadConsistency", "DynamoDBEndpoint", "DynamoDBRegion", "DynamoDBSigningRegion",
    "DynamoDBTableName", "SessionCacheMaxSize", "SessionCacheDuration", "KMS", "RegionMap",
    "PreferredRegion", "AwsProfileName", "EnableRegionSuffix", "RecoveryRegionSuffixes",
    "SelfHealRecoveredKeys", "ConfigDriftForceRun", "ForceRunWithConfigDrift",
    "ConfigDriftForceUpdate", "ForceUpdateConfigDriftGuard", "EnableSessionCaching", "Verbose",
    "SQLMetastoreDBType", "DisableZeroCopy", "NullDataCheck", "EnableCanaries", "PoolMaxOpen",
    "PoolMaxIdle", "PoolMaxLifetime", "PoolMaxIdleTime", "StaticMasterKeyHex", "KmsKeyId",
    "SecretsManagerSecretId", "VaultAddr", "VaultToken", "VaultAuthMethod", "VaultAuthRole",
    "VaultAuthMount", "VaultApproleRoleId", "VaultApproleSecretId", "VaultClientCert",
    "VaultClientKey", "VaultK8sTokenPath", "VaultTransitKey", "VaultTransitMount",
}  # fmt: skip


def first_column(heading: str) -> list[str]:
    """The first-column names of the table under `heading` (up to the next heading)."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        names.extend(re.findall(r"`([^`]+)`", cell))
    return names


def test_every_package_key_is_read_or_refused_by_name() -> None:
    assert set(KNOWN_KEYS) | set(UNSUPPORTED) == PACKAGE_KEYS


def test_the_configuration_table_lists_every_key_once() -> None:
    names = first_column("## Every configuration key")
    assert len(names) == len(set(names))
    assert set(names) == PACKAGE_KEYS


def test_the_environment_table_lists_every_variable_read() -> None:
    names = first_column("### Environment variables")
    assert len(names) == len(set(names))
    assert set(names) == set(ENVIRONMENT) | set(ALSO_READ)
