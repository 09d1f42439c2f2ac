"""A metastore in process memory, for tests and examples: nothing survives the process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import ClassVar

from asherah_core.forksafe import new_locks_in_child
from asherah_core.records import EnvelopeKeyRecord

from .base import Metastore, StoredKey

__all__ = ["InMemoryMetastore"]


class InMemoryMetastore(Metastore):
    """Rows in a dictionary guarded by a lock; the same insert-if-absent rule as a database."""

    kind: ClassVar[str] = "memory"

    def __init__(self) -> None:
        # Each statement under _lock leaves _rows whole: a forked child renews the lock.
        self._lock = threading.Lock()
        self._rows: dict[str, dict[int, EnvelopeKeyRecord]] = {}
        new_locks_in_child(self, "_lock")

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """Return the row ``(key_id, created)`` or ``None``."""
        with self._lock:
            return self._rows.get(key_id, {}).get(created)

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        """Return the row of `key_id` with the largest created, or ``None``."""
        with self._lock:
            rows = self._rows.get(key_id)
            return rows[max(rows)] if rows else None

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        """Insert unless ``(key_id, created)`` exists."""
        with self._lock:
            rows = self._rows.setdefault(key_id, {})
            if created in rows:
                return False
            rows[created] = record
            return True

    def keys(self, prefix: str = "") -> Iterator[StoredKey]:
        """Yield a snapshot of the rows whose id starts with `prefix`."""
        with self._lock:
            rows = [
                (key_id, created, record)
                for key_id, by_created in self._rows.items()
                if key_id.startswith(prefix)
                for created, record in by_created.items()
            ]
        yield from sorted(rows, key=lambda row: (row[0], row[1]))

    def revoke(self, key_id: str, created: int) -> bool:
        """Set the row's ``Revoked`` flag."""
        with self._lock:
            rows = self._rows.get(key_id, {})
            if created not in rows:
                return False
            rows[created] = rows[created].with_revoked()
            return True

    def create_table(self) -> None:
        """Nothing to create."""

    def __repr__(self) -> str:
        with self._lock:
            count = sum(len(rows) for rows in self._rows.values())
        return f"InMemoryMetastore(rows={count})"
