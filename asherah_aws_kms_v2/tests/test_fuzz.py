"""Property-based bad input for `parse_envelope` and `AwsKms.decrypt_key` (on the fake KMS).

Malformed JSON, wrong types, missing and extra fields, bad base64, huge and deeply nested
input, unknown regions, and byte- and field-level mutations of real envelopes. For every input:
only an `AsherahError` (`KmsError`, or `CryptoError`) escapes; its message, repr and chained
causes hold no input bytes (every generated string carries `MARKER`, which must never show up);
input over the size limits is refused before any KMS call; and a decrypt that succeeds returns
the very key that was wrapped, never another.

How many examples: the Hypothesis profile named by ``ASHERAH_FUZZ_PROFILE``. The unit ``tests``
session runs the default ``asherah-fuzz-unit`` (a few hundred inputs in all); ``nox -s fuzz``
runs ``asherah-fuzz`` (at least 10,000, checked by the last test here).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from asherah_aws_kms_v2 import AwsKms, AwsKmsBuilder, parse_envelope
from asherah_aws_kms_v2.envelope import (
    MAX_ARN_CHARS,
    MAX_ENCRYPTED_KEK_BYTES,
    MAX_ENCRYPTED_KEY_BYTES,
    MAX_ENTRIES,
    MAX_ENVELOPE_BYTES,
    MAX_REGION_CHARS,
)
from asherah_core import Aes256Gcm, AsherahError

from .fakes import FakeAws
from .leakscan import exception_texts

PROFILE_ENV = "ASHERAH_FUZZ_PROFILE"
FUZZ_MINIMUM = 10_000  # inputs per run of the fuzz profile
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile(
    "asherah-fuzz-unit", max_examples=30, deadline=None, suppress_health_check=_HEALTH
)
settings.register_profile(
    "asherah-fuzz",
    max_examples=1150,  # x 9 properties
    deadline=None,
    database=None,  # a fresh search every run, and no megabytes of examples in the tree
    suppress_health_check=_HEALTH,
    print_blob=True,
)
PROFILE_NAME = os.environ.get(PROFILE_ENV, "asherah-fuzz-unit")
FUZZ = settings.get_profile(PROFILE_NAME)

MARKER = "~Qx7mArKer7xQ~"  # not base64, not in any message we write
REGIONS = ("us-west-2", "us-east-1", "eu-west-1")
TRIED: Counter[str] = Counter()  # inputs tried, per test
_tried_lock = threading.Lock()


def tried(name: str) -> None:
    with _tried_lock:
        TRIED[name] += 1


# --- The KMS under test: three regions on the fake, built once per module -------------------


class Target:
    def __init__(self) -> None:
        self.aws = FakeAws()
        self.arns = {region: self.aws.create_key(region) for region in REGIONS}
        self.kms: AwsKms = (
            AwsKmsBuilder(Aes256Gcm(), self.arns)
            .with_preferred_region("us-west-2")
            .with_kms_factory(self.aws.factory())
            .with_retry_config(1, 1)
            .build()
        )
        self.keys = [os.urandom(32), os.urandom(48), os.urandom(16)]
        self.blobs = [self.kms.encrypt_key(key) for key in self.keys]
        self.stranger = self.aws.create_key("us-west-2")  # a key the KMS is not configured with

    def calls(self) -> int:
        return len(self.aws.calls)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.kms.close()


def check_refusal(error: BaseException) -> None:
    """Only AsherahError escapes, and nothing in it echoes the input."""
    assert isinstance(error, AsherahError), f"{type(error).__name__} escaped: {error!r}"
    for text in exception_texts(error):
        assert MARKER not in text, f"the input shows in: {text[:300]!r}"


def decrypt_outcome(target: Target, data: Any) -> bytes | None:
    """decrypt_key(data): the key it returned, or None after checking the error."""
    try:
        return target.kms.decrypt_key(data)
    except BaseException as error:  # anything but AsherahError escaping is the failure
        check_refusal(error)
        return None


def parse_outcome(data: Any) -> None:
    try:
        parse_envelope(data)
    except BaseException as error:
        check_refusal(error)


# --- Strategies ------------------------------------------------------------------------------

FIELDS = ["encryptedKey", "kmsKeks", "region", "arn", "encryptedKek"]
marked_text = st.text(max_size=24).map(lambda s: MARKER + s)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | marked_text
    | st.integers(-(10**30), 10**30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | marked_text, children, max_size=4)
    ),
    max_leaves=8,
)
valid_b64 = st.binary(min_size=1, max_size=120).map(lambda b: base64.b64encode(b).decode())
bad_b64 = st.one_of(
    marked_text,  # "~" is not base64
    st.text("ABCDEFab0189+/=-_ \n\t\u00e9", min_size=1, max_size=40).map(lambda s: s + MARKER),
    valid_b64.map(lambda s: s.rstrip("=") + MARKER),  # padding dropped
    valid_b64.map(lambda s: s + "==" + MARKER),  # excess padding
    valid_b64.map(lambda s: s.replace("+", "-").replace("/", "_") + MARKER),  # URL-safe
    st.just(MARKER),
    st.just(""),
)
unknown_regions = st.one_of(
    marked_text,
    st.builds(  # shaped like a region, but not one of ours
        "{}-{}-{}{}".format,
        st.sampled_from(["us", "eu", "ap", "xx", "cn", "me"]),
        st.sampled_from(["west", "east", "north", "south", "central", "gov-west", "q"]),
        st.integers(0, 99),
        st.just(MARKER),
    ),
)
regions = st.sampled_from(REGIONS) | unknown_regions


def arns_in(target_arns: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(target_arns) | marked_text


def entries(arn_strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An entry of kmsKeks with each field right, wrong, of the wrong type, or missing."""
    return st.fixed_dictionaries(
        {},
        optional={
            "region": regions | json_values,
            "arn": arn_strategy | json_values,
            "encryptedKek": valid_b64 | bad_b64 | json_values,
            MARKER: json_values,  # an extra field
        },
    )


