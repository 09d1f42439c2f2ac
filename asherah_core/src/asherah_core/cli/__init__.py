"""The ``asherah-kms`` command, one module per group of commands.

``main`` (main.py) builds the parser from kms.py (plugins, doctor, encrypt-key, decrypt-key,
inspect), rows.py (encrypt, decrypt), keys.py (keys, revoke-key, create-table) and rewrap.py
(rewrap). _common.py, below all of them, holds what they share; imports flow downward only.
"""

from __future__ import annotations

from ._common import CONFIG_ENV
from .main import main

__all__ = ["CONFIG_ENV", "main"]
