"""Install the distributions (non-editable) into a fresh venv and check plugin discovery.

One venv for the module: ``asherah-core`` and ``asherah-aws-kms-v2`` from this repository, then
a throwaway third-party plugin distribution built here, each installed with plain pip. The
sources are copied first so pip's in-tree build never writes into the working tree. Needs PyPI
for the build backend and the dependencies; takes 30-60 s.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ._venv import REPO, Venv, copy_source, create_venv

CORE = REPO / "asherah_core"
AWS = REPO / "asherah_aws_kms_v2"
AWS_MISSING = "asherah_aws_kms_v2/pyproject.toml does not exist yet"
WITH_AWS = (AWS / "pyproject.toml").is_file()
VAULT = REPO / "asherah_vault_transit"
WITH_VAULT = (VAULT / "pyproject.toml").is_file()

TOY_PYPROJECT = """
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "{dist}"
    version = "{version}"
    requires-python = ">=3.11"
    dependencies = ["asherah-core"]

    [project.entry-points.asherah]
    {plugin} = "{module}"

    [tool.setuptools]
    py-modules = ["{module}"]
"""

TOY_MODULE = """
    from asherah_core import KeyManagementService, hookimpl


    class ToyKms(KeyManagementService):
        def __init__(self, shift):
            self.shift = shift

        def encrypt_key(self, key):
            return b"toy:" + bytes((b + self.shift) % 256 for b in key)

        def decrypt_key(self, encrypted):
            return bytes((b - self.shift) % 256 for b in encrypted.removeprefix(b"toy:"))


    def toy_factory(config, crypto):
        config.check_keys(["shift"])
        return ToyKms(config.get_int("shift", 1))


    def describe(encrypted):
        if encrypted.startswith(b"toy:"):
            return {"format": "toy", "bytes": len(encrypted)}
        return None


    @hookimpl
    def asherah_register_kms(register):
        register("toy", toy_factory, describe=describe)
"""

BROKEN_MODULE = """
    import asherah_toy_dependency_that_is_not_installed  # noqa: F401
