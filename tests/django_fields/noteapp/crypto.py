"""The factory of settings.ASHERAH["FACTORY"] in the tests: static KMS, a counting metastore."""

from __future__ import annotations

from asherah_core import SessionFactory, StaticKms
from asherah_core.metastore import InMemoryMetastore
from asherah_core.records import EnvelopeKeyRecord

MADE: list[SessionFactory] = []


class CountingMetastore(InMemoryMetastore):
    def __init__(self) -> None:
        super().__init__()
        self.stores: list[str] = []

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        self.stores.append(key_id)
        return super().store(key_id, created, record)


def make_factory() -> SessionFactory:
    factory = SessionFactory("svc", "prod", kms=StaticKms(b"d" * 32), metastore=CountingMetastore())
    MADE.append(factory)
    return factory


def not_a_factory() -> object:
    return "nope"


SHARED = InMemoryMetastore()
"""The metastore of `make_shared_factory`: a factory made again (after a key is revoked, as a
process started since would) finds the keys the previous one made."""


def make_shared_factory() -> SessionFactory:
    return SessionFactory("svc", "prod", kms=StaticKms(b"d" * 32), metastore=SHARED)
