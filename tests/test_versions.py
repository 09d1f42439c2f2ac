"""Version numbers agree: each pyproject, its package's ``__version__``, the changelog.

Both distributions follow semantic versioning (docs/versioning.md), so versions are
MAJOR.MINOR.PATCH, and the plugin's dependency on the core must admit the core's version.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
from packaging.requirements import Requirement

import asherah_aws_kms_v2
import asherah_core
from asherah_aws_kms_v2 import clients

from ._venv import REPO

PACKAGES = {"asherah_core": asherah_core, "asherah_aws_kms_v2": asherah_aws_kms_v2}
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


def project(folder: str) -> dict[str, Any]:
    """The [project] table, with a dynamic version read from the file setuptools reads it from."""
    text = (REPO / folder / "pyproject.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    result: dict[str, Any] = data["project"]
    if "version" in result.get("dynamic", []):
        attr = data["tool"]["setuptools"]["dynamic"]["version"]["attr"]
        module, _, name = attr.rpartition(".")
        source = REPO / folder / "src" / (module.replace(".", "/") + ".py")
        match = re.search(rf'^{name} = "([^"]*)"$', source.read_text(encoding="utf-8"), re.M)
        assert match, f"{source} does not set {name}"
        result = {**result, "version": match[1]}
    return result


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_pyproject_and_dunder_version_agree(folder: str) -> None:
    version = project(folder)["version"]
    assert SEMVER.fullmatch(version), f"{folder}: {version!r} is not MAJOR.MINOR.PATCH"
    assert PACKAGES[folder].__version__ == version, (
        f"{folder}/pyproject.toml says {version}, the package's __version__ says "
        f"{PACKAGES[folder].__version__}"
    )


def test_the_plugin_depends_on_a_core_version_that_exists() -> None:
    core = project("asherah_core")["version"]
    (requirement,) = [
        Requirement(r)
        for r in project("asherah_aws_kms_v2")["dependencies"]
        if Requirement(r).name == "asherah-core"
    ]
    assert requirement.specifier.contains(core), f"{requirement} excludes asherah-core {core}"


def test_the_user_agent_names_the_plugin_version() -> None:
    assert clients.USER_AGENT_EXTRA.endswith(f"/{asherah_aws_kms_v2.__version__}")


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_the_changelog_has_an_entry_for_each_version(folder: str) -> None:
    meta = project(folder)
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(meta['version'])}\]", changelog, re.MULTILINE)
    assert f"{meta['name']} {meta['version']}" in changelog
