"""Several clusters on real servers (one stopped, one stopped mid-run) and Transit key
rotation."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from asherah_core import KmsError

from ._admin import Admin
from .conftest import MakeKms, Spawn

pytestmark = pytest.mark.vault


@dataclass
class Pair:
    """Two servers holding the same Transit key, as replicas would."""

    servers: list[Any]
    a: Admin
    b: Admin
    key: str

    def stop(self, admin: Admin) -> None:
        (server,) = [s for s in self.servers if s.address == admin.address]
        server.stop()


def _pair(spawn: Spawn) -> Pair:
    first, second = spawn(), spawn()
    a, b = Admin(first.address, first.root_token), Admin(second.address, second.root_token)
    key = a.new_key(exportable=True)
    a.copy_key_to(key, b)
    return Pair([first, second], a, b, key)


def test_two_servers_with_one_stopped(spawn_server: Spawn, make_kms: MakeKms) -> None:
    pair = _pair(spawn_server)
    a, b, key = pair.a, pair.b, pair.key
    secret = os.urandom(32)
    wrapped_by_b = b.encrypt(key, secret).encode()
    kms = make_kms(addresses=[a.address, b.address], transit_key=key, token=a.token, timeout=2)
    # Stop a (the first listed): every call still works, through b.
    pair.stop(a)
    assert kms.decrypt_key(wrapped_by_b) == secret
    again = kms.encrypt_key(secret)
    assert b.decrypt(key, again.decode()) == secret
    assert [r.ok for r in kms.diagnose()] == [False, True]


def test_a_server_stopped_mid_run(spawn_server: Spawn, make_kms: MakeKms) -> None:
    pair = _pair(spawn_server)
    a, b, key = pair.a, pair.b, pair.key
    kms = make_kms(addresses=[a.address, b.address], transit_key=key, token=a.token, timeout=2)
    wrapped = [kms.encrypt_key(os.urandom(32)) for _ in range(3)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                secret = os.urandom(32)
                assert kms.decrypt_key(kms.encrypt_key(secret)) == secret
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    pair.stop(a)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert len({kms.decrypt_key(w) for w in wrapped}) == 3  # a's ciphertexts, unwrapped by b


def test_every_server_down_names_each_cause(spawn_server: Spawn, make_kms: MakeKms) -> None:
    pair = _pair(spawn_server)
    a, b, key = pair.a, pair.b, pair.key
    kms = make_kms(addresses=[a.address, b.address], transit_key=key, token=a.token, timeout=2)
    pair.stop(a)
    pair.stop(b)
    with pytest.raises(KmsError) as caught:
        kms.encrypt_key(os.urandom(32))
    message = str(caught.value)
    assert "failed on every cluster (2)" in message
    assert a.address in message
    assert b.address in message
    assert a.token not in message


def test_transit_key_rotation(admin: Admin, key: str, make_kms: MakeKms) -> None:
    kms = make_kms(address=admin.address, transit_key=key, token=admin.token)
    old_secret = os.urandom(32)
    v1 = kms.encrypt_key(old_secret)
    assert v1.startswith(b"vault:v1:")
    admin.rotate(key)
    new_secret = os.urandom(32)
    v2 = kms.encrypt_key(new_secret)
    assert v2.startswith(b"vault:v2:")  # new wraps use the latest version
    assert kms.decrypt_key(v1) == old_secret  # old wraps still unwrap
    assert kms.decrypt_key(v2) == new_secret
    admin.configure_key(key, min_decryption_version=2)
    with pytest.raises(KmsError, match=r"refused at .*HTTP 400"):
        kms.decrypt_key(v1)
    assert kms.decrypt_key(v2) == new_secret
    admin.configure_key(key, min_decryption_version=1)
    assert kms.decrypt_key(v1) == old_secret


def test_async_and_threads_on_a_real_server(admin: Admin, key: str, make_kms: MakeKms) -> None:
    kms = make_kms(address=admin.address, transit_key=key, token=admin.token)

    async def main() -> list[bytes]:
        secrets = [os.urandom(32) for _ in range(20)]
        wrapped = await asyncio.gather(*(kms.encrypt_key_async(s) for s in secrets))
        back = await asyncio.gather(*(kms.decrypt_key_async(w) for w in wrapped))
        assert list(back) == secrets
        return list(wrapped)

    wrapped = asyncio.run(main())
    assert all(w.startswith(b"vault:v1:") for w in wrapped)
    assert asyncio.run(main())  # a second event loop gets its own async clients
