"""compat: the ``asherah`` package's API and configuration, behaviour by behaviour."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import ssl
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from asherah_core import (
    ConfigError,
    PluginConfig,
    PluginHost,
    RecordError,
    SessionError,
    StaticKms,
    compat,
    hookimpl,
)
from asherah_core.compat03 import Asherah, AsherahConfig
from asherah_core.metastore import InMemoryMetastore
from asherah_core.metastore.sql import SqlMetastore
from asherah_core.pascalconfig import TEST_DEBUG_STATIC_MASTER_KEY
from asherah_core.sqlurl import rdbms_target, sqlite_url

pytestmark = pytest.mark.usefixtures("isolated_env")
TEST_KEY_CONFIG: dict[str, Any] = {
    "ServiceName": "svc",
    "ProductID": "prod",
    "Metastore": "test-debug-memory",
    "KMS": "test-debug-static",
}
PACKAGE_ENV = (
    "SERVICE_NAME", "PRODUCT_ID", "Metastore", "SQLITE_PATH", "POSTGRES_URL", "MYSQL_URL",
    "DDB_TABLE", "KMS", "STATIC_MASTER_KEY_HEX", "REGION_SUFFIX", "CREATE_DATE_PRECISION_SECS",
    "EXPIRE_AFTER_SECS", "SESSION_CACHE_MAX_SIZE", "INTERMEDIATE_KEY_CACHE_MAX_SIZE",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_package_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in PACKAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    compat.set_metrics_hook(None)
    compat.set_log_hook(None)
    compat.shutdown()
    logging.getLogger("asherah_core").setLevel(logging.NOTSET)


def opens_with(key: bytes, text: str, partition: str = "p1") -> bool:
    """Whether a factory whose static master key is `key` decrypts `text` of `compat`'s store."""
    factory = compat._current()
    other = compat.SessionFactory(TEST_KEY_CONFIG, kms=StaticKms(key), metastore=factory.metastore)
    try:
        return other.get_session(partition).decrypt_bytes(text) == b"x"
    except Exception:
        return False


# The package's test names ------------------------------------------------------------------


def test_test_debug_static_without_a_key_is_the_public_test_key_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "asherah_core"):
        compat.setup(TEST_KEY_CONFIG)
    assert any("do NOT use in production" in r.getMessage() for r in caplog.records)
    text = compat.encrypt_bytes("p1", b"x")
    assert opens_with(TEST_DEBUG_STATIC_MASTER_KEY, text)
    assert not opens_with(b"k" * 32, text)


def test_test_debug_static_takes_a_given_key() -> None:
    compat.setup({**TEST_KEY_CONFIG, "StaticMasterKeyHex": "22" * 32})
    text = compat.encrypt_bytes("p1", b"x")
    assert opens_with(b"\x22" * 32, text)


def test_static_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="StaticMasterKeyHex"):
        compat.SessionFactory({**TEST_KEY_CONFIG, "KMS": "static"})


def test_test_debug_sqlite_is_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    config = {**TEST_KEY_CONFIG, "Metastore": "test-debug-sqlite", "ConnectionString": str(db)}
    with compat.SessionFactory(config) as factory:
        assert isinstance(factory.metastore, SqlMetastore)
        factory.get_session("p").encrypt_bytes(b"x")
    assert db.is_file()


def test_test_debug_memory_is_memory() -> None:
    with compat.SessionFactory(TEST_KEY_CONFIG) as factory:
        assert isinstance(factory.metastore, InMemoryMetastore)


# Defaults and environment variables --------------------------------------------------------


def test_no_configuration_takes_the_package_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMS", "test-debug-static")
    with compat.SessionFactory() as factory:
        assert (factory.service, factory.product) == ("service", "product")
        assert isinstance(factory.metastore, InMemoryMetastore)


def test_setup_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMS", "test-debug-static")
    with pytest.raises(ConfigError, match="setup takes the configuration mapping"):
        compat.setup(None)  # type: ignore[arg-type]
    assert not compat.get_setup_status()


