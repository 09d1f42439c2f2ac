"""The plugin's settings: one validated, frozen model, built from the builder or plugins.toml.

Error messages name each setting by its ``plugins.toml`` path (``regions.us-west-2.arn``),
so the same message is right for both fronts; the plugins.toml reader prefixes the table path.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from asherah_core import ConfigError, PluginConfig

from .arn import KeyArn, parse_arn
from .retry import MAX_RETRIES

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_REGION_COOLDOWN",
    "DEFAULT_RETRY_BASE_DELAY_MS",
    "DEFAULT_TIMEOUT",
    "MAX_SECONDS",
    "OPTIONS",
    "OPTION_NAMES",
    "AwsKmsSettings",
    "RegionSettings",
    "check_endpoint",
    "check_min_regions",
    "endpoint_problem",
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
        unknown = set(options) - set(_BY_NAME)
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values = {
            name: _BY_NAME[name].validate(_BY_NAME[name].path, value)
            for name, value in options.items()
        }
        settings = dataclasses.replace(self, **values)
        if settings.max_retries and not settings.retry_base_delay_ms:
            raise ConfigError(
                "retry.base_delay_ms: must be more than zero when retries are on "
                "(retries without a backoff add to the throttling they retry)"
            )
        return settings


MAX_SECONDS = 10_000_000.0  # about 115 days; longer waits overflow the timeouts below us


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
    if number > MAX_SECONDS:
        raise ConfigError(f"{name}: must be at most {MAX_SECONDS:,.0f} seconds; got {value!r}")
    return number


def _duration(name: str, value: object) -> float:
    return seconds(name, value, allow_zero=True)


def _count(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: must be at most {maximum}, got {value}")
    return value


def _retries(name: str, value: object) -> int:
    return _count(name, value, minimum=0, maximum=MAX_RETRIES)


def _concurrency(name: str, value: object) -> int:
    return _count(name, value, minimum=1)


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


@dataclass(frozen=True)
class _Option:
    """An optional setting: its field, its plugins.toml path, its check, its TOML reader."""

    name: str
    path: str
    validate: Callable[[str, object], Any]
    read: Callable[[PluginConfig, str], Any]


# Every optional setting, declared once; the fields of AwsKmsSettings hold the defaults.
OPTIONS: tuple[_Option, ...] = (
    _Option("timeout", "timeout", seconds, PluginConfig.get_float),
    _Option("operation_timeout", "operation_timeout", _duration, PluginConfig.get_float),
    _Option("max_retries", "retry.max_retries", _retries, PluginConfig.get_int),
    _Option("retry_base_delay_ms", "retry.base_delay_ms", _duration, PluginConfig.get_float),
    _Option("mrk_awareness", "mrk_awareness", _flag, PluginConfig.get_bool),
    _Option("local_data_key", "local_data_key", _flag, PluginConfig.get_bool),
    _Option("region_cooldown", "region_cooldown", _duration, PluginConfig.get_float),
    _Option("hedge_after", "hedge_after", _duration, PluginConfig.get_float),
    _Option("max_concurrency", "max_concurrency", _concurrency, PluginConfig.get_int),
    _Option("profile", "profile", _profile, PluginConfig.get_str),
)
OPTION_NAMES = tuple(option.name for option in OPTIONS)
_BY_NAME = {option.name: option for option in OPTIONS}


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
    """An http(s) URL with a host botocore accepts and no credentials (which are never echoed)."""
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a URL, got {type(value).__name__}")
    problem = endpoint_problem(value)
    if problem:
        raise ConfigError(f"{name}: {problem}")
    return value


def endpoint_problem(url: str) -> str | None:
    """What is wrong with an endpoint URL, or None when it is an http(s) URL with a host
    botocore accepts and no credentials; a URL holding an ``@`` is never echoed."""
    shown = "a URL with an @ (not shown)" if "@" in url else repr(_shorten(url))
    try:
        parts = urlsplit(url)
        credentials = parts.username is not None or parts.password is not None
        host, _ = parts.hostname, parts.port
    except ValueError:  # an unclosed [ of an IPv6 host, a port out of range
        return f"expected an http:// or https:// URL, got {shown}"
    if credentials:
        return "credentials do not belong in the endpoint URL"
    if parts.scheme not in ("http", "https") or not host:
        return f"expected an http:// or https:// URL, got {shown}"
    if not (is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url)):
        return (
            f"botocore refuses the host of {shown}: a host name is letters, digits, "
            "hyphens and dots (no underscores), or an IP address"
        )
    return None


def _shorten(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "…"


def check_endpoint(region: str, url: object) -> str:
    """Validate `region`'s endpoint URL; the error names ``regions.<region>.endpoint``."""
    return _endpoint(f"regions.{region}.endpoint", url)


def check_min_regions(value: object, count: int) -> int:
    """Validate min_regions (a count up to `count`, or "all") against `count` regions."""
    return _min_regions(value, count)


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

_REGION_KEYS = {"arn", "endpoint"}


def _tables() -> dict[str, set[str]]:
    """The plugin's table (``""``) and sub-tables, each with the keys it may hold."""
    tables: dict[str, set[str]] = {"": {"regions", "preferred_region", "min_regions"}}
    for option in OPTIONS:
        table, _, key = option.path.rpartition(".")
        tables.setdefault(table, set()).add(key)
        if table:
            tables[""].add(table)
    return tables


_TABLES = _tables()


def settings_from_config(config: PluginConfig) -> AwsKmsSettings:
    """Read ``[plugins.aws-v2]`` into settings; every error names the exact key path."""
    config.check_keys(_TABLES[""])
    regions = config.get_table("regions", required=True)
    arns: dict[str, str] = {}
    endpoints: dict[str, str] = {}
    for region in regions:
        table = regions.get_table(region)
        table.check_keys(_REGION_KEYS)
        arns[region] = table.get_str("arn")
        if "endpoint" in table:
            endpoints[region] = table.get_str("endpoint")
    tables = {"": config}
    for name in _TABLES:
        if name:
            tables[name] = config.get_table(name)
            tables[name].check_keys(_TABLES[name])
    options: dict[str, Any] = {}
    for option in OPTIONS:
        where, _, key = option.path.rpartition(".")
        if key in tables[where]:
            options[option.name] = option.read(tables[where], key)
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
