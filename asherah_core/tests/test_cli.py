"""The asherah-kms command, driven through main() with a plugin host of fakes."""

from __future__ import annotations

import base64
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import asherah_core
from asherah_core import KmsError, PluginHost, ProbeResult, StaticKms, hookimpl
from asherah_core.cli import main

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
STATIC_TOML = f'[kms]\nplugin = "static"\n[plugins.static]\nmaster_key = "{MASTER_KEY.decode()}"\n'
KEY = bytes(range(100, 132))
SICK_PROBES = [
    ProbeResult("us-west-2", True, 0.0123, "generate data key ok"),
    ProbeResult("us-east-1", False, 1.5, "timed out after 1.5 s"),
]


def toy_describe(encrypted: bytes) -> Mapping[str, Any] | None:
    if not encrypted.startswith(b"toy:"):
        return None
    if encrypted == b"toy:broken":
        raise KmsError("toy envelope: kmsKeks is null")
    return {
        "format": "toy",
        "bytes": len(encrypted),
        "kmsKeks": [{"region": "us-west-2", "arn": "arn:aws:kms:us-west-2:1:key/k"}],
        "meta": {"version": 1},
        "empty": [],
        "none": {},
    }


class Fakes:
    """The KMS objects the fake plugins built, so a test can check they were closed."""

    def __init__(self, kms_type: type[Any]) -> None:
        self.kms_type = kms_type
        self.built: list[Any] = []

    def factory(self, probes: list[ProbeResult] | None = None) -> Callable[..., Any]:
        def build(config: Any, crypto: Any) -> Any:
            kms = self.kms_type(probes)
            self.built.append(kms)
            return kms

        return build


@pytest.fixture
def fakes(
    isolated_env: None,
    default_host: Callable[[PluginHost], PluginHost],
    recording_kms_type: type[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Fakes:
    """A default host with the built-in static KMS, ``toy`` (with a describer) and ``sick``.

    The current directory is an empty temporary one.
    """
    fakes = Fakes(recording_kms_type)

    @hookimpl
    def asherah_register_kms(register: Any) -> None:
        register("toy", fakes.factory(), describe=toy_describe)
        register("sick", fakes.factory(SICK_PROBES))
        register("silent", fakes.factory([]))

    def explode(config: Any, crypto: Any) -> Any:
        kms = fakes.kms_type()
        kms.diagnose = lambda: 1 / 0
        fakes.built.append(kms)
        return kms

    @hookimpl
    def asherah_register_kms_2(register: Any) -> None:
        register("explode", explode)

    plugin = types.SimpleNamespace(asherah_register_kms=asherah_register_kms)
    other = types.SimpleNamespace(asherah_register_kms=hookimpl(asherah_register_kms_2))
    default_host(PluginHost(autoload=False, plugins=[("fake", plugin), ("other", other)]))
    monkeypatch.chdir(tmp_path)
    return fakes


def use_config(text: str, path: str = "plugins.toml") -> Path:
    file = Path(path)
    file.write_text(text, encoding="utf-8")
    return file


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes, *, tty: bool = False) -> io.BytesIO:
    buffer = io.BytesIO(data)
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=buffer, isatty=lambda: tty))
    return buffer


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# Usage -----------------------------------------------------------------------------------


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert "usage: asherah-kms" in err


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "frobnicate")
    assert code == 2
    assert "invalid choice: 'frobnicate'" in err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("plugins", "doctor", "encrypt-key", "decrypt-key", "inspect"):
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"asherah-kms {asherah_core.__version__}")


