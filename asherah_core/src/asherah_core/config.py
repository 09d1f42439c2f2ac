"""Typed access to ``plugins.toml``: environment substitution and validation by key path."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

from .errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "PluginConfig",
    "kms_selection",
    "load_config_file",
    "read_config_file",
    "selected_table",
]

DEFAULT_CONFIG_FILE = "plugins.toml"
# [asherah] and the metastore tables are the session factory's (appconfig.py); the KMS loader
# accepts and ignores them so that one file configures both.
_TOP_LEVEL = ("asherah", "kms", "metastore", "metastores", "plugins")

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_MISSING: Any = object()
_T = TypeVar("_T")


class PluginConfig(Mapping[str, Any]):
    """One table of ``plugins.toml`` after environment substitution, with typed getters.

    Every getter names the full key path (``plugins.aws-v2.timeout``) and what was expected
    when a value is missing or of the wrong type. Strings such as ``"${VAR}"`` or
    ``"${VAR:-default}"`` are replaced by the environment variable's value (``$$`` is a
    literal ``$``); a value that came from the environment may be converted from text to the
    number or boolean a getter expects.
    """

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        path: str = "",
        source: str = "<mapping>",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.source = source
        self._environ = os.environ if environ is None else environ
        self._env_names: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"{path or 'configuration'}: expected a table, got {_kind(values)}")
        for key, value in (values or {}).items():
            if not isinstance(key, str):
                raise ConfigError(f"{path or 'configuration'}: keys must be strings, got {key!r}")
            resolved, env_name = self._resolve(value, self._key_path(key))
            self._values[key] = resolved
            if env_name is not None:
                self._env_names[key] = env_name

    # Mapping protocol -------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PluginConfig(path={self.path!r}, source={self.source!r}, keys={sorted(self)!r})"

    # Typed getters ----------------------------------------------------------------------

    def key_path(self, key: str) -> str:
        """Return the dotted path of `key` in this table, for error messages."""
        return self._key_path(key)

    def error(self, key: str, problem: str) -> ConfigError:
        """Build a `ConfigError` for `key` that names its path, its source and the problem."""
        origin = f" (from ${self._env_names[key]})" if key in self._env_names else ""
        return ConfigError(f"{self.source}: {self._key_path(key)}{origin}: {problem}")

    def check_keys(self, allowed: Iterable[str]) -> None:
        """Raise `ConfigError` naming any key not in `allowed` (catches typos early)."""
        allowed = set(allowed)
        for key in self:
            if key not in allowed:
                raise self.error(
                    key, f"unknown setting; expected one of {', '.join(sorted(allowed))}"
                )

    @overload
    def get_str(self, key: str) -> str: ...
    @overload
    def get_str(self, key: str, default: _T) -> str | _T: ...
    def get_str(self, key: str, default: Any = _MISSING) -> Any:
        """Return a non-empty string, or `default` when the key is absent."""
        value = self._get(key, default)
        if value is default and key not in self:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_kind(value)}")
        if not value.strip():
            raise self.error(key, "expected a non-empty string")
        return value

    @overload
    def get_int(self, key: str) -> int: ...
    @overload
    def get_int(self, key: str, default: _T) -> int | _T: ...
    def get_int(self, key: str, default: Any = _MISSING) -> Any:
        """Return an integer (not a boolean), or `default` when the key is absent."""
        value = self._get(key, default)
        if value is default and key not in self:
            return value
        if isinstance(value, str) and key in self._env_names:
            try:
                return int(value.strip())
            except ValueError:
                raise self.error(key, f"expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_kind(value)}")
        return value

    @overload
    def get_float(self, key: str) -> float: ...
    @overload
    def get_float(self, key: str, default: _T) -> float | _T: ...
    def get_float(self, key: str, default: Any = _MISSING) -> Any:
        """Return a number as a float, or `default` when the key is absent."""
        value = self._get(key, default)
        if value is default and key not in self:
            return value
        if isinstance(value, str) and key in self._env_names:
            try:
                return float(value.strip())
            except ValueError:
                raise self.error(key, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_kind(value)}")
        return float(value)

    @overload
    def get_bool(self, key: str) -> bool: ...
    @overload
    def get_bool(self, key: str, default: _T) -> bool | _T: ...
    def get_bool(self, key: str, default: Any = _MISSING) -> Any:
        """Return a boolean, or `default` when the key is absent."""
        value = self._get(key, default)
        if value is default and key not in self:
            return value
        if isinstance(value, str) and key in self._env_names:
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise self.error(key, f"expected true or false, got {value!r}")
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_kind(value)}")
        return value

    def get_table(self, key: str, *, required: bool = False) -> PluginConfig:
        """Return the sub-table `key` as a `PluginConfig` (empty when absent and not required)."""
        if key not in self:
            if required:
                raise self.error(key, "missing required table")
            return PluginConfig({}, path=self._key_path(key), source=self.source)
        value = self[key]
        if isinstance(value, PluginConfig):
            return value
        raise self.error(key, f"expected a table, got {_kind(value)}")

    # Internals --------------------------------------------------------------------------

    def _get(self, key: str, default: Any) -> Any:
        if key in self._values:
            return self._values[key]
        if default is _MISSING:
            raise self.error(key, "missing required setting")
        return default

    def _key_path(self, key: str) -> str:
        shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'
        return f"{self.path}.{shown}" if self.path else shown

    def _resolve(self, value: Any, path: str) -> tuple[Any, str | None]:
        if isinstance(value, PluginConfig):
            return value, None
        if isinstance(value, Mapping):
            return PluginConfig(value, path=path, source=self.source, environ=self._environ), None
        if isinstance(value, list):
            return [self._resolve(item, f"{path}[{i}]")[0] for i, item in enumerate(value)], None
        if isinstance(value, str):
            return self._substitute(value, path)
        return value, None

    def _substitute(self, text: str, path: str) -> tuple[str, str | None]:
        names: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if default is not None and "${" in default:
                raise ConfigError(
                    f"{self.source}: {path}: a default may not hold another ${{…}} "
                    f"(in ${{{name}:-…}}); write a literal default"
                )
            names.append(name)
            value = self._environ.get(name)
            if value is None or value == "":
                if default is not None:
                    return default
                raise ConfigError(
                    f"{self.source}: {path}: environment variable ${name} is not set "
                    f"(set it, or write ${{{name}:-default}} to give a default)"
                )
            return value

        result = _ENV_REF.sub(replace, text)
        return result, (", $".join(names) if names else None)


def load_config_file(
    path: str | os.PathLike[str] = DEFAULT_CONFIG_FILE,
) -> tuple[str, PluginConfig]:
    """Read ``plugins.toml`` and return the selected KMS name and that plugin's settings.

    The file selects a plugin with ``[kms] plugin = "<name>"`` and holds its settings in the
    table ``[plugins.<name>]``.
    """
    source, raw = read_config_file(path)
    return kms_selection(raw, source)


def read_config_file(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """Read and parse a configuration file; return its name (for messages) and its tables.

    Every failure is a `ConfigError` naming the file; so is a top-level table this project does
    not know.
    """
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: configuration file not found") from None
    except OSError as e:
        raise ConfigError(f"{file}: cannot read the configuration file: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: the configuration file is not valid UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: invalid TOML: {e}") from e
    except RecursionError:
        raise ConfigError(f"{file}: invalid TOML: nested too deeply") from None
    source = str(file)
    root = PluginConfig({}, source=source)
    for key in raw:
        if key not in _TOP_LEVEL:
            raise root.error(key, f"unknown setting; expected one of {', '.join(_TOP_LEVEL)}")
    return source, raw


def kms_selection(raw: Mapping[str, Any], source: str) -> tuple[str, PluginConfig]:
    """The KMS that ``[kms] plugin`` names and its ``[plugins.<name>]`` table."""
    root = PluginConfig({}, source=source)
    if "kms" not in raw:
        raise root.error("kms", "missing required table")
    if not isinstance(raw["kms"], Mapping):
        raise root.error("kms", f"expected a table, got {_kind(raw['kms'])}")
    kms = PluginConfig(raw["kms"], path="kms", source=source)
    kms.check_keys({"plugin"})
    name: str = kms.get_str("plugin")
    return name, selected_table(raw, "plugins", name, source)


def selected_table(raw: Mapping[str, Any], group: str, name: str, source: str) -> PluginConfig:
    """The table ``[<group>.<name>]`` (empty when absent), environment references resolved.

    Only the selected table is resolved, so the settings of a plugin that is not selected may
    name variables that are not set.
    """
    group_raw = raw.get(group, {})
    if not isinstance(group_raw, Mapping):
        raise PluginConfig({}, source=source).error(
            group, f"expected a table, got {_kind(group_raw)}"
        )
    holder = PluginConfig({}, path=group, source=source)
    table = group_raw.get(name, {})
    if not isinstance(table, Mapping):
        raise holder.error(name, f"expected a table, got {_kind(table)}")
    return PluginConfig(table, path=holder.key_path(name), source=source)


def _kind(value: object) -> str:
    if isinstance(value, PluginConfig | Mapping):
        return "a table"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
