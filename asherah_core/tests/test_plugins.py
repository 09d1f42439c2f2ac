"""The plugin host: discovery through entry points, registration errors, building a KMS."""

from __future__ import annotations

import base64
import importlib.metadata
import inspect
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import asherah_core
from asherah_core import (
    Aes256Gcm,
    AsherahError,
    ConfigError,
    KeyManagementService,
    PluginConfig,
    PluginError,
    PluginHost,
    StaticKms,
    available_kms,
    hookimpl,
    hookspecs,
    load_kms,
    load_kms_from_file,
)
from asherah_core.plugins import KmsRegistration, PluginInfo

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
CORE = f"plugin 'static' (distribution asherah-core {asherah_core.__version__})"

pytestmark = pytest.mark.usefixtures("isolated_env")


def plugin(register_hook: Callable[..., None]) -> types.SimpleNamespace:
    """An in-process plugin object whose `asherah_register_kms` is `register_hook`."""
    return types.SimpleNamespace(asherah_register_kms=hookimpl(register_hook))


def registering(*names: str, describe: Any = None) -> types.SimpleNamespace:
    def asherah_register_kms(register: Any) -> None:
        for name in names:
            register(name, lambda config, crypto: StaticKms(MASTER_KEY, crypto), describe=describe)

    return plugin(asherah_register_kms)


def host_with(*plugins: tuple[str, object], **kwargs: Any) -> PluginHost:
    kwargs.setdefault("autoload", False)
    return PluginHost(plugins=list(plugins), **kwargs)


def plugin_error(host: PluginHost) -> PluginError:
    with pytest.raises(PluginError) as info:
        host.available()
    return info.value


# Discovery -----------------------------------------------------------------------------


def test_available_is_sorted_and_includes_the_builtin_static() -> None:
    host = host_with(("zeta", registering("zeta")), ("alpha", registering("alpha", "beta")))
    assert host.available() == ["alpha", "beta", "static", "zeta"]


def test_plugins_lists_each_plugin_with_its_distribution_and_kms() -> None:
    host = host_with(("multi", registering("m1", "m2")))
    assert host.plugins() == [
        PluginInfo(
            "metastores",
            "asherah-core",
            asherah_core.__version__,
            (),
            ("memory", "sql", "dynamodb"),
        ),
        PluginInfo("multi", "<in-process>", "-", ("m1", "m2")),
        PluginInfo("static", "asherah-core", asherah_core.__version__, ("static",)),
    ]


def test_registration_records_the_plugin_and_describer() -> None:
    def describe(encrypted: bytes) -> dict[str, Any] | None:
        return None

    registration = host_with(("toy", registering("toy", describe=describe))).registration("toy")
    assert isinstance(registration, KmsRegistration)
    assert registration.plugin.name == "toy"
    assert registration.describe is describe


def test_static_has_no_describer() -> None:
    assert host_with().registration("static").describe is None


def test_entry_point_plugin_is_discovered_with_its_distribution(
    make_plugin: Callable[..., importlib.metadata.EntryPoint], toy_plugin_source: str
) -> None:
    ep = make_plugin(toy_plugin_source, distribution="toy-plugin", version="1.2.3")
    host = PluginHost(entry_points=[ep])
    assert host.available() == ["static", "toy"]
    assert PluginInfo("toy", "toy-plugin", "1.2.3", ("toy",)) in host.plugins()
    kms = host.load_kms("toy", {"colour": "blue"})
    assert kms.decrypt_key(kms.encrypt_key(b"abc")) == b"abc"
    assert kms.config == {"colour": "blue"}  # type: ignore[attr-defined]


