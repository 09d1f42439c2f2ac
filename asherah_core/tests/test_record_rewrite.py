"""Rewriting a key record (revoking it) never turns a readable record into an unreadable one:
fields this library does not know are written back as they were read."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asherah_core import EnvelopeKeyRecord, KeyMeta, RecordError
from asherah_core.metastore import InMemoryMetastore, SqlMetastore

IK = "_IK_p1_svc_prod"
CREATED = 1_796_221_020
UNKNOWN = '"Future":1e400,"Scale":[1.50,-0.0,{"x":2E-5}],"Note":"\\ud800","Caf\u00e9":"\u00e9"'
TEXT = (
    f'{{"Created":{CREATED},"Key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",'
    f'"ParentKeyMeta":{{"KeyId":"_SK_svc_prod","Created":{CREATED}}},{UNKNOWN}}}'
)


def test_a_revoked_record_keeps_unknown_numbers_as_their_text() -> None:
    record = EnvelopeKeyRecord.from_json(TEXT)
    assert math.isinf(record.extra["Future"])  # what Python makes of 1e400
    rewritten = record.with_revoked().to_json()
    assert "Infinity" not in rewritten
    assert UNKNOWN in rewritten
    again = EnvelopeKeyRecord.from_json(rewritten)
    assert again.revoked
    assert again.parent_key_meta == KeyMeta("_SK_svc_prod", CREATED)
    assert again.to_json() == rewritten
    json.loads(rewritten)  # plain JSON for any reader (the standard library's here)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> tuple[SqlMetastore, Path]:
    path = tmp_path / "keys.db"
    return SqlMetastore(f"sqlite:///{path}", create_table=True), path


def stored_text(path: Path) -> str:
    with sqlite3.connect(path) as db:
        (text,) = db.execute("SELECT key_record FROM encryption_key").fetchone()
    return str(text)


def test_revoking_in_sql_keeps_the_record_readable(
    sqlite_store: tuple[SqlMetastore, Path],
) -> None:
    store, path = sqlite_store
    assert store.store(IK, CREATED, EnvelopeKeyRecord.from_json(TEXT))  # as read elsewhere
    ((_, created, _),) = list(store.keys())
    assert store.revoke(IK, created)
    record = store.load(IK, created)
    assert record is not None
    assert record.revoked
    assert UNKNOWN in stored_text(path)
    store.close()


def test_revoking_in_memory_keeps_unknown_fields() -> None:
    store = InMemoryMetastore()
    assert store.store(IK, CREATED, EnvelopeKeyRecord.from_json(TEXT))
    assert store.revoke(IK, CREATED)
    record = store.load(IK, CREATED)
    assert record is not None
    assert record.revoked
    assert UNKNOWN in record.to_json()


@pytest.mark.parametrize("value", [math.nan, math.inf, object()], ids=["nan", "inf", "object"])
def test_a_field_json_cannot_hold_is_refused_before_writing(value: Any) -> None:
    record = EnvelopeKeyRecord(CREATED, b"k" * 48, None, False, {"Odd": value})
    with pytest.raises(RecordError, match=r"record\.Odd: .*JSON cannot hold"):
        record.to_json()


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.from_regex(r"-?(0|[1-9][0-9]{0,3})(\.[0-9]{1,4})?([eE][-+]?[0-9]{1,4})?", fullmatch=True),
    st.text(max_size=8).map(json.dumps),
)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


_json_text = st.recursive(
    _json_scalars.map(_as_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
        st.dictionaries(st.text(max_size=5), inner, max_size=3).map(
            lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["A", "B", "Zz", "é"]), _json_text, max_size=3))
def test_any_unknown_field_survives_a_revoke_rewrite(fields: dict[str, str]) -> None:
    unknown = "".join(f",{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in fields.items())
    text = f'{{"Created":{CREATED},"Key":"AAAA"{unknown}}}'
    record = EnvelopeKeyRecord.from_json(text)
    rewritten = record.with_revoked().to_json()
    again = EnvelopeKeyRecord.from_json(rewritten)  # still readable
    assert again.revoked
    assert again.to_json() == rewritten
    # Each field as read: numbers with a fraction or an exponent to the character, the rest
    # to the value (an integer's sign of zero, a string's escapes may be written differently).
    as_read = json.loads(text, parse_float=str)
    assert {k: v for k, v in json.loads(rewritten, parse_float=str).items() if k in fields} == {
        k: as_read[k] for k in fields
    }
