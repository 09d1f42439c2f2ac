"""Fakes shared by the asherah-core tests: a recording KMS, throwaway plugin distributions, and
the framework's fake clock, counting KMS and counting metastore."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from asherah_core import (
    KeyManagementService,
    PluginHost,
    ProbeResult,
    SessionFactory,
    StaticKms,
    _b64,
)
from asherah_core.metastore import EnvelopeKeyRecord, InMemoryMetastore, Metastore, StoredKey

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


# Fakes of the framework tests: a clock, a counting KMS, a counting and failing metastore -----

START = 1_796_221_020.0
"""A Unix time on a whole minute (2026-12-02), where every fake clock starts."""


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingKms(StaticKms):
    """The static KMS, counting its calls and recording the thread of each."""

    def __init__(self) -> None:
        super().__init__(MASTER_KEY)
        self.encrypts = 0
        self.decrypts = 0
        self.threads: list[int] = []
        self.closed = 0

    def encrypt_key(self, key: bytes) -> bytes:
        self.encrypts += 1
        self.threads.append(threading.get_ident())
        return super().encrypt_key(key)

    def decrypt_key(self, encrypted: bytes) -> bytes:
        self.decrypts += 1
        self.threads.append(threading.get_ident())
        return super().decrypt_key(encrypted)

    def close(self) -> None:
        self.closed += 1

    @property
    def calls(self) -> int:
        return self.encrypts + self.decrypts


class CountingMetastore(Metastore):
    """Wraps a metastore (a fresh in-memory one by default): counts calls, records threads,
    and runs `before_store` / `after_store` hooks, which may raise to inject failures."""

    kind: ClassVar[str] = "memory"

    def __init__(self, inner: Metastore | None = None) -> None:
        self.inner = inner if inner is not None else InMemoryMetastore()
        self.calls: Counter[str] = Counter()
        self.stored: list[tuple[str, int]] = []
        self.threads: list[int] = []
        self.before_store: Callable[[str, int], None] | None = None
        self.after_store: Callable[[str, int, bool], None] | None = None
        self.closed = 0

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        self.calls["load"] += 1
        self.threads.append(threading.get_ident())
        return self.inner.load(key_id, created)

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        self.calls["load_latest"] += 1
        self.threads.append(threading.get_ident())
        return self.inner.load_latest(key_id)

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        self.calls["store"] += 1
        self.threads.append(threading.get_ident())
        if self.before_store is not None:
            self.before_store(key_id, created)
        stored = self.inner.store(key_id, created, record)
        if stored:
            self.stored.append((key_id, created))
        if self.after_store is not None:
            self.after_store(key_id, created, stored)
        return stored

    def keys(self, prefix: str = "") -> Iterator[StoredKey]:
        return self.inner.keys(prefix)

    def revoke(self, key_id: str, created: int) -> bool:
        return self.inner.revoke(key_id, created)

    def close(self) -> None:
        self.closed += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


FactoryMaker = Callable[..., SessionFactory]


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at `START`."""
    return FakeClock()


@pytest.fixture
def kms() -> CountingKms:
    """A counting static KMS."""
    return CountingKms()


@pytest.fixture
def metastore() -> CountingMetastore:
    """A counting wrapper over a fresh in-memory metastore."""
    return CountingMetastore()


@pytest.fixture
def make_factory(
    clock: FakeClock, kms: CountingKms, metastore: CountingMetastore
) -> Iterator[FactoryMaker]:
    """Make factories of service ``svc`` and product ``prod`` on the test's fake clock, KMS
    and metastore (each overridable); every factory is closed after the test."""
    made: list[SessionFactory] = []

    def make(**kwargs: Any) -> SessionFactory:
        kwargs.setdefault("kms", kms)
        kwargs.setdefault("metastore", metastore)
        kwargs.setdefault("clock", clock)
        service = kwargs.pop("service", "svc")
        product = kwargs.pop("product", "prod")
        factory = SessionFactory(service, product, **kwargs)
        made.append(factory)
        return factory

    yield make
    for factory in made:
        factory.close()


@pytest.fixture
def factory(make_factory: FactoryMaker) -> SessionFactory:
    """One factory on the shared fakes."""
    return make_factory()


ModulesImported = Callable[[str, tuple[str, ...]], list[str]]


@pytest.fixture
def modules_imported() -> ModulesImported:
    """Run a script in a new interpreter; return which of the named modules it imported (for
    the imports kept off the common paths: each costs resident memory)."""

    def run(script: str, modules: tuple[str, ...]) -> list[str]:
        check = f"\nimport sys\nprint(sorted(m for m in {modules!r} if m in sys.modules))\n"
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script) + check],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [name.strip(" '") for name in out.strip()[1:-1].split(",") if name.strip()]

    return run


Base64Way = Callable[[int], AbstractContextManager[None]]


@contextmanager
def _base64_way(left: int) -> Iterator[None]:
    _b64.left = left
    try:
        yield
    finally:
        _b64.left = 0


@pytest.fixture(scope="session")
def base64_way() -> Base64Way:
    """``with base64_way(left):`` the row fields' base64 as `_b64` picks it: 0, pybase64; more,
    librt for that many fields (as while threads contend); pybase64 again after the block.
    Session-scoped, so Hypothesis tests may use it (it holds no state)."""
    return _base64_way
