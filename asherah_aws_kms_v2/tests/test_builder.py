"""`AwsKmsBuilder` and `new_aws_kms`: every validation error, region order, clients made once."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3
import pytest

from asherah_aws_kms_v2 import AwsKms, AwsKmsBuilder, AwsKmsSettings, new_aws_kms
from asherah_aws_kms_v2.settings import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REGION_COOLDOWN,
    DEFAULT_RETRY_BASE_DELAY_MS,
    DEFAULT_TIMEOUT,
)
from asherah_core import Aead, Aes256Gcm, ConfigError

from .conftest import MakeKms
from .fakes import ACCOUNT, FakeAws, FakeClient

UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def arn(region: str) -> str:
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{UUID}"


THREE = {r: arn(r) for r in ("us-west-2", "us-east-1", "eu-west-1")}


def builder(arns: dict[str, str] = THREE, aws: FakeAws | None = None) -> AwsKmsBuilder:
    factory = (aws or FakeAws()).factory()
    return AwsKmsBuilder(Aes256Gcm(), arns).with_kms_factory(factory)


# The region map -------------------------------------------------------------------------


def test_an_empty_arn_map_is_refused() -> None:
    with pytest.raises(ConfigError, match="regions: at least one region with a key ARN"):
        builder({}).build()


def test_an_arn_map_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ConfigError, match="arn_map must be a mapping"):
        AwsKmsBuilder(Aes256Gcm(), [("us-west-2", arn("us-west-2"))])  # type: ignore[arg-type]


def test_a_malformed_arn_is_refused_naming_its_region() -> None:
    with pytest.raises(ConfigError, match=r"regions\.us-west-2\.arn: .* is not a KMS key ARN"):
        builder({"us-west-2": "arn:aws:kms:us-west-2:key/oops"}).build()


@pytest.mark.parametrize("value", ["", "   ", None, 42])
def test_a_missing_arn_is_refused_naming_its_region(value: object) -> None:
    with pytest.raises(ConfigError, match=r"regions\.us-west-2\.arn: a key ARN is required"):
        builder({"us-west-2": value}).build()  # type: ignore[dict-item]


def test_an_arn_for_another_region_than_its_key_is_refused() -> None:
    arns = {"us-west-2": arn("us-west-2"), "us-east-1": arn("us-west-2")}

    with pytest.raises(
        ConfigError,
        match=r"regions\.us-east-1\.arn: the ARN is for region us-west-2, not us-east-1",
    ):
        builder(arns).with_preferred_region("us-west-2").build()


def test_a_preferred_region_that_is_not_configured_is_refused() -> None:
    with pytest.raises(ConfigError, match="preferred_region: 'ap-south-1' is not a configured"):
        builder().with_preferred_region("ap-south-1").build()


@pytest.mark.parametrize("region", ["", None, 7])
def test_a_preferred_region_that_is_not_a_name_is_refused_at_once(region: object) -> None:
    with pytest.raises(ConfigError, match="preferred_region: expected a region name"):
        builder().with_preferred_region(region)  # type: ignore[arg-type]


def test_several_regions_without_a_preferred_region_are_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"preferred_region: required .* \(choose one of eu-west-1, us-east-1, us-west-2\)",
    ):
        builder().build()


def test_a_single_region_is_the_preferred_region_by_default(make_kms: MakeKms) -> None:
    kms = builder({"eu-west-1": arn("eu-west-1")}).build()

    assert kms.regions == ("eu-west-1",)
    assert kms.settings.preferred_region == "eu-west-1"
    kms.close()


def test_regions_are_in_canonical_order_preferred_first_then_sorted() -> None:
    arns = {r: arn(r) for r in ("us-west-2", "ap-south-1", "us-east-1", "eu-west-1")}

    kms = builder(arns).with_preferred_region("us-east-1").build()

    assert kms.regions == ("us-east-1", "ap-south-1", "eu-west-1", "us-west-2")
    assert [r.name for r in kms.settings.regions] == list(kms.regions)
    kms.close()


# Durations and counts -------------------------------------------------------------------

BAD_SECONDS = [0, 0.0, -1, -0.001, math.nan, math.inf, -math.inf, "5", None, True]


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_a_non_positive_or_non_finite_timeout_is_refused_at_once(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^timeout: "):
        builder().with_timeout(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [v for v in BAD_SECONDS if v != 0])  # 0: timeout x regions
def test_a_negative_or_non_finite_operation_timeout_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^operation_timeout: "):
        builder().with_operation_timeout(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("configure", "setting"),
    [
        (lambda b, v: b.with_region_cooldown(v), "region_cooldown"),
        (lambda b, v: b.with_hedge_after(v), "hedge_after"),
    ],
)
@pytest.mark.parametrize("value", [-1, math.nan, math.inf, "1"])
def test_negative_or_non_finite_cooldown_and_hedge_delays_are_refused(
    configure: Callable[[AwsKmsBuilder, object], object], setting: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=f"^{setting}: "):
        configure(builder(), value)


def test_durations_are_accepted_as_timedelta() -> None:
    kms = (
        builder()
        .with_preferred_region("us-west-2")
        .with_timeout(timedelta(milliseconds=2500))
        .with_operation_timeout(timedelta(seconds=9))
        .with_region_cooldown(timedelta(minutes=1))
        .with_hedge_after(timedelta(milliseconds=150))
        .build()
    )

    assert kms.settings.timeout == 2.5
    assert kms.settings.operation_timeout == 9.0
    assert kms.settings.deadline == 9.0
    assert kms.settings.region_cooldown == 60.0
    assert kms.settings.hedge_after == 0.15
    kms.close()


def test_the_operation_deadline_defaults_to_timeout_times_regions_plus_one() -> None:
    kms = builder().with_preferred_region("us-west-2").with_timeout(2).build()

    assert kms.settings.deadline == 2 * (3 + 1)
    kms.close()


def test_zero_turns_cooldown_and_hedging_off_and_none_turns_hedging_off() -> None:
    kms = (
        builder()
        .with_preferred_region("us-west-2")
        .with_region_cooldown(0)
        .with_hedge_after(None)
        .build()
    )

    assert kms.settings.region_cooldown == 0.0
    assert kms.settings.hedge_after == 0.0
    kms.close()


@pytest.mark.parametrize(
    ("retries", "delay", "message"),
    [
        (-1, 100, r"retry\.max_retries: must be at least 0, got -1"),
        (1.5, 100, r"retry\.max_retries: expected an integer"),
        (True, 100, r"retry\.max_retries: expected an integer"),
        (3, -1, r"retry\.base_delay_ms: must be a finite number"),
        (3, math.nan, r"retry\.base_delay_ms: must be a finite number"),
    ],
)
def test_bad_retry_settings_are_refused_at_once(retries: Any, delay: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        builder().with_retry_config(retries, delay)


def test_zero_retries_and_zero_base_delay_are_allowed() -> None:
    kms = builder().with_preferred_region("us-west-2").with_retry_config(0, 0).build()

    assert (kms.settings.max_retries, kms.settings.retry_base_delay_ms) == (0, 0.0)
    kms.close()


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (0, "min_regions: must be at least 1, got 0"),
        (-2, "min_regions: must be at least 1"),
        (4, 'min_regions: 4 is more than the 3 configured region\\(s\\); use "all"'),
        ("most", "min_regions: expected an integer"),
        (True, "min_regions: expected an integer"),
    ],
)
def test_bad_min_regions_are_refused(count: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        builder().with_preferred_region("us-west-2").with_min_regions(count).build()


@pytest.mark.parametrize(("count", "expected"), [(1, 1), (3, 3), ("all", 3)])
def test_min_regions_accepts_a_count_up_to_the_regions_or_all(count: Any, expected: int) -> None:
    kms = builder().with_preferred_region("us-west-2").with_min_regions(count).build()

    assert kms.settings.min_regions == expected
    kms.close()


@pytest.mark.parametrize("count", [0, -1, 2.0, True])
def test_a_bad_max_concurrency_is_refused(count: Any) -> None:
    with pytest.raises(ConfigError, match="max_concurrency: "):
        builder().with_max_concurrency(count)


@pytest.mark.parametrize("method", ["with_mrk_awareness", "with_local_data_key"])
def test_flags_must_be_booleans(method: str) -> None:
    with pytest.raises(ConfigError, match="expected true or false"):
        getattr(builder(), method)("yes")


# Endpoints, crypto, session, factory ----------------------------------------------------


def test_an_endpoint_for_a_region_without_an_arn_is_refused() -> None:
    configured = builder().with_preferred_region("us-west-2")
    configured.with_endpoint("ap-south-1", "http://localhost:4566")

    with pytest.raises(ConfigError, match="endpoint given for region\\(s\\) with no key ARN: ap"):
        configured.build()


@pytest.mark.parametrize("url", ["ftp://localhost:4566", "localhost:4566", "http://", "", "//h"])
def test_an_endpoint_that_is_not_an_http_url_is_refused(url: str) -> None:
    configured = builder().with_preferred_region("us-west-2")

    with pytest.raises(ConfigError, match=r"regions\.us-east-1\.endpoint: expected an http"):
        configured.with_endpoint("us-east-1", url)


def test_an_endpoint_with_credentials_is_refused_without_repeating_them() -> None:
    url = "https://AKIDEXAMPLE:wJalrXUtnFEMI@kms.example.com"
    configured = builder().with_preferred_region("us-west-2")

    with pytest.raises(ConfigError, match="credentials do not belong") as caught:
        configured.with_endpoint("us-west-2", url)

    assert "wJalrXUtnFEMI" not in str(caught.value)
    assert "AKIDEXAMPLE" not in str(caught.value)


def test_https_and_http_endpoints_reach_the_factory_per_region() -> None:
    seen: dict[str, str | None] = {}
    aws = FakeAws()

    def factory(region: str, *, session: Any, endpoint_url: str | None, config: Any) -> FakeClient:
        seen[region] = endpoint_url
        return aws.client(region)

    kms = (
        AwsKmsBuilder(Aes256Gcm(), THREE)
        .with_preferred_region("us-west-2")
        .with_endpoint("us-west-2", "http://localhost:4566")
        .with_endpoint("eu-west-1", "https://kms-fips.eu-west-1.amazonaws.com")
        .with_kms_factory(factory)
        .build()
    )

    assert seen == {
        "us-west-2": "http://localhost:4566",
        "eu-west-1": "https://kms-fips.eu-west-1.amazonaws.com",
        "us-east-1": None,
    }
    kms.close()


@pytest.mark.parametrize("crypto", [None, "aes", object(), Aes256Gcm])
def test_crypto_that_is_not_an_aead_is_refused(crypto: object) -> None:
    with pytest.raises(ConfigError, match="crypto must be an Aead"):
        AwsKmsBuilder(crypto, THREE)  # type: ignore[arg-type]


def test_any_aead_implementation_is_accepted() -> None:
    class Reversed(Aead):
        def encrypt(self, data: bytes, key: bytes) -> bytes:
            return Aes256Gcm().encrypt(data[::-1], key)

        def decrypt(self, data: bytes, key: bytes) -> bytes:
            return Aes256Gcm().decrypt(data, key)[::-1]

    aws = FakeAws()
    arns = {"us-west-2": aws.create_key("us-west-2")}
    kms = AwsKmsBuilder(Reversed(), arns).with_kms_factory(aws.factory()).build()

    assert kms.decrypt_key(kms.encrypt_key(b"key")) == b"key"
    kms.close()


@pytest.mark.parametrize("session", [None, "default", object(), boto3.session.Session])
def test_a_session_that_is_not_a_boto3_session_is_refused(session: object) -> None:
    with pytest.raises(ConfigError, match=r"with_session: expected a boto3\.Session"):
        builder().with_session(session)  # type: ignore[arg-type]


def test_a_factory_that_is_not_callable_is_refused() -> None:
    with pytest.raises(ConfigError, match="the factory must be callable"):
        builder().with_kms_factory("boto3")  # type: ignore[arg-type]


def test_the_factory_gets_the_session_and_a_client_config_from_the_settings() -> None:
    session = boto3.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="us-east-1"
    )
    received: list[dict[str, Any]] = []
    aws = FakeAws()

    def factory(region: str, *, session: Any, endpoint_url: str | None, config: Any) -> FakeClient:
        received.append({"region": region, "session": session, "config": config})
        return aws.client(region)

    kms = (
        AwsKmsBuilder(Aes256Gcm(), THREE)
        .with_preferred_region("us-west-2")
        .with_timeout(1.5)
        .with_max_concurrency(12)
        .with_session(session)
        .with_kms_factory(factory)
        .build()
    )

    assert sorted(r["region"] for r in received) == ["eu-west-1", "us-east-1", "us-west-2"]
    for call in received:
        assert call["session"] is session
        config = call["config"]
        assert (config.connect_timeout, config.read_timeout) == (1.5, 1.5)
        assert config.retries["total_max_attempts"] == 1  # the plugin retries, not botocore
        assert config.max_pool_connections == 12
        assert config.parameter_validation is False  # the plugin's own parameters, checked
    kms.close()


def test_an_unknown_profile_is_a_config_error_naming_the_profile(offline_boto3: None) -> None:
    settings = AwsKmsSettings.create(THREE, preferred_region="us-west-2", profile="no-such")

    with pytest.raises(ConfigError, match=r"^profile: no AWS profile named 'no-such'"):
        AwsKmsBuilder.from_settings(Aes256Gcm(), settings).build()


# Clients and defaults -------------------------------------------------------------------


def test_build_makes_one_client_per_region_once_and_threads_share_them() -> None:
    aws = FakeAws()
    arns = {r: aws.create_key(r) for r in THREE}
    kms = builder(arns, aws).with_preferred_region("us-west-2").build()
    assert aws.clients_made == 3
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                key = b"k" * 32
                assert kms.decrypt_key(kms.encrypt_key(key)) == key
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == []
    assert aws.clients_made == 3
    assert len({c.thread_name for c in aws.calls}) > 1
    kms.close()


def test_new_aws_kms_builds_with_the_defaults(
    monkeypatch: pytest.MonkeyPatch, offline_boto3: None
) -> None:
    aws = FakeAws()
    arns = {r: aws.create_key(r) for r in THREE}
    monkeypatch.setattr("asherah_aws_kms_v2.builder.default_client_factory", aws.factory())

    kms = new_aws_kms(Aes256Gcm(), "eu-west-1", arns)

    assert isinstance(kms, AwsKms)
    assert kms.regions == ("eu-west-1", "us-east-1", "us-west-2")
    s = kms.settings
    assert (s.timeout, s.max_retries, s.retry_base_delay_ms) == (
        DEFAULT_TIMEOUT,
        DEFAULT_MAX_RETRIES,
        DEFAULT_RETRY_BASE_DELAY_MS,
    )
    assert (s.min_regions, s.mrk_awareness, s.local_data_key) == (1, True, False)
    assert (s.region_cooldown, s.hedge_after) == (DEFAULT_REGION_COOLDOWN, 0.0)
    assert s.max_concurrency == DEFAULT_MAX_CONCURRENCY
    assert kms.decrypt_key(kms.encrypt_key(b"k" * 32)) == b"k" * 32
    assert aws.calls[0].region == "eu-west-1"
    kms.close()


def test_new_aws_kms_with_real_boto3_clients_builds_without_network(offline_boto3: None) -> None:
    kms = new_aws_kms(Aes256Gcm(), "us-west-2", THREE)

    assert kms.regions == ("us-west-2", "eu-west-1", "us-east-1")
    kms.close()


def test_new_aws_kms_validates_like_the_builder() -> None:
    with pytest.raises(ConfigError, match="preferred_region: 'ap-south-1'"):
        new_aws_kms(Aes256Gcm(), "ap-south-1", THREE)


# repr -----------------------------------------------------------------------------------


def test_reprs_name_regions_and_mode_but_no_secrets(
    make_kms: MakeKms, aws: FakeAws, arns: dict[str, str]
) -> None:
    session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="wJalrSECRET")
    configured = builder(arns, aws).with_preferred_region("us-west-2").with_session(session)
    configured.with_endpoint("us-west-2", "http://localhost:4566")
    kms = configured.build()
    key = b"\x42" * 32
    kms.encrypt_key(key)

    assert repr(configured) == (
        "AwsKmsBuilder(regions=['eu-west-1', 'us-east-1', 'us-west-2'], preferred='us-west-2')"
    )
    assert repr(kms) == (
        "AwsKms(regions=['us-west-2', 'eu-west-1', 'us-east-1'], preferred_region='us-west-2', "
        "mode='generate-data-key', min_regions=1)"
    )
    local = make_kms(arns, local_data_key=True, min_regions="all")
    assert "mode='local-data-key', min_regions=3" in repr(local)
    for text in (repr(configured), repr(kms), repr(local)):
        assert "AKIDEXAMPLE" not in text
        assert "wJalrSECRET" not in text
        assert key.hex() not in text
    kms.close()