def test_loading_is_lazy_and_happens_once(
    make_plugin: Callable[..., importlib.metadata.EntryPoint],
) -> None:
    calls: list[int] = []

    def asherah_register_kms(register: Any) -> None:
        calls.append(threading.get_ident())
        register("counted", lambda config, crypto: StaticKms(MASTER_KEY))

    failing = make_plugin("raise ImportError('would fail if imported')")
    host = host_with(("counted", plugin(asherah_register_kms)), entry_points=[failing])
    assert calls == []
    threads = [threading.Thread(target=host.available) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    host.available()
    assert len(calls) == 1


def test_the_same_entry_point_seen_twice_is_loaded_once(
    make_plugin: Callable[..., importlib.metadata.EntryPoint], toy_plugin_source: str
) -> None:
    ep = make_plugin(toy_plugin_source)
    assert PluginHost(entry_points=[ep, ep]).available() == ["static", "toy"]


def test_entry_point_without_a_distribution_is_labelled_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_plugin_source: str
) -> None:
    (tmp_path / "asherah_distless_plugin.py").write_text(
        inspect.cleandoc(toy_plugin_source), encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint("distless", "asherah_distless_plugin", "asherah")
    assert ep.dist is None
    host = PluginHost(entry_points=[ep])
    assert PluginInfo("distless", "<unknown>", "?", ("toy",)) in host.plugins()


# Failures while loading ----------------------------------------------------------------


def test_plugin_that_fails_to_import_names_plugin_and_distribution(
    make_plugin: Callable[..., importlib.metadata.EntryPoint],
) -> None:
    ep = make_plugin(
        "import asherah_no_such_module_xyz\n", name="broken", distribution="broken-kms"
    )
    error = plugin_error(PluginHost(entry_points=[ep]))
    message = str(error)
    assert "plugin 'broken' (distribution broken-kms 1.2.3) failed to import" in message
    assert "ModuleNotFoundError" in message
    assert "asherah_no_such_module_xyz" in message
    assert isinstance(error.__cause__, ModuleNotFoundError)


def test_plugin_raising_at_import_time_is_chained(
    make_plugin: Callable[..., importlib.metadata.EntryPoint],
) -> None:
    ep = make_plugin("1 / 0\n", name="divider", distribution="divider-kms", version="0.9")
    error = plugin_error(PluginHost(entry_points=[ep]))
    assert "plugin 'divider' (distribution divider-kms 0.9)" in str(error)
    assert isinstance(error.__cause__, ZeroDivisionError)


def test_failed_load_is_reported_again_on_retry_without_partial_state(
    make_plugin: Callable[..., importlib.metadata.EntryPoint],
) -> None:
    host = host_with(("dup", registering("static")))
    first = str(plugin_error(host))
    assert str(plugin_error(host)) == first
    assert "registered twice" in first


def test_same_kms_name_registered_by_two_plugins_names_both() -> None:
    host = host_with(("one", registering("shared")), ("two", registering("shared")))
    message = str(plugin_error(host))
    assert "KMS name 'shared' is registered twice" in message
    assert "plugin 'one' (distribution <in-process> -)" in message
    assert "plugin 'two' (distribution <in-process> -)" in message
    assert "ASHERAH_BLOCKED_PLUGINS" in message


def test_a_plugin_cannot_take_the_name_static() -> None:
    message = str(plugin_error(host_with(("mine", registering("static")))))
    assert CORE in message
    assert "plugin 'mine'" in message


def test_same_kms_name_twice_from_one_plugin() -> None:
    assert "registered twice" in str(plugin_error(host_with(("twice", registering("a", "a")))))


def test_two_distributions_with_the_same_plugin_name(
    make_plugin: Callable[..., importlib.metadata.EntryPoint], toy_plugin_source: str
) -> None:
    first = make_plugin(toy_plugin_source, name="toy", distribution="toy-a")
    second = make_plugin(toy_plugin_source, name="toy", distribution="toy-b")
    message = str(plugin_error(PluginHost(entry_points=[first, second])))
    assert "(distribution toy-b 1.2.3) has the same plugin name as" in message
    assert "(distribution toy-a 1.2.3)" in message


def test_same_object_under_two_names_is_a_plugin_error() -> None:
    shared = registering("x")
    error = plugin_error(host_with(("a", shared), ("b", shared)))
    assert "plugin 'b'" in str(error)
    assert "plugin 'a'" in str(error)
    assert isinstance(error.__cause__, ValueError)


def test_unknown_hook_names_the_plugin(
    make_plugin: Callable[..., importlib.metadata.EntryPoint],
) -> None:
    ep = make_plugin(
        """
        from asherah_core import hookimpl

        @hookimpl
        def asherah_bogus_hook(register):
            pass
        """,
        name="typo",
        distribution="typo-kms",
    )
    error = plugin_error(PluginHost(entry_points=[ep]))
    assert "plugin 'typo' (distribution typo-kms 1.2.3) implements an unknown hook" in str(error)
    assert "asherah_bogus_hook" in str(error)
    assert error.__cause__ is not None


def test_unknown_hook_in_an_in_process_plugin() -> None:
    bogus = types.SimpleNamespace(asherah_bogus_hook=hookimpl(lambda register: None))
    assert "plugin 'bogus'" in str(plugin_error(host_with(("bogus", bogus))))


def test_hookimpl_with_an_argument_the_spec_lacks_is_invalid() -> None:
    def asherah_register_kms(registr: Any) -> None:
        pass

    error = plugin_error(host_with(("misspelt", plugin(asherah_register_kms))))
    assert "plugin 'misspelt' (distribution <in-process> -) is invalid" in str(error)
    assert "registr" in str(error)


def test_hookimpl_may_take_fewer_arguments_than_the_spec() -> None:
    called: list[bool] = []

    def asherah_register_kms() -> None:
        called.append(True)

    host = host_with(("quiet", plugin(asherah_register_kms)))
    assert host.available() == ["static"]
    assert called == [True]
    assert PluginInfo("quiet", "<in-process>", "-", ()) in host.plugins()


@pytest.mark.parametrize("name", ["", "Upper", "has space", "-lead", "a" * 65, "é", 5])
def test_invalid_kms_name(name: Any) -> None:
    message = str(plugin_error(host_with(("bad", registering(name)))))
    assert (
        f"plugin 'bad' (distribution <in-process> -) registered an invalid KMS name {name!r}"
        in (message)
    )


@pytest.mark.parametrize("name", ["a", "aws-v2", "vault.transit", "x_1", "a" * 64])
def test_valid_kms_names(name: str) -> None:
    assert name in host_with(("ok", registering(name))).available()


def test_non_callable_factory() -> None:
    def asherah_register_kms(register: Any) -> None:
        register("nofactory", "not callable")

    message = str(plugin_error(host_with(("p", plugin(asherah_register_kms)))))
    assert "registered KMS 'nofactory' with no callable factory" in message


def test_non_callable_describer() -> None:
    assert "describe= that is not callable" in str(
        plugin_error(host_with(("p", registering("d", describe="nope"))))
    )


def test_register_hook_raising_is_chained() -> None:
    def asherah_register_kms(register: Any) -> None:
        raise RuntimeError("boom")

    error = plugin_error(host_with(("crashy", plugin(asherah_register_kms))))
    assert "plugin 'crashy' (distribution <in-process> -) failed in asherah_register_kms" in str(
        error
    )
    assert "RuntimeError: boom" in str(error)
    assert isinstance(error.__cause__, RuntimeError)


def test_register_hook_raising_an_asherah_error_passes_through() -> None:
    original = ConfigError("needs AWS_REGION")

    def asherah_register_kms(register: Any) -> None:
        raise original

    with pytest.raises(ConfigError) as info:
        host_with(("p", plugin(asherah_register_kms))).available()
    assert info.value is original


# Building a KMS ------------------------------------------------------------------------


def factory_plugin(factory: Callable[[PluginConfig, Any], Any]) -> types.SimpleNamespace:
    def asherah_register_kms(register: Any) -> None:
        register("made", factory)

    return plugin(asherah_register_kms)


def test_static_loads_through_load_kms() -> None:
    kms = host_with().load_kms("static", {"master_key": MASTER_KEY.decode()})
    assert isinstance(kms, StaticKms)
    assert StaticKms(MASTER_KEY).decrypt_key(kms.encrypt_key(b"k" * 32)) == b"k" * 32


@pytest.mark.parametrize(
    "settings",
    [
        {"master_key_hex": MASTER_KEY.hex()},
        {"master_key_base64": base64.b64encode(MASTER_KEY).decode()},
    ],
)
def test_static_master_key_encodings(settings: dict[str, str]) -> None:
    kms = host_with().load_kms("static", settings)
    assert StaticKms(MASTER_KEY).decrypt_key(kms.encrypt_key(b"k" * 32)) == b"k" * 32


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, "set exactly one of master_key, master_key_hex, master_key_base64 (found 0)"),
        ({"master_key": "a" * 32, "master_key_hex": "00" * 32}, "(found 2)"),
        ({"master_key": "short"}, "plugins.static.master_key: the master key must be 32 bytes"),
        ({"master_key_hex": "zz"}, "plugins.static.master_key_hex: not valid for its encoding"),
        ({"master_key_base64": "!!"}, "plugins.static.master_key_base64: not valid"),
        ({"masterkey": "a" * 32}, "plugins.static.masterkey: unknown setting"),
        ({"master_key": 5}, "plugins.static.master_key: expected a string"),
    ],
)
def test_static_configuration_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        host_with().load_kms("static", settings)
    assert expected in str(info.value)
    assert "thisIs" not in str(info.value)


