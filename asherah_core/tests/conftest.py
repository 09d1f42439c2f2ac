"""Fakes shared by the asherah-core tests: a recording KMS and throwaway plugin distributions."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from asherah_core import KeyManagementService, PluginHost, ProbeResult

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
assert len(MASTER_KEY) == 32


class RecordingKms(KeyManagementService):
    """A reversible toy KMS (XOR with 0x5A plus a marker) that records the thread of each call."""

    MARKER = b"toy:"

    def __init__(self, probes: list[ProbeResult] | None = None) -> None:
        self.threads: list[int] = []
        self.closed = 0
        self._probes = probes

    def encrypt_key(self, key: bytes) -> bytes:
        self.threads.append(threading.get_ident())
        return self.MARKER + bytes(b ^ 0x5A for b in key)

    def decrypt_key(self, encrypted: bytes) -> bytes:
        self.threads.append(threading.get_ident())
        return bytes(b ^ 0x5A for b in encrypted.removeprefix(self.MARKER))

    def diagnose(self) -> list[ProbeResult]:
        return super().diagnose() if self._probes is None else list(self._probes)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def master_key() -> bytes:
    """A 32-byte static master key, the form Asherah's examples use."""
    return MASTER_KEY


@pytest.fixture
def recording_kms_type() -> type[RecordingKms]:
    """The `RecordingKms` class, to instantiate or subclass in a test."""
    return RecordingKms


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear the variables that steer plugin loading and the CLI's default configuration."""
    for var in ("ASHERAH_DISABLE_PLUGIN_AUTOLOAD", "ASHERAH_BLOCKED_PLUGINS", "ASHERAH_CONFIG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def default_host(monkeypatch: pytest.MonkeyPatch) -> Callable[[PluginHost], PluginHost]:
    """Install a given host as `PluginHost.default()`; the previous one is restored after."""

    def install(host: PluginHost) -> PluginHost:
        monkeypatch.setattr(PluginHost, "_default", host)
        return host

    return install


PluginMaker = Callable[..., importlib.metadata.EntryPoint]


@pytest.fixture
def make_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginMaker:
    """Write a plugin module and a dist-info for it; return its real entry point.

    The entry point comes from `importlib.metadata.PathDistribution`, so ``ep.dist`` names the
    distribution exactly as for an installed plugin. Each module name is unique to the test.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    counter = iter(range(1000))

    def make(
        source: str,
        *,
        name: str = "toy",
        distribution: str = "toy-plugin",
        version: str = "1.2.3",
    ) -> importlib.metadata.EntryPoint:
        module = f"asherah_test_plugin_{tmp_path.name}_{next(counter)}".replace("-", "_")
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        monkeypatch.delitem(sys.modules, module, raising=False)
        info = tmp_path / f"{distribution.replace('-', '_')}-{version}-{module}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(f"[asherah]\n{name} = {module}\n", encoding="utf-8")
        dist = importlib.metadata.PathDistribution(info)
        (ep,) = dist.entry_points.select(group="asherah")
        return ep

    return make


TOY_PLUGIN = """
    from asherah_core import KeyManagementService, hookimpl

    class ToyKms(KeyManagementService):
        def __init__(self, config):
            self.config = dict(config)

        def encrypt_key(self, key):
            return b"toy:" + key[::-1]

        def decrypt_key(self, encrypted):
            return encrypted.removeprefix(b"toy:")[::-1]

    def describe(encrypted):
        if not encrypted.startswith(b"toy:"):
            return None
        return {"format": "toy", "bytes": len(encrypted)}

    @hookimpl
    def asherah_register_kms(register):
        register("toy", lambda config, crypto: ToyKms(config), describe=describe)
"""


@pytest.fixture
def toy_plugin_source() -> str:
    """Source of a working third-party plugin that registers KMS ``toy`` with a describer."""
    return TOY_PLUGIN