"""


def write_toy_distribution(
    where: Path, *, dist: str, version: str, plugin: str, module: str, source: str
) -> Path:
    where.mkdir(parents=True)
    (where / "pyproject.toml").write_text(
        textwrap.dedent(TOY_PYPROJECT).format(
            dist=dist, version=version, plugin=plugin, module=module
        ),
        encoding="utf-8",
    )
    (where / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return where


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("install")
    venv = create_venv(base)
    sources = [copy_source(CORE, base / "src" / "asherah_core")]
    if WITH_AWS:
        sources.append(copy_source(AWS, base / "src" / "asherah_aws_kms_v2"))
    if WITH_VAULT:
        sources.append(copy_source(VAULT, base / "src" / "asherah_vault_transit"))
    venv.pip("install", *sources)

    toy = write_toy_distribution(
        base / "src" / "toy",
        dist="asherah-toy-kms",
        version="0.3.0",
        plugin="toy",
        module="asherah_toy_kms",
        source=TOY_MODULE,
    )
    venv.pip("install", toy)
    return venv


def plugins_json(venv: Venv, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    result = venv.run(venv.cli, "plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def test_installed_non_editable_from_the_venv(venv: Venv) -> None:
    info = venv.python_json(
        """
        import importlib.metadata, json, pathlib, asherah_core
        dist = importlib.metadata.distribution("asherah-core")
        print(json.dumps({
            "file": asherah_core.__file__,
            "version": dist.version,
            "typed": (pathlib.Path(asherah_core.__file__).parent / "py.typed").is_file(),
            "direct_url": dist.read_text("direct_url.json"),
        }))
        """
    )
    assert Path(info["file"]).is_relative_to(venv.root)
    assert info["typed"] is True
    assert '"editable": true' not in (info["direct_url"] or "")
    assert venv.cli.is_file()


def test_core_discovers_the_third_party_plugin(venv: Venv) -> None:
    result = venv.python_json(
        """
        import json
        from asherah_core import available_kms, load_kms

        kms = load_kms("toy", {"shift": 3})
        encrypted = kms.encrypt_key(b"k" * 32)
        print(json.dumps({
            "available": available_kms(),
            "encrypted": encrypted.hex(),
            "round_trip": kms.decrypt_key(encrypted) == b"k" * 32,
        }))
        """
    )
    assert {"static", "toy"} <= set(result["available"])
    assert result["available"] == sorted(result["available"])
    assert result["round_trip"] is True
    assert bytes.fromhex(result["encrypted"]) == b"toy:" + bytes([ord("k") + 3]) * 32


def test_core_discovers_the_aws_plugin(venv: Venv) -> None:
    if not WITH_AWS:
        pytest.skip(AWS_MISSING)
    available = venv.python_json(
        "import json; from asherah_core import available_kms; print(json.dumps(available_kms()))"
    )
    assert {"static", "aws-v2", "toy"} <= set(available)


def test_the_vault_plugin_is_listed_checked_and_describes_its_keys(
    venv: Venv, tmp_path: Path
) -> None:
    """``pip install asherah-vault-transit`` is all it takes: listed with both names, built from
    plugins.toml by ``doctor`` (which reports an unreachable server per address, without the
    token), and its ``vault:vN:`` keys described by ``inspect``."""
    if not WITH_VAULT:
        pytest.skip("asherah_vault_transit/pyproject.toml does not exist yet")
    (vault,) = [p for p in plugins_json(venv).values() if "vault" in p["kms"]]
    assert vault["distribution"] == "asherah-vault-transit"
    assert vault["kms"] == ["vault", "vault-transit"]
    config = tmp_path / "plugins.toml"
    config.write_text(
        '[kms]\nplugin = "vault"\n[plugins.vault]\naddress = "http://127.0.0.1:9"\n'
        'transit_key = "k"\ntoken = "s.NOT-TO-BE-SHOWN"\ntimeout = 1\n',
        encoding="utf-8",
    )
    doctor = venv.run(venv.cli, "doctor", "-c", str(config), "--json")
    report = json.loads(doctor.stdout)
    assert doctor.returncode != 0
    assert report["ok"] is False
    assert [p["target"] for p in report["probes"]] == ["http://127.0.0.1:9"]
    assert "NOT-TO-BE-SHOWN" not in doctor.stdout + doctor.stderr
    inspect = venv.run(venv.cli, "inspect", "--json", stdin="vault:v3:QUJD")
    assert inspect.returncode == 0, inspect.stderr
    answer = json.loads(inspect.stdout)
    assert answer["kms"] in ("vault", "vault-transit")
    assert answer["summary"] == {"kms": "vault", "key_version": 3, "ciphertext_chars": 13}


def test_cli_lists_the_plugins_with_their_distributions(venv: Venv) -> None:
    plugins = plugins_json(venv)
    assert plugins["static"]["distribution"] == "asherah-core"
    assert plugins["static"]["kms"] == ["static"]
    assert plugins["toy"] == {
        "name": "toy",
        "distribution": "asherah-toy-kms",
        "version": "0.3.0",
        "kms": ["toy"],
        "metastores": [],
    }
    assert plugins["metastores"]["distribution"] == "asherah-core"
    assert {"memory", "sql"} <= set(plugins["metastores"]["metastores"])
    if WITH_AWS:
        (aws,) = [p for p in plugins.values() if "aws-v2" in p["kms"]]
        assert aws["distribution"] == "asherah-aws-kms-v2"

    text = venv.run(venv.cli, "plugins")
    assert text.returncode == 0, text.stderr
    assert "asherah-toy-kms" in text.stdout
    assert "asherah-core" in text.stdout
    if WITH_AWS:
        assert "asherah-aws-kms-v2" in text.stdout


def test_cli_uses_the_third_party_kms(venv: Venv) -> None:
    (venv.work / "plugins.toml").write_text(
        '[kms]\nplugin = "toy"\n[plugins.toy]\nshift = "${TOY_SHIFT:-2}"\n', encoding="utf-8"
    )
    doctor = venv.run(venv.cli, "doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert "round-trip" in doctor.stdout

    encrypted = venv.run(venv.cli, "encrypt-key", "--base64", stdin="AAAA\n")
    assert encrypted.returncode == 0, encrypted.stderr
    inspect = venv.run(venv.cli, "inspect", "--base64", "--json", stdin=encrypted.stdout)
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout) == {"kms": "toy", "summary": {"format": "toy", "bytes": 7}}


def test_blocking_and_disabling_through_the_environment(venv: Venv) -> None:
    assert "toy" not in plugins_json(venv, {"ASHERAH_BLOCKED_PLUGINS": "toy"})
    assert list(plugins_json(venv, {"ASHERAH_DISABLE_PLUGIN_AUTOLOAD": "1"})) == [
        "metastores",
        "static",
    ]


@pytest.fixture(scope="module")
def broken_site(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin distribution that fails to import, installed outside the venv (``--target``)."""
    base = tmp_path_factory.mktemp("broken")
    dist = write_toy_distribution(
        base / "src",
        dist="asherah-broken-kms",
        version="6.6.6",
        plugin="broken",
        module="asherah_broken_kms",
        source=BROKEN_MODULE,
    )
    site = base / "site"
    venv.pip("install", "--no-deps", "--target", site, dist)
    return site


def test_plugin_that_fails_to_import_is_reported_by_the_cli(venv: Venv, broken_site: Path) -> None:
    result = venv.run(venv.cli, "plugins", env={"PYTHONPATH": str(broken_site)})
    assert result.returncode == 2
    assert result.stdout == ""
    message = result.stderr
    assert message.startswith("asherah-kms: error: ")
    assert "plugin 'broken' (distribution asherah-broken-kms 6.6.6) failed to import" in message
    assert "asherah_toy_dependency_that_is_not_installed" in message

    blocked = plugins_json(
        venv, {"PYTHONPATH": str(broken_site), "ASHERAH_BLOCKED_PLUGINS": "broken"}
    )
    assert "toy" in blocked
    assert "broken" not in blocked
