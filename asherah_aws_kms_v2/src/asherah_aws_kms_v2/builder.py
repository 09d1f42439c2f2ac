"""The fluent front of the plugin: `AwsKmsBuilder`, `new_aws_kms`, and the plugins.toml factory."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal, Self

import boto3
from botocore.exceptions import ProfileNotFound
from opentelemetry.metrics import Meter

from asherah_core import Aead, ConfigError, PluginConfig

from .clients import KmsClientFactory, client_config, client_maker, default_client_factory
from .kms import AwsKms
from .settings import (
    OPTION_NAMES,
    AwsKmsSettings,
    check_endpoint,
    check_min_regions,
    seconds,
    settings_from_config,
)

__all__ = ["AwsKmsBuilder", "kms_from_config", "new_aws_kms"]


class AwsKmsBuilder:
    """Configure and build an `AwsKms`.

    ``AwsKmsBuilder(Aes256Gcm(), {"us-west-2": arn, ...}).with_preferred_region("us-west-2")
    .build()``. Each ``with_`` method validates its value at once and returns the builder;
    `build` checks the whole and makes one KMS client per region.
    """

    def __init__(self, crypto: Aead, arn_map: Mapping[str, str]) -> None:
        if not isinstance(crypto, Aead):
            raise ConfigError(f"crypto must be an Aead, not {type(crypto).__name__}")
        if not isinstance(arn_map, Mapping):
            raise ConfigError(
                f"arn_map must be a mapping of region to ARN, not {type(arn_map).__name__}"
            )
        self._crypto = crypto
        self._arns = dict(arn_map)
        self._preferred: str | None = None
        self._endpoints: dict[str, str] = {}
        self._min_regions: int | str = 1
        self._options: dict[str, Any] = {}
        self._session: boto3.Session | None = None
        self._factory: KmsClientFactory = default_client_factory
        self._meter: Meter | None = None

    @classmethod
    def from_settings(cls, crypto: Aead, settings: AwsKmsSettings) -> Self:
        """Start from validated settings (for example read from plugins.toml)."""
        builder = cls(crypto, {r.name: str(r.arn) for r in settings.regions})
        builder._preferred = settings.preferred_region
        builder._endpoints = {r.name: r.endpoint for r in settings.regions if r.endpoint}
        builder._min_regions = settings.min_regions
        builder._options = {name: getattr(settings, name) for name in OPTION_NAMES}
        return builder

    def with_preferred_region(self, region: str) -> Self:
        """Try `region` first for GenerateDataKey and Decrypt."""
        if not isinstance(region, str) or not region:
            raise ConfigError("preferred_region: expected a region name")
        self._preferred = region
        return self

    def with_timeout(self, timeout: float | timedelta) -> Self:
        """Bound each KMS call (connect and read) to `timeout` seconds (default 5)."""
        return self._set("timeout", seconds("timeout", timeout))

    def with_operation_timeout(self, timeout: float | timedelta) -> Self:
        """Bound a whole encrypt_key or decrypt_key (default: timeout x (regions + 1))."""
        return self._set("operation_timeout", seconds("operation_timeout", timeout))

    def with_retry_config(self, max_retries: int, base_delay_ms: float) -> Self:
        """Retry throttling, 5xx, connection errors and timeouts up to `max_retries` times,
        with full-jitter exponential backoff from `base_delay_ms` (defaults 3 and 100)."""
        self._options["max_retries"] = max_retries
        self._options["retry_base_delay_ms"] = base_delay_ms
        return self._validate_now()

    def with_endpoint(self, region: str, endpoint_url: str) -> Self:
        """Send `region`'s calls to `endpoint_url` (LocalStack, a VPC endpoint, FIPS)."""
        if not isinstance(region, str) or not region:
            raise ConfigError("with_endpoint: expected a region name")
        self._endpoints[region] = check_endpoint(region, endpoint_url)
        return self

    def with_session(self, session: boto3.Session) -> Self:
        """Make the clients from `session` (credentials, profile, botocore event handlers)."""
        if not isinstance(session, boto3.Session):
            raise ConfigError(
                f"with_session: expected a boto3.Session, not {type(session).__name__}"
            )
        self._session = session
        return self

    def with_kms_factory(self, factory: KmsClientFactory) -> Self:
        """Make each region's client with ``factory(region, *, session, endpoint_url, config)``."""
        if not callable(factory):
            raise ConfigError("with_kms_factory: the factory must be callable")
        self._factory = factory
        return self

    def with_min_regions(self, count: int | Literal["all"]) -> Self:
        """Fail encrypt_key unless at least `count` regions hold a copy (default 1; "all")."""
        check_min_regions(count, len(self._arns))
        self._min_regions = count
        return self

    def with_mrk_awareness(self, enabled: bool = True) -> Self:
        """Reuse one ciphertext across replicas of a Multi-Region key (default on)."""
        return self._set("mrk_awareness", enabled)

    def with_local_data_key(self, enabled: bool = True) -> Self:
        """Make the data key locally (OS CSPRNG) and Encrypt it in every region at once."""
        return self._set("local_data_key", enabled)

    def with_region_cooldown(self, cooldown: float | timedelta) -> Self:
        """Keep a region that just failed at the back for `cooldown` seconds (0 turns it off)."""
        return self._set("region_cooldown", cooldown)

    def with_hedge_after(self, delay: float | timedelta | None) -> Self:
        """Also ask the next region when a decrypt has not answered after `delay` seconds."""
        return self._set("hedge_after", 0.0 if delay is None else delay)

    def with_max_concurrency(self, count: int) -> Self:
        """Size of the instance's worker pool and of each client's connection pool (64)."""
        return self._set("max_concurrency", count)

    def with_meter(self, meter: Meter) -> Self:
        """Record metrics with `meter` instead of the global provider's."""
        self._meter = meter
        return self

    def build(self) -> AwsKms:
        """Validate everything, make one client per region, and return the KMS."""
        settings = self._settings()
        if settings.profile is not None and self._session is None:
            try:
                self._session = boto3.Session(profile_name=settings.profile)
            except ProfileNotFound as e:
                raise ConfigError(
                    f"profile: no AWS profile named {settings.profile!r} in the AWS config files"
                ) from e
        config = client_config(settings.timeout, settings.max_concurrency)
        make = client_maker(
            {r.name: r.endpoint for r in settings.regions},
            session=self._session,
            factory=self._factory,
            config=config,
        )
        clients = {r.name: make(r.name) for r in settings.regions}
        return AwsKms(settings, self._crypto, clients, client_maker=make, meter=self._meter)

    def _settings(self) -> AwsKmsSettings:
        return AwsKmsSettings.create(
            self._arns,
            preferred_region=self._preferred,
            endpoints=self._endpoints,
            min_regions=self._min_regions,
            **self._options,
        )

    def _set(self, name: str, value: object) -> Self:
        self._options[name] = value
        return self._validate_now()

    def _validate_now(self) -> Self:
        AwsKmsSettings(regions=()).replace(**self._options)
        return self

    def __repr__(self) -> str:
        return f"AwsKmsBuilder(regions={sorted(self._arns)!r}, preferred={self._preferred!r})"


def new_aws_kms(crypto: Aead, preferred_region: str, arn_map: Mapping[str, str]) -> AwsKms:
    """Build an `AwsKms` with default settings, like Asherah's ``NewAWS``."""
    return AwsKmsBuilder(crypto, arn_map).with_preferred_region(preferred_region).build()


def kms_from_config(config: PluginConfig, crypto: Aead) -> AwsKms:
    """The plugin's factory: ``[plugins.aws-v2]`` of plugins.toml to a built `AwsKms`."""
    builder = AwsKmsBuilder.from_settings(crypto, settings_from_config(config))
    try:
        return builder.build()
    except ConfigError as e:  # for example an unknown profile: name the key in plugins.toml
        prefix = f"{config.path}." if config.path else ""
        raise ConfigError(f"{config.source}: {prefix}{e}") from e.__cause__
