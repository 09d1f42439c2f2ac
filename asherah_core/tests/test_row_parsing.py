"""Reading a data row record's text: the canonical fast path never accepts what the strict
reader refuses, never reads a field differently, and every failure is a `RecordError`."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asherah_core import RecordError
from asherah_core._rows import parse_canonical, parse_json_row, parse_row, seal, sealed_by
from asherah_core.cache import CachedKey, _json_str
from asherah_core.records import MAX_CREATED, KeyMeta

if TYPE_CHECKING:
    from asherah_core import SessionFactory
    from conftest import Base64Way

KEY = base64.b64encode(bytes(60)).decode()
DATA = base64.b64encode(bytes(40)).decode()


def canonical(
    created: str = "1796221020",
    key: str = KEY,
    ik_id: str = "_IK_p1_svc_prod",
    ik_created: str = "1796221020",
    data: str = DATA,
) -> str:
    """A record in the canonical compact form, each field's text as given (unchecked)."""
    return (
        f'{{"Key":{{"Created":{created},"Key":"{key}","ParentKeyMeta":'
        f'{{"KeyId":"{ik_id}","Created":{ik_created}}}}},"Data":"{data}"}}'
    )


def strict(text: str) -> tuple[str, int, bytes, bytes] | RecordError:
    try:
        return parse_json_row(text)
    except RecordError as e:
        return e


BASE64_WAYS = pytest.mark.parametrize("left", [0, 10**9], ids=["pybase64", "librt"])
"""The fields' base64 alone (0), or while threads contend (see _b64)."""


@pytest.mark.parametrize("field", ["created", "ik_created"])
@pytest.mark.parametrize(
    "number",
    [
        "9" * 4301,  # past Python's 4,300-digit limit on int()
        "1" * 5000,
        str(2**63),  # 19 digits, one past the largest int64
        "9999999999999999999",
        "1" + "0" * 19,
    ],
    ids=["4301-digits", "5000-digits", "2**63", "19-nines", "20-digits"],
)
def test_a_created_out_of_range_is_a_record_error_on_every_path(
    factory: SessionFactory, field: str, number: str
) -> None:
    text = canonical(**{field: number})
    assert parse_canonical(text) is None  # the strict reader decides
    with pytest.raises(RecordError, match=r"Created|digits"):
        parse_row(text)
    session = factory.get_session("p1")
    session.encrypt_bytes(b"warm")  # the partition's key is cached: the inline path is tried
    with pytest.raises(RecordError):
        session.decrypt_bytes(text)
    with pytest.raises(RecordError):
        session.decrypt_bytes(text.encode())


def test_the_largest_created_is_read_alike_on_both_paths() -> None:
    text = canonical(created=str(MAX_CREATED), ik_created=str(MAX_CREATED))
    fast = parse_canonical(text)
    assert fast is not None
    assert fast == parse_json_row(text)
    assert fast[1] == MAX_CREATED


def test_an_empty_key_id_is_a_record_error_not_another_partition(
    factory: SessionFactory,
) -> None:
    text = canonical(ik_id="")
    assert parse_canonical(text) is None
    with pytest.raises(RecordError, match="KeyId"):
        factory.get_session("p1").decrypt_bytes(text)


def test_an_out_of_range_message_does_not_print_thousands_of_digits() -> None:
    text = canonical(created="9" * 4000)
    with pytest.raises(RecordError) as caught:
        parse_row(text)
    assert len(str(caught.value)) < 200


_numbers = st.one_of(
    st.integers(min_value=0, max_value=2**64).map(str),
    st.integers(min_value=0, max_value=10**30).map(lambda n: "0" + str(n)),
    st.integers(min_value=-(2**63), max_value=-1).map(str),
    st.sampled_from(["", "0", "1e3", "1.0", "+1", " 1", "٣", "9" * 4301, str(MAX_CREATED)]),
    st.text("0123456789", min_size=1, max_size=25),
)
_ids = st.one_of(
    st.sampled_from(["_IK_p1_svc_prod", "", 'a"b', "a\\b", "a\nb", "\ud800", "é", "\u2028"]),
    st.text(max_size=20),
)
_base64 = st.one_of(
    st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["", "A", "AAA", "AA==AA==", "AAAA\n", "A\u00e9AA"]),
    st.text(max_size=12),
)