def envelope_docs(arn_strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "encryptedKey": valid_b64 | bad_b64 | json_values,
            "kmsKeks": st.none() | st.lists(entries(arn_strategy), max_size=5) | json_values,
            "extra" + MARKER: json_values,
        },
    )


def encode(document: Any, how: str) -> bytes:
    """A JSON document as UTF-8, sometimes with the spacing or encoding a reader must refuse."""
    text = json.dumps(document, ensure_ascii=how == "ascii")
    if how == "utf-16":
        return text.encode("utf-16")
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    return text.encode()


encodings = st.sampled_from(["utf-8", "ascii", "utf-16", "bom"])

# --- Properties ------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400).map(lambda b: b + MARKER.encode()) | marked_text.map(str.encode))
def test_parse_envelope_of_arbitrary_bytes(data: bytes) -> None:
    tried("parse: arbitrary bytes")
    parse_outcome(data)


@FUZZ
@given(json_values, encodings)
def test_parse_envelope_of_any_json(document: Any, how: str) -> None:
    tried("parse: any JSON")
    parse_outcome(encode(document, how))


@FUZZ
@given(envelope_docs(marked_text), encodings)
def test_parse_envelope_of_envelope_shaped_json(document: Any, how: str) -> None:
    tried("parse: envelope-shaped JSON")
    parse_outcome(encode(document, how))


@FUZZ
@given(st.data())
def test_decrypt_key_of_envelope_shaped_json(target: Target, data: st.DataObject) -> None:
    """Right and wrong fields, configured and unknown regions, real and made-up ARNs."""
    tried("decrypt: envelope-shaped JSON")
    document = data.draw(envelope_docs(arns_in([*target.arns.values(), target.stranger])))
    before = target.calls()
    key = decrypt_outcome(target, encode(document, "utf-8"))
    assert key is None  # random ciphertext never unwraps
    keks = document.get("kmsKeks")
    configured = isinstance(keks, list) and any(
        isinstance(e, dict) and isinstance(e.get("region"), str) and e["region"] in REGIONS
        for e in keks
    )
    if not configured:
        assert target.calls() == before  # nothing to ask KMS about


