"""Base64 of a row's fields: pybase64 (SIMD), or binascii while threads contend for the GIL.

pybase64 lets go of the GIL in every call. One thread loses nothing by that; threads that run
rows at the same time hand the GIL over at each call, and each hand-off can cost a context
switch, far more than the call (a 1 KB decode: 0.5 µs alone, over 100 µs beside one busy
thread, measured on 2 cores). binascii holds the GIL and costs a few microseconds more a row.

The choice, made by the session's hot path: a pybase64 call that took longer than
`SLOW_SECONDS` waited for the GIL or the CPU; a few of them close together, in several
threads (`contended`), mean threads contend for the GIL, so for the next `HOLD_SECONDS`
fields of at most `SMALL` bytes go through binascii. Then pybase64 is tried again. Both give
the same results on every input the hot path hands them (`decode` is as strict as pybase64's
``validate=True``; checked by the tests).
"""

from __future__ import annotations

import binascii
from threading import get_ident

import pybase64

__all__ = [
    "HOLD_SECONDS",
    "SLOW_SECONDS",
    "SMALL",
    "STRIKES",
    "STRIKE_SECONDS",
    "contended",
    "decode",
    "encode",
]

SLOW_SECONDS = 0.00005
"""Far beyond a pybase64 call on `SMALL` bytes (about 10 µs), below a GIL hand-off (100 µs)."""
HOLD_SECONDS = 1.0
STRIKES = 3
STRIKE_SECONDS = 0.01
SMALL = 4096
"""Above this binascii costs more than a hand-off of the GIL."""

contended_until = 0.0
"""`time.perf_counter` time until which small fields use binascii."""

_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64
_fast_decode = pybase64.b64decode
_fast_encode = pybase64.b64encode_as_string


_strikes = 0
_last_strike = 0.0
_first_thread = 0
_other_threads = False


def contended(now: float) -> None:
    """A pybase64 call was slow. `STRIKES` of them within `STRIKE_SECONDS` of each other, in
    more than one thread, mean threads running rows contend for the GIL (then every call is
    slow): binascii for small fields until `now` + `HOLD_SECONDS`. Slow calls in one thread
    only are the scheduler taking the CPU away, or another thread that wants the GIL now and
    then (binascii would not spare this thread the wait), and change nothing.

    The counters are read and written without a lock: a lost update only delays the switch.
    """
    global contended_until, _strikes, _last_strike, _first_thread, _other_threads  # noqa: PLW0603 - the GIL is one per process
    me = get_ident()
    if now - _last_strike < STRIKE_SECONDS:
        _strikes += 1
        _other_threads = _other_threads or me != _first_thread
    else:
        _strikes, _first_thread, _other_threads = 1, me, False
    _last_strike = now
    if _strikes >= STRIKES and _other_threads:
        contended_until = now + HOLD_SECONDS
        _strikes = 0


def encode(data: bytes, now: float) -> str:
    """Standard base64 with padding, as text; `now` is `time.perf_counter()` of the caller."""
    if now < contended_until and len(data) <= SMALL:
        return _b2a(data, newline=False).decode("ascii")
    return _fast_encode(data)


def decode(text: str, now: float) -> bytes:
    """Strict standard base64 (padding required, nothing else); `ValueError` otherwise."""
    if now < contended_until and len(text) <= SMALL:
        if len(text) % 4 or "=" in text[:-2]:  # what binascii's strict mode lets through
            raise ValueError("not strict base64")
        return _a2b(text, strict_mode=True)
    return _fast_decode(text, None, True)