def test_unknown_kms_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as info:
        host_with(("toy", registering("toy"))).load_kms("aws-v3")
    message = str(info.value)
    assert "unknown KMS 'aws-v3'; registered KMS: static, toy." in message
    assert "ASHERAH_BLOCKED_PLUGINS" in message


def test_factory_gets_a_plugin_config_and_the_default_aead() -> None:
    seen: list[tuple[PluginConfig, Any]] = []

    def factory(config: PluginConfig, crypto: Any) -> KeyManagementService:
        seen.append((config, crypto))
        return StaticKms(MASTER_KEY, crypto)

    host_with(("p", factory_plugin(factory))).load_kms("made", {"n": 1})
    ((config, crypto),) = seen
    assert isinstance(config, PluginConfig)
    assert config.path == "plugins.made"
    assert config.get_int("n") == 1
    assert isinstance(crypto, Aes256Gcm)


def test_factory_gets_the_given_aead_and_config_object() -> None:
    seen: list[tuple[PluginConfig, Any]] = []

    def factory(config: PluginConfig, crypto: Any) -> KeyManagementService:
        seen.append((config, crypto))
        return StaticKms(MASTER_KEY)

    given, crypto = PluginConfig({"a": "b"}, path="plugins.made"), Aes256Gcm()
    host_with(("p", factory_plugin(factory))).load_kms("made", given, crypto=crypto)
    assert seen == [(given, crypto)]