def test_the_environment_without_kms_is_refused() -> None:
    with pytest.raises(ConfigError, match="KMS is required"):
        compat.SessionFactory.from_env()


def test_sqlite_path_selects_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("KMS", "test-debug-static")
    monkeypatch.setenv("SQLITE_PATH", str(db))
    monkeypatch.setenv("SERVICE_NAME", "envsvc")
    with compat.SessionFactory() as factory:
        assert isinstance(factory.metastore, SqlMetastore)
        assert factory.service == "envsvc"
        factory.get_session("p").encrypt_bytes(b"x")
    assert db.is_file()


def test_environment_policy_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMS", "test-debug-static")
    monkeypatch.setenv("EXPIRE_AFTER_SECS", "3600")
    monkeypatch.setenv("CREATE_DATE_PRECISION_SECS", "5")
    monkeypatch.setenv("INTERMEDIATE_KEY_CACHE_MAX_SIZE", "7")
    monkeypatch.setenv("REGION_SUFFIX", "us-west-2")
    with compat.SessionFactory() as factory:
        assert factory.policy.expire_after == timedelta(hours=1)
        assert factory.policy.create_date_precision == timedelta(seconds=5)
        assert factory.policy.intermediate_key_cache_max_size == 7
        assert factory.get_session("p").partition.ik_id.endswith("_us-west-2")


def test_an_unreadable_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KMS", "test-debug-static")
    monkeypatch.setenv("SESSION_CACHE_MAX_SIZE", "lots")
    with pytest.raises(ConfigError, match="SESSION_CACHE_MAX_SIZE"):
        compat.SessionFactory()


# The metrics hook --------------------------------------------------------------------------


def test_metrics_hook_installed_before_setup_gets_row_timings_and_cache_events() -> None:
    got: list[dict[str, Any]] = []
    compat.set_metrics_hook(got.append)
    compat.setup(TEST_KEY_CONFIG)
    text = compat.encrypt_bytes("p1", b"x")
    compat.decrypt_bytes("p1", text)
    compat.encrypt_bytes("p1", b"y")
    kinds = [event["type"] for event in got]
    assert kinds.count("encrypt") == 2
    assert kinds.count("decrypt") == 1
    assert "store" in kinds  # the new system and intermediate keys
    assert "load" in kinds
    for event in got:
        if event["type"] in ("encrypt", "decrypt", "store", "load"):
            assert isinstance(event["duration_ns"], int)
            assert event["duration_ns"] > 0
    caches = {(e["type"], e["name"]) for e in got if e["type"].startswith("cache_")}
    assert ("cache_miss", "intermediate-key") in caches
    assert ("cache_hit", "intermediate-key") in caches


def test_metrics_hook_durations_are_the_histograms_records() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    got: list[dict[str, Any]] = []
    compat.set_metrics_hook(got.append)
    with compat.SessionFactory(TEST_KEY_CONFIG, meter=meter) as factory:
        session = factory.get_session("p")
        for _ in range(5):
            session.encrypt_bytes(b"x")
    data = reader.get_metrics_data()
    assert data is not None
    [histogram_sum] = [
        point.sum
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "ael.drr.encrypt"
        for point in metric.data.data_points
    ]
    hook_sum = sum(e["duration_ns"] for e in got if e["type"] == "encrypt") / 1e9
    assert math.isclose(histogram_sum, hook_sum, rel_tol=1e-6, abs_tol=1e-8)


def test_metrics_hook_replacement_and_removal() -> None:
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    compat.setup(TEST_KEY_CONFIG)
    compat.set_metrics_hook(first.append)
    compat.encrypt_bytes("p", b"x")
    compat.set_metrics_hook(second.append)
    compat.encrypt_bytes("p", b"x")
    seen = (len(first), len(second))
    compat.set_metrics_hook(None)
    compat.encrypt_bytes("p", b"x")
    assert seen[0] > 0
    assert seen[1] > 0
    assert (len(first), len(second)) == seen


