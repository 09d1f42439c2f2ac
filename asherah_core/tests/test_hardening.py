"""Input that used to escape as a bare exception or reach the terminal raw: each case below
now fails with the library's own error (or is shown escaped)."""

from __future__ import annotations

import array
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from asherah_core import Aes256Gcm, ConfigError, CryptoError, PluginConfig, PluginHost, hookimpl
from asherah_core.cli import main
from asherah_core.config import load_config_file

# Aes256Gcm ------------------------------------------------------------------------------


def words(count: int) -> memoryview:
    """A memoryview of 4-byte items: len() counts items, nbytes counts bytes."""
    return memoryview(array.array("I", range(count)))


def test_a_non_byte_memoryview_key_is_measured_in_bytes() -> None:
    key = words(32)  # 32 items, 128 bytes
    assert (len(key), key.nbytes) == (32, 128)

    for operation in (Aes256Gcm().encrypt, Aes256Gcm().decrypt):
        with pytest.raises(CryptoError, match="must be 32 bytes, got 128"):
            operation(b"x" * 40, key)  # type: ignore[arg-type]


def test_a_non_byte_memoryview_of_32_bytes_is_a_good_key() -> None:
    key = words(8)  # 8 items of 4 bytes
    sealed = Aes256Gcm().encrypt(b"secret", key)  # type: ignore[arg-type]

    assert Aes256Gcm().decrypt(sealed, key.tobytes()) == b"secret"


# plugins.toml ---------------------------------------------------------------------------


def test_a_deeply_nested_file_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "plugins.toml"
    file.write_text('[kms]\nplugin = "x"\n[plugins.x]\nv = ' + "[" * 5000 + "]" * 5000 + "\n")

    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config_file(file)


@pytest.mark.parametrize("a", [None, "from-a"])
def test_a_reference_nested_in_a_default_is_refused(a: str | None) -> None:
    environ = {"B": "from-b"} | ({"A": a} if a else {})

    with pytest.raises(ConfigError, match=r"plugins\.x\.v: a default may not hold another"):
        PluginConfig({"v": "${A:-${B}}"}, path="plugins.x", source="plugins.toml", environ=environ)


def test_a_plain_default_still_works() -> None:
    config = PluginConfig({"v": "${A:-plain}"}, environ={})

    assert config.get_str("v") == "plain"


# asherah-kms ----------------------------------------------------------------------------

HOSTILE_REGION = "us-west-2\x1b[2J\nforged: line"
HOSTILE_ARN = "arn:\u202eevil\ud800"


def hostile_describe(encrypted: bytes) -> Mapping[str, Any] | None:
    return {"kmsKeks": [{"region": HOSTILE_REGION, "arn": HOSTILE_ARN}]}


@pytest.fixture
def hostile_host(
    isolated_env: None,
    default_host: Callable[[PluginHost], PluginHost],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @hookimpl
    def asherah_register_kms(register: Any) -> None:
        register("hostile", lambda config, crypto: None, describe=hostile_describe)

    plugin = types.SimpleNamespace(asherah_register_kms=asherah_register_kms)
    default_host(PluginHost(autoload=False, plugins=[("hostile", plugin)]))
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("hostile_host")
def test_inspect_escapes_strings_from_the_envelope(capfd: pytest.CaptureFixture[str]) -> None:
    Path("key.bin").write_bytes(b"anything")

    code = main(["inspect", "key.bin"])
    out, err = capfd.readouterr()

    assert (code, err) == (0, "")
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert not any(line.startswith("forged") for line in out.splitlines())
    assert r"us-west-2\u001b[2J\nforged: line" in out
    assert r"\ud800" in out


@pytest.mark.parametrize("argv", [["encrypt-key"], ["decrypt-key"], ["inspect"]])
def test_a_closed_stdin_is_a_usage_error(
    argv: list[str],
    hostile_host: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    master_key = "thisIsAStaticMasterKeyForTesting"
    Path("plugins.toml").write_text(
        f'[kms]\nplugin = "static"\n[plugins.static]\nmaster_key = "{master_key}"\n'
    )
    monkeypatch.setattr(sys, "stdin", None)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)

    code = main(argv)
    err = capsys.readouterr().err

    assert code == 2
    assert "standard input is closed" in err
    assert "bug" not in err