def test_config_errors_from_substitution_surface_from_load_kms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ASHERAH_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"plugins\.static\.master_key: environment variable"):
        host_with().load_kms("static", {"master_key": "${ASHERAH_TEST_UNSET}"})


def test_factory_raising_a_foreign_exception_is_chained() -> None:
    def factory(config: PluginConfig, crypto: Any) -> KeyManagementService:
        raise KeyError("region")

    with pytest.raises(PluginError) as info:
        host_with(("p", factory_plugin(factory))).load_kms("made")
    assert "plugin 'p' (distribution <in-process> -) failed to build KMS 'made'" in str(info.value)
    assert "KeyError" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)


def test_factory_raising_a_config_error_passes_through() -> None:
    original = ConfigError("plugins.made.arn: missing required setting")

    def factory(config: PluginConfig, crypto: Any) -> KeyManagementService:
        raise original

    with pytest.raises(ConfigError) as info:
        host_with(("p", factory_plugin(factory))).load_kms("made")
    assert info.value is original


def test_factory_returning_something_else() -> None:
    with pytest.raises(PluginError, match="returned dict, not a KeyManagementService"):
        host_with(("p", factory_plugin(lambda config, crypto: {}))).load_kms("made")


def test_config_that_is_not_a_table() -> None:
    with pytest.raises(ConfigError, match="expected a table"):
        host_with().load_kms("static", ["master_key"])  # type: ignore[arg-type]


