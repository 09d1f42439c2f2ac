"""The per-thread random buffer behind row keys and nonces: each byte from the operating
system's CSPRNG, read straight into the buffer, handed out once, wiped after use, never shared
between threads, never reused by a forked child."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from asherah_core import SessionFactory, entropy
from asherah_core.entropy import BLOCK_SIZE, BLOCKS, RandomBlocks, wipe


def buffer_of(blocks: RandomBlocks) -> bytes:
    """A copy of the calling thread's whole buffer (what it holds now)."""
    return bytes(blocks.mine.buffer)


def taken(blocks: RandomBlocks) -> bytes:
    """A copy of the next block (the bytes of its whole view)."""
    return bytes(blocks.block()[0])


def test_blocks_are_consecutive_slices_of_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.readv

    def counting(fd: int, buffers: list[memoryview]) -> int:
        calls.append(sum(len(b) for b in buffers))
        return real(fd, buffers)

    monkeypatch.setattr(entropy.os, "readv", counting)
    blocks = RandomBlocks()
    first = taken(blocks)
    filled = buffer_of(blocks)
    second = taken(blocks)
    assert calls == [BLOCK_SIZE * BLOCKS]
    assert filled[:BLOCK_SIZE] == first
    assert filled[BLOCK_SIZE : 2 * BLOCK_SIZE] == second
    for _ in range(BLOCKS - 2):
        blocks.block()
    assert calls == [BLOCK_SIZE * BLOCKS]
    again = taken(blocks)  # the first block after the last: a refill, into the same buffer
    assert calls == [BLOCK_SIZE * BLOCKS] * 2
    assert again == buffer_of(blocks)[:BLOCK_SIZE]  # the views show the new bytes
    assert again != first


@pytest.fixture
def urandom_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every `os.urandom` call of `entropy` from now on."""
    asked: list[int] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        asked.append(n)
        return real(n)

    monkeypatch.setattr(entropy.os, "urandom", urandom)
    return asked


def test_a_refill_reads_into_the_buffer_with_no_copy_from_os_urandom(
    monkeypatch: pytest.MonkeyPatch, urandom_sizes: list[int]
) -> None:
    monkeypatch.setattr(entropy, "_seeded", False)  # as in a new process
    blocks = RandomBlocks()
    for _ in range(BLOCKS + 1):  # two refills
        blocks.block()
    assert urandom_sizes == [1]  # once, to wait for a seeded generator; never the buffer's bytes
    assert any(buffer_of(blocks))


def test_a_read_that_returns_part_is_read_on(monkeypatch: pytest.MonkeyPatch) -> None:
    served = bytearray()

    def short_reads(fd: int, buffers: list[memoryview]) -> int:
        (view,) = buffers
        part = os.urandom(min(len(view), 1000))
        view[: len(part)] = part
        served.extend(part)
        return len(part)

    monkeypatch.setattr(entropy.os, "readv", short_reads)
    blocks = RandomBlocks()
    blocks.block()
    assert len(served) == BLOCK_SIZE * BLOCKS  # 15 reads
    assert buffer_of(blocks) == bytes(served)


def test_a_device_that_gives_nothing_fails_the_refill_and_hands_nothing_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks = RandomBlocks()
    with monkeypatch.context() as patched:
        patched.setattr(entropy.os, "readv", lambda fd, buffers: 0)
        with pytest.raises(OSError, match="/dev/urandom gave no bytes"):
            blocks.block()
        with pytest.raises(OSError, match="gave no bytes"):
            blocks.block()  # still empty: tried again, nothing handed out
    assert any(taken(blocks))  # the device works again: a whole refill


def test_without_the_device_the_buffer_is_filled_from_os_urandom(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, urandom_sizes: list[int]
) -> None:
    monkeypatch.setattr(entropy, "DEVICE", str(tmp_path / "no-such-device"))
    blocks = RandomBlocks()
    first = taken(blocks)
    assert urandom_sizes[-1:] == [BLOCK_SIZE * BLOCKS]
    assert first == buffer_of(blocks)[:BLOCK_SIZE]
    assert any(buffer_of(blocks))


def test_a_block_is_its_parts_in_order() -> None:
    whole, row_key, nonce, key_nonce = RandomBlocks().block()
    assert (len(whole), len(row_key), len(nonce), len(key_nonce)) == (BLOCK_SIZE, 32, 12, 12)
    assert bytes(row_key) + bytes(nonce) + bytes(key_nonce) == bytes(whole)
    assert not any(view.readonly for view in (whole, row_key, nonce, key_nonce))


def test_a_wiped_block_is_zero_in_the_buffer() -> None:
    blocks = RandomBlocks()
    block = blocks.block()
    assert any(block[0])  # 56 random bytes are all zero with probability 2**-448
    wipe(block)
    assert not any(part for view in block for part in view)
    assert buffer_of(blocks)[:BLOCK_SIZE] == bytes(BLOCK_SIZE)
    assert any(buffer_of(blocks)[BLOCK_SIZE:])  # the unused rest is still random


def test_an_encrypt_leaves_no_used_random_byte_in_the_buffer(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    session.encrypt_bytes(b"warm")  # the key is cached; the buffer is filled
    while entropy.blocks.mine.at >= BLOCKS - 1:
        session.encrypt_bytes(b"warm")  # past a refill, so the next one is inside the buffer
    before = entropy.blocks.mine.at * BLOCK_SIZE
    session.encrypt_bytes(b"data")
    assert entropy.blocks.mine.at * BLOCK_SIZE == before + BLOCK_SIZE
    assert buffer_of(entropy.blocks)[before : before + BLOCK_SIZE] == bytes(BLOCK_SIZE)
    assert any(buffer_of(entropy.blocks)[before + BLOCK_SIZE :])


def test_threads_never_share_bytes() -> None:
    blocks = RandomBlocks()
    seen: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [taken(blocks) for _ in range(3 * BLOCKS)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4 * 3 * BLOCKS
    assert len(set(seen)) == len(seen)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_uses_its_parents_bytes() -> None:
    blocks = entropy.blocks
    blocks.block()  # the buffer is filled; most of it is not used yet
    parent_buffer = buffer_of(blocks)
    at = blocks.mine.at * BLOCK_SIZE
    parent_next = parent_buffer[at : at + BLOCK_SIZE]
    assert any(parent_next)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first block and its buffer, then leave at once
        code = 1
        try:
            os.close(read_end)
            left_over = buffer_of(blocks)  # the parent's bytes, wiped in the child
            first = taken(blocks)
            os.write(write_end, left_over + first)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    received = b""
    while chunk := os.read(read_end, 65536):
        received += chunk
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    left_over, first = received[: len(parent_buffer)], received[len(parent_buffer) :]
    assert len(first) == BLOCK_SIZE
    assert left_over == bytes(len(parent_buffer))  # wiped in the child by the fork hook
    assert first != parent_next
    assert first not in parent_buffer  # not anywhere in what the parent held
    # The parent goes on with its own bytes, untouched by the child's fork hook.
    assert taken(blocks) == parent_next


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_buffer_the_fork_hook_did_not_wipe_is_refilled_in_the_child() -> None:
    generation = entropy._generation
    # Like another thread's buffer, which the child keeps but the hook cannot reach: the
    # generation each buffer checks makes it refill before it hands out a byte.
    other = RandomBlocks()
    other.block()
    parent_other = buffer_of(other)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, taken(other) + bytes([entropy._generation - generation]))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    received = os.read(read_end, 1024)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    first, bumped = received[:BLOCK_SIZE], received[BLOCK_SIZE]
    assert bumped == 1
    assert first not in parent_other
