"""Base64 of a row's fields: pybase64, or librt's codec while threads contend for the GIL.

pybase64 (SIMD) lets go of the GIL in every call, however short. One thread loses nothing by
that. When several threads run rows at once, each call hands the GIL to a waiting thread and
the caller then waits to take it back: a context switch per field, many times the cost of the
field itself. librt's base64 (the mypy project's C runtime library) holds the GIL, so while
threads contend, fields of at most `SMALL` characters go through it.

librt's decoder is lax: it skips characters that are not base64 and tolerates extra padding.
Its result stands only when it is as long as a well-formed text of that length gives: a
length divisible by 4, ending in p = 0, 1 or 2 ``=``, decodes to 3 bytes per 4 characters
less p. Each byte out takes 8 bits of 6-bit alphabet characters, so a result that long used
every character but the final ``=`` as an alphabet character: the text is strict base64,
which pybase64's strict decoder reads alike (the bits past the last byte are dropped by
both). Any other text (not ASCII, skipped characters, padding inside) goes to pybase64,
which decides. So both ways give the same result for every input (the same bytes, or a
`ValueError`; checked by a Hypothesis test and a test of every ASCII character in every
place). Compiled by mypyc with `_rows` (asherah_core/setup.py), a 1 KB field takes about 0.4
µs to encode and 0.3 to decode that way, the check included: far below a hand-off.

How contention is seen: a field that goes through pybase64 is timed when its base64 text begins
with ``A`` (its first byte is below 4). The sealed bytes a row is made of are random, so that
is one field in 64 (two clock reads per 64 fields), and no count is kept that every thread
would write (a shared count of fields is what made 16 threads slower than 2 on a free-threaded
Python). A sampled field slower than `SLOW_SECONDS` waited to take the GIL back (a field takes
a microsecond or two). Two such fields in different threads within `WINDOW_SECONDS` of each
other mean threads contend: the next `HOLD` fields go through librt, and every further pair of
slow fields starts the count again. Slow fields in one thread alone (the scheduler, the garbage
collector, one other busy thread) change nothing. On a free-threaded Python with the GIL off
there is no GIL to hand over, and slow fields change nothing either. The rows themselves are
not timed for this: a session times a row only when its duration is recorded somewhere (see
`events.Tap`).

The state below is a hint, not an invariant, and is read and written without a lock: both
ways give the same result, so a lost or stale update only costs time. Two threads that both
take the last field may leave `left` below zero, which counts as zero. Texts made to begin
with ``A``, or never to, only make more or fewer fields timed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from threading import get_ident
from time import perf_counter

import pybase64
from librt.base64 import b64decode as _librt_decode
from librt.base64 import b64encode as _librt_encode

__all__ = [
    "HOLD",
    "SLOW_SECONDS",
    "SMALL",
    "WINDOW_SECONDS",
    "decode",
    "encode",
    "left",
    "slow",
]

SLOW_SECONDS = 50e-6
"""A field slower than this lost the GIL or the CPU: a field of `SMALL` characters takes
about 2 µs."""
WINDOW_SECONDS = 0.01
"""Two slow fields of different threads this close together mean threads contend."""
HOLD = 100_000
"""Fields that go through librt after contention was seen (about a second of 8 threads)."""
SMALL = 8192
"""Longer fields always go through pybase64, which lets other threads run while it works."""

left = 0
"""Fields still to go through librt; 0: pybase64 for every field."""

# Typed here: where mypyc compiles this module, pybase64 is not installed and reads as Any.
_fast_decode: Callable[[str, None, bool], bytes] = pybase64.b64decode
_fast_encode: Callable[[bytes], str] = pybase64.b64encode_as_string

_last_thread = 0
_last_at = float("-inf")
_gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)
"""Whether the GIL is on now (a free-threaded Python turns it on to load a module that needs
it)."""


def slow(now: float) -> None:
    """A field of the calling thread took longer than `SLOW_SECONDS`; `now` is when it ended
    (`time.perf_counter`). With a slow field of another thread within `WINDOW_SECONDS` before
    it, the next `HOLD` fields go through librt."""
    global left, _last_thread, _last_at  # noqa: PLW0603 - the GIL is one per process
    if not _gil_enabled():
        return
    me = get_ident()
    if me != _last_thread and now - _last_at < WINDOW_SECONDS:
        left = HOLD
    _last_thread, _last_at = me, now


def decode(text: str) -> bytes:
    """Strict standard base64 of `text`, padding required; `ValueError` for anything else."""
    global left  # noqa: PLW0603 - see the module's docstring
    if left > 0 and len(text) <= SMALL:
        left -= 1
        return held_decode(text)
    if not text.startswith("A"):
        return _fast_decode(text, None, True)
    start = perf_counter()
    data = _fast_decode(text, None, True)
    _timed(start)
    return data


def encode(data: bytes) -> str:
    """Standard base64 of `data`, with padding, as text."""
    global left  # noqa: PLW0603 - see the module's docstring
    if left > 0 and len(data) <= SMALL * 3 // 4:
        left -= 1
        return held_encode(data)
    if not data or data[0] >= 4:
        return _fast_encode(data)
    start = perf_counter()
    text = _fast_encode(data)
    _timed(start)
    return text


def _timed(start: float) -> None:
    """A sampled field through pybase64 began at `start` and has just ended."""
    now = perf_counter()
    if now - start > SLOW_SECONDS:
        slow(now)


def held_decode(text: str) -> bytes:
    """`decode` without letting go of the GIL, but for texts librt did not read whole (see
    the module's docstring)."""
    if text.isascii():
        try:
            data = _librt_decode(text)
        except ValueError:
            pass
        else:
            size = len(text)
            pad = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
            if size % 4 == 0 and len(data) == size // 4 * 3 - pad:
                return data
    return _fast_decode(text, None, True)


def held_encode(data: bytes) -> str:
    """`encode` without letting go of the GIL."""
    return _librt_encode(data).decode("ascii")
