"""Fixtures of the real-server tests: OpenBao dev servers started by tools/openbao (or the
Vault named by ASHERAH_VAULT_ADDR and ASHERAH_VAULT_TOKEN), an operator client, fresh keys.

Every test module here is marked ``vault``: ``nox -s vault`` runs them, ``nox -s tests`` leaves
them out.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from asherah_core import load_kms
from asherah_vault_transit import VaultTransitKms

from ._admin import Admin

REPO = Path(__file__).resolve().parents[3]


def _harness() -> ModuleType:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("tools.openbao")


openbao = _harness()
EXTERNAL = bool(os.environ.get(openbao.ADDR_ENV, "").strip())


@pytest.fixture(scope="session")
def vault_target() -> Iterator[tuple[str, str]]:
    """(address, root token) of the Vault the tests use; an OpenBao started for the session
    unless ASHERAH_VAULT_ADDR names one."""
    if EXTERNAL:
        token = os.environ.get(openbao.TOKEN_ENV, "").strip()
        if not token:
            pytest.fail(f"{openbao.ADDR_ENV} is set but {openbao.TOKEN_ENV} is not", pytrace=False)
        yield os.environ[openbao.ADDR_ENV].strip().rstrip("/"), token
        return
    try:
        with openbao.openbao() as server:
            yield server.address, server.root_token
    except openbao.OpenBaoError as error:
        pytest.fail(f"cannot provide OpenBao: {error}", pytrace=False)


@pytest.fixture(scope="session")
def admin(vault_target: tuple[str, str]) -> Iterator[Admin]:
    client = Admin(*vault_target)
    yield client
    client.close()


@pytest.fixture
def key(admin: Admin) -> str:
    """A fresh Transit key on the main server."""
    return admin.new_key()


Spawn = Callable[..., Any]


@pytest.fixture
def spawn_server() -> Iterator[Spawn]:
    """Start more OpenBao servers for the test (stopped after it); skipped against an
    external Vault, which the tests may not stop."""
    if EXTERNAL:
        pytest.skip(f"stops and starts servers: needs OpenBao, not {openbao.ADDR_ENV}")
    started: list[Any] = []

    def spawn(*, tls: bool = False) -> Any:
        server = openbao.OpenBaoServer(tls=tls)
        started.append(server)
        server.start()
        return server

    yield spawn
    for server in started:
        server.remove()


MakeKms = Callable[..., VaultTransitKms]


@pytest.fixture
def make_kms() -> Iterator[MakeKms]:
    """``make_kms(**settings)``: a KMS through the plugin host, as plugins.toml would build it;
    closed after the test."""
    made: list[VaultTransitKms] = []

    def make(**settings: Any) -> VaultTransitKms:
        kms = load_kms("vault", settings)
        assert isinstance(kms, VaultTransitKms)
        made.append(kms)
        return kms

    yield make
    for kms in made:
        kms.close()
