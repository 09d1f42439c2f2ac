"""Discovery: installing the distribution is enough for asherah-core and its CLI to find it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from asherah_example_kms import KeyringKms, plugin

from asherah_core import PluginHost, available_kms

HEX = "11" * 32


def test_installing_the_distribution_registers_the_kms() -> None:
    assert "example-keyring" in available_kms()


def test_the_host_names_the_plugin_and_its_distribution() -> None:
    (info,) = [p for p in PluginHost().plugins() if p.name == "example-keyring"]
    assert info.distribution == "asherah-example-kms"
    assert info.kms == ("example-keyring",)


def test_the_hook_alone_without_entry_points() -> None:
    """A host that loads only the built-in plugin and this module, as a unit test would."""
    host = PluginHost(autoload=False, plugins=[("example-keyring", plugin)])
    assert host.available() == ["example-keyring", "static"]
    kms = host.load_kms("example-keyring", {"current": "a", "keys": {"a": HEX}})
    assert isinstance(kms, KeyringKms)


def asherah_kms(*args: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run the asherah-kms CLI of this environment."""
    return subprocess.run(
        [sys.executable, "-m", "asherah_core.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_the_cli_lists_and_uses_the_plugin(tmp_path: Path) -> None:
    listed = asherah_kms("plugins", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["example-keyring"]["distribution"] == "asherah-example-kms"

    (tmp_path / "plugins.toml").write_text(
        f'[kms]\nplugin = "example-keyring"\n'
        f'[plugins.example-keyring]\ncurrent = "a"\nkeys = {{ a = "{HEX}" }}\n',
        encoding="utf-8",
    )
    doctor = asherah_kms("doctor", cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stderr
    wrapped = asherah_kms("encrypt-key", cwd=tmp_path, stdin=b"k" * 32)
    assert wrapped.returncode == 0, wrapped.stderr
    inspected = asherah_kms("inspect", "--json", cwd=tmp_path, stdin=wrapped.stdout)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout) == {
        "kms": "example-keyring",
        "summary": {"format": "example keyring", "key_id": "a", "sealed_bytes": 60},
    }
