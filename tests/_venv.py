"""Helpers for the tests that install distributions into a fresh venv and run them there.

Sources are copied first so pip's in-tree build never writes into the working tree; installs
are plain, non-editable ``pip install``. Needs PyPI for the build backend and dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without anything that would steer imports or plugin loading."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASHERAH_", "PYTHON", "PIP_", "VIRTUAL_ENV"))
    }
    env.update(extra or {})
    return env


def pip(python: Path, *args: str | Path) -> None:
    """Run ``python -m pip`` quietly; fail the test with pip's stderr if it fails."""
    result = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *map(str, args)],
        # asherah-core as pure Python: these venvs test installing and discovering plugins, and
        # compiling `_rows` would add about 20 s to each (the nox sessions' installs compile it)
        env=clean_env({"ASHERAH_CORE_PURE_PYTHON": "1"}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"pip {' '.join(map(str, args))} failed:\n{result.stderr}"


def copy_source(src: Path, dest: Path) -> Path:
    """Copy a distribution's folder without build output or caches; return the copy."""
    ignore = shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"
    )
    shutil.copytree(src, dest, ignore=ignore)
    return dest


@dataclass(frozen=True)
class Venv:
    """A fresh virtual environment and a scratch folder to run its commands in."""

    root: Path
    work: Path

    @property
    def bindir(self) -> Path:
        return self.root / ("Scripts" if os.name == "nt" else "bin")

    @property
    def python(self) -> Path:
        return self.bindir / ("python.exe" if os.name == "nt" else "python")

    @property
    def cli(self) -> Path:
        """The ``asherah-kms`` script installed with asherah-core."""
        return self.bindir / "asherah-kms"

    def pip(self, *args: str | Path) -> None:
        pip(self.python, *args)

    def run(
        self,
        *argv: str | Path,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv in a clean environment; it must not print a traceback."""
        result = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd or self.work,
            env=clean_env(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def python_json(self, code: str) -> Any:
        """Run `code` with the venv's Python and return what it printed, parsed as JSON."""
        result = self.run(self.python, "-c", textwrap.dedent(code))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


def create_venv(base: Path) -> Venv:
    """Create ``base/venv`` (with pip) and ``base/work``."""
    root = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    work = base / "work"
    work.mkdir()
    return Venv(root, work)
