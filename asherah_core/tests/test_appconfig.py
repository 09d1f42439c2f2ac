"""SessionFactory.from_config: our plugins.toml and the asherah package's PascalCase mapping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asherah_core import (
    ConfigError,
    CryptoPolicy,
    PluginHost,
    SessionError,
    SessionFactory,
    StaticKms,
)
from asherah_core.metastore import InMemoryMetastore
from asherah_core.pascalconfig import KNOWN_KEYS

if TYPE_CHECKING:
    from conftest import ModulesImported

pytestmark = pytest.mark.usefixtures("isolated_env")
HEX_KEY = b"thisIsAStaticMasterKeyForTesting".hex()

TOML = """
[asherah]
service = "svc"
product = "prod"

[asherah.policy]
expire_after = "90d"
revoke_check_interval = 600
create_date_precision = "1m"
session_cache_duration = "2h"
cache_sessions = true
intermediate_key_cache_max_size = 50

[kms]
plugin = "static"

[plugins.static]
master_key = "thisIsAStaticMasterKeyForTesting"

[metastore]
plugin = "sql"

[metastores.sql]
url = "sqlite:///{db}"
create_table = true
"""


@pytest.fixture(autouse=True)
def core_only(default_host: Callable[[PluginHost], PluginHost]) -> PluginHost:
    return default_host(PluginHost(autoload=False))


def test_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(TOML.format(db=tmp_path / "keys.db"), encoding="utf-8")
    with SessionFactory.from_config(config) as factory:
        assert (factory.service, factory.product) == ("svc", "prod")
        assert factory.policy == CryptoPolicy(
            expire_after=timedelta(days=90),
            revoke_check_interval=timedelta(seconds=600),
            create_date_precision=timedelta(minutes=1),
            session_cache_duration=timedelta(hours=2),
            cache_sessions=True,
            intermediate_key_cache_max_size=50,
        )
        assert factory.metastore.kind == "sql"
        session = factory.get_session("p1")
        assert session.decrypt_bytes(session.encrypt_bytes(b"x")) == b"x"


def test_toml_defaults_to_the_memory_metastore(tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(
        '[asherah]\nservice = "s"\nproduct = "p"\n[kms]\nplugin = "static"\n'
        '[plugins.static]\nmaster_key = "thisIsAStaticMasterKeyForTesting"\n',
        encoding="utf-8",
    )
    with SessionFactory.from_config(str(config)) as factory:
        assert isinstance(factory.metastore, InMemoryMetastore)
        assert factory.policy == CryptoPolicy()
        assert factory.strict_names is False


def test_toml_strict_names(tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    text = TOML.format(db=tmp_path / "keys.db").replace(
        'product = "prod"', 'product = "prod"\nstrict_names = true'
    )
    config.write_text(text, encoding="utf-8")
    with SessionFactory.from_config(config) as factory:
        assert factory.strict_names is True
        with pytest.raises(SessionError, match="strict_names"):
            factory.get_session("tenant_7")
        session = factory.get_session("tenant-7")
        assert session.decrypt_bytes(session.encrypt_bytes(b"x")) == b"x"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("[asherah.policy]", "[asherah.policy]\nbogus = 1"), "bogus"),
        (('expire_after = "90d"', 'expire_after = "90 days"'), "expire_after"),
        (('expire_after = "90d"', "expire_after = -1"), "expire_after"),
        (('expire_after = "90d"', 'expire_after = "30s"'), r"expire_after.*create_date_precision"),
        (
            ('create_date_precision = "1m"', 'create_date_precision = "1.5s"'),
            "create_date_precision",
        ),
        (('service = "svc"', 'service = "svc"\nextra = 1'), "extra"),
        (('service = "svc"', 'service = "svc"\nstrict_names = "yes"'), "strict_names"),
        (('plugin = "sql"', 'plugin = "nosuch"'), "nosuch"),
    ],
)
def test_toml_errors_name_the_key(tmp_path: Path, change: tuple[str, str], named: str) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(TOML.format(db=tmp_path / "k.db").replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError, match=named):
        SessionFactory.from_config(config)


# The asherah package's configuration ------------------------------------------------------

BASE: dict[str, Any] = {
    "ServiceName": "svc",
    "ProductID": "prod",
    "Metastore": "memory",
    "KMS": "static",
    "StaticMasterKeyHex": HEX_KEY,
}


@pytest.mark.parametrize("missing", ["KMS", "StaticMasterKeyHex", "ServiceName", "Metastore"])
def test_pascal_case_required_keys_like_the_asherah_package(missing: str) -> None:
    config = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=f"{missing}: .*required"):
        SessionFactory.from_config(config)


def test_pascal_case_session_caching_is_on_by_default_like_the_asherah_package() -> None:
    with SessionFactory.from_config(BASE) as factory:
        assert factory.policy.cache_sessions
        assert factory.get_session("p") is factory.get_session("p")


def test_pascal_case_short_expiry_sets_the_created_precision_like_the_asherah_package() -> None:
    with SessionFactory.from_config({**BASE, "ExpireAfter": 30}) as factory:
        assert factory.policy.create_date_precision == timedelta(seconds=30)


def test_pascal_case_memory_and_static() -> None:
    with SessionFactory.from_config(
        {**BASE, "KMS": "static", "StaticMasterKeyHex": HEX_KEY}
    ) as factory:
        assert isinstance(factory.kms, StaticKms)
        session = factory.get_session("p1")
        assert session.decrypt_bytes(session.encrypt_bytes(b"x")) == b"x"


def test_pascal_case_policy_in_seconds() -> None:
    with SessionFactory.from_config(
        {
            **BASE,
            "ExpireAfter": 86400,
            "CheckInterval": 30,
            "EnableSessionCaching": True,
            "SessionCacheMaxSize": 7,
            "SessionCacheDuration": 120,
        }
    ) as factory:
        assert factory.policy == CryptoPolicy(
            expire_after=timedelta(days=1),
            revoke_check_interval=timedelta(seconds=30),
            cache_sessions=True,
            session_cache_max_size=7,
            session_cache_duration=timedelta(minutes=2),
        )
        assert factory.get_session("p") is factory.get_session("p")


def test_pascal_case_sqlite(tmp_path: Path) -> None:
    config = {**BASE, "Metastore": "sqlite", "ConnectionString": str(tmp_path / "k.db")}
    with SessionFactory.from_config(config) as factory:
        text = factory.get_session("p1").encrypt_bytes(b"x")
    with SessionFactory.from_config(config) as again:
        assert again.get_session("p1").decrypt_bytes(text) == b"x"


@pytest.mark.parametrize("connection", ["", ":memory:", "sqlite://:memory:"])
def test_pascal_case_sqlite_in_memory_is_one_database_for_every_thread(connection: str) -> None:
    config = {**BASE, "Metastore": "sqlite", "ConnectionString": connection}
    with SessionFactory.from_config(config) as factory:
        text = factory.get_session("p1").encrypt_bytes(b"x")
        opened: list[bytes] = []
        worker = threading.Thread(
            target=lambda: opened.append(factory.get_session("p1").decrypt_bytes(text))
        )
        worker.start()
        worker.join()
        assert opened == [b"x"]
        assert factory.metastore.kind == "sql"


def test_pascal_case_sqlite_needs_a_connection_string() -> None:
    with pytest.raises(ConfigError, match=r"ConnectionString.*missing required setting"):
        SessionFactory.from_config({**BASE, "Metastore": "sqlite"})


def test_every_documented_key_is_known() -> None:
    for key in (
        "ServiceName", "ProductID", "Metastore", "ConnectionString", "KMS", "StaticMasterKeyHex",
        "RegionMap", "PreferredRegion", "EnableSessionCaching", "SessionCacheMaxSize",
        "SessionCacheDuration", "ExpireAfter", "CheckInterval", "EnableRegionSuffix",
        "DynamoDBEndpoint", "DynamoDBRegion", "DynamoDBTableName", "Verbose",
    ):  # fmt: skip
        assert key in KNOWN_KEYS


@pytest.mark.parametrize(("size", "kept"), [(0, 1000), (1, 1), (2500, 2500)])
def test_session_cache_max_size_zero_is_the_default(size: int, kept: int) -> None:
    # The asherah package (and Go's zero value) read 0 as "not set": 1000 sessions.
    with SessionFactory.from_config({**BASE, "SessionCacheMaxSize": size}) as factory:
        assert factory.policy.session_cache_max_size == kept


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"Bogus": 1}, "Bogus"),
        ({"ServiceName": None}, "ServiceName"),
        ({"ProductID": 5}, "ProductID"),
        ({"Metastore": "oracle"}, "Metastore"),
        ({"ExpireAfter": "90d"}, "ExpireAfter"),
        ({"CheckInterval": -5}, "CheckInterval"),
        ({"EnableSessionCaching": "maybe"}, "EnableSessionCaching"),
        ({"SessionCacheMaxSize": 1.5}, "SessionCacheMaxSize"),
        ({"SessionCacheMaxSize": -1}, "SessionCacheMaxSize: must be 0 to 10,000,000, got -1"),
        ({"SessionCacheMaxSize": 10**7 + 1}, "SessionCacheMaxSize: must be 0 to 10,000,000"),
        ({"KMS": "gcp"}, "KMS"),
        ({"StaticMasterKeyHex": "zz"}, "StaticMasterKeyHex"),
        ({"StaticMasterKeyHex": "00" * 16}, "StaticMasterKeyHex"),
        ({"Metastore": "sqlite"}, "ConnectionString"),
    ],
)
def test_pascal_case_errors_name_the_key(extra: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        SessionFactory.from_config({**BASE, **extra})


def test_aws_without_the_plugin_names_the_distribution() -> None:
    with pytest.raises(ConfigError, match="asherah-aws-kms-v2"):
        SessionFactory.from_config(
            {**BASE, "KMS": "aws", "RegionMap": {"us-west-2": "arn:aws:kms:us-west-2:1:key/x"}}
        )


def test_overrides_replace_configured_arguments(clock: Any) -> None:
    with SessionFactory.from_config(BASE, clock=clock) as factory:
        record = factory.get_session("p1").encrypt(b"x")
        assert record.key.created == int(clock())


def test_neither_path_nor_mapping() -> None:
    with pytest.raises(ConfigError, match="TOML file or a mapping"):
        SessionFactory.from_config(5)  # type: ignore[arg-type]


def test_a_factory_of_built_in_parts_does_not_import_package_metadata(
    modules_imported: ModulesImported,
) -> None:
    """importlib.metadata (with email, zipfile, csv: about 4 MiB of memory) is imported only
    when plugins are discovered; the package's configuration with built-in parts needs none."""
    script = """
        from asherah_core import SessionFactory
        f = SessionFactory.from_config({'ServiceName': 's', 'ProductID': 'p',
            'Metastore': 'memory', 'KMS': 'static', 'StaticMasterKeyHex': '41' * 32})
        s = f.get_session('p1')
        assert s.decrypt_bytes(s.encrypt_bytes(b'x')) == b'x'
    """
    assert modules_imported(script, ("importlib.metadata", "email")) == []