def test_a_failing_metrics_hook_does_not_fail_the_row() -> None:
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("hook bug")

    compat.set_metrics_hook(broken)
    compat.setup(TEST_KEY_CONFIG)
    assert compat.decrypt_bytes("p", compat.encrypt_bytes("p", b"x")) == b"x"


@pytest.mark.parametrize("hook", [compat.set_metrics_hook, compat.set_log_hook])
def test_hooks_must_be_callable(hook: Callable[[Any], None]) -> None:
    with pytest.raises(TypeError, match="callable"):
        hook("not a function")


# Argument types ----------------------------------------------------------------------------


def test_none_arguments_raise_type_error_that_is_also_ours() -> None:
    compat.setup(TEST_KEY_CONFIG)
    with pytest.raises(TypeError) as raised:
        compat.encrypt_bytes(None, b"x")  # type: ignore[arg-type]
    assert isinstance(raised.value, SessionError)
    with pytest.raises(TypeError):
        compat.encrypt_bytes("p", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compat.encrypt_string("p", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError) as raised:
        compat.decrypt_bytes("p", None)  # type: ignore[arg-type]
    assert isinstance(raised.value, RecordError)


def test_none_arguments_raise_type_error_in_coroutines() -> None:
    with compat.SessionFactory(TEST_KEY_CONFIG) as factory:
        session = factory.get_session("p")
        with pytest.raises(TypeError):
            asyncio.run(session.encrypt_bytes_async(None))  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            asyncio.run(session.decrypt_bytes_async(None))  # type: ignore[arg-type]


# Verbose -----------------------------------------------------------------------------------


def test_verbose_sends_info_and_debug_records_to_the_log_hook() -> None:
    quiet: list[dict[str, str]] = []
    compat.set_log_hook(quiet.append)
    compat.setup(TEST_KEY_CONFIG)
    compat.encrypt_bytes("p", b"x")
    compat.shutdown()
    assert {e["level"] for e in quiet} == {"warn"}  # the static key warning only
    loud: list[dict[str, str]] = []
    compat.set_log_hook(loud.append)
    compat.setup({**TEST_KEY_CONFIG, "Verbose": True})
    compat.encrypt_bytes("p", b"x")
    assert "info" in {e["level"] for e in loud}
    assert all(e["target"].startswith("asherah_core") for e in loud)


# Configuration values ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", ["ExpireAfter", "CheckInterval", "SessionCacheDuration"])
def test_non_finite_durations_are_config_errors(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        compat.SessionFactory({**TEST_KEY_CONFIG, key: value})


def test_a_password_with_an_unescaped_at_is_split_at_the_last_at() -> None:
    target = rdbms_target("mysql://app:p@ss:w@rd@db.example:3306/keys", "", "cfg")
    url = sa.make_url(target.url)
    assert (url.username, url.password, url.host, url.port) == (
        "app",
        "p@ss:w@rd",
        "db.example",
        3306,
    )
    assert url.database == "keys"
    postgres = sa.make_url(rdbms_target("postgres://u:a@b@h/db", "", "cfg").url)
    assert (postgres.password, postgres.host) == ("a@b", "h")


def test_an_escaped_password_stays_as_written() -> None:
    url = sa.make_url(rdbms_target("mysql://u:p%40ss@h/db", "", "cfg").url)
    assert url.password == "p@ss"


@pytest.mark.parametrize("name", ["a%41b.db", "what?.db", "x%3Fy #1.db"])
def test_a_sqlite_path_is_opened_literally(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert sa.make_url(sqlite_url(str(path))).database == str(path)
    config = {**TEST_KEY_CONFIG, "Metastore": "sqlite", "ConnectionString": f"sqlite://{path}"}
    with compat.SessionFactory(config) as factory:
        factory.get_session("p").encrypt_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_go_mysql_tls_true_verifies_the_server() -> None:
    target = rdbms_target("u:pw@tcp(db:3306)/keys?tls=true&parseTime=true&loc=UTC", "", "c")
    context = target.connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_go_mysql_skip_verify_encrypts_without_verifying() -> None:
    context = rdbms_target("u:pw@tcp(db)/k?tls=skip-verify", "", "c").connect_args["ssl"]
    assert context.verify_mode == ssl.CERT_NONE
    assert not context.check_hostname


def test_mysql_url_options_are_read_too() -> None:
    target = rdbms_target("mysql://u:pw@db/k?tls=true&timeout=2500ms&charset=utf8mb4", "", "c")
    assert isinstance(target.connect_args["ssl"], ssl.SSLContext)
    assert target.connect_args["connect_timeout"] == 3
    assert target.connect_args["charset"] == "utf8mb4"
    assert "tls" not in target.url


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("tls=custom", "tls"),
        ("loc=Local", "loc"),
        ("parseTime=maybe", "parseTime"),
        ("interpolateParams=true", "interpolateParams"),
        ("timeout=soon", "timeout"),
    ],
)
def test_go_mysql_options_are_never_dropped_silently(option: str, named: str) -> None:
    with pytest.raises(ConfigError, match=f"option '?{named}'?[=:]"):
        rdbms_target(f"u:pw@tcp(db:3306)/keys?{option}", "", "c")


def test_replica_read_consistency_other_than_eventual_is_refused() -> None:
    config = {
        **TEST_KEY_CONFIG,
        "Metastore": "rdbms",
        "ConnectionString": "postgres://u@h/db",
        "ReplicaReadConsistency": "global",
    }
    with pytest.raises(ConfigError, match="ReplicaReadConsistency"):
        compat.SessionFactory(config)


# Overrides close what they replace ---------------------------------------------------------


def test_an_overridden_metastore_built_from_the_config_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[object] = []
    original = SqlMetastore.close
    monkeypatch.setattr(SqlMetastore, "close", lambda self: (closed.append(self), original(self)))
    config = {**TEST_KEY_CONFIG, "Metastore": "sqlite", "ConnectionString": str(tmp_path / "k")}
    with compat.SessionFactory(config, metastore=InMemoryMetastore()) as factory:
        assert isinstance(factory.metastore, InMemoryMetastore)
        assert len(closed) == 1


def test_what_was_built_is_closed_when_construction_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[object] = []
    original = SqlMetastore.close
    monkeypatch.setattr(SqlMetastore, "close", lambda self: (closed.append(self), original(self)))
    config = {**TEST_KEY_CONFIG, "Metastore": "sqlite", "ConnectionString": str(tmp_path / "k")}
    with pytest.raises(SessionError, match="policy"):
        compat.SessionFactory(config, policy="strict")
    assert len(closed) == 1


# Vault through the asherah-vault-transit plugin --------------------------------------------


class FakeVault:
    """A stand-in for the asherah-vault-transit plugin: records the settings it is given."""

    def __init__(self) -> None:
        self.settings: list[dict[str, Any]] = []

    @hookimpl
    def asherah_register_kms(self, register: Any) -> None:
        def build(config: PluginConfig, crypto: Any) -> StaticKms:
            self.settings.append(dict(config))
            return StaticKms(b"v" * 32)

        register("vault", build)


VAULT_CONFIG = {
    **TEST_KEY_CONFIG,
    "KMS": "vault",
    "VaultAddr": "https://vault.example:8200",
    "VaultTransitKey": "app",
    "VaultTransitMount": "transit2",
    "VaultToken": "s.token",
    "VaultAuthMethod": "approle",
    "VaultAuthRole": "role",
    "VaultAuthMount": "approle2",
    "VaultApproleRoleId": "rid",
    "VaultApproleSecretId": "sid",
    "VaultClientCert": "/c.pem",
    "VaultClientKey": "/k.pem",
    "VaultK8sTokenPath": "/t",
}


@pytest.mark.parametrize("name", ["vault", "vault-transit", "Vault"])
def test_vault_keys_become_the_plugin_settings(
    default_host: Callable[[PluginHost], PluginHost], name: str
) -> None:
    fake = FakeVault()
    default_host(PluginHost(autoload=False, plugins=[("fake-vault", fake)]))
    with compat.SessionFactory({**VAULT_CONFIG, "KMS": name}):
        pass
    assert fake.settings == [
        {
            "address": "https://vault.example:8200",
            "transit_key": "app",
            "transit_mount": "transit2",
            "token": "s.token",
            "auth_method": "approle",
            "auth_role": "role",
            "auth_mount": "approle2",
            "approle_role_id": "rid",
            "approle_secret_id": "sid",
            "client_cert": "/c.pem",
            "client_key": "/k.pem",
            "k8s_token_path": "/t",
        }
    ]


def test_vault_passes_only_the_keys_that_are_set(
    default_host: Callable[[PluginHost], PluginHost],
) -> None:
    fake = FakeVault()
    default_host(PluginHost(autoload=False, plugins=[("fake-vault", fake)]))
    config = {**TEST_KEY_CONFIG, "KMS": "vault", "VaultAddr": "http://v:8200"}
    with compat.SessionFactory(config):
        pass
    assert fake.settings == [{"address": "http://v:8200"}]


def test_vault_without_the_plugin_names_the_distribution(
    default_host: Callable[[PluginHost], PluginHost],
) -> None:
    default_host(PluginHost(autoload=False))
    with pytest.raises(ConfigError, match="pip install asherah-vault-transit"):
        compat.SessionFactory(VAULT_CONFIG)


# The 0.3.x API -----------------------------------------------------------------------------


def test_the_0_3_api_encrypts_to_text_and_decrypts_to_bytearray() -> None:
    crypt = Asherah()
    crypt.setup(AsherahConfig(kms="static", metastore="memory", service_name="s", product_id="p"))
    try:
        text = crypt.encrypt("partition", b"data")
        assert isinstance(text, str)
        plain = crypt.decrypt("partition", text)
        assert isinstance(plain, bytearray)
        assert plain == bytearray(b"data")
        assert crypt.decrypt("partition", crypt.encrypt("partition", "text")) == b"text"
    finally:
        crypt.shutdown()


def test_the_0_3_durations_are_go_nanoseconds() -> None:
    config = AsherahConfig(
        kms="static",
        metastore="memory",
        service_name="s",
        product_id="p",
        expire_after=3600 * 10**9,
        check_interval=0,
        enable_session_caching=True,
    )
    pascal = config.to_pascal_case()
    assert pascal["ExpireAfter"] == 3600
    assert "CheckInterval" not in pascal  # 0 is Go's default
    assert pascal["KMS"] == "test-debug-static"  # 0.3.x's static KMS is the public test key


def test_a_0_3_duration_in_seconds_is_caught() -> None:
    config = AsherahConfig(
        kms="static", metastore="memory", service_name="s", product_id="p", expire_after=3600
    )
    with pytest.raises(ConfigError, match="nanoseconds"):
        Asherah().setup(config)


# Pool knobs, MYSQL_TLS_MODE, ignored cache switches ----------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"pool_size": 2, "max_overflow": -1}),
        ({"PoolMaxOpen": 0, "PoolMaxIdle": 4}, {"pool_size": 4, "max_overflow": -1}),
        ({"PoolMaxOpen": 10}, {"pool_size": 2, "max_overflow": 8}),
        ({"PoolMaxOpen": 3, "PoolMaxIdle": 5}, {"pool_size": 3, "max_overflow": 0}),
        (
            {"PoolMaxLifetime": 600, "PoolMaxIdleTime": 60},
            {"pool_size": 2, "max_overflow": -1, "pool_recycle": 60},
        ),
        ({"PoolMaxLifetime": 0}, {"pool_size": 2, "max_overflow": -1}),
    ],
)
def test_pool_knobs_follow_go_where_zero_is_unlimited(
    given: dict[str, int], expected: dict[str, int]
) -> None:
    from asherah_core.pascalconfig import _pool_options, _Reader  # noqa: PLC0415

    assert _pool_options(_Reader({**TEST_KEY_CONFIG, **given})) == expected


