"""Exit non-zero unless the installed ``asherah_core._rows`` and ``asherah_core._b64`` are
built as asked: ``compiled`` (by mypyc, asherah_core/setup.py) or ``pure`` Python. `nox -s
tests` runs it after installing: a build that quietly fell back to Python would leave the
compiled modules untested."""

from __future__ import annotations

import sys
from types import ModuleType

import asherah_core._b64 as b64
import asherah_core._rows as rows

MODULES: tuple[ModuleType, ...] = (rows, b64)


def main(want: str) -> int:
    """0 when every module of `MODULES` is `want` ("compiled" or "pure"); else say which are
    not, and 1."""
    wrong = [
        m for m in MODULES if ("pure" if (m.__file__ or "").endswith(".py") else "compiled") != want
    ]
    if not wrong:
        return 0
    hint = (
        "compiling them needs a C compiler and Python's headers (apt install gcc); "
        "ASHERAH_CORE_PURE_PYTHON=1 builds and tests pure Python"
        if want == "compiled"
        else "was ASHERAH_CORE_PURE_PYTHON=1 in the build's environment?"
    )
    for module in wrong:
        sys.stderr.write(f"{module.__name__} is not {want} ({module.__file__}): {hint}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