def test_every_error_is_an_asherah_error() -> None:
    for error in (ConfigError, PluginError, asherah_core.KmsError, asherah_core.CryptoError):
        assert issubclass(error, AsherahError)


# Environment controls ------------------------------------------------------------------


def test_autoload_disabled_by_environment(
    monkeypatch: pytest.MonkeyPatch, make_plugin: Callable[..., importlib.metadata.EntryPoint]
) -> None:
    monkeypatch.setenv("ASHERAH_DISABLE_PLUGIN_AUTOLOAD", "1")
    failing = make_plugin("raise ImportError('must not be imported')")
    host = PluginHost(entry_points=[failing], plugins=[("extra", registering("extra"))])
    assert host.available() == ["extra", "static"]


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "off"])
def test_autoload_stays_on_for_false_values(
    monkeypatch: pytest.MonkeyPatch,
    make_plugin: Callable[..., importlib.metadata.EntryPoint],
    toy_plugin_source: str,
    value: str,
) -> None:
    monkeypatch.setenv("ASHERAH_DISABLE_PLUGIN_AUTOLOAD", value)
    assert "toy" in PluginHost(entry_points=[make_plugin(toy_plugin_source)]).available()


def test_autoload_argument_wins_over_environment(
    monkeypatch: pytest.MonkeyPatch,
    make_plugin: Callable[..., importlib.metadata.EntryPoint],
    toy_plugin_source: str,
) -> None:
    monkeypatch.setenv("ASHERAH_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = PluginHost(autoload=True, entry_points=[make_plugin(toy_plugin_source)])
    assert host.available() == ["static", "toy"]


def test_blocked_plugins_from_environment(
    monkeypatch: pytest.MonkeyPatch,
    make_plugin: Callable[..., importlib.metadata.EntryPoint],
    toy_plugin_source: str,
) -> None:
    monkeypatch.setenv("ASHERAH_BLOCKED_PLUGINS", " toy , extra,")
    host = PluginHost(
        entry_points=[make_plugin(toy_plugin_source, name="toy")],
        plugins=[("extra", registering("extra")), ("kept", registering("kept"))],
    )
    assert host.available() == ["kept", "static"]
    assert [p.name for p in host.plugins()] == ["kept", "metastores", "static"]


def test_blocking_a_plugin_that_would_fail_to_import(
    monkeypatch: pytest.MonkeyPatch, make_plugin: Callable[..., importlib.metadata.EntryPoint]
) -> None:
    failing = make_plugin("1 / 0", name="broken")
    with pytest.raises(PluginError):
        PluginHost(entry_points=[failing]).available()
    monkeypatch.setenv("ASHERAH_BLOCKED_PLUGINS", "broken")
    assert PluginHost(entry_points=[failing]).available() == ["static"]


def test_blocking_static_and_blocked_argument() -> None:
    host = host_with(("extra", registering("extra")), blocked=["static"])
    assert host.available() == ["extra"]
    with pytest.raises(ConfigError, match="registered KMS: extra"):
        host.load_kms("static")


def test_installed_entry_points_are_used_by_default(
    make_plugin: Callable[..., importlib.metadata.EntryPoint], toy_plugin_source: str
) -> None:
    # make_plugin put a dist-info on sys.path, so the toy plugin is "installed"; the plugins
    # really installed in this environment are blocked to keep the test about discovery.
    make_plugin(toy_plugin_source, name="toy-installed", distribution="toy-installed")
    others = {ep.name for ep in importlib.metadata.entry_points(group="asherah")}
    assert "toy-installed" in others
    host = PluginHost(blocked=others - {"toy-installed"})
    assert host.available() == ["static", "toy"]
    assert PluginInfo("toy-installed", "toy-installed", "1.2.3", ("toy",)) in host.plugins()


# Module-level functions and the default host -------------------------------------------


@pytest.fixture
def fresh_default(isolated_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from no default host, with autoload off, and restore the previous one after."""
    monkeypatch.setattr(PluginHost, "_default", None)
    monkeypatch.setenv("ASHERAH_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.mark.usefixtures("fresh_default")
def test_default_host_is_shared_until_reset() -> None:
    first = PluginHost.default()
    assert PluginHost.default() is first
    PluginHost.reset_default()
    assert PluginHost.default() is not first


@pytest.mark.usefixtures("fresh_default")
def test_available_kms_and_load_kms_use_the_default_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert available_kms() == ["static"]
    assert isinstance(load_kms("static", {"master_key": MASTER_KEY.decode()}), StaticKms)
    monkeypatch.setenv("ASHERAH_BLOCKED_PLUGINS", "static")
    assert available_kms() == ["static"]  # the default host loaded once already
    PluginHost.reset_default()
    assert available_kms() == []


@pytest.mark.usefixtures("fresh_default")
def test_load_kms_from_file(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text(
        f'[kms]\nplugin = "static"\n[plugins.static]\nmaster_key_hex = "{MASTER_KEY.hex()}"\n',
        encoding="utf-8",
    )
    crypto = Aes256Gcm()
    with load_kms_from_file(path, crypto=crypto) as kms:
        encrypted = kms.encrypt_key(b"k" * 32)
    assert crypto.decrypt(encrypted, MASTER_KEY) == b"k" * 32


@pytest.mark.usefixtures("fresh_default")
def test_load_kms_from_file_defaults_to_plugins_toml_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"plugins\.toml: configuration file not found"):
        load_kms_from_file()
    (tmp_path / "plugins.toml").write_text(
        f'[kms]\nplugin = "static"\n[plugins.static]\nmaster_key = "{MASTER_KEY.decode()}"\n',
        encoding="utf-8",
    )
    assert isinstance(load_kms_from_file(), StaticKms)


# Documentation of the hook surface -----------------------------------------------------


def hookspec_functions() -> list[Callable[..., Any]]:
    return [
        f
        for name, f in vars(hookspecs).items()
        if name.startswith("asherah_") and callable(f) and hasattr(f, "asherah_spec")
    ]


def test_there_is_a_hook() -> None:
    assert [f.__name__ for f in hookspec_functions()] == [
        "asherah_register_kms",
        "asherah_register_metastore",
    ]


@pytest.mark.parametrize("hook", hookspec_functions(), ids=lambda f: f.__name__)
def test_every_hook_is_documented(hook: Callable[..., Any]) -> None:
    doc = inspect.getdoc(hook)
    assert doc, f"{hook.__name__} has no docstring"
    summary = doc.splitlines()[0]
    assert summary.endswith("."), "the first line is a one-sentence summary"
    for arg in inspect.signature(hook).parameters:
        assert f":param {arg}:" in doc, f"{hook.__name__} does not document {arg!r}"
    assert ".. versionadded::" in doc


def test_public_names_are_exported() -> None:
    for name in asherah_core.__all__:
        assert getattr(asherah_core, name) is not None
    assert {"available_kms", "load_kms", "load_kms_from_file", "hookimpl", "StaticKms"} <= set(
        asherah_core.__all__
    )
