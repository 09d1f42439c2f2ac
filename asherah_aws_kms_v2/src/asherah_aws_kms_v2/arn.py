"""KMS key ARNs: parsing, and which ARNs name replicas of one Multi-Region key."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from asherah_core import ConfigError

__all__ = [
    "REGION_NAME",
    "KeyArn",
    "is_region_name",
    "mrk_groups",
    "parse_arn",
    "same_multi_region_key",
]

# An AWS region name (us-west-2, us-gov-east-1, eu-central-2); the one pattern of the plugin.
REGION_NAME = re.compile(r"[a-z]{2}(?:-[a-z0-9]+)+-[0-9]{1,2}")
_ARN = re.compile(
    rf"arn:(?P<partition>aws(?:-[a-z]+)*):kms:(?P<region>{REGION_NAME.pattern}):"
    r"(?P<account>\d{12}):(?P<kind>key|alias)/(?P<resource>[A-Za-z0-9/_+=.@:-]{1,256})"
)
_KEY_ID = re.compile(
    r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)


@dataclass(frozen=True)
class KeyArn:
    """The parts of a KMS key or alias ARN."""

    partition: str
    region: str
    account: str
    kind: str
    resource: str

    @property
    def is_multi_region(self) -> bool:
        """Whether the ARN names a Multi-Region key (key id ``mrk-…``)."""
        return self.kind == "key" and self.resource.startswith("mrk-")

    def __str__(self) -> str:
        return f"arn:{self.partition}:kms:{self.region}:{self.account}:{self.kind}/{self.resource}"


def parse_arn(text: str) -> KeyArn:
    """Parse a KMS key or alias ARN; raise `ConfigError` saying what is wrong with it."""
    if not isinstance(text, str):
        raise ConfigError(f"a KMS key ARN must be a string, not {type(text).__name__}")
    match = _ARN.fullmatch(text.strip())
    if match is None:
        raise ConfigError(
            f"{_shorten(text)!r} is not a KMS key ARN; expected "
            "arn:aws:kms:<region>:<12-digit account>:key/<key id> (or alias/<name>)"
        )
    arn = KeyArn(**match.groupdict())
    if arn.kind == "key" and not _KEY_ID.fullmatch(arn.resource):
        raise ConfigError(
            f"{_shorten(text)!r}: the key id must be a key UUID or a Multi-Region id mrk-<32 hex>"
        )
    return arn


def same_multi_region_key(a: KeyArn, b: KeyArn) -> bool:
    """Whether `a` and `b` are replicas of one Multi-Region key (ciphertext is interchangeable)."""
    return (
        a.is_multi_region
        and b.is_multi_region
        and a.partition == b.partition
        and a.account == b.account
        and a.resource == b.resource
    )


def mrk_groups(arns: Mapping[str, KeyArn], order: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """For each region of `order`, the regions (in `order`) whose key is the same
    Multi-Region key; a region with an ordinary key is alone in its group."""
    return {
        region: tuple(
            r for r in order if r == region or same_multi_region_key(arns[region], arns[r])
        )
        for region in order
    }


def is_region_name(text: str) -> bool:
    """Whether `text` has the shape of an AWS region name (safe to print)."""
    return REGION_NAME.fullmatch(text) is not None


def _shorten(text: object) -> str:
    value = str(text)
    return value if len(value) <= 200 else value[:200] + "…"
