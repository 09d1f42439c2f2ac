"""tools/openbao: the health check while a TLS dev server is still starting."""

from __future__ import annotations

import pytest

from tools.openbao import OpenBaoServer


@pytest.mark.parametrize(
    "written",
    [None, b"", b"-----BEGIN CERTIFICATE-----\nMIIB"],
    ids=["no file yet", "empty", "half written"],
)
def test_a_ca_file_not_written_whole_yet_means_not_healthy(written: bytes | None) -> None:
    server = OpenBaoServer(tls=True)  # not started: nothing listens on its port
    try:
        if written is not None:
            server.cert_dir.mkdir()
            server.ca_cert.write_bytes(written)
        assert server.healthy() is False  # not an ssl.SSLError out of start()
    finally:
        server.remove()
