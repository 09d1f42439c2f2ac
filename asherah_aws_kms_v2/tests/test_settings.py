"""``[plugins.aws-v2]`` of plugins.toml: read into settings, every error naming its key path."""

from __future__ import annotations

import re
from typing import Any

import pytest

from asherah_aws_kms_v2 import AwsKms, AwsKmsSettings, describe_envelope, kms_from_config
from asherah_aws_kms_v2.settings import settings_from_config
from asherah_core import Aes256Gcm, ConfigError, PluginConfig, PluginHost

from .fakes import ACCOUNT, FakeAws

UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"
PATH = "plugins.aws-v2"


def arn(region: str) -> str:
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{UUID}"


def table(**overrides: Any) -> dict[str, Any]:
    """A valid two-region [plugins.aws-v2] table with some keys replaced (None removes one)."""
    values: dict[str, Any] = {
        "preferred_region": "us-west-2",
        "regions": {"us-west-2": {"arn": arn("us-west-2")}, "us-east-1": {"arn": arn("us-east-1")}},
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def read(values: dict[str, Any], environ: dict[str, str] | None = None) -> AwsKmsSettings:
    config = PluginConfig(values, path=PATH, source="plugins.toml", environ=environ or {})
    return settings_from_config(config)


def test_a_full_table_is_read_into_typed_settings() -> None:
    settings = read(
        table(
            regions={
                "us-west-2": {"arn": arn("us-west-2"), "endpoint": "http://localhost:4566"},
                "us-east-1": {"arn": arn("us-east-1")},
                "eu-west-1": {"arn": arn("eu-west-1"), "endpoint": "https://kms.example.com"},
            },
            timeout=2.5,
            operation_timeout=10,
            retry={"max_retries": 5, "base_delay_ms": 50},
            min_regions=2,
            mrk_awareness=False,
            local_data_key=True,
            region_cooldown=15,
            hedge_after=0.2,
            max_concurrency=16,
            profile="prod",
        )
    )

    assert [(r.name, str(r.arn), r.endpoint) for r in settings.regions] == [
        ("us-west-2", arn("us-west-2"), "http://localhost:4566"),
        ("eu-west-1", arn("eu-west-1"), "https://kms.example.com"),
        ("us-east-1", arn("us-east-1"), None),
    ]
    assert settings == AwsKmsSettings(
        regions=settings.regions,
        timeout=2.5,
        operation_timeout=10.0,
        max_retries=5,
        retry_base_delay_ms=50.0,
        min_regions=2,
        mrk_awareness=False,
        local_data_key=True,
        region_cooldown=15.0,
        hedge_after=0.2,
        max_concurrency=16,
        profile="prod",
    )


def test_a_minimal_table_takes_the_defaults() -> None:
    settings = read({"regions": {"eu-west-1": {"arn": arn("eu-west-1")}}})

    assert settings == AwsKmsSettings(regions=settings.regions)
    assert settings.preferred_region == "eu-west-1"


def test_min_regions_all_means_every_configured_region() -> None:
    assert read(table(min_regions="all")).min_regions == 2


ERRORS: list[tuple[dict[str, Any], str]] = [
    (table(regions=None), f"{PATH}.regions: missing required table"),
    (table(regions=[arn("us-west-2")]), f"{PATH}.regions: expected a table"),
    (table(regions={}), f"{PATH}.regions: at least one region"),
    (table(regions={"us-west-2": arn("us-west-2")}), f"{PATH}.regions.us-west-2: expected a table"),
    (table(regions={"us-west-2": {}}), f"{PATH}.regions.us-west-2.arn: missing required setting"),
    (table(regions={"us-west-2": {"arn": 7}}), f"{PATH}.regions.us-west-2.arn: expected a string"),
    (
        table(regions={"us-west-2": {"arn": "arn:aws:kms:us-west-2:1:key/x"}}),
        f"{PATH}.regions.us-west-2.arn: 'arn:aws:kms:us-west-2:1:key/x' is not a KMS key ARN",
    ),
    (
        table(regions={"us-west-2": {"arn": arn("us-east-1")}}),
        f"{PATH}.regions.us-west-2.arn: the ARN is for region us-east-1, not us-west-2",
    ),
    (
        table(regions={"us-west-2": {"arn": arn("us-west-2"), "arm": "x"}}),
        f"{PATH}.regions.us-west-2.arm: unknown setting; expected one of arn, endpoint",
    ),
    (
        table(regions={"us-west-2": {"arn": arn("us-west-2"), "endpoint": "localhost:4566"}}),
        f"{PATH}.regions.us-west-2.endpoint: expected an http:// or https:// URL",
    ),
    (
        table(regions={"us-west-2": {"arn": arn("us-west-2"), "endpoint": 4566}}),
        f"{PATH}.regions.us-west-2.endpoint: expected a string",
    ),
    (table(timeuot=5), f"{PATH}.timeuot: unknown setting; expected one of hedge_after,"),
    (table(timeout=0), f"{PATH}.timeout: must be a finite number of seconds, more than zero"),
    (table(timeout=-1.5), f"{PATH}.timeout: must be a finite number of seconds"),
    (table(timeout="fast"), f"{PATH}.timeout: expected a number, got a string"),
    (table(operation_timeout=-1), f"{PATH}.operation_timeout: must be a finite number"),
    (table(region_cooldown=-1), f"{PATH}.region_cooldown: must be a finite number"),
    (table(hedge_after=-0.1), f"{PATH}.hedge_after: must be a finite number"),
    (table(retry=3), f"{PATH}.retry: expected a table"),
    (table(retry={"attempts": 3}), f"{PATH}.retry.attempts: unknown setting"),
    (table(retry={"max_retries": -1}), f"{PATH}.retry.max_retries: must be at least 0, got -1"),
    (table(retry={"max_retries": "3"}), f"{PATH}.retry.max_retries: expected an integer"),
    (table(retry={"max_retries": 1.5}), f"{PATH}.retry.max_retries: expected an integer"),
    (table(retry={"base_delay_ms": -5}), f"{PATH}.retry.base_delay_ms: must be a finite number"),
    (table(preferred_region=None), f"{PATH}.preferred_region: required when more than one"),
    (table(preferred_region="eu-west-1"), f"{PATH}.preferred_region: 'eu-west-1' is not a"),
    (table(preferred_region=""), f"{PATH}.preferred_region: expected a non-empty string"),
    (table(min_regions=0), f"{PATH}.min_regions: must be at least 1, got 0"),
    (table(min_regions=3), f"{PATH}.min_regions: 3 is more than the 2 configured region"),
    (table(min_regions="most"), f"{PATH}.min_regions: expected an integer"),
    (table(mrk_awareness="yes"), f"{PATH}.mrk_awareness: expected true or false"),
    (table(local_data_key=1), f"{PATH}.local_data_key: expected true or false"),
    (table(max_concurrency=0), f"{PATH}.max_concurrency: must be at least 1"),
    (table(profile=""), f"{PATH}.profile: expected a non-empty string"),
]


@pytest.mark.parametrize(
    ("values", "message"),
    ERRORS,
    ids=[m.split(": ")[0] + f"#{i}" for i, (_, m) in enumerate(ERRORS)],
)
def test_each_error_names_the_exact_key_path(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read(values)

    assert str(caught.value).startswith(f"plugins.toml: {message}"), str(caught.value)


def test_environment_references_fill_arns_and_numbers() -> None:
    environ = {
        "WEST_ARN": arn("us-west-2"),
        "EAST_ARN": arn("us-east-1"),
        "KMS_TIMEOUT": "2.5",
        "RETRIES": "5",
        "MIN": "2",
        "LOCAL_KEY": "true",
        "HEDGE": "0.1",
    }
    values = table(
        regions={"us-west-2": {"arn": "${WEST_ARN}"}, "us-east-1": {"arn": "${EAST_ARN}"}},
        timeout="${KMS_TIMEOUT}",
        retry={"max_retries": "${RETRIES}", "base_delay_ms": "${DELAY:-25}"},
        min_regions="${MIN}",
        local_data_key="${LOCAL_KEY}",
        hedge_after="${HEDGE}",
    )

    settings = read(values, environ)

    assert [str(r.arn) for r in settings.regions] == [arn("us-west-2"), arn("us-east-1")]
    assert settings.timeout == 2.5
    assert (settings.max_retries, settings.retry_base_delay_ms) == (5, 25.0)
    assert settings.min_regions == 2
    assert settings.local_data_key is True
    assert settings.hedge_after == 0.1


@pytest.mark.parametrize(
    ("values", "environ", "message"),
    [
        (
            table(timeout="${KMS_TIMEOUT}"),
            {"KMS_TIMEOUT": "soon"},
            rf"{PATH}\.timeout \(from \$KMS_TIMEOUT\): expected a number, got 'soon'",
        ),
        (
            table(retry={"max_retries": "${RETRIES}"}),
            {"RETRIES": "many"},
            rf"{PATH}\.retry\.max_retries \(from \$RETRIES\): expected an integer",
        ),
        (
            table(retry={"max_retries": "${RETRIES}"}),
            {"RETRIES": "-2"},
            rf"{PATH}\.retry\.max_retries: must be at least 0",
        ),
        (
            table(regions={"us-west-2": {"arn": "${WEST_ARN}"}}),
            {},
            rf"{PATH}\.regions\.us-west-2\.arn: environment variable \$WEST_ARN is not set",
        ),
        (
            table(regions={"us-west-2": {"arn": "${WEST_ARN}"}}),
            {"WEST_ARN": arn("eu-west-1")},
            rf"{PATH}\.regions\.us-west-2\.arn: the ARN is for region eu-west-1",
        ),
    ],
)
def test_errors_in_environment_values_name_the_key(
    values: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        read(values, environ)


# kms_from_config and the plugin host ----------------------------------------------------


def test_kms_from_config_builds_a_kms_with_real_clients_and_no_network(
    offline_boto3: None,
) -> None:
    config = PluginConfig(
        table(
            regions={
                "us-west-2": {"arn": arn("us-west-2"), "endpoint": "http://localhost:4566"},
                "us-east-1": {"arn": arn("us-east-1")},
            },
            timeout=1.5,
            max_concurrency=8,
        ),
        path=PATH,
    )

    kms = kms_from_config(config, Aes256Gcm())

    assert isinstance(kms, AwsKms)
    assert kms.regions == ("us-west-2", "us-east-1")
    assert kms.settings.timeout == 1.5
    assert kms.settings.regions[0].endpoint == "http://localhost:4566"
    kms.close()


def test_kms_from_config_reports_errors_with_the_source_and_key_path() -> None:
    config = PluginConfig(table(timeout=-1), path=PATH, source="/etc/app/plugins.toml")

    with pytest.raises(ConfigError, match=re.escape(f"/etc/app/plugins.toml: {PATH}.timeout: ")):
        kms_from_config(config, Aes256Gcm())


def test_an_unknown_profile_names_the_key_in_plugins_toml(offline_boto3: None) -> None:
    config = PluginConfig(table(profile="no-such-profile"), path=PATH, source="plugins.toml")

    with pytest.raises(ConfigError, match=rf"^plugins\.toml: {PATH}\.profile: .*'no-such-profile'"):
        kms_from_config(config, Aes256Gcm())


def test_the_plugin_registers_aws_v2_with_the_envelope_describer() -> None:
    registration = PluginHost().registration("aws-v2")

    assert registration.factory is kms_from_config
    assert registration.describe is describe_envelope
    assert registration.plugin.distribution == "asherah-aws-kms-v2"


def test_load_kms_by_name_builds_the_kms_from_a_dict(offline_boto3: None) -> None:
    kms = PluginHost().load_kms("aws-v2", table(min_regions="all"))

    assert isinstance(kms, AwsKms)
    assert kms.settings.min_regions == 2
    kms.close()


def test_load_kms_errors_name_the_plugins_table_path() -> None:
    bad = table(regions={"us-west-2": {"arn": arn("us-west-2")}, "us-east-1": {"arn": "x"}})

    with pytest.raises(ConfigError, match=rf"{PATH}\.regions\.us-east-1\.arn: 'x' is not a KMS"):
        PluginHost().load_kms("aws-v2", bad)


def test_a_kms_loaded_by_name_round_trips_through_the_fake(
    monkeypatch: pytest.MonkeyPatch, offline_boto3: None
) -> None:
    aws = FakeAws()
    values = table(
        regions={r: {"arn": aws.create_key(r)} for r in ("us-west-2", "us-east-1")},
        min_regions="all",
    )
    monkeypatch.setattr("asherah_aws_kms_v2.builder.default_client_factory", aws.factory())

    with PluginHost().load_kms("aws-v2", values) as kms:
        blob = kms.encrypt_key(b"k" * 32)
        assert kms.decrypt_key(blob) == b"k" * 32

    assert [(c.region, c.operation) for c in aws.calls] == [
        ("us-west-2", "generate_data_key"),
        ("us-east-1", "encrypt"),
        ("us-west-2", "decrypt"),
    ]