def test_a_negative_pool_knob_is_refused() -> None:
    from asherah_core.pascalconfig import _pool_options, _Reader  # noqa: PLC0415

    with pytest.raises(ConfigError, match="PoolMaxOpen"):
        _pool_options(_Reader({**TEST_KEY_CONFIG, "PoolMaxOpen": -1}))


def test_mysql_tls_mode_becomes_the_tls_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from asherah_core.compatenv import config_from_env  # noqa: PLC0415

    environ = {"KMS": "test-debug-static", "MYSQL_URL": "u:p?w@tcp(db)/k", "MYSQL_TLS_MODE": "true"}
    config, _ = config_from_env(environ)
    assert config["ConnectionString"] == "u:p?w@tcp(db)/k?tls=true"
    target = rdbms_target(config["ConnectionString"], "mysql", "env")
    assert isinstance(target.connect_args["ssl"], ssl.SSLContext)


def test_turning_a_cache_off_by_environment_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KMS", "test-debug-static")
    monkeypatch.setenv("CACHE_SYSTEM_KEYS", "false")
    with caplog.at_level(logging.WARNING, "asherah_core"), compat.SessionFactory() as factory:
        assert factory.policy.cache_system_keys
    assert any("CACHE_SYSTEM_KEYS=false is ignored" in r.getMessage() for r in caplog.records)


