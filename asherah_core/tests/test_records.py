"""Records: the exact JSON every Asherah shares, strict readers, and no key bytes in a repr."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asherah_core import AsherahError, DataRowRecord, EnvelopeKeyRecord, KeyMeta, RecordError

KEY = bytes(range(1, 61))
KEY_B64 = base64.b64encode(KEY).decode()
DATA = b"\xde\xad\xbe\xef" * 10
DATA_B64 = base64.b64encode(DATA).decode()


def ik_record(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "Created": 1796221020,
        "Key": KEY_B64,
        "ParentKeyMeta": {"KeyId": "_SK_svc_prod", "Created": 1796221020},
    }
    value.update(overrides)
    return value


def row(**key_overrides: Any) -> dict[str, Any]:
    key = {
        "Created": 1796221359,
        "Key": KEY_B64,
        "ParentKeyMeta": {"KeyId": "_IK_p1_svc_prod", "Created": 1796221320},
    }
    key.update(key_overrides)
    return {"Key": key, "Data": DATA_B64}


# Writing ----------------------------------------------------------------------------------


def test_system_key_record_json_is_compact_without_parent_or_revoked() -> None:
    record = EnvelopeKeyRecord(1796221020, KEY)
    assert record.to_json() == f'{{"Created":1796221020,"Key":"{KEY_B64}"}}'


def test_intermediate_key_record_json_has_parent_and_revoked_only_when_true() -> None:
    record = EnvelopeKeyRecord(1796221020, KEY, KeyMeta("_SK_svc_prod", 1796221020))
    expected = (
        f'{{"Created":1796221020,"Key":"{KEY_B64}",'
        '"ParentKeyMeta":{"KeyId":"_SK_svc_prod","Created":1796221020}}'
    )
    assert record.to_json() == expected
    revoked = record.with_revoked().to_json()
    assert revoked == expected[:-1] + ',"Revoked":true}'
    assert record.with_revoked().with_revoked(False).to_json() == expected


def test_data_row_record_json_is_the_shared_compact_shape() -> None:
    record = DataRowRecord(
        EnvelopeKeyRecord(1796221359, KEY, KeyMeta("_IK_p1_svc_prod", 1796221320)), DATA
    )
    assert record.to_json() == (
        f'{{"Key":{{"Created":1796221359,"Key":"{KEY_B64}",'
        '"ParentKeyMeta":{"KeyId":"_IK_p1_svc_prod","Created":1796221320}},'
        f'"Data":"{DATA_B64}"}}'
    )
    assert DataRowRecord.from_json(record.to_json()) == record


def test_base64_is_standard_with_padding() -> None:
    record = EnvelopeKeyRecord(1, b"\xfb\xff\xfe\x01")  # '+' and '/' and padding
    assert json.loads(record.to_json())["Key"] == "+//+AQ=="


# Reading ----------------------------------------------------------------------------------


def test_reader_ignores_field_order() -> None:
    text = json.dumps(
        {"ParentKeyMeta": {"Created": 5, "KeyId": "_SK_a_b"}, "Key": KEY_B64, "Created": 7}
    )
    record = EnvelopeKeyRecord.from_json(text)
    assert (record.created, record.encrypted_key, record.parent_key_meta) == (
        7,
        KEY,
        KeyMeta("_SK_a_b", 5),
    )


def test_unknown_fields_of_a_key_record_survive_a_round_trip() -> None:
    value = ik_record(Future={"nested": [1, 2]}, Flag=True)
    record = EnvelopeKeyRecord.from_json(json.dumps(value))
    again = json.loads(record.to_json())
    assert again["Future"] == {"nested": [1, 2]}
    assert again["Flag"] is True
    assert EnvelopeKeyRecord.from_json(record.to_json()).to_json() == record.to_json()
    assert json.loads(record.with_revoked().to_json())["Future"] == {"nested": [1, 2]}


def test_a_key_record_of_known_fields_only_has_no_extra() -> None:
    record = EnvelopeKeyRecord.from_json(json.dumps(ik_record(Revoked=True)))
    assert dict(record.extra) == {}
    assert json.loads(record.to_json()) == ik_record(Revoked=True)


def test_unknown_fields_of_a_data_row_are_ignored() -> None:
    value = row()
    value["Extra"] = 1
    record = DataRowRecord.from_json(json.dumps(value))
    assert record.data == DATA


@pytest.mark.parametrize(("revoked", "expected"), [(False, False), (None, False), (True, True)])
def test_revoked_false_null_or_true(revoked: bool | None, expected: bool) -> None:
    record = EnvelopeKeyRecord.from_json(json.dumps(ik_record(Revoked=revoked)))
    assert record.revoked is expected
    assert ("Revoked" in json.loads(record.to_json())) is expected


def test_revoked_absent_is_false() -> None:
    assert EnvelopeKeyRecord.from_json(json.dumps(ik_record())).revoked is False


def test_reads_bytes_text() -> None:
    assert DataRowRecord.from_json(json.dumps(row()).encode()).data == DATA


# Bad input: RecordError naming the field --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"Key": KEY_B64}, "Created"),
        (ik_record(Created="1796221020"), "Created"),
        (ik_record(Created=1.5), "Created"),
        (ik_record(Created=True), "Created"),
        (ik_record(Created=-1), "Created"),
        (ik_record(Created=2**63), "Created"),
        ({"Created": 1}, "Key"),
        (ik_record(Key=5), "Key"),
        (ik_record(Key=KEY_B64.rstrip("=")[:-1]), "Key"),  # padding missing
        (ik_record(Key="-_-_"), "Key"),  # urlsafe alphabet
        (ik_record(Key="AAAA AAAA"), "Key"),
        (ik_record(Key="é"), "Key"),
        (ik_record(ParentKeyMeta="_SK_svc_prod"), "ParentKeyMeta"),
        (ik_record(ParentKeyMeta={"Created": 1}), "ParentKeyMeta.KeyId"),
        (ik_record(ParentKeyMeta={"KeyId": "", "Created": 1}), "ParentKeyMeta.KeyId"),
        (ik_record(ParentKeyMeta={"KeyId": 3, "Created": 1}), "ParentKeyMeta.KeyId"),
        (ik_record(ParentKeyMeta={"KeyId": "k\ud800", "Created": 1}), "ParentKeyMeta.KeyId"),
        (ik_record(ParentKeyMeta={"KeyId": "k"}), "ParentKeyMeta.Created"),
        (ik_record(Revoked="yes"), "Revoked"),
        (ik_record(Revoked=1), "Revoked"),
    ],
)
def test_bad_key_record_names_the_field(value: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordError, match=rf"key record\.{field}\b"):
        EnvelopeKeyRecord.from_json(json.dumps(value))


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"Data": DATA_B64}, "Key"),
        ({"Key": row()["Key"]}, "Data"),
        ({"Key": row()["Key"], "Data": "AA"}, "Data"),
        ({"Key": row()["Key"], "Data": None}, "Data"),
        ({"Key": {"Created": 1, "Key": KEY_B64}, "Data": DATA_B64}, r"Key\.ParentKeyMeta"),
        (row(ParentKeyMeta={"KeyId": "_IK_p1_svc_prod", "Created": "x"}), r"Key\.ParentKeyMeta"),
        ([], ""),
        ("text", ""),
    ],
)
def test_bad_data_row_names_the_field(value: object, field: str) -> None:
    with pytest.raises(RecordError, match=rf"data row record{'.' if field else ''}{field}"):
        DataRowRecord.from_json(json.dumps(value))


@pytest.mark.parametrize(
    "text",
    [
        '{"Created": NaN, "Key": "AAAA"}',
        '{"Created": Infinity, "Key": "AAAA"}',
        '{"Created": -Infinity, "Key": "AAAA"}',
        '{"Created": 1, "Key": "AAAA", "ParentKeyMeta": {"KeyId": "\\ud800", "Created": 1}}',
        "{",
        "",
        "[" * 100_000,
    ],
)
def test_bad_json_is_a_record_error(text: str) -> None:
    with pytest.raises(RecordError):
        EnvelopeKeyRecord.from_json(text)


def test_invalid_utf8_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="UTF-8"):
        DataRowRecord.from_json(b'{"Key": "\xff"}')


def test_constructors_check_types() -> None:
    with pytest.raises(RecordError, match="encrypted_key"):
        EnvelopeKeyRecord(1, "not bytes")  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="revoked"):
        EnvelopeKeyRecord(1, b"k", revoked=1)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="ParentKeyMeta"):
        DataRowRecord(EnvelopeKeyRecord(1, b"k"), b"d")
    with pytest.raises(RecordError, match="key_id"):
        KeyMeta("", 1)


def test_reprs_show_no_key_bytes_or_data() -> None:
    secret = b"S3cr3tKeyBytes!!" * 2
    record = EnvelopeKeyRecord(5, secret, KeyMeta("_IK_p_s_p", 4))
    data_row = DataRowRecord(record, b"plaintext-ish data")
    for text in (repr(record), str(record), repr(data_row), str(data_row)):
        assert "S3cr3t" not in text
        assert base64.b64encode(secret).decode()[:10] not in text
        assert secret.hex()[:10] not in text
        assert "plaintext" not in text
    assert "32 bytes" in repr(record)


# Properties -------------------------------------------------------------------------------

created = st.integers(min_value=0, max_value=2**63 - 1)
key_records = st.builds(
    EnvelopeKeyRecord,
    created,
    st.binary(max_size=100),
    st.none()
    | st.builds(KeyMeta, st.text(alphabet=st.characters(codec="utf-8"), min_size=1), created),
    st.booleans(),
)


@given(key_records)
def test_key_records_round_trip(record: EnvelopeKeyRecord) -> None:
    assert EnvelopeKeyRecord.from_json(record.to_json()) == record
    assert EnvelopeKeyRecord.from_json(record.to_json().encode()) == record


@given(
    created,
    st.binary(max_size=64),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1),
    created,
    st.binary(max_size=300),
)
def test_data_rows_round_trip(
    key_created: int, key: bytes, ik_id: str, ik_created: int, data: bytes
) -> None:
    record = DataRowRecord(EnvelopeKeyRecord(key_created, key, KeyMeta(ik_id, ik_created)), data)
    assert DataRowRecord.from_json(record.to_json()) == record


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
near_rows = st.fixed_dictionaries(
    {
        "Key": st.fixed_dictionaries(
            {},
            optional={
                "Created": json_values,
                "Key": json_values | st.just(KEY_B64),
                "ParentKeyMeta": json_values | st.just({"KeyId": "_IK_p1_svc_prod", "Created": 1}),
                "Revoked": json_values,
            },
        )
    },
    optional={"Data": json_values | st.just(DATA_B64)},
)


@settings(max_examples=300)
@given(st.one_of(json_values, near_rows).map(json.dumps) | st.text() | st.binary())
def test_bad_input_raises_only_record_errors(text: str | bytes) -> None:
    for parse in (DataRowRecord.from_json, EnvelopeKeyRecord.from_json):
        message = ""
        try:
            parse(text)
        except RecordError as e:
            message = str(e)
        except AsherahError as e:  # pragma: no cover - a failure report
            pytest.fail(f"{type(e).__name__} instead of RecordError: {e}")
        assert DATA_B64 not in message
        assert KEY_B64 not in message


# The plain key record, read in one msgspec call, against the general reader ----------------

from asherah_core import _plainrecord  # noqa: E402
from asherah_core.records import parse_json  # noqa: E402


def general_outcome(text: str | bytes) -> tuple[Any, ...]:
    """What the general reader alone makes of `text`."""
    try:
        record = EnvelopeKeyRecord.from_dict(parse_json(text, "key record"), "key record")
    except RecordError as e:
        return ("error", str(e))
    return ("record", record, dict(record.extra))


def outcome(text: str | bytes) -> tuple[Any, ...]:
    try:
        record = EnvelopeKeyRecord.from_json(text)
    except RecordError as e:
        return ("error", str(e))
    return ("record", record, dict(record.extra))


_B64 = st.binary(max_size=70).map(lambda b: base64.b64encode(b).decode())
_ALMOST_B64 = st.text(alphabet="AQgw+/=_-\n \\aZ09\u00e9", max_size=12)
_INTS = st.one_of(
    st.integers(-3, 3),
    st.integers(2**63 - 3, 2**64 + 3),
    st.sampled_from([1796000000, -(2**63), 10**30]),
)
_TEXT = st.one_of(
    st.sampled_from(["", "_SK_s_p", "\ud800", "a\u0000b", "\u2028", "é", '"', "\\"]),
    st.text(max_size=6),
)
_ANY = st.one_of(st.none(), st.booleans(), _INTS, st.floats(allow_nan=False), _TEXT)
_META = st.one_of(
    _ANY,
    st.fixed_dictionaries({"KeyId": st.one_of(_TEXT, _ANY), "Created": st.one_of(_INTS, _ANY)}),
    st.fixed_dictionaries(
        {"KeyId": _TEXT, "Created": _INTS}, optional={"Other": _ANY, "keyid": _TEXT}
    ),
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "Created": st.one_of(_INTS, _ANY),
        "Key": st.one_of(_B64, _B64, _ALMOST_B64, _ANY),
        "ParentKeyMeta": _META,
        "Revoked": st.one_of(st.booleans(), st.none(), _ANY),
        "Extra": _ANY,
        "created": _INTS,
    },
)


@settings(max_examples=1500, deadline=None)
@given(
    fields=_FIELDS,
    ascii_only=st.booleans(),
    spaced=st.booleans(),
    duplicate=st.one_of(st.none(), st.tuples(st.sampled_from(["Created", "Key"]), _ANY)),
    as_bytes=st.booleans(),
)
def test_the_plain_reader_reads_every_record_as_the_general_reader(
    fields: dict[str, Any],
    ascii_only: bool,
    spaced: bool,
    duplicate: tuple[str, Any] | None,
    as_bytes: bool,
) -> None:
    text = json.dumps(
        fields, ensure_ascii=ascii_only, separators=(", ", ": ") if spaced else (",", ":")
    )
    if duplicate is not None and text != "{}":  # a field twice: the last one counts
        text = "{" + json.dumps(duplicate[0]) + ":" + json.dumps(duplicate[1]) + "," + text[1:]
    given_text: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    assert outcome(given_text) == general_outcome(given_text)


@pytest.mark.parametrize(
    "record",
    [
        EnvelopeKeyRecord(1796000000, bytes(range(60)), KeyMeta("_SK_s_p", 1795999999)),
        EnvelopeKeyRecord(1796000000, bytes(range(60)), KeyMeta("_SK_s_p", 1), revoked=True),
        EnvelopeKeyRecord(0, b"wrapped by the KMS", None),
    ],
    ids=["intermediate", "revoked", "system"],
)
def test_what_we_write_is_read_by_the_plain_reader(record: EnvelopeKeyRecord) -> None:
    text = record.to_json()
    plain = _plainrecord.read(text)
    assert plain is not None
    meta = record.parent_key_meta
    assert plain == (
        record.created,
        record.encrypted_key,
        None if meta is None else meta.key_id,
        0 if meta is None else meta.created,
        record.revoked,
    )
    assert EnvelopeKeyRecord.from_json(text) == record


@pytest.mark.parametrize(
    "text",
    [
        '{"Created":1,"Key":"AAAA","Future":{"x":1.50}}',  # an unknown field: kept
        '{"Created":1,"Key":"AAAA","ParentKeyMeta":{"KeyId":"\\ud800","Created":1}}',
        '{"Created":1.0,"Key":"AAAA"}',
        '{"Created":1,"Key":"AAAA\\n"}',
        '{"Created":1,"Key":"AAAA","Revoked":0}',
        "[]",
    ],
)
def test_the_plain_reader_leaves_everything_else_to_the_general_reader(text: str) -> None:
    assert _plainrecord.read(text) is None
    assert outcome(text) == general_outcome(text)
