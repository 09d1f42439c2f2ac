"""One process of the processes soak: encrypt rows over partitions shared with the other
processes, and journal each row only after `encrypt_bytes` returned it.

A row is "reported as written" once its line, newline included, is in the journal and the
journal is fsynced; the parent may SIGKILL this process at any instant, so the journal's last
line may be torn (then that row was never reported). Each incarnation writes its own journal.
Calls that fail are counted in the journal as ``{"failed": "<error>"}`` lines.

The first byte of the file ``settings["state"]`` (shared through `mmap`) says what the process
is doing, so that the parent can kill it in the middle of a metastore write: `IDLE`,
`ENCRYPTING`, `STORING` (inside ``Metastore.store``).

Run as a script: ``python _process_worker.py '<json settings>'``; it says ``ready`` on stdout
once connected, then runs until the file ``settings["stop"]`` exists.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from asherah_core import CryptoPolicy, SessionFactory, StaticKms
from asherah_core.metastore.sql import SqlMetastore

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
PRODUCT = "processes"
IDLE, ENCRYPTING, STORING = 0, 1, 2
POLICY = CryptoPolicy(
    # Keys expire and are re-checked within seconds, and the caches hold few, so every process
    # keeps loading, creating and storing keys: the kills land in those writes too.
    expire_after=timedelta(seconds=3),
    create_date_precision=timedelta(seconds=1),
    revoke_check_interval=timedelta(seconds=1),
    intermediate_key_cache_max_size=8,
    system_key_cache_max_size=2,
)


def factory_for(service: str, target: str, policy: CryptoPolicy = POLICY) -> SessionFactory:
    """A factory of `service` on the shared metastore at `target` (a SQLAlchemy URL)."""
    return SessionFactory(
        service, PRODUCT, kms=StaticKms(MASTER_KEY), metastore=SqlMetastore(target), policy=policy
    )


def watched_store(factory: SessionFactory, state: mmap.mmap) -> None:
    """Make the factory's metastore say `STORING` in `state` while it stores a key."""
    metastore = factory.metastore
    store = metastore.store

    def store_and_say(key_id: str, created: int, record: Any) -> bool:
        state[0] = STORING
        try:
            return store(key_id, created, record)
        finally:
            state[0] = ENCRYPTING

    metastore.store = store_and_say  # type: ignore[method-assign]


def main(settings: dict[str, Any]) -> None:
    name = f"{settings['worker']}.{settings['incarnation']}"
    partitions: list[str] = settings["partitions"]
    stop = Path(settings["stop"])
    rng = random.Random(name)
    factory = factory_for(settings["service"], settings["target"])
    with open(settings["state"], "r+b") as file:
        state = mmap.mmap(file.fileno(), 1)
    watched_store(factory, state)
    factory.metastore.load_latest(f"_SK_{settings['service']}_{PRODUCT}")  # connect first
    print("ready", flush=True)
    fd = os.open(settings["journal"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    i = 0
    while not stop.exists():
        partition = rng.choice(partitions)
        plaintext = f"{name}:{i}:{rng.getrandbits(64):016x}"
        state[0] = ENCRYPTING
        try:
            with factory.get_session(partition) as session:
                drr = session.encrypt_bytes(plaintext.encode())
        except Exception as error:
            line = {"failed": f"{type(error).__name__}: {error}"[:500]}
        else:
            line = {"partition": partition, "plaintext": plaintext, "drr": drr}
        state[0] = IDLE
        os.write(fd, (json.dumps(line) + "\n").encode())
        os.fsync(fd)
        i += 1
    os.close(fd)
    factory.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
