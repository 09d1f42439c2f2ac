"""The coroutine API: a cache hit runs inline on the event loop; only key I/O goes to a worker."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import pytest

from asherah_core import SessionError, SessionFactory

if TYPE_CHECKING:
    from conftest import CountingKms, CountingMetastore, FactoryMaker


def test_misses_go_to_a_worker_and_hits_stay_inline(
    factory: SessionFactory,
    kms: CountingKms,
    metastore: CountingMetastore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hops: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", "?"))
        return await real_to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)

    async def main() -> None:
        loop_thread = threading.get_ident()
        session = factory.get_session("p1")
        text = await session.encrypt_bytes_async(b"first")  # cold: a worker makes the keys
        assert hops == ["intermediate_key_for_encrypt"]
        assert kms.threads
        assert loop_thread not in kms.threads
        assert loop_thread not in metastore.threads
        hops.clear()
        calls = (metastore.total, kms.calls)
        for i in range(20):
            again = await session.encrypt_bytes_async(b"%d" % i)
            assert await session.decrypt_bytes_async(again) == b"%d" % i
        assert await session.decrypt_bytes_async(text) == b"first"
        assert await session.decrypt_text_async(await session.encrypt_text_async("é")) == "é"
        record = await session.encrypt_async(b"typed")
        assert await session.decrypt_async(record) == b"typed"
        assert hops == []
        assert (metastore.total, kms.calls) == calls

    asyncio.run(main())


def test_cold_decrypt_goes_to_a_worker(
    make_factory: FactoryMaker, kms: CountingKms, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = make_factory().get_session("p1").encrypt_bytes(b"x")
    cold = make_factory().get_session("p1")
    kms.threads.clear()

    async def main() -> bytes:
        return await cold.decrypt_bytes_async(text)

    assert asyncio.run(main()) == b"x"
    assert kms.threads
    assert threading.get_ident() not in kms.threads  # asyncio.run's loop is this thread


def test_warm_async_calls_never_touch_to_thread(
    factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = factory.get_session("p1")
    text = session.encrypt_bytes(b"warm")

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cache hit went to a worker thread")

    monkeypatch.setattr(asyncio, "to_thread", refuse)

    async def main() -> None:
        assert await session.decrypt_bytes_async(await session.encrypt_bytes_async(b"y")) == b"y"
        assert await session.decrypt_bytes_async(text) == b"warm"

    asyncio.run(main())


def test_async_on_a_closed_session(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    text = session.encrypt_bytes(b"x")
    session.close()

    async def main() -> None:
        with pytest.raises(SessionError):
            await session.encrypt_bytes_async(b"x")
        with pytest.raises(SessionError):
            await session.decrypt_bytes_async(text)

    asyncio.run(main())


def test_async_of_another_partition(factory: SessionFactory) -> None:
    text = factory.get_session("p1").encrypt_bytes(b"x")

    async def main() -> None:
        with pytest.raises(SessionError, match="another partition"):
            await factory.get_session("p2").decrypt_bytes_async(text)

    asyncio.run(main())
