"""The metastore interface: where system and intermediate keys are kept, shared by every process."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from asherah_core._closing import ClosesOnExit
from asherah_core._tothread import to_thread
from asherah_core.errors import MetastoreError
from asherah_core.records import EnvelopeKeyRecord

__all__ = ["ListedKey", "Metastore", "StoredKey", "readable"]

StoredKey = tuple[str, int, EnvelopeKeyRecord]
"""One row of a metastore: key id, ``Created`` (Unix seconds) and the record."""


@dataclass(frozen=True, slots=True)
class ListedKey:
    """One row of a listing (`Metastore.list_keys`): its record, or why it could not be read.

    ``record`` is ``None`` exactly when ``problem`` says what was wrong; ``key_id`` and
    ``created`` are whatever of the row could be read.
    """

    key_id: str | None
    created: int | None
    record: EnvelopeKeyRecord | None
    problem: str | None = None


def readable(listed: Iterable[ListedKey]) -> Iterator[StoredKey]:
    """The rows of a listing as `Metastore.keys` yields them: `MetastoreError` at the first row
    that could not be read."""
    for row in listed:
        if row.record is None or row.key_id is None or row.created is None:
            raise MetastoreError(row.problem or "a key row could not be read")
        yield row.key_id, row.created, row.record


class Metastore(ClosesOnExit, abc.ABC):
    """Loads and stores `EnvelopeKeyRecord` rows by ``(key id, created)``.

    Implementations are thread-safe. Every failure (server down, timeout, missing table, a row
    that does not parse) raises `MetastoreError` naming the metastore and the key id; never key
    bytes, never a password. The coroutine versions run the blocking call in a worker thread
    unless an implementation overrides them.
    """

    kind: ClassVar[str] = "metastore"
    """Short name used in messages and metric names (``ael.metastore.<kind>.load``)."""

    @abc.abstractmethod
    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """Return the record stored as ``(key_id, created)``, or ``None`` when there is none."""

    @abc.abstractmethod
    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        """Return the record of `key_id` with the largest ``created``, or ``None``."""

    @abc.abstractmethod
    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        """Insert the record unless ``(key_id, created)`` exists; return False when it does.

        Never overwrites: the caller that gets False lost a race and must use the stored key.
        """

    @property
    def region_suffix(self) -> str | None:
        """A suffix that key ids get in this metastore (DynamoDB global tables), or ``None``."""
        return None

    def keys(self, prefix: str = "") -> Iterator[StoredKey]:
        """Yield every stored row whose id starts with `prefix`, by id then created.

        For operators (``asherah-kms keys``); not used on the encrypt or decrypt path.
        """
        raise MetastoreError(f"{self.kind} metastore: listing keys is not supported")

    def list_keys(self, prefix: str = "") -> Iterator[ListedKey]:
        """`keys` for an operator who must see every row: a row that cannot be read is listed
        with the reason (`ListedKey.problem`) and the listing goes on.

        The SQL and DynamoDB metastores read each row on its own; this default keeps what
        `keys` yields before a failure and ends with the failure as one entry.
        """
        try:
            for key_id, created, record in self.keys(prefix):
                yield ListedKey(key_id, created, record)
        except MetastoreError as e:
            yield ListedKey(None, None, None, f"the listing stopped: {e}")

    def revoke(self, key_id: str, created: int) -> bool:
        """Mark ``(key_id, created)`` revoked; return False when there is no such row.

        A revoked key still decrypts; no process encrypts with it once it has seen the flag.
        """
        raise MetastoreError(f"{self.kind} metastore: revoking keys is not supported")

    def create_table(self) -> None:
        """Create the table (or whatever holds the keys) if it does not exist.

        Only on request (``asherah-kms`` or set-up code): no metastore creates it by itself.
        """
        raise MetastoreError(f"{self.kind} metastore: creating its table is not supported")

    async def load_async(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """Coroutine version of `load`."""
        return await to_thread(self.load, key_id, created)

    async def load_latest_async(self, key_id: str) -> EnvelopeKeyRecord | None:
        """Coroutine version of `load_latest`."""
        return await to_thread(self.load_latest, key_id)

    async def store_async(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        """Coroutine version of `store`."""
        return await to_thread(self.store, key_id, created, record)

    def close(self) -> None:
        """Release connections this metastore opened itself. Safe to call more than once."""