def test_go_mysql_tls_false_turns_tls_off_and_preferred_is_the_drivers_default() -> None:
    assert rdbms_target("u:pw@tcp(db)/k?tls=false", "", "c").connect_args == {"ssl_disabled": True}
    assert rdbms_target("u:pw@tcp(db)/k?tls=preferred", "", "c").connect_args == {}


def test_tls_with_a_pymysql_that_falls_back_to_plain_text_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata  # noqa: PLC0415

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.1.1")
    with pytest.raises(ConfigError, match=r"PyMySQL 1\.2"):
        rdbms_target("u:pw@tcp(db)/k?tls=true", "", "c")


# DynamoDBSigningRegion, KmsKeyId -----------------------------------------------------------


def test_dynamodb_signing_region_signs_and_dynamodb_region_picks_the_endpoint() -> None:
    pytest.importorskip("boto3")
    config = {
        **TEST_KEY_CONFIG,
        "Metastore": "dynamodb",
        "DynamoDBRegion": "us-east-1",
        "DynamoDBSigningRegion": "us-west-2",
    }
    with compat.SessionFactory(config) as factory:
        store: Any = factory.metastore
        assert store.region == "us-west-2"
        assert store._client.meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"


class FakeAws:
    """Stands in for asherah-aws-kms-v2's aws-v2 KMS: records its settings."""

    def __init__(self) -> None:
        self.settings: list[dict[str, Any]] = []

    @hookimpl
    def asherah_register_kms(self, register: Any) -> None:
        def build(config: PluginConfig, crypto: Any) -> StaticKms:
            self.settings.append(dict(config))
            return StaticKms(b"a" * 32)

        register("aws-v2", build)


