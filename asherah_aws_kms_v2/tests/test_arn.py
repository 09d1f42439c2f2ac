"""KMS ARNs: what parses, what is refused, and which ARNs are replicas of one Multi-Region key."""

from __future__ import annotations

import pytest

from asherah_aws_kms_v2 import KeyArn, parse_arn, same_multi_region_key
from asherah_core import ConfigError

UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"
MRK = "mrk-1234abcd12ab34cd56ef1234567890ab"
OTHER_MRK = "mrk-ffffffffffffffffffffffffffffffff"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"arn:aws:kms:us-west-2:111122223333:key/{UUID}",
            KeyArn("aws", "us-west-2", "111122223333", "key", UUID),
        ),
        (
            f"arn:aws:kms:eu-central-1:111122223333:key/{MRK}",
            KeyArn("aws", "eu-central-1", "111122223333", "key", MRK),
        ),
        (
            f"arn:aws-cn:kms:cn-north-1:111122223333:key/{UUID}",
            KeyArn("aws-cn", "cn-north-1", "111122223333", "key", UUID),
        ),
        (
            f"arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/{UUID}",
            KeyArn("aws-us-gov", "us-gov-west-1", "111122223333", "key", UUID),
        ),
        (
            "arn:aws:kms:ap-southeast-2:111122223333:alias/my-app/system_key.v2",
            KeyArn("aws", "ap-southeast-2", "111122223333", "alias", "my-app/system_key.v2"),
        ),
        (
            "arn:aws-us-gov:kms:us-gov-east-1:111122223333:alias/prod",
            KeyArn("aws-us-gov", "us-gov-east-1", "111122223333", "alias", "prod"),
        ),
    ],
)
def test_valid_key_and_alias_arns_parse_into_their_parts(text: str, expected: KeyArn) -> None:
    arn = parse_arn(text)

    assert arn == expected
    assert str(arn) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not an arn",
        UUID,  # a bare key id
        "alias/my-key",  # a bare alias name
        f"arn:aws:s3:us-west-2:111122223333:key/{UUID}",  # another service
        f"arn:aws:kms:us-west-2:11112222333:key/{UUID}",  # 11-digit account
        f"arn:aws:kms:us-west-2:1111222233334:key/{UUID}",  # 13-digit account
        f"arn:aws:kms::111122223333:key/{UUID}",  # no region
        f"arn:aws:kms:uswest2:111122223333:key/{UUID}",  # malformed region
        f"arn:gcp:kms:us-west-2:111122223333:key/{UUID}",  # unknown partition
        f"arn:aws:kms:us-west-2:111122223333:grant/{UUID}",  # not a key or alias
        "arn:aws:kms:us-west-2:111122223333:key/",  # no key id
        "arn:aws:kms:us-west-2:111122223333:key/not-a-uuid",
        "arn:aws:kms:us-west-2:111122223333:key/mrk-1234",  # short MRK id
        f"arn:aws:kms:us-west-2:111122223333:key/{UUID.upper()}",
        f"arn:aws:kms:us-west-2:111122223333:key/{UUID}/extra",
        "arn:aws:kms:us-west-2:111122223333:alias/",
        f"arn:aws:kms:us-west-2:111122223333:key/{UUID} trailing",
    ],
)
def test_malformed_arns_raise_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match=r"ARN|key id"):
        parse_arn(text)


@pytest.mark.parametrize("value", [None, 42, b"arn:aws:kms:us-west-2:111122223333:alias/x"])
def test_an_arn_that_is_not_a_string_raises_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        parse_arn(value)  # type: ignore[arg-type]


def test_the_error_quotes_a_long_arn_only_in_part() -> None:
    text = "arn:" + "x" * 5000

    with pytest.raises(ConfigError) as caught:
        parse_arn(text)

    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"arn:aws:kms:us-west-2:111122223333:key/{MRK}", True),
        (f"arn:aws:kms:us-west-2:111122223333:key/{UUID}", False),
        ("arn:aws:kms:us-west-2:111122223333:alias/mrk-looking-alias", False),
    ],
)
def test_is_multi_region_only_for_mrk_key_ids(text: str, expected: bool) -> None:
    assert parse_arn(text).is_multi_region is expected


def key(
    region: str, resource: str, *, account: str = "111122223333", partition: str = "aws"
) -> KeyArn:
    return parse_arn(f"arn:{partition}:kms:{region}:{account}:key/{resource}")


def test_replicas_of_one_multi_region_key_in_different_regions_are_the_same_key() -> None:
    assert same_multi_region_key(key("us-west-2", MRK), key("us-east-1", MRK))
    assert same_multi_region_key(key("us-east-1", MRK), key("eu-west-1", MRK))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(key("us-west-2", MRK), key("us-east-1", OTHER_MRK), id="different key ids"),
        pytest.param(
            key("us-west-2", MRK),
            key("us-east-1", MRK, account="444455556666"),
            id="different accounts",
        ),
        pytest.param(
            key("us-west-2", MRK),
            key("cn-north-1", MRK, partition="aws-cn"),
            id="different partitions",
        ),
        pytest.param(key("us-west-2", UUID), key("us-east-1", UUID), id="single-region keys"),
        pytest.param(key("us-west-2", MRK), key("us-east-1", UUID), id="one MRK, one not"),
        pytest.param(
            parse_arn("arn:aws:kms:us-west-2:111122223333:alias/a"),
            parse_arn("arn:aws:kms:us-east-1:111122223333:alias/a"),
            id="aliases",
        ),
    ],
)
def test_unrelated_keys_are_not_the_same_multi_region_key(a: KeyArn, b: KeyArn) -> None:
    assert not same_multi_region_key(a, b)
    assert not same_multi_region_key(b, a)
