"""Random bytes for data row keys and nonces: a buffer per thread, refilled from `os.urandom`.

Why a buffer: one `os.urandom` call per row is a system call that lets go of the GIL and takes
it back; with many threads each of those hand-offs can cost a context switch. One call fills a
thread's buffer for `BLOCKS` rows.

The invariants, each held by construction:

- Every byte comes from `os.urandom` (the operating system's CSPRNG); nothing is mixed in or
  generated here.
- A buffer belongs to one thread (`threading.local`): two threads never read the same bytes.
- A byte is handed out once: `RandomBlocks.block` moves past what it returns before returning
  it, and the caller overwrites the block with zeros as soon as it is used (`wipe`), so the
  buffer never holds bytes that already sealed something.
- A forked child never uses its parent's bytes: `os.register_at_fork` bumps a generation that
  every buffer checks before handing out a block, and wipes the forking thread's buffer in the
  child; a buffer of an older generation is refilled first.
"""

from __future__ import annotations

import os
import threading

__all__ = ["BLOCKS", "BLOCK_SIZE", "RandomBlocks", "blocks", "wipe"]

BLOCK_SIZE = 56
"""One row's randomness: a 32-byte data row key and two 12-byte nonces."""
BLOCKS = 256
"""Blocks per refill: 14,336 bytes, one `os.urandom` call every 256 rows of a thread."""
_SIZE = BLOCK_SIZE * BLOCKS
_ZEROS = bytes(BLOCK_SIZE)

_generation = 0
"""Bumped in every forked child (after_in_child); a buffer filled in another generation is
refilled before it hands anything out."""


class _Buffer:
    """One thread's buffer: `_SIZE` bytes from `os.urandom`, used from `at` on."""

    __slots__ = ("at", "buffer", "generation", "view")

    def __init__(self) -> None:
        self.buffer = bytearray(_SIZE)
        self.view = memoryview(self.buffer)
        self.at = _SIZE  # empty: the first block refills
        self.generation = -1

    def refill(self) -> int:
        self.buffer[:] = os.urandom(_SIZE)
        self.generation = _generation
        return 0

    def forget(self) -> None:
        """Wipe the buffer and mark it empty."""
        self.view[:] = bytes(_SIZE)
        self.at = _SIZE
        self.generation = -1


class RandomBlocks(threading.local):
    """The calling thread's buffer of OS random bytes, handed out in blocks of `BLOCK_SIZE`."""

    def __init__(self) -> None:
        self.mine = _Buffer()  # a new one in each thread that uses this object

    def block(self) -> memoryview:
        """The next `BLOCK_SIZE` unused random bytes, a view into this thread's buffer.

        Use it at once, in this thread, then `wipe` it (in a ``finally``): the next refill
        overwrites the buffer, so keep no reference past the call that uses it.
        """
        mine = self.mine
        at = mine.at
        if at >= _SIZE or mine.generation != _generation:
            at = mine.refill()
        mine.at = at + BLOCK_SIZE
        return mine.view[at : at + BLOCK_SIZE]

    def forget(self) -> None:
        """Wipe this thread's buffer and mark it empty (done in a forked child)."""
        self.mine.forget()


def wipe(block: memoryview) -> None:
    """Overwrite a block from `RandomBlocks.block` with zeros."""
    block[:] = _ZEROS


blocks = RandomBlocks()
"""The process's per-thread buffers (each thread sees its own)."""


def _after_fork_in_child() -> None:
    global _generation  # noqa: PLW0603 - one generation per process image
    _generation += 1
    blocks.forget()  # the forking thread's copy of its parent's bytes


os.register_at_fork(after_in_child=_after_fork_in_child)
