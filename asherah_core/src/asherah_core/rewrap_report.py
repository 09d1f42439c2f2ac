"""What the rewrap commands (``asherah-kms rewrap``, ``manage.py asherah_rewrap``) share around
`asherah_core.table_rotation.rewrap_table`: showing its failed rows, and reading a
``--start-after`` key. Imports neither SQLAlchemy nor a command framework, so both commands can
load it before they know SQLAlchemy is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["FailedRows", "start_key"]

ROTATION_LOGGER = "asherah_core.table_rotation"


class FailedRows(logging.Handler):
    """Hands the first `limit` failed rows `rewrap_table` logs (their key and reason, never a
    record) to `write`; counts the rest, for one closing line.

    Between `attach` and `detach` the rotation logger passes warnings to this handler only, so
    each failure is shown once; `detach` restores the logger's level and propagation.
    """

    def __init__(
        self,
        write: Callable[[str], object],
        *,
        limit: int = 20,
        before: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(logging.WARNING)
        self._write = write
        self._before = before
        self._limit = limit
        self._saved: tuple[int, bool] | None = None
        self.shown = 0
        self.hidden = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.shown >= self._limit:
            self.hidden += 1
            return
        self.shown += 1
        if self._before is not None:
            self._before()
        self._write(record.getMessage())

    def attach(self) -> None:
        logger = logging.getLogger(ROTATION_LOGGER)
        self._saved = (logger.level, logger.propagate)
        logger.addHandler(self)
        logger.setLevel(logging.WARNING)
        logger.propagate = False

    def detach(self) -> None:
        logger = logging.getLogger(ROTATION_LOGGER)
        logger.removeHandler(self)
        if self._saved is not None:
            logger.setLevel(self._saved[0])
            logger.propagate = self._saved[1]
            self._saved = None

    def flush_hidden(self) -> None:
        """Write how many failed rows were not shown, if any."""
        if self.hidden:
            self._write(f"{self.hidden} more failed row(s) not shown")


def start_key(text: str | None) -> Any:
    """A ``--start-after`` value: an integer when it looks like one (integer keys compare as
    numbers, so ``"9"`` must not sort after ``"10"``), else the text as given."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped.lstrip("-").isdigit() and len(stripped) < 20:
        return int(stripped)
    return text
