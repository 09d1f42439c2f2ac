"""The process's `SessionFactory`, from ``settings.ASHERAH``: made on first use, closed at exit.

``ASHERAH = {"CONFIG": <path to plugins.toml, or a mapping of the asherah package's keys>}`` or
``ASHERAH = {"FACTORY": "<dotted path to a callable returning a SessionFactory>"}``.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from asherah_core.errors import AsherahError
from asherah_core.forksafe import new_locks_in_child
from asherah_core.session import SessionFactory

__all__ = ["close_factory", "get_factory"]

_KEYS = frozenset({"CONFIG", "FACTORY"})


class _Holder:
    """The one factory of the process.

    Invariant: ``factory`` is None or an open factory built from the current settings; it is
    only assigned under ``lock``, and a reader that sees it set needs no lock (one reference
    read). ``close`` takes it out under the lock and closes it outside.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # a forked child renews it (one assignment under it)
        self.factory: SessionFactory | None = None
        self.registered = False
        new_locks_in_child(self, "lock")

    def get(self) -> SessionFactory:
        factory = self.factory
        if factory is not None:
            return factory
        with self.lock:
            if self.factory is None:
                self.factory = _build(_settings())
                if not self.registered:
                    atexit.register(self.close)
                    self.registered = True
            return self.factory

    def close(self) -> None:
        with self.lock:
            factory, self.factory = self.factory, None
        if factory is not None:
            factory.close()


_HOLDER = _Holder()


def get_factory() -> SessionFactory:
    """The `SessionFactory` of this process, built from ``settings.ASHERAH`` on first use."""
    return _HOLDER.get()


def close_factory() -> None:
    """Close the process's factory (zeroing its cached keys); the next use builds a new one.

    Called at interpreter exit, and when a test changes ``settings.ASHERAH``.
    """
    _HOLDER.close()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "ASHERAH":
        close_factory()


def _settings() -> Mapping[str, Any]:
    value = getattr(settings, "ASHERAH", None)
    if value is None:
        raise ImproperlyConfigured(
            "settings.ASHERAH is not set: the encrypted fields need "
            'ASHERAH = {"CONFIG": "plugins.toml"} or {"FACTORY": "dotted.path.to.callable"}'
        )
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"settings.ASHERAH must be a dict, not {type(value).__name__}")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.ASHERAH has unknown keys {unknown}; it takes CONFIG or FACTORY"
        )
    if len(value) != 1:
        raise ImproperlyConfigured("settings.ASHERAH takes exactly one of CONFIG and FACTORY")
    return value


def _build(config: Mapping[str, Any]) -> SessionFactory:
    if "CONFIG" in config:
        source = config["CONFIG"]
        try:
            return SessionFactory.from_config(source)
        except AsherahError as error:
            raise ImproperlyConfigured(f"settings.ASHERAH['CONFIG']: {error}") from error
    path = config["FACTORY"]
    if not isinstance(path, str):
        raise ImproperlyConfigured(
            f"settings.ASHERAH['FACTORY'] must be a dotted path, not {type(path).__name__}"
        )
    try:
        make: Callable[[], object] = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(f"settings.ASHERAH['FACTORY']: {error}") from error
    made = make()
    if not isinstance(made, SessionFactory):
        raise ImproperlyConfigured(
            f"settings.ASHERAH['FACTORY']: {path}() returned {type(made).__name__}, "
            "not a SessionFactory"
        )
    return made
