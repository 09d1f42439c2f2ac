"""Import tools/dbservers (a folder of scripts, not an installed package) under a fixed name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
NAME = "asherah_tools_dbservers"


def load() -> ModuleType:
    """Return tools/dbservers as a module (imported once)."""
    if NAME not in sys.modules:
        folder = REPO / "tools" / "dbservers"
        spec = importlib.util.spec_from_file_location(
            NAME, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[NAME]
