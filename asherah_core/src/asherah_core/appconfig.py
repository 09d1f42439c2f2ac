"""Configuration of a `SessionFactory`: our ``plugins.toml`` and the ``asherah`` package's form.

Both become the same keyword arguments (service, product, kms, metastore, policy). The TOML
file adds ``[asherah]`` (service, product and ``[asherah.policy]``) and ``[metastore]`` /
``[metastores.<name>]`` to the ``[kms]`` / ``[plugins.<name>]`` tables the KMS loader reads.
The mapping form takes the PascalCase keys of the ``asherah`` PyPI package (see pascalconfig.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from .config import PluginConfig, kms_selection, read_config_file, selected_table
from .errors import ConfigError
from .factoryargs import assemble
from .metastore.base import Metastore
from .pascalconfig import factory_arguments_from_asherah_config
from .plugins import PluginHost
from .policy import CryptoPolicy

__all__ = [
    "factory_arguments",
    "metastore_from_file",
    "parse_duration",
    "policy_from_config",
]

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_POLICY_DURATIONS = (
    "expire_after",
    "revoke_check_interval",
    "create_date_precision",
    "session_cache_duration",
)
_POLICY_FLAGS = ("cache_system_keys", "cache_intermediate_keys", "cache_sessions")
_POLICY_SIZES = (
    "system_key_cache_max_size",
    "intermediate_key_cache_max_size",
    "session_cache_max_size",
)


def factory_arguments(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Return `SessionFactory`'s arguments from a TOML path or a PascalCase mapping."""
    if isinstance(source, Mapping):
        return factory_arguments_from_asherah_config(source)
    if isinstance(source, str | os.PathLike):
        return _from_file(Path(source))
    raise ConfigError(
        f"SessionFactory.from_config takes a path to a TOML file or a mapping, not "
        f"{type(source).__name__}"
    )


def _from_file(path: Path) -> dict[str, Any]:
    source, raw = read_config_file(path)
    name, kms_config = kms_selection(raw, source)
    asherah = PluginConfig(raw.get("asherah", {}), path="asherah", source=source)
    asherah.check_keys(("service", "product", "strict_names", "policy"))
    strict_names = asherah.get_bool("strict_names", False)
    host = PluginHost.default()
    arguments = assemble(
        service=asherah.get_str("service"),
        product=asherah.get_str("product"),
        policy=policy_from_config(asherah.get_table("policy")),
        metastore=_metastore(raw, source, host)[1],
        build_kms=lambda: host.load_kms(name, kms_config),
    )
    arguments["strict_names"] = strict_names
    return arguments


def metastore_from_file(path: str | os.PathLike[str]) -> tuple[str, Metastore]:
    """Build only the metastore that ``[metastore]`` selects (``memory`` when absent)."""
    source, raw = read_config_file(path)
    kms_selection(raw, source)  # the same validation of the file as the factory gets
    return _metastore(raw, source, PluginHost.default())


def _metastore(raw: Mapping[str, Any], source: str, host: PluginHost) -> tuple[str, Metastore]:
    store = PluginConfig(raw.get("metastore", {}), path="metastore", source=source)
    store.check_keys(("plugin",))
    name: str = store.get_str("plugin", "memory")
    return name, host.load_metastore(name, selected_table(raw, "metastores", name, source))


def policy_from_config(config: PluginConfig) -> CryptoPolicy:
    """Build a `CryptoPolicy` from ``[asherah.policy]``; durations are seconds or ``"90d"``."""
    config.check_keys((*_POLICY_DURATIONS, *_POLICY_FLAGS, *_POLICY_SIZES))
    values: dict[str, Any] = {}
    for key in _POLICY_DURATIONS:
        if key in config:
            values[key] = parse_duration(config[key], config, key)
    for key in _POLICY_FLAGS:
        if key in config:
            values[key] = config.get_bool(key)
    for key in _POLICY_SIZES:
        if key in config:
            values[key] = config.get_int(key)
    try:
        return CryptoPolicy(**values)
    except ConfigError as e:
        raise ConfigError(f"{config.source}: {config.path}: {e}") from None


def parse_duration(value: object, config: PluginConfig, key: str) -> timedelta:
    """Read seconds (a number) or a number with a unit: ``"500ms"``, ``"30s"``, ``"60m"``,
    ``"2h"``, ``"90d"``."""
    if isinstance(value, bool):
        raise config.error(
            key, "expected a duration (seconds, or text such as '90d'), got a boolean"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise config.error(
            key, f"expected a duration: seconds, or a number with ms, s, m, h or d; got {value!r}"
        )
    if not 0 < seconds <= 1000 * 365 * 86400:
        raise config.error(key, f"must be positive and at most 1000 years, got {value!r}")
    return timedelta(seconds=seconds)