def test_kms_key_id_is_a_one_region_map(
    default_host: Callable[[PluginHost], PluginHost], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_KMS", raising=False)
    fake = FakeAws()
    default_host(PluginHost(autoload=False, plugins=[("fake-aws", fake)]))
    arn = "arn:aws:kms:eu-west-1:111122223333:key/abc"
    with compat.SessionFactory({**TEST_KEY_CONFIG, "KMS": "aws", "KmsKeyId": arn}):
        pass
    assert fake.settings == [
        {"regions": {"eu-west-1": {"arn": arn}}, "preferred_region": "eu-west-1"}
    ]


# The package's parameter names and argument forms --------------------------------------------


def test_the_package_keyword_names_are_accepted() -> None:
    with compat.SessionFactory(config_obj=TEST_KEY_CONFIG) as factory:
        session = factory.get_session("p1")
        text = session.encrypt_bytes(data=b"x")
        assert session.decrypt_bytes(data_row_record=text) == b"x"
        assert session.decrypt_text(data_row_record=session.encrypt_text(text="t")) == "t"
        assert asyncio.run(session.decrypt_bytes_async(data_row_record=text)) == b"x"
    with compat.SessionFactory.from_config(config_obj=TEST_KEY_CONFIG) as factory:
        session = factory.get_session("p1")
        assert session.decrypt_bytes(session.encrypt_bytes(b"y")) == b"y"
    compat.setup(config_obj=TEST_KEY_CONFIG)
    text = compat.encrypt_bytes(partition_id="p1", data=b"z")
    assert compat.decrypt_bytes(partition_id="p1", data_row_record=text) == b"z"


class _Bytes(bytes):
    """A subclass of bytes, as numpy.bytes_ is."""


def test_a_subclass_of_bytes_is_data() -> None:
    compat.setup(TEST_KEY_CONFIG)
    text = compat.encrypt_bytes("p1", _Bytes(b"abc"))
    assert compat.decrypt_bytes("p1", text) == b"abc"
    assert (
        compat.decrypt_bytes("p1", asyncio.run(compat.encrypt_bytes_async("p1", _Bytes(b"a"))))
        == b"a"
    )


def test_setenv_sets_values_as_the_package_does(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZZ_A", "ZZ_B", "ZZ_C", "ZZ_D", "ZZ_E", "ZZ_GONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZZ_GONE", "here")
    compat.setenv(
        env_obj={
            "ZZ_A": "text",
            "ZZ_B": 5,
            "ZZ_C": True,
            "ZZ_D": {"us-west-2": "arn:aws:kms:us-west-2:1:key/a"},
            "ZZ_E": 1.5,
            "ZZ_GONE": None,
        }
    )
    assert os.environ["ZZ_A"] == "text"
    assert os.environ["ZZ_B"] == "5"
    assert os.environ["ZZ_C"] == "true"
    assert os.environ["ZZ_D"] == '{"us-west-2":"arn:aws:kms:us-west-2:1:key/a"}'
    assert os.environ["ZZ_E"] == "1.5"
    assert "ZZ_GONE" not in os.environ
    compat.setenv('{"ZZ_A": "from json", "ZZ_B": null}')
    assert os.environ["ZZ_A"] == "from json"
    assert "ZZ_B" not in os.environ


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("[1, 2]", "takes a mapping or the JSON text of an object, not list"),
        ("{not json", "the text is not JSON"),
        (["ZZ_A"], "takes a mapping or the JSON text of an object, not list"),
        ({1: "x"}, "names must be strings, got int"),
        ({"": "x"}, "'' is not a usable environment variable name"),
        ({"ZZ_A": "ok", "ZZ_B": b"s3cret-bytes"}, "ZZ_B: a bytes has no JSON text"),
        ({"ZZ_A": "ok", "ZZ_B": math.nan}, "ZZ_B: a float has no JSON text"),
        ({"ZZ_A": "ok", "ZZ_B": "a\0b"}, "ZZ_B: the value holds a NUL character"),
    ],
)
def test_setenv_refuses_what_has_no_environment_form(
    monkeypatch: pytest.MonkeyPatch, argument: Any, message: str
) -> None:
    monkeypatch.delenv("ZZ_A", raising=False)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        compat.setenv(argument)
    assert "s3cret" not in str(info.value)
    assert "ZZ_A" not in os.environ  # nothing is set unless every value is good