# plugins ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("fakes")
def test_plugins_lists_distribution_version_and_kms(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins")
    assert code == 0
    lines = [line.split(None, 3) for line in out.splitlines()]
    assert lines[0] == ["PLUGIN", "DISTRIBUTION", "VERSION", "KMS"]
    assert ["fake", "<in-process>", "-", "toy, sick, silent"] in lines
    assert ["static", "asherah-core", asherah_core.__version__, "static"] in lines


@pytest.mark.usefixtures("fakes")
def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert plugins["static"] == {
        "name": "static",
        "distribution": "asherah-core",
        "version": asherah_core.__version__,
        "kms": ["static"],
    }
    assert plugins["other"]["kms"] == ["explode"]


def test_plugins_reports_a_plugin_error_with_exit_2(
    isolated_env: None,
    default_host: Callable[[PluginHost], PluginHost],
    make_plugin: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = make_plugin("1 / 0", name="broken", distribution="broken-kms", version="2.0")
    default_host(PluginHost(entry_points=[broken]))
    code, out, err = run(capsys, "plugins")
    assert code == 2
    assert out == ""
    assert err.startswith("asherah-kms: error: plugin 'broken' (distribution broken-kms 2.0)")
    assert "ZeroDivisionError" in err


# doctor ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("fakes")
def test_doctor_ok(capsys: pytest.CaptureFixture[str]) -> None:
    use_config(STATIC_TOML)
    code, out, err = run(capsys, "doctor")
    assert code == 0, err
    assert "KMS 'static' from plugins.toml" in out
    assert out.splitlines()[1].split() == ["TARGET", "STATUS", "MS", "DETAIL"]
    row = out.splitlines()[2].split(None, 3)
    assert row[:2] == ["round-trip", "OK"]
    assert float(row[2]) >= 0
    assert row[3] == "wrapped and unwrapped a random key"
    assert MASTER_KEY.decode() not in out + err


def test_doctor_failing_probe_exits_1_and_closes_the_kms(
    fakes: Fakes, capsys: pytest.CaptureFixture[str]
) -> None:
    use_config('[kms]\nplugin = "sick"\n')
    code, out, err = run(capsys, "doctor")
    assert code == 1
    rows = [line.split(None, 3) for line in out.splitlines()[2:]]
    assert rows == [
        ["us-west-2", "OK", "12.3", "generate data key ok"],
        ["us-east-1", "FAIL", "1500.0", "timed out after 1.5 s"],
    ]
    assert err == "asherah-kms: failed: us-east-1\n"
    assert [kms.closed for kms in fakes.built] == [1]


@pytest.mark.usefixtures("fakes")
def test_doctor_json(capsys: pytest.CaptureFixture[str]) -> None:
    use_config('[kms]\nplugin = "sick"\n')
    code, out, _ = run(capsys, "doctor", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["kms"] == "sick"
    assert report["ok"] is False
    assert report["probes"][1] == {
        "target": "us-east-1",
        "ok": False,
        "milliseconds": 1500.0,
        "detail": "timed out after 1.5 s",
    }


@pytest.mark.usefixtures("fakes")
def test_doctor_with_no_probes_fails(capsys: pytest.CaptureFixture[str]) -> None:
    use_config('[kms]\nplugin = "silent"\n')
    code, _, err = run(capsys, "doctor")
    assert code == 1
    assert "reported no probes" in err


def test_doctor_unexpected_exception_is_one_line_and_closes(
    fakes: Fakes, capsys: pytest.CaptureFixture[str]
) -> None:
    use_config('[kms]\nplugin = "explode"\n')
    code, _, err = run(capsys, "doctor")
    assert code == 1
    assert err.startswith("asherah-kms: error: unexpected ZeroDivisionError")
    assert len(err.splitlines()) == 1
    assert fakes.built[0].closed == 1


@pytest.mark.usefixtures("fakes")
@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (None, "asherah-kms: error: plugins.toml: configuration file not found"),
        ("[kms\n", "invalid TOML"),
        ('[kms]\nplugin = "nope"\n', "unknown KMS 'nope'; registered KMS: explode, sick, silent"),
        (
            '[kms]\nplugin = "static"\n[plugins.static]\nmaster_key = "short"\n',
            "plugins.static.master_key: the master key must be 32 bytes, got 5",
        ),
        (
            '[kms]\nplugin = "static"\n[plugins.static]\nmaster_key = "${ASHERAH_TEST_UNSET}"\n',
            "plugins.static.master_key: environment variable $ASHERAH_TEST_UNSET is not set",
        ),
    ],
)
def test_doctor_configuration_errors_exit_2(
    capsys: pytest.CaptureFixture[str], toml: str | None, expected: str
) -> None:
    if toml is not None:
        use_config(toml)
    code, out, err = run(capsys, "doctor")
    assert code == 2
    assert out == ""
    assert expected in err
    assert err.startswith("asherah-kms: error: ")
    assert len(err.splitlines()) == 1


@pytest.mark.usefixtures("fakes")
def test_config_option_and_environment_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(STATIC_TOML, "from-env.toml")
    use_config('[kms]\nplugin = "sick"\n', "explicit.toml")
    monkeypatch.setenv("ASHERAH_CONFIG", "from-env.toml")
    code, out, _ = run(capsys, "doctor")
    assert (code, out.splitlines()[0]) == (0, "KMS 'static' from from-env.toml")
    code, out, _ = run(capsys, "doctor", "-c", "explicit.toml")
    assert (code, out.splitlines()[0]) == (1, "KMS 'sick' from explicit.toml")
    code, out, _ = run(capsys, "doctor", "--config", "explicit.toml")
    assert code == 1


# encrypt-key / decrypt-key ---------------------------------------------------------------


@pytest.mark.usefixtures("fakes")
def test_encrypt_and_decrypt_raw(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(STATIC_TOML)
    feed_stdin(monkeypatch, KEY)
    assert main(["encrypt-key"]) == 0
    encrypted, err = capsysbinary.readouterr()
    assert err == b""
    assert len(encrypted) == 60
    assert AESGCM(MASTER_KEY).decrypt(encrypted[-12:], encrypted[:-12], None) == KEY

    feed_stdin(monkeypatch, encrypted)
    assert main(["decrypt-key"]) == 0
    assert capsysbinary.readouterr() == (KEY, b"")


@pytest.mark.usefixtures("fakes")
def test_encrypt_and_decrypt_base64(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(STATIC_TOML)
    feed_stdin(monkeypatch, base64.b64encode(KEY) + b"\n")
    code, out, _ = run(capsys, "encrypt-key", "--base64")
    assert code == 0
    assert out.endswith("\n")
    assert (
        StaticKms(MASTER_KEY).decrypt_key(base64.b64decode(out.rstrip("\n"), validate=True)) == KEY
    )

    wrapped = out[:30] + "\n  " + out[30:]  # line breaks and spaces in the input are fine
    feed_stdin(monkeypatch, wrapped.encode())
    code, out, _ = run(capsys, "decrypt-key", "--base64")
    assert (code, out) == (0, base64.b64encode(KEY).decode() + "\n")


def test_encrypt_closes_the_kms(
    fakes: Fakes, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config('[kms]\nplugin = "toy"\n')
    feed_stdin(monkeypatch, b"abc")
    assert main(["encrypt-key"]) == 0
    assert capsysbinary.readouterr().out == b"toy:" + bytes(b ^ 0x5A for b in b"abc")
    assert fakes.built[0].closed == 1


@pytest.mark.usefixtures("fakes")
@pytest.mark.parametrize("command", ["decrypt-key", "encrypt-key"])
def test_refuses_to_write_binary_to_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    use_config(STATIC_TOML)
    stdin = feed_stdin(monkeypatch, StaticKms(MASTER_KEY).encrypt_key(KEY))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run(capsys, command)
    assert code == 2
    assert out == ""
    assert "refusing to write binary" in err
    assert "--base64" in err
    assert stdin.tell() == 0  # nothing was read, nothing decrypted


@pytest.mark.usefixtures("fakes")
def test_base64_output_to_a_terminal_is_allowed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(STATIC_TOML)
    feed_stdin(monkeypatch, base64.b64encode(StaticKms(MASTER_KEY).encrypt_key(KEY)))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = run(capsys, "decrypt-key", "--base64")
    assert (code, base64.b64decode(out)) == (0, KEY)


@pytest.mark.usefixtures("fakes")
def test_decrypt_failure_exits_1_without_key_material(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(STATIC_TOML)
    other = StaticKms(b"o" * 32).encrypt_key(KEY)
    feed_stdin(monkeypatch, base64.b64encode(other))
    code, out, err = run(capsys, "decrypt-key", "--base64")
    assert code == 1
    assert out == ""
    assert err == (
        "asherah-kms: error: static KMS: could not decrypt the key: AES-256-GCM authentication "
        "failed: wrong key, or the data was tampered with\n"
    )


@pytest.mark.usefixtures("fakes")
@pytest.mark.parametrize(
    ("argv", "stdin", "expected"),
    [
        (["encrypt-key", "--base64"], b"not base64!", "stdin is not valid base64"),
        (["encrypt-key", "--base64"], b"abc", "stdin is not valid base64"),
        (["encrypt-key"], b"", "nothing to encrypt: stdin is empty"),
        (["decrypt-key", "--base64"], b"  \n", "nothing to decrypt: stdin is empty"),
    ],
)
def test_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    stdin: bytes,
    expected: str,
) -> None:
    use_config(STATIC_TOML)
    feed_stdin(monkeypatch, stdin)
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert expected in err


@pytest.mark.usefixtures("fakes")
def test_encrypt_with_a_config_error_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_stdin(monkeypatch, KEY)
    code, _, err = run(capsys, "encrypt-key", "-c", "missing.toml")
    assert code == 2
    assert "missing.toml: configuration file not found" in err


# inspect ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("fakes")
def test_inspect_a_file_with_a_describer(capsys: pytest.CaptureFixture[str]) -> None:
    Path("key.bin").write_bytes(b"toy:" + b"\0" * 20)
    code, out, _ = run(capsys, "inspect", "key.bin")
    assert code == 0
    assert out.splitlines() == [
        "kms: toy",
        "format: toy",
        "bytes: 24",
        "kmsKeks:",
        "  - region: us-west-2",
        "    arn: arn:aws:kms:us-west-2:1:key/k",
        "meta:",
        "  version: 1",
        "empty: []",
        "none: {}",
    ]


@pytest.mark.usefixtures("fakes")
def test_inspect_stdin_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_stdin(monkeypatch, b"toy:abc")
    code, out, _ = run(capsys, "inspect", "--json")
    assert code == 0
    assert json.loads(out) == {"kms": "toy", "summary": toy_describe(b"toy:abc")}


@pytest.mark.usefixtures("fakes")
def test_inspect_base64_input(capsys: pytest.CaptureFixture[str]) -> None:
    Path("key.b64").write_bytes(base64.b64encode(b"toy:abcdef") + b"\n")
    code, out, _ = run(capsys, "inspect", "--base64", "key.b64")
    assert code == 0
    assert "bytes: 10" in out


@pytest.mark.usefixtures("fakes")
def test_inspect_unrecognised_input(capsys: pytest.CaptureFixture[str]) -> None:
    Path("blob.bin").write_bytes(StaticKms(MASTER_KEY).encrypt_key(KEY))
    code, out, err = run(capsys, "inspect", "blob.bin")
    assert (code, out) == (1, "")
    assert "no installed plugin recognises the format" in err
    assert "tried: toy" in err


@pytest.mark.usefixtures("fakes")
def test_inspect_recognised_but_malformed(capsys: pytest.CaptureFixture[str]) -> None:
    Path("bad.bin").write_bytes(b"toy:broken")
    code, _, err = run(capsys, "inspect", "bad.bin")
    assert code == 1
    assert "KMS 'toy' recognises the format but cannot read it: toy envelope" in err


@pytest.mark.usefixtures("fakes")
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["inspect", "missing.bin"], "missing.bin: cannot read"),
        (["inspect", "--base64", "key.bin"], "key.bin is not valid base64"),
        (["inspect", "empty.bin"], "nothing to inspect"),
    ],
)
def test_inspect_input_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    Path("key.bin").write_bytes(b"\xff\x00 binary")
    Path("empty.bin").write_bytes(b"")
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert expected in err


@pytest.mark.usefixtures("fakes")
def test_inspect_needs_input_when_stdin_is_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_stdin(monkeypatch, b"", tty=True)
    code, _, err = run(capsys, "inspect")
    assert code == 2
    assert "give a FILE" in err


@pytest.fixture
def two_describers(
    isolated_env: None,
    default_host: Callable[[PluginHost], PluginHost],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """``alpha`` and ``zulu`` both recognise anything; ``crashy``'s describer has a bug."""
    asked: list[str] = []

    def describer(name: str) -> Callable[[bytes], Mapping[str, Any]]:
        def describe(encrypted: bytes) -> Mapping[str, Any]:
            asked.append(name)
            return {"by": name}

        return describe

    def crashy(encrypted: bytes) -> Mapping[str, Any]:
        asked.append("crashy")
        raise ValueError("bug in describer")

    @hookimpl
    def asherah_register_kms(register: Any) -> None:
        for name in ("zulu", "alpha"):
            register(name, lambda config, crypto: StaticKms(MASTER_KEY), describe=describer(name))
        register("crashy", lambda config, crypto: StaticKms(MASTER_KEY), describe=crashy)

    plugin = types.SimpleNamespace(asherah_register_kms=asherah_register_kms)
    default_host(PluginHost(autoload=False, plugins=[("both", plugin)]))
    monkeypatch.chdir(tmp_path)
    Path("blob.bin").write_bytes(b"anything at all")
    return asked


def test_inspect_tries_describers_by_name_without_a_config(
    two_describers: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "inspect", "blob.bin")
    assert (code, out) == (0, "kms: alpha\nby: alpha\n")
    assert two_describers == ["alpha"]


def test_inspect_tries_the_configured_kms_first(
    two_describers: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    use_config('[kms]\nplugin = "zulu"\n', "z.toml")
    code, out, _ = run(capsys, "inspect", "-c", "z.toml", "blob.bin")
    assert (code, out) == (0, "kms: zulu\nby: zulu\n")
    use_config('[kms]\nplugin = "zulu"\n')  # the default plugins.toml is used when present
    code, out, _ = run(capsys, "inspect", "blob.bin")
    assert out == "kms: zulu\nby: zulu\n"


def test_inspect_skips_a_buggy_describer_with_a_warning(
    two_describers: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    use_config('[kms]\nplugin = "crashy"\n')
    code, out, err = run(capsys, "inspect", "blob.bin")
    assert (code, out) == (0, "kms: alpha\nby: alpha\n")
    assert two_describers == ["crashy", "alpha"]
    assert "warning: plugin 'both'" in err
    assert "ValueError: bug in describer" in err


def test_inspect_with_a_broken_config_warns_and_tries_every_plugin(
    two_describers: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    use_config("[kms\n")
    code, out, err = run(capsys, "inspect", "blob.bin")
    assert (code, out) == (0, "kms: alpha\nby: alpha\n")
    assert "warning:" in err
    assert "invalid TOML" in err


def test_inspect_without_any_describer(
    isolated_env: None,
    default_host: Callable[[PluginHost], PluginHost],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    default_host(PluginHost(autoload=False))
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"x" * 60)
    code, _, err = run(capsys, "inspect", str(blob))
    assert code == 1
    assert "no installed plugin can describe encrypted keys" in err


# The installed entry point ---------------------------------------------------------------


def test_console_script_points_at_main() -> None:
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="asherah-kms")
    assert script.value == "asherah_core.cli:main"
    assert script.load() is main


def test_runs_as_a_module_in_a_subprocess(tmp_path: Path) -> None:
    (tmp_path / "plugins.toml").write_text(STATIC_TOML, encoding="utf-8")
    env = {**os.environ, "ASHERAH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("ASHERAH_CONFIG", None)
    env.pop("ASHERAH_BLOCKED_PLUGINS", None)
    listing = subprocess.run(
        [sys.executable, "-m", "asherah_core.cli", "plugins", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert [p["name"] for p in json.loads(listing.stdout)["plugins"]] == ["metastores", "static"]
    round_trip = subprocess.run(
        [sys.executable, "-m", "asherah_core.cli", "encrypt-key"],
        cwd=tmp_path,
        env=env,
        input=KEY,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert round_trip.returncode == 0, round_trip.stderr
    assert StaticKms(MASTER_KEY).decrypt_key(round_trip.stdout) == KEY
    failing = subprocess.run(
        [sys.executable, "-m", "asherah_core.cli", "doctor", "-c", "missing.toml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failing.returncode == 2
    assert failing.stderr == "asherah-kms: error: missing.toml: configuration file not found\n"
