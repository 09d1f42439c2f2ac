"""``python -m tools.localstack`` (or ``python tools/localstack``): the harness's command line."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a folder: make ``tools`` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.localstack.cli import main

sys.exit(main())
