"""The row fields' base64: pybase64 alone, librt while threads contend. Both ways give the
same result for every input (librt's lax reading stands only for canonical texts), and the
switch needs slow sampled fields in two threads close together."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pybase64
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asherah_core import SessionFactory, _b64

if TYPE_CHECKING:
    from conftest import Base64Way


@pytest.fixture
def contended(monkeypatch: pytest.MonkeyPatch) -> None:
    """The librt way for every field of this test; pybase64 again after it."""
    monkeypatch.setattr(_b64, "left", 10**9)


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No contention seen yet, with the GIL on (as on a free-threaded Python that turned it on)."""
    monkeypatch.setattr(_b64, "left", 0)
    monkeypatch.setattr(_b64, "_last_thread", 0)
    monkeypatch.setattr(_b64, "_last_at", float("-inf"))
    monkeypatch.setattr(_b64, "_gil_enabled", lambda: True)


def reference(text: str) -> bytes | None:
    try:
        return pybase64.b64decode(text, None, True)
    except ValueError:
        return None


_texts = st.one_of(
    st.binary(max_size=120).map(lambda b: base64.b64encode(b).decode()),
    st.text("ABCDEFabcdef0189+/=", max_size=24),
    st.text('AQ=\\/"u00é \n\t-_', max_size=16),
    st.text(max_size=16),
)


@settings(max_examples=1000, deadline=None)
@given(text=_texts)
@example(text="\\/JwE")  # a JSON escape
@example(text="AAAA!")  # librt skips what is not base64
@example(text=" AAAA")
@example(text="AAAA===")  # librt tolerates extra padding
@example(text="AA==")
@example(text="AB==")  # bits left over past the last byte
@example(text="AAA")  # padding missing
@example(text="AA==AA==")  # padding inside
@example(text='AA"A')
@example(text="AAAA\n")
@example(text="\ud800AAA")  # a lone surrogate: not ASCII, so not base64
def test_both_ways_decode_alike_and_refuse_alike(base64_way: Base64Way, text: str) -> None:
    with base64_way(10**9):
        before = _b64.left
        try:
            found: bytes | None = _b64.decode(text)
        except ValueError:
            found = None
        assert found == reference(text)
        assert _b64.left <= before


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_both_ways_encode_alike(base64_way: Base64Way, data: bytes) -> None:
    with base64_way(10**9):
        assert _b64.encode(data) == base64.b64encode(data).decode()
        assert _b64.left == 10**9 - 1


def test_long_fields_always_go_through_pybase64(contended: None) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes: beyond SMALL as text and as bytes
    text = base64.b64encode(data).decode()
    before = _b64.left
    assert _b64.decode(text) == data
    assert _b64.encode(data) == text
    assert _b64.left == before  # neither counted as a librt field


def _slow_in_another_thread(now: float) -> None:
    other = threading.Thread(target=_b64.slow, args=(now,))
    other.start()
    other.join()


def test_slow_rows_of_one_thread_change_nothing(quiet: None) -> None:
    for now in (100.0, 100.001, 100.002, 100.003):
        _b64.slow(now)  # the scheduler or a cache miss, not other threads
    assert _b64.left == 0


def test_slow_rows_of_two_threads_far_apart_change_nothing(quiet: None) -> None:
    _b64.slow(100.0)
    _slow_in_another_thread(100.0 + 2 * _b64.WINDOW_SECONDS)
    assert _b64.left == 0


def test_slow_rows_of_two_threads_close_together_switch_for_a_while(quiet: None) -> None:
    _b64.slow(100.0)
    _slow_in_another_thread(100.0 + _b64.WINDOW_SECONDS / 2)
    assert _b64.left == _b64.HOLD
    text = base64.b64encode(b"row").decode()
    for _ in range(3):
        assert _b64.decode(text) == b"row"
    assert _b64.left == _b64.HOLD - 3  # back to pybase64 once HOLD fields went through


def _slow_encode(data: bytes) -> str:
    """pybase64's encode in a thread that waited for the GIL longer than `SLOW_SECONDS`."""
    time.sleep(2 * _b64.SLOW_SECONDS)
    return pybase64.b64encode_as_string(data)


def _slow_decode(text: str, altchars: None, validate: bool) -> bytes:
    time.sleep(2 * _b64.SLOW_SECONDS)
    return pybase64.b64decode(text, altchars, validate)


def _in_another_thread(field: Callable[[], object]) -> None:
    other = threading.Thread(target=field)
    other.start()
    other.join()


# A field is sampled when its base64 begins with "A": its first byte is below 4.
SAMPLED, UNSAMPLED = b"\x03row", b"\x04row"  # "A3Jvdw==" and "BHJvdw=="


