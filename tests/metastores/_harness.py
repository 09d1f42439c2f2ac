"""Import tools/dbservers (the repository's tooling, not an installed package)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    """Return ``tools.dbservers``, with the repository root on ``sys.path`` (as noxfile.py and
    the LocalStack harness tests put it)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("tools.dbservers")
