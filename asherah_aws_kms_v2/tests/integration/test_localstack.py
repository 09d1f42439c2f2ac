"""The AWS KMS plugin against a real LocalStack: three regions, dead regions, disabled keys,
Multi-Region keys, and configuration through plugins.toml."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from asherah_aws_kms_v2 import AwsKms, AwsKmsBuilder, parse_envelope
from asherah_core import Aes256Gcm, KmsError, load_kms_from_file

REGIONS = ("us-west-2", "us-east-1", "eu-west-1")
REPO = Path(__file__).resolve().parents[3]


class CallCounter:
    """Counts KMS API calls per (region, operation) through a botocore event on the session."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self.session = boto3.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        )
        self.session.events.register("before-call.kms", self._count)

    def _count(self, model: Any, context: Any = None, **kwargs: Any) -> None:
        region = context.get("client_region") if isinstance(context, dict) else None
        with self._lock:
            self.calls[(str(region), model.name)] += 1

    def operations(self) -> Counter[str]:
        result: Counter[str] = Counter()
        for (_, operation), n in self.calls.items():
            result[operation] += n
        return result


def closed_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def build(localstack_endpoint: str) -> Iterator[Callable[..., AwsKms]]:
    made: list[AwsKms] = []

    def make(
        arns: dict[str, str],
        *,
        preferred: str = "us-west-2",
        endpoints: dict[str, str] | None = None,
        session: boto3.Session | None = None,
        configure: Callable[[AwsKmsBuilder], AwsKmsBuilder] = lambda b: b,
    ) -> AwsKms:
        builder = AwsKmsBuilder(Aes256Gcm(), arns).with_preferred_region(preferred)
        builder = builder.with_timeout(2.0).with_retry_config(1, 10)
        for region in arns:
            endpoint = (endpoints or {}).get(region, localstack_endpoint)
            builder = builder.with_endpoint(region, endpoint)
        builder = builder.with_session(session or CallCounter().session)
        kms = configure(builder).build()
        made.append(kms)
        return kms

    yield make
    for kms in made:
        kms.close()


def test_three_regions_round_trip(
    build: Callable[..., AwsKms], regional_keys: dict[str, str]
) -> None:
    counter = CallCounter()
    kms = build(regional_keys, session=counter.session)
    key = os.urandom(32)

    blob = kms.encrypt_key(key)

    envelope = parse_envelope(blob)
    assert [k.region for k in envelope.keks] == ["us-west-2", "eu-west-1", "us-east-1"]
    assert {k.region: k.arn for k in envelope.keks} == regional_keys
    assert counter.operations() == {"GenerateDataKey": 1, "Encrypt": 2}
    assert kms.decrypt_key(blob) == key
    assert counter.operations()["Decrypt"] == 1


def test_each_region_alone_can_unwrap(
    build: Callable[..., AwsKms], regional_keys: dict[str, str]
) -> None:
    key = os.urandom(32)
    blob = build(regional_keys).encrypt_key(key)
    for region in REGIONS:
        single = build({region: regional_keys[region]}, preferred=region)
        assert single.decrypt_key(blob) == key


