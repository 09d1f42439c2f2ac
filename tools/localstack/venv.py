"""Provisioning LocalStack's cached venv."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .common import _MARKER, LOG_TAIL_LINES, PINS, ProvisionError, PythonNotFoundError, _say
from .interpreters import _python_version, find_python


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def venv_dir(python: str) -> Path:
    """Return where LocalStack's venv for ``python`` lives (its name hashes pins and Python)."""
    version = _python_version(python)
    if version is None:
        raise PythonNotFoundError(f"{python} does not run; cannot build LocalStack's venv with it.")
    identity = json.dumps(
        {"pins": PINS, "python": version, "executable": os.path.realpath(python)}, sort_keys=True
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return _cache_home() / "asherah-py" / f"localstack-{digest}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def provision(python: str | None = None, *, quiet: bool = False) -> Path:
    """Build (once) LocalStack's venv and return its Python interpreter.

    The venv is cached under ``${XDG_CACHE_HOME:-~/.cache}/asherah-py/`` and only counts as built
    once its marker file is written, so an interrupted install is redone. A file lock keeps
    concurrent runs from installing into the same folder.

    :param python: a Python 3.13 interpreter; found with :func:`find_python` when omitted.
    :raises PythonNotFoundError: no interpreter.
    :raises ProvisionError: the install failed; the message holds the tail of pip's log.
    """
    python = python or find_python()
    venv = venv_dir(python)
    venv.parent.mkdir(parents=True, exist_ok=True)
    marker = venv / _MARKER
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and _venv_python(venv).exists():
            return _venv_python(venv)
        if venv.exists():
            shutil.rmtree(venv)
        _say(
            f"installing LocalStack into {venv} with {python} (about 70 s, once) ...",
            quiet=quiet,
        )
        started = time.monotonic()
        venv.mkdir(parents=True)
        log = venv / "pip-install.log"
        with open(log, "w") as out:
            steps: list[list[str]] = [
                [python, "-m", "venv", str(venv)],
                [
                    str(_venv_python(venv)),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    *PINS,
                ],
            ]
            for step in steps:
                out.write(f"$ {' '.join(step)}\n")
                out.flush()
                result = subprocess.run(
                    step,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
                if result.returncode != 0:
                    raise ProvisionError(
                        f"Installing LocalStack failed ({' '.join(step[:4])} ... exited with "
                        f"{result.returncode}). The full log is {log}; its end:\n{_tail(log)}"
                    )
        marker.write_text(json.dumps({"pins": PINS, "python": python}) + "\n")
        _say(f"installed in {time.monotonic() - started:.0f} s", quiet=quiet)
        return _venv_python(venv)
