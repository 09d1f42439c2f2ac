"""Fixtures of the unit tests: a fake Vault with clusters ``a``, ``b`` and ``c``, a hand-moved
clock, and a factory of KMS objects on them (each closed after the test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from asherah_core import PluginConfig
from asherah_vault_transit import VaultTransitKms, settings_from_config

from .fakes import FakeClock, FakeVault

MakeKms = Callable[..., VaultTransitKms]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def vault(clock: FakeClock) -> FakeVault:
    return FakeVault(clock)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def make_kms(vault: FakeVault, clock: FakeClock, reader: InMemoryMetricReader) -> Iterator[MakeKms]:
    """``make_kms(addresses=["http://a:8200"], token="root", **settings)`` builds a KMS on the
    fake; settings are ``plugins.toml`` keys, the environment is empty."""
    made: list[VaultTransitKms] = []
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")

    def make(*, environ: dict[str, str] | None = None, **values: Any) -> VaultTransitKms:
        values.setdefault("transit_key", "k")
        if "address" not in values:
            values.setdefault("addresses", ["http://a:8200"])
        if "auth_method" not in values:
            values.setdefault("token", "root")
        values.setdefault("retry_base_delay", 0.01)
        config = PluginConfig(values, path="plugins.vault")
        settings = settings_from_config(config, environ or {})
        kms = VaultTransitKms(
            settings,
            transport=vault.transport(),
            meter=meter,
            clock=clock,
            sleep=clock.sleep,
            read_text=lambda path: f"jwt-from-{path}",
        )
        made.append(kms)
        return kms

    yield make
    for kms in made:
        kms.close()
