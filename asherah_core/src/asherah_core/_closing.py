"""`ClosesOnExit`: ``with obj:`` calls ``obj.close()`` on the way out."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["ClosesOnExit"]


class ClosesOnExit:
    """A context manager whose exit is `close` (KMS, metastores, factories, sessions)."""

    __slots__ = ()

    def close(self) -> None:
        """Release what the object holds. Safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
