"""The plugin authors' guide cannot rot: its example distribution is built, installed and tested.

``docs/examples/asherah-example-kms`` is installed non-editable into a fresh venv together with
this repository's ``asherah_core`` (one pip call, so the example's dependency on asherah-core
is met by this copy), then the core must discover it and the example's own tests must pass
there. The guide must show every file of the example through snippets, so what it shows is
what was tested here.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from ._venv import REPO, Venv, copy_source, create_venv

EXAMPLE = REPO / "docs" / "examples" / "asherah-example-kms"
GUIDE = REPO / "docs" / "plugin-guide.md"
SNIPPET = re.compile(r'^-{1,3}8<-{1,3}\s+"([^"]+)"', re.MULTILINE)


def example_metadata() -> dict[str, str]:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (plugin,) = project["entry-points"]["asherah"]
    return {"name": project["name"], "version": project["version"], "plugin": plugin}


@pytest.fixture(scope="module")
def example_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Venv, Path]:
    """A venv with asherah-core and the example (with its test extra); the example's copy."""
    base = tmp_path_factory.mktemp("plugin-guide")
    venv = create_venv(base)
    core = copy_source(REPO / "asherah_core", base / "src" / "asherah_core")
    example = copy_source(EXAMPLE, base / "src" / "asherah-example-kms")
    venv.pip("install", core, f"{example}[test]")
    return venv, example


def test_the_example_is_installed_non_editable(example_venv: tuple[Venv, Path]) -> None:
    venv, _ = example_venv
    info = venv.python_json(
        """
        import importlib.metadata, json, asherah_example_kms
        dist = importlib.metadata.distribution("asherah-example-kms")
        print(json.dumps({"file": asherah_example_kms.__file__,
                          "direct_url": dist.read_text("direct_url.json")}))
        """
    )
    assert Path(info["file"]).is_relative_to(venv.root)
    assert '"editable": true' not in (info["direct_url"] or "")


def test_the_core_discovers_the_example(example_venv: tuple[Venv, Path]) -> None:
    venv, _ = example_venv
    available = venv.python_json(
        "import json; from asherah_core import available_kms; print(json.dumps(available_kms()))"
    )
    assert available == ["example-keyring", "static"]


def test_asherah_kms_plugins_lists_the_example(example_venv: tuple[Venv, Path]) -> None:
    venv, _ = example_venv
    meta = example_metadata()
    listed = venv.run(venv.cli, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins[meta["plugin"]] == {
        "name": meta["plugin"],
        "distribution": meta["name"],
        "version": meta["version"],
        "kms": ["example-keyring"],
        "metastores": [],
    }
    table = venv.run(venv.cli, "plugins")
    assert table.returncode == 0, table.stderr
    row = rf"^{meta['plugin']}\s+{meta['name']}\s+{meta['version']}\s+example-keyring\s+-$"
    assert re.search(row, table.stdout, re.MULTILINE), table.stdout


def test_the_examples_own_tests_pass_against_the_installed_example(
    example_venv: tuple[Venv, Path],
) -> None:
    venv, example = example_venv
    result = venv.run(
        venv.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=example, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in [\d.]+s", summary), summary


def test_the_guide_shows_every_file_of_the_example() -> None:
    included = {REPO / path for path in SNIPPET.findall(GUIDE.read_text(encoding="utf-8"))}
    for path in included:
        assert path.is_file(), f"the guide includes {path.relative_to(REPO)}, which does not exist"
    files = {
        path
        for path in EXAMPLE.rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".toml"}
        and "__pycache__" not in path.parts
        and not path.name.endswith(".egg-info")
    }
    missing = sorted(str(p.relative_to(REPO)) for p in files - included)
    assert not missing, f"the guide does not show {missing}"
