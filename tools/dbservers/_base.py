"""What every provided server looks like, and the context manager that provides one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Protocol

from tools.signals import sigterm_raises

__all__ = ["DbServer", "ExternalServer", "provide"]


class DbServer(Protocol):
    """A database for the tests: where to connect, and (when the harness owns it) stop/start."""

    @property
    def name(self) -> str:
        """``postgres``, ``mariadb`` or ``dynamodb``."""

    @property
    def url(self) -> str:
        """A SQLAlchemy URL (with a generated password) or an HTTP endpoint."""

    @property
    def restartable(self) -> bool:
        """Whether `stop` and `start` work (False for a server given by environment variable)."""

    def stop(self) -> None:
        """Make the server unreachable, keeping its data."""

    def start(self) -> None:
        """Make it reachable again (same address, same data) and wait until it is ready."""

    def close(self) -> None:
        """Stop it for good and remove its files. Safe to call more than once."""


class ExternalServer:
    """A server named by an environment variable: used as is, never stopped."""

    restartable = False

    def __init__(self, name: str, url: str) -> None:
        self._name = name
        self._url = url

    @property
    def name(self) -> str:
        return self._name

    @property
    def url(self) -> str:
        return self._url

    def stop(self) -> None:
        raise RuntimeError(f"{self._name} was given by environment variable; not stopping it")

    def start(self) -> None:
        raise RuntimeError(f"{self._name} was given by environment variable; not starting it")

    def close(self) -> None:
        pass


@contextlib.contextmanager
def provide(name: str, env_var: str, make: Callable[[], DbServer]) -> Iterator[DbServer]:
    """Yield the server named by `env_var` if set, else one made by `make` and always closed
    afterwards: on success, on an exception, on Ctrl-C and on SIGTERM."""
    given = os.environ.get(env_var, "").strip()
    if given:
        yield ExternalServer(name, given)
        return
    with sigterm_raises():
        server = make()
        try:
            yield server
        finally:
            server.close()
