"""``python -m asherah_core.cli``: the same as ``asherah-kms``."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