@settings(max_examples=500, deadline=None)
@given(created=_numbers, key=_base64, ik_id=_ids, ik_created=_numbers, data=_base64)
@example(created="9" * 4301, key=KEY, ik_id="_IK_p1_svc_prod", ik_created="1", data=DATA)
@example(created=str(2**63), key=KEY, ik_id="_IK_p1_svc_prod", ik_created="1", data=DATA)
@BASE64_WAYS
def test_the_fast_path_accepts_only_what_the_strict_reader_accepts_and_reads_it_alike(
    base64_way: Base64Way, left: int, created: str, key: str, ik_id: str, ik_created: str, data: str
) -> None:
    text = canonical(created, key, ik_id, ik_created, data)
    with base64_way(left):
        fast = parse_canonical(text)
    expected = strict(text)
    if fast is not None:
        assert not isinstance(expected, RecordError), f"fast path accepted: {expected}"
        assert fast == expected
    try:
        found = parse_row(text)  # whichever path: a result or a RecordError, nothing else
    except RecordError:
        assert isinstance(expected, RecordError)
    else:
        assert found == expected


_META = st.sampled_from(
    [
        KeyMeta("_IK_p1_svc_prod", 1796221020),
        KeyMeta('_IK_"quoted"_svc_prod', 7),
        KeyMeta("_IK_é\u2028_svc_prod", 0),
        KeyMeta("_IK_p1_svc_prod", MAX_CREATED),
    ]
)


@settings(max_examples=500, deadline=None)
@given(created=_numbers, key=_base64, meta=_META, data=_base64)
@example(created="1796221020", key=KEY, meta=KeyMeta("_IK_p1_svc_prod", 1), data=DATA)
@example(
    created="1",
    key=KEY,
    meta=KeyMeta("_IK_p1_svc_prod", 1),
    data="0000000000000000000000000000000000000000=",
)
@example(created="1", key=KEY[:-4] + "AA==", meta=KeyMeta("_IK_p1_svc_prod", 1), data=DATA)
@BASE64_WAYS
def test_the_reader_of_a_keys_own_rows_accepts_only_what_the_strict_reader_reads_alike(
    base64_way: Base64Way, left: int, created: str, key: str, meta: KeyMeta, data: str
) -> None:
    middle = CachedKey(meta, bytes(32)).make_row_texts().row_middle
    text = f'{{"Key":{{"Created":{created},"Key":"{key}{middle}{data}"}}'
    with base64_way(left):
        found = sealed_by(text, middle)
    expected = strict(text)
    if found is not None:
        assert not isinstance(expected, RecordError), f"fast path accepted: {expected}"
        assert (meta.key_id, meta.created, found[:60], found[60:]) == expected
        assert len(found) >= 60 + 28
    elif created == "1796221020" and key == KEY and data == DATA:
        raise AssertionError("a plain row of the key was not read by its fast path")


def test_a_row_written_by_the_session_is_read_by_the_fast_path(factory: SessionFactory) -> None:
    session = factory.get_session("p1")
    text = session.encrypt_bytes(b"x" * 100)
    middle = session._ik_latest[session._ik_id].row_middle
    found = sealed_by(text, middle)
    assert found is not None
    _, _, sealed_key, sealed_data = parse_json_row(text)
    assert (len(sealed_key), found) == (60, sealed_key + sealed_data)


@given(st.text())
@example('"')
@example("a\\b")
@example("\x7f")
@example("\u2028")
@example("\xa0")
@example("caf\xe9")
@example("\ud800")
def test_a_keys_id_in_its_rows_is_written_as_json_dumps_writes_it(key_id: str) -> None:
    assert _json_str(key_id) == json.dumps(key_id, ensure_ascii=False)


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 5])
def test_a_sealed_row_is_the_canonical_record_of_its_parts(data: bytes) -> None:
    cipher = AESGCM(bytes(range(32)))
    row_key, nonce, key_nonce = bytes(range(100, 132)), b"n" * 12, b"k" * 12
    view = memoryview(bytearray(row_key + nonce + key_nonce))
    meta = '{"KeyId":"_IK_p1_svc_prod","Created":1796221020}'
    middle = f'","ParentKeyMeta":{meta}}},"Data":"'
    text = seal(cipher, data, (view, view[:32], view[32:44], view[44:]), 1796221021, middle)
    sealed_key = cipher.encrypt(key_nonce, row_key, None) + key_nonce
    sealed_data = AESGCM(row_key).encrypt(nonce, data, None) + nonce
    expected = {
        "Key": {
            "Created": 1796221021,
            "Key": base64.b64encode(sealed_key).decode(),
            "ParentKeyMeta": json.loads(meta),
        },
        "Data": base64.b64encode(sealed_data).decode(),
    }
    assert text == json.dumps(expected, separators=(",", ":"))
    assert parse_row(text) == ("_IK_p1_svc_prod", 1796221020, sealed_key, sealed_data)
    assert bytes(view) == row_key + nonce + key_nonce  # wiping is the caller's
