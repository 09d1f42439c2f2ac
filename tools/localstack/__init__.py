"""Run LocalStack (KMS only) on this host for the integration tests, and stop it afterwards.

LocalStack runs in host mode (``python -m localstack.runtime.main``, no Docker) from a cached
venv of its own on Python 3.13, on a free loopback port. When ``ASHERAH_LOCALSTACK_ENDPOINT`` is
set, that endpoint is used instead and nothing is started (for example a ``localstack/localstack``
container on a machine with Docker).

As a module (stdlib only, importable from ``noxfile.py`` and from pytest)::

    with localstack() as endpoint:
        ...  # http://127.0.0.1:<port>

As a script::

    python -m tools.localstack run -- pytest -m integration   # CMD sees ASHERAH_LOCALSTACK_ENDPOINT
    python -m tools.localstack serve                             # start, print the endpoint, wait
    python -m tools.localstack provision                         # only build the cached venv

The started process (and its process group) is stopped on success, on exceptions, on Ctrl-C and
on SIGTERM to the harness. Only SIGKILL of the harness itself can leave it behind.
"""

from __future__ import annotations

from tools.signals import Terminated

from .cli import main
from .common import (
    ENDPOINT_ENV,
    PINS,
    PYTHON_ENV,
    EndpointUnavailableError,
    LocalStackError,
    ProvisionError,
    PythonNotFoundError,
    StartupError,
)
from .health import _kms_state as _kms_state
from .interpreters import find_interpreter, find_python
from .process import _free_port as _free_port
from .process import localstack
from .venv import provision, venv_dir

__all__ = [
    "ENDPOINT_ENV",
    "PINS",
    "PYTHON_ENV",
    "EndpointUnavailableError",
    "LocalStackError",
    "ProvisionError",
    "PythonNotFoundError",
    "StartupError",
    "Terminated",
    "find_interpreter",
    "find_python",
    "localstack",
    "main",
    "provision",
    "venv_dir",
]
