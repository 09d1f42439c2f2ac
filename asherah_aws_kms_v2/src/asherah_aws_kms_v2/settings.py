"""The plugin's settings: one validated, frozen model, built from the builder or plugins.toml.

Error messages name each setting by its ``plugins.toml`` path (``regions.us-west-2.arn``),
so the same message is right for both fronts; the plugins.toml reader prefixes the table path.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from asherah_core import ConfigError, PluginConfig

from .arn import KeyArn, parse_arn

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_REGION_COOLDOWN",
    "DEFAULT_RETRY_BASE_DELAY_MS",
    "DEFAULT_TIMEOUT",
    "AwsKmsSettings",
    "RegionSettings",
    "seconds",
    "settings_from_config",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_BASE_DELAY_MS = 100.0
DEFAULT_REGION_COOLDOWN = 30.0
DEFAULT_MAX_CONCURRENCY = 64
_MAX_REGIONS = 32


@dataclass(frozen=True)
class RegionSettings:
    """One configured region: its key ARN and, optionally, its endpoint URL."""

    name: str
    arn: KeyArn
    endpoint: str | None = None


@dataclass(frozen=True)
class AwsKmsSettings:
    """Every option of the AWS KMS plugin, validated. Regions are in canonical order:
    the preferred region first, then the others sorted by name."""

    regions: tuple[RegionSettings, ...]
    timeout: float = DEFAULT_TIMEOUT
    operation_timeout: float = 0.0  # 0: timeout x (number of regions + 1)
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_base_delay_ms: float = DEFAULT_RETRY_BASE_DELAY_MS
    min_regions: int = 1
    mrk_awareness: bool = True
    local_data_key: bool = False
    region_cooldown: float = DEFAULT_REGION_COOLDOWN
    hedge_after: float = 0.0  # 0: no hedging
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    profile: str | None = field(default=None)

    @property
    def preferred_region(self) -> str:
        """The region tried first."""
        return self.regions[0].name

    @property
    def deadline(self) -> float:
        """Seconds one encrypt_key or decrypt_key may take in all."""
        if self.operation_timeout > 0:
            return self.operation_timeout
        return self.timeout * (len(self.regions) + 1)

    @classmethod
    def create(
        cls,
        arns: Mapping[str, str],
        *,
        preferred_region: str | None = None,
        endpoints: Mapping[str, str] | None = None,
        min_regions: int | str = 1,
        **options: Any,
    ) -> AwsKmsSettings:
        """Validate raw values and return the settings; `ConfigError` names what is wrong."""
        endpoints = dict(endpoints or {})
        if not isinstance(arns, Mapping) or not arns:
            raise ConfigError("regions: at least one region with a key ARN is required")
        if len(arns) > _MAX_REGIONS:
            raise ConfigError(f"regions: {len(arns)} regions given, at most {_MAX_REGIONS}")
        regions: dict[str, RegionSettings] = {}
        for region, text in arns.items():
            regions[region] = _region(region, text, endpoints.pop(region, None))
        if endpoints:
            extra = ", ".join(sorted(endpoints))
            raise ConfigError(f"endpoint given for region(s) with no key ARN: {extra}")
        if preferred_region is None:
            if len(regions) > 1:
                raise ConfigError(
                    "preferred_region: required when more than one region is configured "
                    f"(choose one of {', '.join(sorted(regions))})"
                )
            preferred_region = next(iter(regions))
        if preferred_region not in regions:
            raise ConfigError(
                f"preferred_region: {preferred_region!r} is not a configured region "
                f"({', '.join(sorted(regions))})"
            )
        ordered = [regions[preferred_region]] + [
            regions[r] for r in sorted(regions) if r != preferred_region
        ]
        settings = cls(regions=tuple(ordered), min_regions=_min_regions(min_regions, len(ordered)))
        return settings.replace(**options)

    def replace(self, **options: Any) -> AwsKmsSettings:
        """Return a copy with `options` changed, each validated."""
        unknown = set(options) - set(_VALIDATORS)
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values = {
            name: _VALIDATORS[name](_TOML_NAMES.get(name, name), value)
            for name, value in options.items()
        }
        return dataclasses.replace(self, **values)


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Validate a duration given as seconds (int or float) or a `timedelta`."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}: expected seconds as a number, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number < 0 or (number == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ConfigError(f"{name}: must be a finite number of seconds, {bound}; got {value!r}")
    return number


def _count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {type(value).__name__}")
    return value


def _profile(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected a profile name")
    return value


_TOML_NAMES = {"max_retries": "retry.max_retries", "retry_base_delay_ms": "retry.base_delay_ms"}
_VALIDATORS: dict[str, Any] = {
    "timeout": seconds,
    "operation_timeout": lambda n, v: seconds(n, v, allow_zero=True),
    "max_retries": lambda n, v: _count(n, v, minimum=0),
    "retry_base_delay_ms": lambda n, v: seconds(n, v, allow_zero=True),
    "mrk_awareness": _flag,
    "local_data_key": _flag,
    "region_cooldown": lambda n, v: seconds(n, v, allow_zero=True),
    "hedge_after": lambda n, v: seconds(n, v, allow_zero=True),
    "max_concurrency": lambda n, v: _count(n, v, minimum=1),
    "profile": _profile,
}


def _region(region: object, arn_text: object, endpoint: object) -> RegionSettings:
    if not isinstance(region, str) or not region:
        raise ConfigError(f"regions: region names must be non-empty strings, got {region!r}")
    where = f"regions.{region}"
    if not isinstance(arn_text, str) or not arn_text.strip():
        raise ConfigError(f"{where}.arn: a key ARN is required")
    try:
        arn = parse_arn(arn_text)
    except ConfigError as e:
        raise ConfigError(f"{where}.arn: {e}") from None
    if arn.region != region:
        raise ConfigError(
            f"{where}.arn: the ARN is for region {arn.region}, not {region}; "
            "each region needs the ARN of a key in that region"
        )
    if endpoint is not None:
        endpoint = _endpoint(f"{where}.endpoint", endpoint)
    return RegionSettings(region, arn, endpoint)


def _endpoint(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a URL, got {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: expected an http:// or https:// URL, got {value!r}")
    if parts.username or parts.password:
        raise ConfigError(f"{name}: credentials do not belong in the endpoint URL")
    return value


def _min_regions(value: object, count: int) -> int:
    if value == "all":
        return count
    number = _count("min_regions", value, minimum=1)
    if number > count:
        raise ConfigError(
            f"min_regions: {number} is more than the {count} configured region(s); "
            'use "all" to require every region'
        )
    return number


# plugins.toml ---------------------------------------------------------------------------

_TOP_KEYS = {
    "regions",
    "preferred_region",
    "timeout",
    "operation_timeout",
    "retry",
    "min_regions",
    "mrk_awareness",
    "local_data_key",
    "region_cooldown",
    "hedge_after",
    "max_concurrency",
    "profile",
}


def settings_from_config(config: PluginConfig) -> AwsKmsSettings:
    """Read ``[plugins.aws-v2]`` into settings; every error names the exact key path."""
    config.check_keys(_TOP_KEYS)
    regions = config.get_table("regions", required=True)
    arns: dict[str, str] = {}
    endpoints: dict[str, str] = {}
    for region in regions:
        table = regions.get_table(region)
        table.check_keys({"arn", "endpoint"})
        arns[region] = table.get_str("arn")
        if "endpoint" in table:
            endpoints[region] = table.get_str("endpoint")
    retry = config.get_table("retry")
    retry.check_keys({"max_retries", "base_delay_ms"})
    options: dict[str, Any] = {}
    for key in ("timeout", "operation_timeout", "region_cooldown", "hedge_after"):
        if key in config:
            options[key] = config.get_float(key)
    for key in ("mrk_awareness", "local_data_key"):
        if key in config:
            options[key] = config.get_bool(key)
    if "max_concurrency" in config:
        options["max_concurrency"] = config.get_int("max_concurrency")
    if "profile" in config:
        options["profile"] = config.get_str("profile")
    if "max_retries" in retry:
        options["max_retries"] = retry.get_int("max_retries")
    if "base_delay_ms" in retry:
        options["retry_base_delay_ms"] = retry.get_float("base_delay_ms")
    min_regions: int | str = 1
    if "min_regions" in config:
        raw = config["min_regions"]
        min_regions = raw if raw == "all" else config.get_int("min_regions")
    preferred_region = config.get_str("preferred_region", None)
    try:
        return AwsKmsSettings.create(
            arns,
            preferred_region=preferred_region,
            endpoints=endpoints,
            min_regions=min_regions,
            **options,
        )
    except ConfigError as e:
        prefix = f"{config.path}." if config.path else ""
        raise ConfigError(f"{config.source}: {prefix}{e}") from None