@FUZZ
@given(st.data())
def test_decrypt_key_of_an_envelope_for_unknown_regions_only(
    target: Target, data: st.DataObject
) -> None:
    names = data.draw(st.lists(unknown_regions, min_size=0, max_size=6, unique=True))
    document = {
        "encryptedKey": base64.b64encode(os.urandom(60)).decode(),
        "kmsKeks": [
            {
                "region": name[:MAX_REGION_CHARS],
                "arn": data.draw(arns_in(list(target.arns.values()))),
                "encryptedKek": data.draw(valid_b64),
            }
            for name in names
        ],
    }
    assume(len({e["region"] for e in document["kmsKeks"]}) == len(names))
    tried("decrypt: unknown regions only")
    before = target.calls()
    assert decrypt_outcome(target, json.dumps(document).encode()) is None
    assert target.calls() == before


@FUZZ
@given(st.data())
def test_decrypt_key_of_a_mutated_envelope_returns_the_key_or_refuses(
    target: Target, data: st.DataObject
) -> None:
    """Mutations of real envelopes: never another key, never a foreign exception."""
    tried("decrypt: mutated real envelopes")
    index = data.draw(st.integers(0, len(target.blobs) - 1))
    blob = target.blobs[index]
    mutated = data.draw(mutations(target, blob))
    key = decrypt_outcome(target, mutated)
    assert key is None or key == target.keys[index]


@FUZZ
@given(st.data())
def test_decrypt_key_refuses_oversized_input_before_any_kms_call(
    target: Target, data: st.DataObject
) -> None:
    tried("decrypt: over the size limits")
    build = data.draw(st.sampled_from(sorted(OVERSIZED)))
    extra = data.draw(st.integers(1, 3000))
    payload = OVERSIZED[build](target, extra)
    before = target.calls()
    assert decrypt_outcome(target, payload) is None
    assert target.calls() == before, build


@FUZZ
@given(
    st.sampled_from(["[", '{"a":', '{"encryptedKey":[', '{"kmsKeks":[{"region":']),
    st.integers(1, 150_000),
    st.booleans(),
)
def test_decrypt_key_of_deeply_nested_json(
    target: Target, opener: str, depth: int, close: bool
) -> None:
    tried("decrypt: deeply nested JSON")
    closer = {"[": "]", '{"a":': "}", '{"encryptedKey":[': "]}", '{"kmsKeks":[{"region":': "}]}"}
    text = opener * depth + json.dumps(MARKER) + (closer[opener] * depth if close else "")
    before = target.calls()
    assert decrypt_outcome(target, text.encode()) is None
    assert target.calls() == before


@FUZZ
@given(
    st.one_of(
        json_values,
        marked_text,
        st.builds(bytearray, st.binary(max_size=50)),
        st.builds(memoryview, st.binary(max_size=50)),
        st.lists(st.binary(max_size=8)),
        st.just(object()),
    )
)
def test_decrypt_key_of_values_that_are_not_bytes(target: Target, value: Any) -> None:
    tried("decrypt: not bytes")
    before = target.calls()
    assert decrypt_outcome(target, value) is None
    assert target.calls() == before


# --- Mutations of real envelopes ---------------------------------------------------------------


