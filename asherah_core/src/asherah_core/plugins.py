"""The plugin host: discovers KMS and metastore plugins through entry points and builds the
one asked for."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pluggy

from . import _metastore_plugin, _static_plugin, hookspecs
from .aead import Aead, Aes256Gcm
from .config import DEFAULT_CONFIG_FILE, PluginConfig, load_config_file
from .errors import AsherahError, ConfigError, PluginError
from .forksafe import Lock, new_locks_in_child
from .hookspecs import EnvelopeDescriber, KmsFactory, MetastoreFactory
from .kms import KeyManagementService
from .metastore.base import Metastore

if TYPE_CHECKING:
    import importlib.metadata

__all__ = [
    "BLOCKED_PLUGINS_ENV",
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "KmsRegistration",
    "MetastoreRegistration",
    "PluginHost",
    "PluginInfo",
    "available_kms",
    "available_metastores",
    "load_kms",
    "load_kms_from_file",
    "load_metastore",
]

ENTRY_POINT_GROUP = "asherah"
DISABLE_AUTOLOAD_ENV = "ASHERAH_DISABLE_PLUGIN_AUTOLOAD"
BLOCKED_PLUGINS_ENV = "ASHERAH_BLOCKED_PLUGINS"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_T = TypeVar("_T")


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its entry-point name, distribution and what it registered."""

    name: str
    distribution: str
    version: str
    kms: tuple[str, ...] = ()
    metastores: tuple[str, ...] = ()

    def label(self) -> str:
        """Return ``'name' (distribution version)`` for messages."""
        return f"plugin {self.name!r} (distribution {self.distribution} {self.version})"


@dataclass(frozen=True)
class KmsRegistration:
    """A named KMS factory and the plugin that registered it."""

    name: str
    factory: KmsFactory
    plugin: PluginInfo
    describe: EnvelopeDescriber | None = field(default=None, compare=False)


@dataclass(frozen=True)
class MetastoreRegistration:
    """A named metastore factory and the plugin that registered it."""

    name: str
    factory: MetastoreFactory
    plugin: PluginInfo


