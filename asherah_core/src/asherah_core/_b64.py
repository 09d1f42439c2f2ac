"""Base64 of a row's fields: pybase64, or msgspec's codec while threads contend for the GIL.

pybase64 (SIMD) lets go of the GIL in every call, however short. One thread loses nothing by
that. When several threads run rows at once, each call hands the GIL to a waiting thread and
the caller then waits to take it back: a context switch per field, many times the cost of the
field itself. msgspec's JSON codec reads and writes base64 in C without letting go of the GIL,
at a few times pybase64's cost on a 1 KB row (still far below a hand-off). So while threads
contend, fields of at most `SMALL` characters go through msgspec.

How contention is seen: the session's hot path calls `slow` when a row took longer than
`SLOW_SECONDS` (it lost the GIL or the CPU on the way). Two such rows in different threads
within `WINDOW_SECONDS` of each other mean threads contend: the next `HOLD` fields go through
msgspec, and every further pair of slow rows starts the count again. Slow rows in one thread
alone (the scheduler, a cache miss, the garbage collector) change nothing.

The state below is a hint, not an invariant, and is read and written without a lock: both
codecs give the same result for every input (a `ValueError` for the same inputs; checked by
a Hypothesis test), so a lost or stale update only costs time. `left` is set only after the
msgspec functions are, so a thread that sees ``left > 0`` sees them too. msgspec is imported
on the first switch, unless the first key record read (`_plainrecord`) imported it already.
"""

from __future__ import annotations

from collections.abc import Callable
from threading import get_ident

import pybase64

__all__ = ["HOLD", "SLOW_SECONDS", "SMALL", "WINDOW_SECONDS", "decode", "encode", "left", "slow"]

SLOW_SECONDS = 50e-6
"""A row slower than this lost the GIL or the CPU: a warm 1 KB row takes 5 to 10 µs alone."""
WINDOW_SECONDS = 0.01
"""Two slow rows of different threads this close together mean threads contend."""
HOLD = 100_000
"""Fields that go through msgspec after contention was seen (about a second of 8 threads)."""
SMALL = 8192
"""Longer fields always go through pybase64: there msgspec costs more than a hand-off."""

left = 0
"""Fields still to go through msgspec; 0: pybase64 for every field."""

_fast_decode = pybase64.b64decode
_fast_encode = pybase64.b64encode_as_string


def _not_loaded(_: object) -> bytes:  # pragma: no cover - `left` stays 0 until _load ran
    raise RuntimeError("msgspec codec used before it was loaded")


_decode_quoted: Callable[[str], bytes] = _not_loaded
"""msgspec: a JSON string (with its quotes) holding base64 -> the bytes."""
_encode_quoted: Callable[[bytes], bytes] = _not_loaded
"""msgspec: bytes -> their base64 as a JSON string, quotes included."""

_last_thread = 0
_last_at = float("-inf")


def _load() -> None:
    global _decode_quoted, _encode_quoted  # noqa: PLW0603 - set once, before `left` is
    import msgspec  # noqa: PLC0415 - only when threads contend (see the module's docstring)

    _decode_quoted = msgspec.json.Decoder(bytes).decode
    _encode_quoted = msgspec.json.Encoder().encode


def slow(now: float) -> None:
    """A row of the calling thread took longer than `SLOW_SECONDS`; `now` is when it ended
    (`time.perf_counter`). With a slow row of another thread within `WINDOW_SECONDS` before
    it, the next `HOLD` fields go through msgspec."""
    global left, _last_thread, _last_at  # noqa: PLW0603 - the GIL is one per process
    me = get_ident()
    if me != _last_thread and now - _last_at < WINDOW_SECONDS:
        if _decode_quoted is _not_loaded:
            _load()
        left = HOLD
    _last_thread, _last_at = me, now


def decode(text: str) -> bytes:
    """Strict standard base64 of `text`, padding required; `ValueError` for anything else."""
    global left  # noqa: PLW0603 - see the module's docstring
    if left and len(text) <= SMALL and "\\" not in text:  # JSON would read an escape
        left -= 1
        return _decode_quoted(f'"{text}"')  # msgspec.DecodeError is a ValueError
    return _fast_decode(text, None, True)


def encode(data: bytes) -> str:
    """Standard base64 of `data`, with padding, as text."""
    global left  # noqa: PLW0603 - see the module's docstring
    if left and len(data) <= SMALL * 3 // 4:
        left -= 1
        return _encode_quoted(data)[1:-1].decode("ascii")
    return _fast_encode(data)
