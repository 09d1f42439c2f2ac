"""asherah-core's build (asherah_core/setup.py): `_rows` and `_b64` compiled by mypyc when they
can be, else pure Python with a message, never a wheel with half a module.

The compiled build itself is checked where it is installed (`nox -s tests` runs
tools/check_build.py); here a build without a working C compiler. Needs PyPI for the build
requirements; about 40 s, so `nox -s tests` runs it on one Python only (marker ``build``).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ._venv import REPO, clean_env, copy_source


def build_wheel(tmp_path: Path, **env: str) -> tuple[list[str], str]:
    """Build asherah-core's wheel from a copy with `env` added; its file names and pip's
    output (which holds the build's messages)."""
    source = copy_source(REPO / "asherah_core", tmp_path / "asherah_core")
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(source)],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"the build failed:\n{result.stdout}\n{result.stderr}"
    (wheel,) = out.glob("asherah_core-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist(), result.stdout + result.stderr


@pytest.mark.build
def test_a_build_whose_c_compiler_fails_is_pure_python(tmp_path: Path) -> None:
    names, output = build_wheel(tmp_path, CC="/bin/false")
    assert "asherah_core/_rows.py" in names
    assert "asherah_core/_b64.py" in names
    assert "asherah_core/session.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd"))]
    assert "asherah-core: could not compile src/asherah_core/_rows.py" in output
    assert "a pure-Python build" in output
