"""Exit non-zero unless the installed ``asherah_core._rows`` is built as asked: ``compiled``
(by mypyc, asherah_core/setup.py) or ``pure`` Python. `nox -s tests` runs it after installing:
a build that quietly fell back to Python would leave the compiled module untested."""

from __future__ import annotations

import sys

import asherah_core._rows as rows


def main(want: str) -> int:
    """0 when `_rows` is `want` ("compiled" or "pure"); else say what it is, and 1."""
    have = "pure" if rows.__file__.endswith(".py") else "compiled"
    if have == want:
        return 0
    hint = (
        "compiling it needs a C compiler and Python's headers (apt install gcc); "
        "ASHERAH_CORE_PURE_PYTHON=1 builds and tests pure Python"
        if want == "compiled"
        else "was ASHERAH_CORE_PURE_PYTHON=1 in the build's environment?"
    )
    sys.stderr.write(f"asherah_core._rows is {have} ({rows.__file__}), not {want}: {hint}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
