"""`asherah_core._rows` as installed (compiled by mypyc in most builds) against its own Python
source, loaded apart in the same process: for the same input, the same result or the same
error with the same message. mypyc checks argument types and works on native integers, so a
difference would show here first. Skipped where the module is installed as Python: nothing to
compare (`nox -s tests` compiles it on 3.11 and 3.13)."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asherah_core import _rows
from asherah_core.records import KeyMeta

pytestmark = pytest.mark.skipif(
    _rows.__file__ is None or _rows.__file__.endswith(".py"),
    reason="asherah_core._rows is installed as Python here: there is no compiled module",
)

META = KeyMeta("_IK_p1_svc_prod", 1796221020)
MIDDLE = f'","ParentKeyMeta":{{"KeyId":"{META.key_id}","Created":{META.created}}}}},"Data":"'
CIPHER = AESGCM(bytes(range(32)))


def source_module() -> ModuleType:
    """`_rows` run from its .py file, under another name."""
    path = Path(str(_rows.__file__)).with_name("_rows.py")
    spec = importlib.util.spec_from_file_location("asherah_core._rows_as_python", path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = source_module() if not str(_rows.__file__).endswith(".py") else _rows


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return "result", call()
    except Exception as error:  # the comparison is of whatever is raised
        return type(error).__name__, str(error)


def row(data: bytes, row_key: bytes = bytes(32), created: str = "1796221021") -> str:
    """A canonical row sealed under `CIPHER` by hand."""
    sealed_key = CIPHER.encrypt(bytes(12), row_key, None) + bytes(12)
    sealed_data = AESGCM(row_key).encrypt(b"n" * 12, data, None) + b"n" * 12
    key, sealed = base64.b64encode(sealed_key).decode(), base64.b64encode(sealed_data).decode()
    return f'{{"Key":{{"Created":{created},"Key":"{key}{MIDDLE}{sealed}"}}'


def test_the_installed_module_is_not_its_source() -> None:
    assert SOURCE is not _rows
    assert SOURCE.open_latest is not _rows.open_latest
    assert _rows.open_latest(row(b"x"), MIDDLE, CIPHER, META) == b"x"


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=64),
    at=st.integers(min_value=0, max_value=400),
    cut=st.integers(min_value=0, max_value=3),
    insert=st.text(max_size=3),
)
@example(data=b"x", at=0, cut=0, insert="")
@example(data=b"x", at=25, cut=1, insert="A")
@example(data=b"", at=18, cut=1, insert="0")
def test_a_changed_row_opens_and_fails_alike(data: bytes, at: int, cut: int, insert: str) -> None:
    text = row(data)
    at = min(at, len(text))
    changed = text[:at] + insert + text[at + cut :]
    assert outcome(lambda: _rows.open_latest(changed, MIDDLE, CIPHER, META)) == outcome(
        lambda: SOURCE.open_latest(changed, MIDDLE, CIPHER, META)
    )
    assert outcome(lambda: _rows.parse_row(changed)) == outcome(lambda: SOURCE.parse_row(changed))


@given(sealed=st.binary(max_size=120), key_end=st.integers(min_value=12, max_value=80))
def test_open_row_of_any_bytes_fails_alike(sealed: bytes, key_end: int) -> None:
    assert outcome(lambda: _rows.open_row(CIPHER, sealed, key_end, META)) == outcome(
        lambda: SOURCE.open_row(CIPHER, sealed, key_end, META)
    )


@pytest.mark.parametrize("text", [None, 5, b"{}", bytearray(b"[]"), "{}", "", object()])
def test_what_is_not_a_row_is_refused_alike(text: object) -> None:
    assert outcome(lambda: _rows.parse_row(text)) == outcome(lambda: SOURCE.parse_row(text))
    assert _rows.sealed_by(text, MIDDLE) is SOURCE.sealed_by(text, MIDDLE) is None


class _Bytes(bytes):
    """A subclass of bytes, as numpy.bytes_ is one."""


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    random=st.binary(min_size=56, max_size=56),
    created=st.integers(min_value=0, max_value=2**63 - 1),
    kind=st.sampled_from([bytes, bytearray, memoryview, _Bytes]),
)
def test_a_row_is_sealed_alike(data: bytes, random: bytes, created: int, kind: type) -> None:
    view = memoryview(bytearray(random))
    block = (view, view[:32], view[32:44], view[44:])
    compiled = _rows.seal(CIPHER, kind(data), block, created, MIDDLE)
    assert compiled == SOURCE.seal(CIPHER, kind(data), block, created, MIDDLE)
    ik_id, ik_created, sealed_key, sealed_data = _rows.parse_row(compiled)
    assert (ik_id, ik_created) == (META.key_id, META.created)
    assert _rows.open_row(CIPHER, *_rows.joined(sealed_key, sealed_data), META) == data
    if created < 10**18:  # the fast reader takes 1 to 18 digits, the general one the rest
        assert _rows.open_latest(compiled, MIDDLE, CIPHER, META) == data
