"""The ``asherah`` PyPI package's API over this framework, for a move by changing one import.

``import asherah`` becomes ``from asherah_core import compat as asherah``: the same
`SessionFactory` forms (a PascalCase configuration mapping, ``from_config``, ``from_env``),
the same `Session` methods, and the module-level ``setup`` / ``encrypt_bytes`` / … functions
over one process-wide factory. Errors are `AsherahError` subclasses (that package raises
``RuntimeError``). See docs/migration.md for each configuration key.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from . import events
from . import session as _session
from ._tothread import to_thread
from .compat03 import Asherah, AsherahConfig
from .compatenv import EnvExtras, config_from_env
from .errors import ConfigError, SessionError
from .forksafe import Lock
from .pascalconfig import factory_arguments_from_asherah_config

__all__ = [
    "Asherah",
    "AsherahConfig",
    "Session",
    "SessionFactory",
    "decrypt_bytes",
    "decrypt_bytes_async",
    "decrypt_string",
    "decrypt_string_async",
    "encrypt_bytes",
    "encrypt_bytes_async",
    "encrypt_string",
    "encrypt_string_async",
    "get_setup_status",
    "set_log_hook",
    "set_metrics_hook",
    "setenv",
    "setup",
    "setup_async",
    "shutdown",
    "shutdown_async",
    "version",
]

Session = _session.Session


class SessionFactory(_session.SessionFactory):
    """`asherah_core.SessionFactory` built from the ``asherah`` package's configuration.

    ``SessionFactory(config_obj)`` and ``SessionFactory.from_config(config_obj)`` take the
    PascalCase mapping (the parameter's name is that package's); ``SessionFactory()`` and
    ``from_env()`` read the environment variables that package reads (``SERVICE_NAME``,
    ``PRODUCT_ID``, ``Metastore``, ``SQLITE_PATH``, ``KMS``, …; see compatenv.py).
    `overrides` replace built arguments (``clock=``, ``meter=``, ``kms=``…); what the
    configuration built and an override replaced, or what was built before construction
    failed, is closed.
    """

    def __init__(self, config_obj: Mapping[str, Any] | None = None, **overrides: Any) -> None:
        if config_obj is None:
            env_config, extras = config_from_env(os.environ)
            arguments = factory_arguments_from_asherah_config(env_config)
            arguments = _with_env_extras(arguments, extras)
        else:
            arguments = factory_arguments_from_asherah_config(config_obj)
        built = {k: arguments[k] for k in ("kms", "metastore") if arguments.get(k) is not None}
        for name, resource in built.items():
            if name in overrides and overrides[name] is not resource:
                resource.close()  # built from the configuration, then replaced
        arguments.update(overrides)
        service, product = arguments.pop("service"), arguments.pop("product")
        try:
            super().__init__(service, product, **arguments)
        except BaseException:
            for name, resource in built.items():
                if name not in overrides:
                    resource.close()
            raise

    @classmethod
    def from_config(  # type: ignore[override]
        cls, config_obj: Mapping[str, Any], **overrides: Any
    ) -> SessionFactory:
        """Build from the PascalCase configuration mapping."""
        if config_obj is None:
            raise ConfigError("from_config needs a configuration mapping; use from_env()")
        return cls(config_obj, **overrides)

    @classmethod
    def from_env(cls) -> SessionFactory:
        """Build from the environment variables the ``asherah`` package reads."""
        return cls(None)


def _with_env_extras(arguments: dict[str, Any], extras: EnvExtras) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if extras.create_date_precision is not None:
        changes["create_date_precision"] = extras.create_date_precision
    if extras.intermediate_key_cache_max_size is not None:
        changes["intermediate_key_cache_max_size"] = extras.intermediate_key_cache_max_size
    if changes:
        try:
            arguments["policy"] = dataclasses.replace(arguments["policy"], **changes)
        except BaseException:
            arguments["metastore"].close()
            arguments["kms"].close()
            raise
    if extras.region_suffix is not None:
        arguments["region_suffix"] = extras.region_suffix
    return arguments


# The module-level API: one process-wide factory ------------------------------------------

_lock = Lock()  # (forksafe: unlocked in a forked child)
_factory: SessionFactory | None = None


def setup(config_obj: Mapping[str, Any]) -> None:
    """Build the process-wide factory; `SessionError` if it exists (call `shutdown` first)."""
    global _factory  # noqa: PLW0603 - the module-level API is a process-wide singleton
    with _lock:
        if _factory is not None:
            raise SessionError("asherah is already set up; call shutdown() first")
        if config_obj is None:
            raise ConfigError(
                "setup takes the configuration mapping (it reads no environment variables; "
                "SessionFactory() does)"
            )
        _factory = SessionFactory(config_obj)


def shutdown() -> None:
    """Close the process-wide factory (zeroing its keys). Idempotent."""
    global _factory
    with _lock:
        factory, _factory = _factory, None
    if factory is not None:
        factory.close()


def get_setup_status() -> bool:
    """Whether `setup` was called and `shutdown` was not."""
    return _factory is not None


async def setup_async(config_obj: Mapping[str, Any]) -> None:
    """`setup` in a worker thread."""
    await to_thread(setup, config_obj)


async def shutdown_async() -> None:
    """`shutdown` in a worker thread."""
    await to_thread(shutdown)


def _current() -> SessionFactory:
    factory = _factory
    if factory is None:
        raise SessionError("asherah is not set up; call setup() first")
    return factory


def encrypt_bytes(partition_id: str, data: bytes) -> str:
    """Encrypt `data` for `partition_id` with the process-wide factory."""
    return _current().get_session(partition_id).encrypt_bytes(data)


def encrypt_string(partition_id: str, text: str) -> str:
    """Encrypt the UTF-8 of `text` for `partition_id`."""
    return _current().get_session(partition_id).encrypt_text(text)


def decrypt_bytes(partition_id: str, data_row_record: str | bytes) -> bytes:
    """Decrypt a record of `partition_id`."""
    return _current().get_session(partition_id).decrypt_bytes(data_row_record)


def decrypt_string(partition_id: str, data_row_record: str | bytes) -> str:
    """Decrypt a record of `partition_id` to text."""
    return _current().get_session(partition_id).decrypt_text(data_row_record)


async def encrypt_bytes_async(partition_id: str, data: bytes) -> str:
    """Coroutine version of `encrypt_bytes`."""
    return await _current().get_session(partition_id).encrypt_bytes_async(data)


async def decrypt_bytes_async(partition_id: str, data_row_record: str | bytes) -> bytes:
    """Coroutine version of `decrypt_bytes`."""
    return await _current().get_session(partition_id).decrypt_bytes_async(data_row_record)


async def encrypt_string_async(partition_id: str, text: str) -> str:
    """Coroutine version of `encrypt_string`."""
    return await _current().get_session(partition_id).encrypt_text_async(text)


async def decrypt_string_async(partition_id: str, data_row_record: str | bytes) -> str:
    """Coroutine version of `decrypt_string`."""
    return await _current().get_session(partition_id).decrypt_text_async(data_row_record)


def setenv(env_obj: Mapping[str, object] | str) -> None:
    """Set environment variables before `setup`, as that package does: a mapping, or the JSON
    text of an object. ``None`` deletes a variable, a string is set as it is, and any other
    JSON value (a number, ``True``, a mapping such as ``REGION_MAP``'s, a list) is set to its
    compact JSON text. Nothing is set unless every value is good."""
    if isinstance(env_obj, str):
        try:
            env_obj = json.loads(env_obj)
        except json.JSONDecodeError as e:
            raise ConfigError(f"setenv: the text is not JSON ({e.msg} at {e.pos})") from None
    if not isinstance(env_obj, Mapping):
        raise ConfigError(
            f"setenv takes a mapping or the JSON text of an object, not {type(env_obj).__name__}"
        )
    changes = {_env_name(key): _env_value(key, value) for key, value in env_obj.items()}
    for key, text in changes.items():
        if text is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = text


def _env_name(key: object) -> str:
    if not isinstance(key, str):
        raise ConfigError(f"setenv: names must be strings, got {type(key).__name__}")
    if not key or "=" in key or "\0" in key:
        raise ConfigError(f"setenv: {key!r} is not a usable environment variable name")
    return key


def _env_value(key: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            # (the value is not shown: an environment value may be a credential)
            raise ConfigError(
                f"setenv: {key}: a {type(value).__name__} has no JSON text; pass a string, "
                "a number, a bool, a list, a mapping or None"
            ) from None
    if text is not None and "\0" in text:
        raise ConfigError(f"setenv: {key}: the value holds a NUL character")
    return text


def version() -> str:
    """The version of asherah-core."""
    from . import __version__  # noqa: PLC0415 - the package imports this module lazily

    return __version__


class _LogHook(logging.Handler):
    def __init__(self, callback: Callable[[dict[str, str]], object]) -> None:
        super().__init__(logging.DEBUG)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        level = {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname)
        try:
            self.callback(
                {"level": level.lower(), "message": record.getMessage(), "target": record.name}
            )
        except Exception:  # a failing hook must not break encryption
            self.handleError(record)


_log_hook: _LogHook | None = None
_LOGGERS = ("asherah_core", "asherah_aws_kms_v2", "asherah_vault_transit")


def set_log_hook(callback: Callable[[dict[str, str]], object] | None) -> None:
    """Send the log records of ``asherah_core`` and its plugins to `callback` (``None`` stops).

    Each call gets ``{"level", "message", "target"}`` as in the ``asherah`` package; records
    below the loggers' level (WARNING unless ``Verbose: true`` or your logging setup lowers it)
    are not sent. `TypeError` if `callback` is neither callable nor ``None``.
    """
    global _log_hook
    if callback is not None and not callable(callback):
        raise TypeError(f"the log hook must be callable or None, not {type(callback).__name__}")
    with _lock:
        old, _log_hook = _log_hook, (None if callback is None else _LogHook(callback))
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            if old is not None:
                logger.removeHandler(old)
            if _log_hook is not None:
                logger.addHandler(_log_hook)


def set_metrics_hook(callback: Callable[[dict[str, Any]], object] | None) -> None:
    """Send metrics events to `callback` (``None`` stops); replaces any earlier hook.

    The events are the ``asherah`` package's: ``{"type": "encrypt" | "decrypt" | "store" |
    "load", "duration_ns": int}`` and ``{"type": "cache_hit" | "cache_miss" | "cache_stale",
    "name": "intermediate-key" | "system-key" | "session"}``. They come from the measurements
    of our OpenTelemetry instruments (docs/metrics.md), which stay the primary interface.
    A hook installed before `setup` applies to every factory. `TypeError` if `callback` is
    neither callable nor ``None``.
    """
    events.set_hook(callback)
