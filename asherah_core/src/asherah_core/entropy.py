"""Random bytes for data row keys and nonces: a buffer per thread, refilled from the
operating system's CSPRNG.

Why a buffer: one `os.urandom` call per row is a system call that lets go of the GIL and takes
it back; with many threads each of those hand-offs can cost a context switch. One refill fills
a thread's buffer for `BLOCKS` rows.

How a refill reads: straight into the buffer, from ``/dev/urandom`` (`fill`), once
`os.urandom` has returned in this process: it waits until the kernel's generator is seeded
(``getrandom``), after which the device gives the same generator's bytes. `os.urandom(n)`
returns them in a new `bytes` object, which the buffer would copy and the allocator then free
unwiped, with the keys of the next 256 rows in it. Where the device cannot be opened (Windows),
the refill copies from `os.urandom`, and that copy is freed as it is.

The invariants, each held by construction:

- Every byte comes from the operating system's CSPRNG (the generator `os.urandom` reads);
  nothing is mixed in or generated here, and a refill that fails hands nothing out.
- A buffer belongs to one thread (`threading.local`): two threads never read the same bytes.
- A byte is handed out once: `RandomBlocks.block` moves past what it returns before returning
  it, and the caller overwrites the block with zeros as soon as it is used (`wipe`), so the
  buffer never holds bytes that already sealed something.
- A buffer never moves or changes size: a refill writes into it in place, so the views of its
  blocks, made once with it, always show the buffer's current bytes.
- A forked child never uses its parent's bytes: `os.register_at_fork` bumps a generation that
  every buffer checks before handing out a block, and wipes the forking thread's buffer in the
  child; a buffer of an older generation is refilled first.
"""

from __future__ import annotations

import os
import threading

from .aead import KEY_SIZE, NONCE_SIZE

__all__ = ["BLOCKS", "BLOCK_SIZE", "DEVICE", "Block", "RandomBlocks", "blocks", "fill", "wipe"]

BLOCK_SIZE = KEY_SIZE + 2 * NONCE_SIZE
"""One row's randomness (56 bytes): a 32-byte data row key and two 12-byte nonces."""
BLOCKS = 256
"""Blocks per refill: 14,336 bytes, one read every 256 rows of a thread."""
_SIZE = BLOCK_SIZE * BLOCKS
_ZEROS = bytes(BLOCK_SIZE)

DEVICE = "/dev/urandom"
"""What a refill reads, straight into the buffer (see the module's docstring)."""
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_seeded = False
"""Whether `os.urandom` has returned in this process (so the kernel's generator is seeded)."""

_generation = 0
"""Bumped in every forked child (after_in_child); a buffer filled in another generation is
refilled before it hands anything out."""


Block = tuple[memoryview, memoryview, memoryview, memoryview]
"""One row's randomness: views of a thread's buffer, in order: the whole block (`BLOCK_SIZE`
bytes, what `wipe` clears), then its parts, the data row key (32 bytes), the data's nonce (12)
and the nonce of the row key's sealing (12). Each block's views are made once, with the
buffer: slicing them anew for every row cost about a quarter of a microsecond, a twelfth of a
warm encrypt."""


def _block(view: memoryview, at: int) -> Block:
    key_end, end = at + KEY_SIZE, at + BLOCK_SIZE
    nonce_end = key_end + NONCE_SIZE
    return (view[at:end], view[at:key_end], view[key_end:nonce_end], view[nonce_end:end])


class _Buffer:
    """One thread's buffer: `_SIZE` bytes from `os.urandom`, handed out from block `at` on.

    Its views (about 0.2 MB with the buffer, per thread that encrypts) live as long as it."""

    __slots__ = ("at", "blocks", "buffer", "generation", "view")

    def __init__(self) -> None:
        self.buffer = bytearray(_SIZE)
        self.view = view = memoryview(self.buffer)
        self.blocks = tuple(_block(view, at) for at in range(0, _SIZE, BLOCK_SIZE))
        self.at = BLOCKS  # empty: the first block refills
        self.generation = -1

    def refill(self) -> int:
        fill(self.view)  # in place: the blocks' views stay valid
        self.generation = _generation
        return 0

    def forget(self) -> None:
        """Wipe the buffer and mark it empty."""
        self.view[:] = bytes(_SIZE)
        self.at = BLOCKS
        self.generation = -1


class RandomBlocks(threading.local):
    """The calling thread's buffer of OS random bytes, handed out in blocks of `BLOCK_SIZE`."""

    def __init__(self) -> None:
        self.mine = _Buffer()  # a new one in each thread that uses this object

    def block(self) -> Block:
        """The next `BLOCK_SIZE` unused random bytes: views into this thread's buffer.

        Use it at once, in this thread, then `wipe` it (in a ``finally``): the next refill
        overwrites the buffer, so keep no reference past the call that uses it.
        """
        mine = self.mine
        at = mine.at
        if at >= BLOCKS or mine.generation != _generation:
            at = mine.refill()
        mine.at = at + 1
        return mine.blocks[at]

    def forget(self) -> None:
        """Wipe this thread's buffer and mark it empty (done in a forked child)."""
        self.mine.forget()


def fill(view: memoryview) -> None:
    """Fill the writable `view` with bytes of the operating system's CSPRNG, read into it in
    place (see the module's docstring); `OSError` when the device gives none."""
    global _seeded  # noqa: PLW0603 - a fact about the process: seeded once, seeded for good
    if not _seeded:
        os.urandom(1)  # returns once the kernel's generator is seeded
        _seeded = True
    try:
        fd = os.open(DEVICE, os.O_RDONLY | _CLOEXEC)
    except OSError:  # no such device here: a copy from os.urandom
        view[:] = os.urandom(len(view))
        return
    try:
        while len(view):
            got = os.readv(fd, [view])  # a long read may return part of it
            if got <= 0:
                raise OSError(f"{DEVICE} gave no bytes ({len(view)} still to read)")
            view = view[got:]
    finally:
        os.close(fd)


def wipe(block: Block) -> None:
    """Overwrite a block from `RandomBlocks.block` with zeros."""
    block[0][:] = _ZEROS


blocks = RandomBlocks()
"""The process's per-thread buffers (each thread sees its own)."""


def _after_fork_in_child() -> None:
    global _generation  # noqa: PLW0603 - one generation per process image
    _generation += 1
    blocks.forget()  # the forking thread's copy of its parent's bytes


os.register_at_fork(after_in_child=_after_fork_in_child)
