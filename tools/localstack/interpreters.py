"""Finding the Python 3.13 that LocalStack runs on."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from .common import ENDPOINT_ENV, PYTHON_ENV, REQUIRED_PYTHON, PythonNotFoundError


def _interpreter(executable: str) -> tuple[tuple[int, int, int], str] | None:
    """Return (version, sys.executable) of the interpreter at ``executable``, or None.

    ``sys.executable`` resolves shims (pyenv) to the real interpreter.
    """
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print(*sys.version_info[:3], sys.executable)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.strip().split(" ", 3)
    if out.returncode != 0 or len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    return (int(parts[0]), int(parts[1]), int(parts[2])), parts[3] or executable


def _python_version(executable: str) -> tuple[int, int, int] | None:
    """Return the version of the interpreter at ``executable``, or None if it does not run."""
    info = _interpreter(executable)
    return None if info is None else info[0]


def _pyenv_root() -> Path:
    given = os.environ.get("PYENV_ROOT")
    if given:
        return Path(given)
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=30, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
    return Path.home() / ".pyenv"


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in folder.name.split("."))


def find_interpreter(version: str, *, tried: list[str] | None = None) -> str | None:
    """Return the full path of a working ``python<version>`` (e.g. ``"3.13"``), or None.

    Looks on ``PATH`` first (skipping what does not run, such as a pyenv shim without
    ``PYENV_VERSION``), then at the highest ``$(pyenv root)/versions/<version>.*/bin``. The path
    returned is the interpreter's own ``sys.executable``, so a working shim is resolved.

    :param tried: if given, every candidate looked at is appended to it.
    """
    looked = tried if tried is not None else []
    want = tuple(int(part) for part in version.split("."))
    name = f"python{version}"

    def works(candidate: Path) -> str | None:
        looked.append(str(candidate))
        info = _interpreter(str(candidate))
        return info[1] if info is not None and info[0][: len(want)] == want else None

    for entry in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(entry or ".") / name
        if candidate.is_file() and os.access(candidate, os.X_OK) and (found := works(candidate)):
            return found

    pattern = re.compile(rf"{re.escape(version)}\.\d+")
    folders = sorted(
        (f for f in (_pyenv_root() / "versions").glob(f"{version}.*") if pattern.fullmatch(f.name)),
        key=_version_key,
        reverse=True,
    )
    for folder in folders:
        if found := works(folder / "bin" / name):
            return found
    return None


def find_python() -> str:
    """Return the path of a working Python 3.13 interpreter for LocalStack.

    Looks at ``ASHERAH_LOCALSTACK_PYTHON``, then ``python3.13`` on ``PATH`` (if it runs: a pyenv
    shim may not), then the highest ``$(pyenv root)/versions/3.13.*/bin/python3.13``.

    :raises PythonNotFoundError: none works; the message says what to install or set.
    """
    want = ".".join(map(str, REQUIRED_PYTHON))
    given = os.environ.get(PYTHON_ENV)
    if given:
        version = _python_version(given)
        if version is not None and version[:2] == REQUIRED_PYTHON:
            return given
        found = "does not run" if version is None else f"is Python {'.'.join(map(str, version))}"
        raise PythonNotFoundError(
            f"{PYTHON_ENV}={given} {found}, but LocalStack needs Python {want}. "
            f"Point {PYTHON_ENV} at a Python {want} interpreter (full path), or unset it to "
            f"search PATH and pyenv."
        )

    tried: list[str] = []
    python = find_interpreter(want, tried=tried)
    if python is not None:
        return python
    looked = ", ".join(tried) or f"no python{want} on PATH or in {_pyenv_root() / 'versions'}"
    raise PythonNotFoundError(
        f"LocalStack (localstack-core 2026.3.0, run on the host without Docker) needs Python "
        f"{want}, and none was found (looked at: {looked}). Do one of: install Python {want} "
        f"(e.g. `pyenv install {want}` or your system's python{want} package); or set "
        f"{PYTHON_ENV}=/full/path/to/python{want}; or start LocalStack yourself (e.g. "
        f"`docker run -p 4566:4566 localstack/localstack`) and set "
        f"{ENDPOINT_ENV}=http://localhost:4566."
    )
