"""`to_thread`: run a blocking call in a worker thread from a coroutine.

asyncio is imported on the first call, not with the framework: it loads the `ssl` module and
the system's OpenSSL, about 6 MiB of resident memory that a program that never awaits does not
need (a coroutine that reaches here runs in an event loop, which has asyncio loaded already).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["to_thread"]

_T = TypeVar("_T")


async def to_thread(function: Callable[..., _T], /, *args: object) -> _T:
    """`asyncio.to_thread` (the context variables go along)."""
    import asyncio  # noqa: PLC0415 - see the module's docstring

    return await asyncio.to_thread(function, *args)
