"""The envelope: Asherah's compact JSON written exactly, and every malformed input refused."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asherah_aws_kms_v2 import Envelope, RegionalKek, describe_envelope, parse_envelope
from asherah_aws_kms_v2.envelope import (
    MAX_ENCRYPTED_KEK_BYTES,
    MAX_ENCRYPTED_KEY_BYTES,
    MAX_ENTRIES,
    MAX_ENVELOPE_BYTES,
)
from asherah_core import KmsError

from .conftest import MakeKms
from .fakes import ACCOUNT

WEST = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
EAST = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/66666666-7777-8888-9999-000000000000"
MARKER = "ZQXJsecretMARKER"  # a distinctive string that must never show up in an error


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def envelope_json(**overrides: object) -> bytes:
    """A valid envelope document with some fields replaced, as compact JSON bytes."""
    document: dict[str, object] = {
        "encryptedKey": b64(b"k" * 60),
        "kmsKeks": [{"region": "us-west-2", "arn": WEST, "encryptedKek": b64(b"w" * 40)}],
    }
    document.update(overrides)
    return json.dumps(document).encode()


def entry(**overrides: object) -> dict[str, object]:
    value: dict[str, object] = {"region": "us-west-2", "arn": WEST, "encryptedKek": b64(b"w")}
    value.update(overrides)
    return value


# Writing ----------------------------------------------------------------------------------


def test_to_bytes_then_parse_gives_back_the_same_envelope() -> None:
    envelope = Envelope(
        b"\x00\xff" * 30,
        (RegionalKek("us-west-2", WEST, b"\x01" * 170), RegionalKek("us-east-1", EAST, b"\x02")),
    )

    assert parse_envelope(envelope.to_bytes()) == envelope


def test_to_bytes_is_compact_json_with_the_reference_field_names_and_order() -> None:
    # 0xfb 0xff encodes as "+/8=": the standard alphabet with padding, not URL-safe.
    envelope = Envelope(b"\xfb\xff", (RegionalKek("us-west-2", WEST, b"\xfb\xef\xbe"),))

    assert envelope.to_bytes() == (
        b'{"encryptedKey":"+/8=","kmsKeks":[{"region":"us-west-2","arn":"'
        + WEST.encode()
        + b'","encryptedKek":"++++"}]}'
    )


def test_to_bytes_writes_the_entries_in_the_order_given() -> None:
    envelope = Envelope(
        b"k", (RegionalKek("us-west-2", WEST, b"w"), RegionalKek("us-east-1", EAST, b"e"))
    )

    regions = [e["region"] for e in json.loads(envelope.to_bytes())["kmsKeks"]]

    assert regions == ["us-west-2", "us-east-1"]


@settings(max_examples=100, deadline=None)
@given(
    encrypted_key=st.binary(min_size=1, max_size=200),
    keks=st.dictionaries(
        st.sampled_from(["us-west-2", "us-east-1", "eu-west-1", "ap-south-1"]),
        st.binary(min_size=1, max_size=300),
    ),
)
def test_any_envelope_survives_the_round_trip(encrypted_key: bytes, keks: dict[str, bytes]) -> None:
    envelope = Envelope(
        encrypted_key,
        tuple(
            RegionalKek(r, f"arn:aws:kms:{r}:{ACCOUNT}:key/mrk-{'a' * 32}", blob)
            for r, blob in keks.items()
        ),
    )

    assert parse_envelope(envelope.to_bytes()) == envelope


# Reading what others write ----------------------------------------------------------------


def test_parses_an_envelope_written_like_go_in_any_entry_order_ignoring_unknown_fields() -> None:
    written_by_go = (
        "{\n"
        '  "kmsKeks": [\n'
        f'    {{"encryptedKek": "{b64(b"east")}", "arn": "{EAST}", "region": "us-east-1",'
        '      "grantTokens": ["x"]},\n'
        f'    {{"region": "us-west-2", "encryptedKek": "{b64(b"west")}", "arn": "{WEST}"}}\n'
        "  ],\n"
        f'  "encryptedKey": "{b64(b"sealed key")}",\n'
        '  "version": 2\n'
        "}"
    ).encode()

    envelope = parse_envelope(written_by_go)

    assert envelope.encrypted_key == b"sealed key"
    assert envelope.kek_for("us-west-2") == RegionalKek("us-west-2", WEST, b"west")
    assert envelope.kek_for("us-east-1") == RegionalKek("us-east-1", EAST, b"east")
    assert envelope.kek_for("eu-west-1") is None


def test_accepts_bytearray_and_memoryview() -> None:
    data = envelope_json()

    assert parse_envelope(bytearray(data)) == parse_envelope(data)
    assert parse_envelope(memoryview(data)) == parse_envelope(data)


def test_json_whitespace_around_the_document_is_accepted() -> None:
    data = envelope_json()

    assert parse_envelope(b" \t\r\n" + data + b"\n\n ") == parse_envelope(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Expecting value at byte 0"),
        (b" \n ", "Expecting value at byte 3"),
        (b'{"encryptedKey": ', "Expecting value at byte 17"),
        (envelope_json() + b" {}", f"Extra data at byte {len(envelope_json()) + 1}"),
        (envelope_json() + b"\f", f"Extra data at byte {len(envelope_json())}"),  # not JSON space
    ],
    ids=["empty", "only whitespace", "cut short", "a second document", "form feed after it"],
)
def test_json_that_is_not_one_document_names_where_it_goes_wrong(data: bytes, message: str) -> None:
    with pytest.raises(KmsError, match=f"envelope is not valid JSON: {message}$"):
        parse_envelope(data)


def test_null_kmskeks_parses_to_an_envelope_without_entries() -> None:
    envelope = parse_envelope(envelope_json(kmsKeks=None))

    assert envelope.keks == ()


def test_decrypting_an_envelope_with_null_kmskeks_fails_with_a_clear_error(
    arns: dict[str, str], make_kms: MakeKms
) -> None:
    kms = make_kms(arns)

    with pytest.raises(KmsError, match=r"no copy of the data key.*envelope regions: none"):
        kms.decrypt_key(envelope_json(kmsKeks=None))


# Refusing malformed input -----------------------------------------------------------------

_OVERSIZE_KEY = b64(b"k" * (MAX_ENCRYPTED_KEY_BYTES + 1))
_OVERSIZE_KEK = b64(b"k" * (MAX_ENCRYPTED_KEK_BYTES + 1))
_MARKED = {"note": MARKER}  # an unknown field carrying the marker, for the type errors

MALFORMED: dict[str, bytes] = {
    "not JSON": f"{MARKER} is not JSON".encode(),
    "truncated JSON": envelope_json()[:-10] + MARKER.encode(),
    "not UTF-8": b'{"encryptedKey":"\xc3\x28' + MARKER.encode() + b'"}',
    "UTF-8 with a byte-order mark": b"\xef\xbb\xbf" + envelope_json(note=MARKER),
    "UTF-16": envelope_json(note=MARKER).decode().encode("utf-16"),
    "a list": json.dumps([MARKER]).encode(),
    "a string": json.dumps(MARKER).encode(),
    "a number": b"42",
    "null": b"null",
    "empty": b"",
    "no encryptedKey": json.dumps({"kmsKeks": [], "note": MARKER}).encode(),
    "no kmsKeks": json.dumps({"encryptedKey": b64(b"k"), "note": MARKER}).encode(),
    "encryptedKey a number": envelope_json(encryptedKey=42, **_MARKED),
    "encryptedKey null": envelope_json(encryptedKey=None, **_MARKED),
    "encryptedKey a list": envelope_json(encryptedKey=[MARKER]),
    "encryptedKey NaN": envelope_json(**_MARKED).replace(
        b'"encryptedKey": "' + b64(b"k" * 60).encode() + b'"', b'"encryptedKey": NaN'
    ),
    "kmsKeks an object": envelope_json(kmsKeks={"region": MARKER}),
    "kmsKeks a string": envelope_json(kmsKeks=MARKER),
    "entry a string": envelope_json(kmsKeks=[MARKER]),
    "entry null": envelope_json(kmsKeks=[None], **_MARKED),
    "entry without region": envelope_json(kmsKeks=[{"arn": MARKER, "encryptedKek": "AA=="}]),
    "entry without arn": envelope_json(kmsKeks=[{"region": MARKER, "encryptedKek": "AA=="}]),
    "entry without encryptedKek": envelope_json(kmsKeks=[{"region": MARKER, "arn": MARKER}]),
    "region a number": envelope_json(kmsKeks=[entry(region=7, arn=MARKER)]),
    "region empty": envelope_json(kmsKeks=[entry(region="", arn=MARKER)]),
    "arn null": envelope_json(kmsKeks=[entry(arn=None, region=MARKER)]),
    "encryptedKek a list": envelope_json(kmsKeks=[entry(encryptedKek=[MARKER])]),
    "URL-safe base64": envelope_json(encryptedKey=f"-_{MARKER}-_AA=="),
    "base64 without padding": envelope_json(encryptedKey=MARKER + "AAA"),
    "non-ASCII base64": envelope_json(encryptedKey=f"{MARKER}é=="),
    "base64 with excess padding": envelope_json(encryptedKey=MARKER + "AAAA=="),
    "base64 with spaces": envelope_json(encryptedKey=f"{MARKER} AAAA"),
    "empty encryptedKey": envelope_json(encryptedKey="", **_MARKED),
    "empty encryptedKek": envelope_json(kmsKeks=[entry(encryptedKek="", arn=MARKER)]),
    "bad base64 in encryptedKek": envelope_json(kmsKeks=[entry(encryptedKek=MARKER + "=")]),
    "duplicate region": envelope_json(kmsKeks=[entry(arn=MARKER), entry(arn=MARKER)]),
    "too many entries": envelope_json(
        kmsKeks=[entry(region=f"r-{i}", arn=MARKER) for i in range(MAX_ENTRIES + 1)]
    ),
    "encryptedKey a byte over its limit": envelope_json(encryptedKey=_OVERSIZE_KEY, **_MARKED),
    "encryptedKek a byte over its limit": envelope_json(
        kmsKeks=[entry(encryptedKek=_OVERSIZE_KEK, arn=MARKER)]
    ),
    "region over its limit": envelope_json(kmsKeks=[entry(region="r" * 65, arn=MARKER)]),
    "arn over its limit": envelope_json(kmsKeks=[entry(arn=MARKER * 200)]),
    "envelope over MAX_ENVELOPE_BYTES": envelope_json(note=MARKER * (MAX_ENVELOPE_BYTES // 10)),
    "deeply nested JSON": b'{"note":"' + MARKER.encode() + b'","x":' + b"[" * 100_000
    + b"]" * 100_000 + b"}",
    "huge integer": b'{"note":"' + MARKER.encode() + b'","x":' + b"9" * 10_000 + b"}",
}  # fmt: skip


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_raises_kms_error_without_echoing_the_input(data: bytes) -> None:
    with pytest.raises(KmsError) as caught:
        parse_envelope(data)

    assert MARKER not in str(caught.value)
    assert MARKER not in repr(caught.value)


def test_every_malformed_case_carries_the_marker() -> None:
    # Guards the test above: a case without the marker would check nothing about the message.
    unmarked = [name for name, data in MALFORMED.items() if MARKER.encode() not in data]
    assert unmarked == ["UTF-16", "a number", "null", "empty"]


@pytest.mark.parametrize("value", ["not bytes", None, 42, [b"x"]])
def test_input_that_is_not_bytes_raises_kms_error(value: object) -> None:
    with pytest.raises(KmsError, match="envelope must be bytes"):
        parse_envelope(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (envelope_json(encryptedKey=7), "encryptedKey"),
        (envelope_json(kmsKeks=[entry(), entry(region="r", encryptedKek="!")]), r"kmsKeks\[1\]"),
        (envelope_json(kmsKeks=[entry(region=None)]), r"kmsKeks\[0\]\.region"),
        (envelope_json(kmsKeks=[entry(), entry()]), r"kmsKeks\[1\]\.region"),
    ],
)  # fmt: skip
def test_the_message_names_the_field_that_is_wrong(data: bytes, field: str) -> None:
    with pytest.raises(KmsError, match=field):
        parse_envelope(data)


def test_fields_at_their_limits_are_accepted() -> None:
    data = envelope_json(
        encryptedKey=b64(b"k" * MAX_ENCRYPTED_KEY_BYTES),
        kmsKeks=[
            entry(region=f"r-{i}", encryptedKek=b64(b"x" * MAX_ENCRYPTED_KEK_BYTES))
            for i in range(MAX_ENTRIES)
        ],
    )

    envelope = parse_envelope(data)

    assert len(envelope.keks) == MAX_ENTRIES
    assert len(envelope.encrypted_key) == MAX_ENCRYPTED_KEY_BYTES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
def test_arbitrary_bytes_either_parse_or_raise_kms_error(data: bytes) -> None:
    with contextlib.suppress(KmsError):
        parse_envelope(data)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["encryptedKey", "kmsKeks", "region", "arn", "encryptedKek", "x"]),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_arbitrary_json_either_parses_or_raises_kms_error(document: object) -> None:
    with contextlib.suppress(KmsError):
        parse_envelope(json.dumps(document).encode())


# repr and describe ------------------------------------------------------------------------


def test_repr_shows_sizes_and_regions_not_bytes() -> None:
    secret = b"\x8a\x13SECRET-BYTES\x00" * 3
    kek = RegionalKek("us-west-2", WEST, secret)
    envelope = Envelope(secret, (kek,))

    for text in (repr(kek), repr(envelope)):
        assert "SECRET" not in text
        assert secret.hex() not in text
        assert b64(secret) not in text
    assert repr(kek) == f"RegionalKek(region='us-west-2', arn='{WEST}', encrypted_kek=<45 bytes>)"
    assert repr(envelope) == "Envelope(encrypted_key=<45 bytes>, regions=[us-west-2])"


@pytest.mark.parametrize(
    "data",
    [b"not json", b"\xff\xfe\xfd", b"[]", b"42", b'{"Key": "AAAA"}', b"[" * 100_000, "a str"],
)
def test_describe_envelope_returns_none_for_anything_that_is_not_an_envelope(
    data: bytes,
) -> None:
    assert describe_envelope(data) is None


def test_describe_envelope_summarises_regions_and_sizes_without_key_bytes() -> None:
    mrk = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/mrk-{'0' * 32}"
    key, west_kek, east_kek = b"\x11" * 60, b"\x22" * 170, b"\x33" * 180
    envelope = Envelope(
        key, (RegionalKek("us-west-2", WEST, west_kek), RegionalKek("us-east-1", mrk, east_kek))
    )

    summary = describe_envelope(envelope.to_bytes())

    assert summary == {
        "format": "asherah multi-region AWS KMS envelope",
        "encrypted_key_bytes": 60,
        "regions": [
            {
                "region": "us-west-2",
                "arn": WEST,
                "encrypted_kek_bytes": 170,
                "multi_region_key": False,
            },
            {
                "region": "us-east-1",
                "arn": mrk,
                "encrypted_kek_bytes": 180,
                "multi_region_key": True,
            },
        ],
    }
    text = json.dumps(summary)
    for secret in (key, west_kek, east_kek):
        assert b64(secret) not in text
        assert secret.hex() not in text


def test_describe_envelope_raises_kms_error_for_a_malformed_envelope() -> None:
    # In this plugin's format but broken: the describer contract says KmsError, not None.
    with pytest.raises(KmsError):
        describe_envelope(envelope_json(encryptedKey="not base64!"))