def mutations(target: Target, blob: bytes) -> st.SearchStrategy[bytes]:
    document = json.loads(blob)
    n = len(blob)
    others = [json.loads(b) for b in target.blobs if b != blob]
    positions = st.integers(0, n - 1)

    def with_entry(change: Callable[[dict[str, Any], Any], None]) -> st.SearchStrategy[bytes]:
        def apply(i: int, value: Any) -> bytes:
            doc = json.loads(blob)
            change(doc["kmsKeks"][i % len(doc["kmsKeks"])], value)
            return json.dumps(doc).encode()

        return st.tuples(st.integers(0, 10), json_values | regions | valid_b64).map(
            lambda t: apply(*t)
        )

    def set_field(name: str) -> Callable[[dict[str, Any], Any], None]:
        def change(entry: dict[str, Any], value: Any) -> None:
            entry[name] = value

        return change

    def swap_from_other(i: int, j: int, what: str) -> bytes:
        doc = json.loads(blob)
        other = others[j % len(others)]
        if what == "encryptedKey":
            doc["encryptedKey"] = other["encryptedKey"]
        else:
            k = i % len(doc["kmsKeks"])
            doc["kmsKeks"][k]["encryptedKek"] = other["kmsKeks"][k]["encryptedKek"]
        return json.dumps(doc).encode()

    def relabel(i: int, j: int) -> bytes:
        doc = json.loads(blob)
        keks = doc["kmsKeks"]
        a, b = keks[i % len(keks)], keks[j % len(keks)]
        a["region"], b["region"] = b["region"], a["region"]
        return json.dumps(doc).encode()

    def flip(i: int, bit: int) -> bytes:
        out = bytearray(blob)
        out[i] ^= 1 << bit
        return bytes(out)

    def flip_decoded(i: int, bit: int, field: int) -> bytes:
        doc = json.loads(blob)
        if field == 0:
            raw = bytearray(base64.b64decode(doc["encryptedKey"]))
            raw[i % len(raw)] ^= 1 << bit
            doc["encryptedKey"] = base64.b64encode(raw).decode()
        else:
            entry = doc["kmsKeks"][field % len(doc["kmsKeks"])]
            raw = bytearray(base64.b64decode(entry["encryptedKek"]))
            raw[i % len(raw)] ^= 1 << bit
            entry["encryptedKek"] = base64.b64encode(raw).decode()
        return json.dumps(doc).encode()

    return st.one_of(
        st.tuples(positions, st.integers(0, 7)).map(lambda t: flip(*t)),
        st.tuples(st.integers(0, 4096), st.integers(0, 7), st.integers(0, 3)).map(
            lambda t: flip_decoded(*t)
        ),
        st.tuples(positions, positions).map(lambda t: blob[: min(t)] + blob[max(t) :]),
        st.tuples(positions, positions).map(
            lambda t: blob[: min(t)] + blob[min(t) : max(t)] * 2 + blob[max(t) :]
        ),
        positions.map(lambda i: blob[:i] + MARKER.encode() + blob[i:]),
        positions.map(lambda i: blob[:i]),
        with_entry(set_field("region")),
        with_entry(set_field("arn")),
        with_entry(set_field("encryptedKek")),
        with_entry(lambda entry, _: entry.clear()),
        st.tuples(
            st.integers(0, 5), st.integers(0, 5), st.sampled_from(["encryptedKey", "kek"])
        ).map(lambda t: swap_from_other(*t)),
        st.tuples(st.integers(0, 5), st.integers(0, 5)).map(lambda t: relabel(*t)),
        st.permutations(document["kmsKeks"]).map(
            lambda keks: json.dumps({**document, "kmsKeks": keks}).encode()
        ),
        json_values.map(lambda v: json.dumps({**document, "extra" + MARKER: v}).encode()),
        st.sampled_from(list(document)).map(
            lambda name: json.dumps({k: v for k, v in document.items() if k != name}).encode()
        ),
    )


# --- Oversized input ---------------------------------------------------------------------------


def _envelope_with(target: Target, **fields: Any) -> dict[str, Any]:
    document = json.loads(target.blobs[0])
    document.update(fields)
    return document


def _too_many_entries(target: Target, extra: int) -> bytes:
    document = json.loads(target.blobs[0])
    real = document["kmsKeks"]  # the configured regions first, so they would be tried
    filler = [
        {"region": f"xx-{MARKER}-{i}", "arn": real[0]["arn"], "encryptedKek": "AAAA"}
        for i in range(MAX_ENTRIES - len(real) + min(extra, 200))
    ]
    document["kmsKeks"] = real + filler
    return json.dumps(document).encode()


def _oversized_field(target: Target, extra: int, field: str, limit: int) -> bytes:
    value = base64.b64encode(os.urandom(limit + min(extra, 300))).decode()
    document = json.loads(target.blobs[0])
    if field == "encryptedKey":
        document["encryptedKey"] = value
    else:
        document["kmsKeks"][0]["encryptedKek"] = value
    return json.dumps(document).encode()