class PluginHost:
    """Loads KMS plugins and builds KMS objects by name.

    Plugins are the built-in ``static`` plugin, then every entry point in the ``asherah``
    group (unless ``ASHERAH_DISABLE_PLUGIN_AUTOLOAD`` is set), less those named in
    ``ASHERAH_BLOCKED_PLUGINS`` (comma-separated). Loading happens once, on first use; any
    plugin that fails to import, implements an unknown hook or registers a taken name raises
    `PluginError` naming the plugin and its distribution.
    """

    _default: ClassVar[PluginHost | None] = None
    _default_lock: ClassVar[Lock] = Lock()  # (forksafe: unlocked in a forked child)

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        blocked: Iterable[str] | None = None,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        plugins: Iterable[tuple[str, object]] = (),
    ) -> None:
        """Create a host; nothing is imported until first use.

        :param autoload: load entry points; on unless ``ASHERAH_DISABLE_PLUGIN_AUTOLOAD`` is set.
        :param blocked: plugin names to skip; defaults to ``ASHERAH_BLOCKED_PLUGINS``.
        :param entry_points: the entry points to load instead of the installed ones (for tests).
        :param plugins: extra ``(name, module-or-object)`` plugins to register, after the built-in.
        """
        if autoload is None:
            autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in (
                "",
                "0",
                "false",
                "no",
                "off",
            )
        if blocked is None:
            blocked = os.environ.get(BLOCKED_PLUGINS_ENV, "").split(",")
        self._autoload = autoload
        self._blocked = frozenset(b.strip() for b in blocked if b.strip())
        self._entry_points = None if entry_points is None else list(entry_points)
        self._extra = list(plugins)
        self._lock = threading.Lock()  # a load publishes whole (_load): renewed in a child
        self._loaded = False
        new_locks_in_child(self, "_lock")
        self._registrations: dict[str, KmsRegistration] = {}
        self._metastores: dict[str, MetastoreRegistration] = {}
        self._plugins: dict[str, PluginInfo] = {}

    @classmethod
    def default(cls) -> PluginHost:
        """Return the process-wide host, created on first use."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    @classmethod
    def reset_default(cls) -> None:
        """Forget the process-wide host so the next use discovers plugins again."""
        with cls._default_lock:
            cls._default = None

    # Queries ----------------------------------------------------------------------------

    def available(self) -> list[str]:
        """Return the registered KMS names, sorted."""
        self._ensure_loaded()
        return sorted(self._registrations)

    def available_metastores(self) -> list[str]:
        """Return the registered metastore names, sorted."""
        self._ensure_loaded()
        return sorted(self._metastores)

    def metastore_registration(self, name: str) -> MetastoreRegistration:
        """Return the registration of metastore `name`; `ConfigError` lists the known names."""
        self._ensure_loaded()
        try:
            return self._metastores[name]
        except KeyError:
            raise _unknown("metastore", "metastores", name, self._metastores) from None

    def load_metastore(self, name: str, config: Mapping[str, Any] | None = None) -> Metastore:
        """Build metastore `name` from its settings (a ``[metastores.<name>]`` table)."""
        registration = self.metastore_registration(name)
        if not isinstance(config, PluginConfig):
            config = PluginConfig(config, path=f"metastores.{name}")
        build = partial(registration.factory, config)
        return _built(registration.plugin, "metastore", name, Metastore, build)  # type: ignore[type-abstract]

    def plugins(self) -> list[PluginInfo]:
        """Return the loaded plugins, sorted by name."""
        self._ensure_loaded()
        return [self._plugins[n] for n in sorted(self._plugins)]

    def registration(self, name: str) -> KmsRegistration:
        """Return the registration of KMS `name`; `ConfigError` lists the known names."""
        self._ensure_loaded()
        try:
            return self._registrations[name]
        except KeyError:
            raise _unknown("KMS", "KMS", name, self._registrations) from None

    def load_kms(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        crypto: Aead | None = None,
    ) -> KeyManagementService:
        """Build KMS `name` from its settings with `crypto` (AES-256-GCM by default)."""
        registration = self.registration(name)
        if not isinstance(config, PluginConfig):
            config = PluginConfig(config, path=f"plugins.{name}")
        build = partial(registration.factory, config, crypto if crypto is not None else Aes256Gcm())
        return _built(registration.plugin, "KMS", name, KeyManagementService, build)  # type: ignore[type-abstract]

    # Loading ----------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        # Build into locals and publish only when everything loaded, so a failed load leaves
        # the host empty and a retry reports the same error instead of a phantom duplicate.
        pm = pluggy.PluginManager("asherah")
        pm.add_hookspecs(hookspecs)
        import importlib.metadata  # noqa: PLC0415 - about 4 MiB; only when plugins are loaded

        core = importlib.metadata.version("asherah-core") if _installed("asherah-core") else "?"
        candidates: list[tuple[PluginInfo, object]] = [
            (PluginInfo("static", "asherah-core", core), _static_plugin),
            (PluginInfo("metastores", "asherah-core", core), _metastore_plugin),
        ]
        candidates += [(PluginInfo(name, "<in-process>", "-"), obj) for name, obj in self._extra]
        if self._autoload:
            candidates += self._entry_point_plugins()
        infos: dict[str, PluginInfo] = {}
        for info, obj in candidates:
            if info.name in self._blocked:
                continue
            if info.name in infos:
                other = infos[info.name]
                raise PluginError(
                    f"{info.label()} has the same plugin name as {other.label()}; "
                    f"uninstall one or block it with {BLOCKED_PLUGINS_ENV}"
                )
            try:
                pm.register(obj, name=info.name)
            except pluggy.PluginValidationError as e:
                raise PluginError(f"{info.label()} is invalid: {e}") from e
            except ValueError as e:  # pluggy refuses one object under two names
                other_name = pm.get_name(obj)
                same = infos[other_name].label() if other_name in infos else repr(other_name)
                raise PluginError(
                    f"{info.label()} is the same object as {same}; "
                    f"uninstall one or block it with {BLOCKED_PLUGINS_ENV}"
                ) from e
            infos[info.name] = info
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as e:
            name = pm.get_name(e.plugin) or "?"
            label = infos[name].label() if name in infos else repr(name)
            raise PluginError(f"{label} implements an unknown hook: {e}") from e
        registrations: dict[str, KmsRegistration] = {}
        for impl in pm.hook.asherah_register_kms.get_hookimpls():
            _call_register(impl, infos[impl.plugin_name], registrations)
        metastores: dict[str, MetastoreRegistration] = {}
        for impl in pm.hook.asherah_register_metastore.get_hookimpls():
            _call_register_metastore(impl, infos[impl.plugin_name], metastores)
        plugins: dict[str, PluginInfo] = {}
        for name, info in infos.items():
            names = tuple(r.name for r in registrations.values() if r.plugin.name == name)
            stores = tuple(r.name for r in metastores.values() if r.plugin.name == name)
            plugins[name] = PluginInfo(info.name, info.distribution, info.version, names, stores)
        self._registrations, self._metastores, self._plugins = registrations, metastores, plugins

    def _entry_point_plugins(self) -> list[tuple[PluginInfo, object]]:
        if self._entry_points is not None:
            eps = self._entry_points
        else:
            import importlib.metadata  # noqa: PLC0415 - see _load

            eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        found: list[tuple[PluginInfo, object]] = []
        seen: set[tuple[str, str]] = set()
        for ep in eps:
            dist = ep.dist
            info = PluginInfo(
                ep.name,
                dist.name if dist is not None else "<unknown>",
                dist.version if dist is not None else "?",
            )
            if (info.name, info.distribution) in seen or info.name in self._blocked:
                continue
            seen.add((info.name, info.distribution))
            try:
                obj = ep.load()
            except Exception as e:
                raise PluginError(
                    f"{info.label()} failed to import {ep.value!r}: {type(e).__name__}: {e}"
                ) from e
            found.append((info, obj))
        return found


def _call_register(
    impl: pluggy.HookImpl, info: PluginInfo, registrations: dict[str, KmsRegistration]
) -> None:
    def register(
        name: str, factory: KmsFactory, *, describe: EnvelopeDescriber | None = None
    ) -> None:
        _check_named_factory(info, "KMS", name, factory)
        if describe is not None and not callable(describe):
            raise PluginError(
                f"{info.label()} registered KMS {name!r} with a describe= that is not callable"
            )
        _check_free(info, "KMS", name, registrations)
        registrations[name] = KmsRegistration(name, factory, info, describe)

    _call_hook(impl, info, "asherah_register_kms", register)


def _call_register_metastore(
    impl: pluggy.HookImpl, info: PluginInfo, registrations: dict[str, MetastoreRegistration]
) -> None:
    def register(name: str, factory: MetastoreFactory) -> None:
        _check_named_factory(info, "metastore", name, factory)
        _check_free(info, "metastore", name, registrations)
        registrations[name] = MetastoreRegistration(name, factory, info)

    _call_hook(impl, info, "asherah_register_metastore", register)


def _check_named_factory(info: PluginInfo, noun: str, name: object, factory: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PluginError(
            f"{info.label()} registered an invalid {noun} name {name!r}: use lowercase "
            "letters, digits, '.', '_' or '-'"
        )
    if not callable(factory):
        raise PluginError(f"{info.label()} registered {noun} {name!r} with no callable factory")


def _check_free(
    info: PluginInfo,
    noun: str,
    name: str,
    taken: Mapping[str, KmsRegistration] | Mapping[str, MetastoreRegistration],
) -> None:
    if name in taken:
        other = taken[name].plugin
        raise PluginError(
            f"{noun} name {name!r} is registered twice: by {other.label()} and by "
            f"{info.label()}; uninstall one or block it with {BLOCKED_PLUGINS_ENV}"
        )


def _call_hook(
    impl: pluggy.HookImpl, info: PluginInfo, hook: str, register: Callable[..., None]
) -> None:
    kwargs = {"register": register}
    try:
        impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
    except AsherahError:
        raise
    except Exception as e:
        raise PluginError(f"{info.label()} failed in {hook}: {type(e).__name__}: {e}") from e


def _unknown(noun: str, plural: str, name: str, known: Iterable[str]) -> ConfigError:
    listed = ", ".join(sorted(known)) or "none"
    return ConfigError(
        f"unknown {noun} {name!r}; registered {plural}: {listed}. Install the plugin that "
        "provides it, or check ASHERAH_BLOCKED_PLUGINS / ASHERAH_DISABLE_PLUGIN_AUTOLOAD"
    )


def _built(
    plugin: PluginInfo, noun: str, name: str, expected: type[_T], build: Callable[[], object]
) -> _T:
    """Run a registered factory; its failures and wrong results become a `PluginError`.

    (mypy refuses an abstract class for ``type[_T]``, hence the ignores at the two callers.)
    """
    try:
        built = build()
    except AsherahError:
        raise
    except Exception as e:
        raise PluginError(
            f"{plugin.label()} failed to build {noun} {name!r}: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(built, expected):
        raise PluginError(
            f"{plugin.label()}: the factory of {noun} {name!r} returned "
            f"{type(built).__name__}, not a {expected.__name__}"
        )
    return built


def _installed(dist: str) -> bool:
    import importlib.metadata  # noqa: PLC0415 - see PluginHost._load

    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def available_kms() -> list[str]:
    """Return the names of every registered KMS, sorted."""
    return PluginHost.default().available()


def available_metastores() -> list[str]:
    """Return the names of every registered metastore, sorted."""
    return PluginHost.default().available_metastores()


def load_metastore(name: str, config: Mapping[str, Any] | None = None) -> Metastore:
    """Build the metastore registered as `name` from its settings."""
    return PluginHost.default().load_metastore(name, config)


def load_kms(
    name: str, config: Mapping[str, Any] | None = None, *, crypto: Aead | None = None
) -> KeyManagementService:
    """Build the KMS registered as `name` from its settings (a ``plugins.toml`` table)."""
    return PluginHost.default().load_kms(name, config, crypto=crypto)


def load_kms_from_file(
    path: str | os.PathLike[str] = DEFAULT_CONFIG_FILE, *, crypto: Aead | None = None
) -> KeyManagementService:
    """Build the KMS that ``plugins.toml`` selects, with the settings it holds for it."""
    name, config = load_config_file(path)
    return PluginHost.default().load_kms(name, config, crypto=crypto)
