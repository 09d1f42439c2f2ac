"""Constants, errors and progress lines shared by the harness's modules."""

from __future__ import annotations

import sys

ENDPOINT_ENV = "ASHERAH_LOCALSTACK_ENDPOINT"
"""An already running LocalStack to use instead of starting one, e.g. ``http://localhost:4566``."""

PYTHON_ENV = "ASHERAH_LOCALSTACK_PYTHON"
"""The Python 3.13 interpreter to build LocalStack's venv with (a full path)."""

PINS: tuple[str, ...] = (
    "localstack-core[runtime]==2026.3.0",
    "service_identity",
    # Each of these was found by a failed start without it.
    "cryptography<45",
    "pyopenssl==24.3.0",
    "cbor2<5.7",
    "joserfc<1.2",
)
"""What goes into LocalStack's venv; changing it (or the interpreter) makes a new venv."""

REQUIRED_PYTHON = (3, 13)
HEALTH_PATH = "/_localstack/health"
READY_STATES = frozenset({"available", "running"})
START_TIMEOUT = 120.0
GIVEN_ENDPOINT_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3
LOG_TAIL_LINES = 40
_MARKER = ".asherah-provisioned"
_READY_MARKER = "Ready."  # localstack.constants.READY_MARKER_OUTPUT
_BIND_FAILED = ("CannotListenError", "Address already in use")
_PREFIX = "localstack:"


class LocalStackError(Exception):
    """LocalStack could not be provided; the message says what to do."""


class PythonNotFoundError(LocalStackError):
    """No Python 3.13 interpreter to run LocalStack with, and no endpoint given."""


class ProvisionError(LocalStackError):
    """Installing LocalStack into its venv failed."""


class StartupError(LocalStackError):
    """The LocalStack process did not become healthy."""


class EndpointUnavailableError(LocalStackError):
    """The endpoint given in ``ASHERAH_LOCALSTACK_ENDPOINT`` does not serve KMS."""


def _say(message: str, *, quiet: bool) -> None:
    if not quiet:
        print(f"{_PREFIX} {message}", file=sys.stderr, flush=True)