def _oversized_text(target: Target, extra: int, field: str, limit: int) -> bytes:
    document = json.loads(target.blobs[0])
    entry = document["kmsKeks"][0]
    entry[field] = (MARKER + entry[field] * (limit // len(entry[field]) + 2))[: limit + extra]
    return json.dumps(document).encode()


OVERSIZED: dict[str, Callable[[Target, int], bytes]] = {
    "envelope over the byte limit": lambda t, extra: (
        json.dumps(_envelope_with(t, note=MARKER)).encode() + b" " * (MAX_ENVELOPE_BYTES + extra)
    ),
    "envelope over the byte limit, all one string": lambda t, extra: json.dumps(
        _envelope_with(t, note=MARKER + "x" * (MAX_ENVELOPE_BYTES + extra))
    ).encode(),
    "too many entries": _too_many_entries,
    "encryptedKey over its limit": lambda t, e: _oversized_field(
        t, e, "encryptedKey", MAX_ENCRYPTED_KEY_BYTES
    ),
    "encryptedKek over its limit": lambda t, e: _oversized_field(
        t, e, "encryptedKek", MAX_ENCRYPTED_KEK_BYTES
    ),
    "arn over its limit": lambda t, e: _oversized_text(t, e, "arn", MAX_ARN_CHARS),
    "region over its limit": lambda t, e: _oversized_text(t, e, "region", MAX_REGION_CHARS),
    "huge integer": lambda t, e: (
        json.dumps(_envelope_with(t, note=MARKER)).encode()[:-1]
        + b',"n":'
        + b"7" * (5000 + e)
        + b"}"
    ),
}


@pytest.mark.parametrize("name", sorted(OVERSIZED))
def test_each_oversized_input_is_really_over_a_limit(target: Target, name: str) -> None:
    with pytest.raises(AsherahError, match=r"limit|1 to|not valid JSON"):
        parse_envelope(OVERSIZED[name](target, 1))


def test_the_marker_is_not_base64_and_appears_in_no_source_of_the_plugin() -> None:
    """So a marker in a message can only have come from the input."""
    assert "~" in MARKER
    package = Path(sys.modules[AwsKms.__module__].__file__ or "").parent
    sources = list(package.glob("*.py"))
    assert len(sources) >= 8
    assert not [p.name for p in sources if MARKER in p.read_text()]


@pytest.mark.parametrize(
    "data",
    [
        b"\x80" + MARKER.encode(),  # UnicodeDecodeError: its repr holds the input
        b'{"x": "' + MARKER.encode() + b'"',  # JSONDecodeError: holds the document
        json.dumps({"encryptedKey": MARKER + "\u00e9==", "kmsKeks": []}).encode(),  # not ASCII
        json.dumps({"encryptedKey": "AAA" + MARKER, "kmsKeks": []}).encode(),  # not base64
    ],
    ids=["not UTF-8", "not JSON", "non-ASCII base64", "bad base64"],
)
def test_a_refusal_keeps_no_reference_to_the_input(data: bytes) -> None:
    """Not even as a suppressed __context__ (``raise … from None`` still keeps one)."""
    with pytest.raises(AsherahError) as caught:
        parse_envelope(data)
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


def test_an_envelope_for_other_regions_names_only_region_shaped_names(target: Target) -> None:
    document = json.loads(target.blobs[0])
    kek = document["kmsKeks"][0]["encryptedKek"]
    document["kmsKeks"] = [
        {"region": name, "arn": target.stranger, "encryptedKek": kek}
        for name in ("ap-southeast-3", "us-gov-west-1", MARKER, "eu-west-1\nFAKE LOG LINE")
    ]
    with pytest.raises(AsherahError) as caught:
        target.kms.decrypt_key(json.dumps(document).encode())
    assert "envelope regions: ap-southeast-3, us-gov-west-1, 2 other name(s) not shown;" in str(
        caught.value
    )
    check_refusal(caught.value)


@pytest.mark.slow
def test_the_fuzz_run_tried_enough_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last (file order): the fuzz profile must have tried at least FUZZ_MINIMUM inputs."""
    if PROFILE_NAME != "asherah-fuzz":
        pytest.skip(f"{PROFILE_ENV} is {PROFILE_NAME!r}; the count is checked for asherah-fuzz")
    total = sum(TRIED.values())
    report = ", ".join(f"{name}: {n}" for name, n in sorted(TRIED.items()))
    with capsys.disabled():
        print(f"\nfuzz: {total} inputs tried ({report})")
    assert len(TRIED) == 9, report  # every property ran
    assert total >= FUZZ_MINIMUM, report