def test_dead_preferred_region_fails_over(
    build: Callable[..., AwsKms], regional_keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    key = os.urandom(32)
    healthy_blob = build(regional_keys).encrypt_key(key)
    dead = build(regional_keys, endpoints={"us-west-2": closed_endpoint()})

    with caplog.at_level(logging.WARNING, logger="asherah_aws_kms_v2"):
        blob = dead.encrypt_key(key)

    envelope = parse_envelope(blob)
    assert [k.region for k in envelope.keks] == ["eu-west-1", "us-east-1"]
    assert any(
        "us-west-2" in r.getMessage() and "left out" in r.getMessage() for r in caplog.records
    )
    assert dead.decrypt_key(blob) == key
    assert dead.decrypt_key(healthy_blob) == key


def test_dead_region_with_min_regions_all_fails_naming_it(
    build: Callable[..., AwsKms], regional_keys: dict[str, str]
) -> None:
    kms = build(
        regional_keys,
        endpoints={"eu-west-1": closed_endpoint()},
        configure=lambda b: b.with_min_regions("all"),
    )
    with pytest.raises(KmsError, match=r"eu-west-1: EndpointConnectionError") as info:
        kms.encrypt_key(os.urandom(32))
    assert "min_regions is 3" in str(info.value)


def test_disabled_key_in_preferred_region(
    build: Callable[..., AwsKms], kms_client: Callable[[str], Any], regional_keys: dict[str, str]
) -> None:
    client = kms_client("us-west-2")
    fresh = client.create_key(Description="asherah disabled-key test")["KeyMetadata"]["Arn"]
    arns = {**regional_keys, "us-west-2": fresh}
    kms = build(arns)
    key = os.urandom(32)
    blob = kms.encrypt_key(key)

    client.disable_key(KeyId=fresh)

    assert kms.decrypt_key(blob) == key  # failed over past the disabled key
    blob2 = kms.encrypt_key(key)  # GenerateDataKey fails over; us-west-2 left out
    assert "us-west-2" not in [k.region for k in parse_envelope(blob2).keks]
    only_disabled = build({"us-west-2": fresh})
    with pytest.raises(KmsError, match="DisabledException"):
        only_disabled.decrypt_key(blob)


def test_multi_region_key_needs_one_call(
    build: Callable[..., AwsKms], mrk_keys: dict[str, str]
) -> None:
    counter = CallCounter()
    kms = build(mrk_keys, preferred="us-east-1", session=counter.session)
    key = os.urandom(32)

    blob = kms.encrypt_key(key)

    assert counter.operations() == {"GenerateDataKey": 1}
    envelope = parse_envelope(blob)
    assert {k.region: k.arn for k in envelope.keks} == mrk_keys
    assert len({k.encrypted_kek for k in envelope.keks}) == 1
    for region in ("us-west-2", "eu-west-1"):
        replica = build({region: mrk_keys[region]}, preferred=region)
        assert replica.decrypt_key(blob) == key


def test_local_data_key_mode(build: Callable[..., AwsKms], regional_keys: dict[str, str]) -> None:
    counter = CallCounter()
    kms = build(regional_keys, session=counter.session, configure=lambda b: b.with_local_data_key())
    key = os.urandom(32)
    blob = kms.encrypt_key(key)
    assert counter.operations() == {"Encrypt": 3}
    assert kms.decrypt_key(blob) == key


def test_load_kms_from_the_repository_plugins_toml(
    localstack_endpoint: str, regional_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASHERAH_KMS_ENDPOINT", localstack_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    for region, arn in regional_keys.items():
        monkeypatch.setenv(f"ASHERAH_ARN_{region.upper().replace('-', '_')}", arn)

    with load_kms_from_file(REPO / "plugins.toml") as kms:
        assert isinstance(kms, AwsKms)
        key = os.urandom(32)
        assert kms.decrypt_key(kms.encrypt_key(key)) == key
        report = kms.diagnose()
    assert [r.target for r in report] == ["us-west-2", "eu-west-1", "us-east-1", "round-trip"]
    assert all(r.ok for r in report), report


def test_a_forked_child_calls_kms_on_threads_and_connections_of_its_own(
    build: Callable[..., AwsKms],
    regional_keys: dict[str, str],
    in_forked_child: Callable[[Callable[[], str]], str],
) -> None:
    # A preloading server forks after the KMS was used: its connections sit in the clients'
    # pools, and its worker threads do not exist in the child.
    counter = CallCounter()
    kms = build(regional_keys, session=counter.session)
    key = os.urandom(32)
    blob = kms.encrypt_key(key)  # connections to LocalStack are pooled now, workers started
    keys = kms._ctx.keys
    parents = {region: keys[region].client for region in REGIONS}

    def child() -> str:
        mine = os.urandom(32)
        opened = kms.decrypt_key(kms.encrypt_key(mine)) == mine and kms.decrypt_key(blob) == key
        own = all(keys[region].client is not parents[region] for region in REGIONS)
        return f"{opened} {own} {counter.operations()['Encrypt']}"  # (its session counts too)

    assert in_forked_child(child) == "True True 4"  # 2 Encrypt calls before the fork, 2 after
    assert kms.decrypt_key(blob) == key  # the parent's connections still answer