@pytest.mark.parametrize("way", ["encode", "decode"])
def test_a_slow_sampled_field_in_each_of_two_threads_switches(
    quiet: None, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    monkeypatch.setattr(_b64, "_fast_encode", _slow_encode)
    monkeypatch.setattr(_b64, "_fast_decode", _slow_decode)
    # Starting threads on a loaded machine may take longer than the real window.
    monkeypatch.setattr(_b64, "WINDOW_SECONDS", 60.0)

    def field(data: bytes) -> Callable[[], None]:
        text = base64.b64encode(data).decode()

        def run() -> None:
            if way == "encode":
                assert _b64.encode(data) == text
            else:
                assert _b64.decode(text) == data

        return run

    field(SAMPLED)()  # timed, slow
    assert _b64.left == 0  # one thread alone
    _in_another_thread(field(UNSAMPLED))  # slow, but not timed
    assert _b64.left == 0
    _in_another_thread(field(SAMPLED))  # timed, slow, in another thread
    assert _b64.left == _b64.HOLD


def _clock_reads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every `perf_counter` reading `_b64` takes from now on."""
    reads: list[float] = []

    def perf_counter() -> float:
        reads.append(time.perf_counter())
        return reads[-1]

    monkeypatch.setattr(_b64, "perf_counter", perf_counter)
    return reads


def test_fields_beginning_with_a_are_timed_one_in_64(
    quiet: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _clock_reads(monkeypatch)
    timed = []
    for first in range(256):
        data = bytes([first]) + b"row"
        text = _b64.encode(data)
        assert text == base64.b64encode(data).decode()
        before = len(reads)
        assert _b64.decode(text) == data
        assert len(reads) - before in (0, 2)  # the decode of the same text: timed alike
        if len(reads) - before:
            timed.append(first)
    assert timed == [0, 1, 2, 3]  # 4 first bytes of 256: one field in 64 each way
    assert len(reads) == 2 * 2 * 4
    assert _b64.decode("") == b""  # an empty field: not timed, no error
    assert _b64.encode(b"") == ""
    assert len(reads) == 16
    _in_another_thread(lambda: _b64.encode(SAMPLED))  # timed too, fast
    assert len(reads) == 18
    assert _b64.left == 0  # fast sampled fields, in two threads: nothing switched


def test_with_the_gil_off_slow_rows_of_two_threads_change_nothing(
    quiet: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_b64, "_gil_enabled", lambda: False)  # a free-threaded Python
    _b64.slow(100.0)
    _slow_in_another_thread(100.0 + _b64.WINDOW_SECONDS / 2)
    assert _b64.left == 0


def test_a_count_that_two_threads_took_below_zero_means_pybase64(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_b64, "left", -1)
    monkeypatch.setattr(_b64, "held_decode", lambda _text: pytest.fail("took the librt way"))
    monkeypatch.setattr(_b64, "held_encode", lambda _data: pytest.fail("took the librt way"))
    text = base64.b64encode(b"row").decode()
    assert _b64.decode(text) == b"row"
    assert _b64.encode(b"row") == text
    assert _b64.left == -1


def test_a_session_writes_and_reads_the_same_rows_both_ways(
    factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = factory.get_session("p1")
    sizes = (0, 1, 2, 3, 100, 1024, 9000)  # 9,000 bytes: beyond SMALL, pybase64 either way
    rows = {}
    for left in (0, 10**9):  # pybase64, then librt (threads contending)
        monkeypatch.setattr(_b64, "left", left)
        rows[left] = [session.encrypt_bytes(bytes([n % 256]) * n) for n in sizes]
    for left in (0, 10**9):
        monkeypatch.setattr(_b64, "left", left)
        for written in rows.values():
            assert [session.decrypt_bytes(r) for r in written] == [
                bytes([n % 256]) * n for n in sizes
            ]


def test_what_librt_reads_laxly_is_decided_by_pybase64(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def strict(text: str, altchars: None, validate: bool) -> bytes:
        asked.append(text)
        return pybase64.b64decode(text, altchars, validate)

    monkeypatch.setattr(_b64, "_fast_decode", strict)
    canonical = base64.b64encode(b"a row of data").decode()
    # Strict base64 stands on librt's reading alone, bits past the last byte included.
    for strict_text, data in ((canonical, b"a row of data"), ("QUJDRB==", b"ABCD"), ("", b"")):
        assert _b64.held_decode(strict_text) == data == reference(strict_text)
    assert asked == []
    for lax in (canonical + "!", " " + canonical, canonical + "\n", "QUJDRA===", "QU=DRA==",
                "QUJD=A==", "QUJ\u00e9RA==", "QUJ-RA=="):  # fmt: skip
        asked.clear()
        try:
            found: bytes | None = _b64.held_decode(lax)
        except ValueError:
            found = None
        assert asked == [lax]
        assert found == reference(lax)


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_STRICT = [base64.b64encode(bytes(range(n))).decode() for n in (1, 2, 3, 4, 5, 6)]


@pytest.mark.parametrize("text", _STRICT)
def test_every_character_in_every_place_decodes_as_pybase64_decides(
    contended: None, text: str
) -> None:
    """Each character of 0 to 127 and a few beyond, in place of each character of a strict
    text, before it, after it and inserted into it: librt's lax reading stands only where it
    gives what pybase64 gives (the length check of `held_decode`)."""
    characters = [chr(c) for c in range(128)] + ["\u00e9", "\u2028", "\ud800", "\U0001f600"]
    variants = {text}
    for at in range(len(text) + 1):
        for c in characters:
            variants.add(text[:at] + c + text[at + 1 :])  # in place (or after, at the end)
            variants.add(text[:at] + c + text[at:])  # inserted
    assert len(variants) > 1000
    for variant in variants:
        try:
            found: bytes | None = _b64.decode(variant)
        except ValueError:
            found = None
        assert found == reference(variant), repr(variant)


@pytest.mark.parametrize("size", range(12))
def test_every_padding_of_every_length_decodes_as_pybase64_decides(
    contended: None, size: int
) -> None:
    """Texts of alphabet characters (the last of them every one of 64) followed by 0 to 3 ``=``."""
    for last in _ALPHABET:
        for pad in range(4):
            text = "QUJD" * (size // 4) + "Q" * (size % 4) + last + "=" * pad
            try:
                found: bytes | None = _b64.decode(text)
            except ValueError:
                found = None
            assert found == reference(text), repr(text)
