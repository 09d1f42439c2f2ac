"""One process of the race test: build a factory, connect to the metastore, say ``ready``,
wait for ``go <instant>`` on stdin, sleep until that CLOCK_MONOTONIC instant (shared by every
process on the machine, so all workers wake together however the pipes were scheduled), then
encrypt rows over shared partitions and print them, with the number of stores that lost a race
(found the row already there), as one JSON object.

Run as a script: ``python _race_worker.py '<json settings>'``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from asherah_core import SessionFactory, StaticKms
from asherah_core.metastore import Metastore

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"


def make_metastore(kind: str, target: str) -> Metastore:
    """The metastore of `kind` at `target` (a SQLAlchemy URL or a DynamoDB endpoint)."""
    if kind == "dynamodb":
        import boto3  # noqa: PLC0415

        from asherah_core.metastore.dynamodb import DynamoDbMetastore  # noqa: PLC0415

        session = boto3.session.Session(
            region_name="us-west-2", aws_access_key_id="test", aws_secret_access_key="test"
        )
        return DynamoDbMetastore(endpoint_url=target, session=session)
    from asherah_core.metastore.sql import SqlMetastore  # noqa: PLC0415

    return SqlMetastore(target)


def main(settings: dict[str, Any]) -> None:
    worker: int = settings["worker"]
    partitions: list[str] = settings["partitions"]
    metastore = make_metastore(settings["kind"], settings["target"])
    lost = 0
    store = metastore.store

    def counting_store(key_id: str, created: int, record: Any) -> bool:
        nonlocal lost
        stored = store(key_id, created, record)
        lost += not stored
        return stored

    metastore.store = counting_store  # type: ignore[method-assign]
    factory = SessionFactory(
        settings["service"], settings["product"], kms=StaticKms(MASTER_KEY), metastore=metastore
    )
    sessions = {}
    # Connect now (a first connection can take long, as with MySQL's full authentication), so
    # that every worker is ready to race when the start instant comes.
    metastore.load_latest(f"_SK_{settings['service']}_warm-up")
    print("ready", flush=True)
    command, _, instant = sys.stdin.readline().partition(" ")
    if command != "go":
        sys.exit("no go")
    time.sleep(max(0.0, float(instant) - time.monotonic()))
    rows = []
    for i in range(settings["rows"]):
        partition = partitions[i % len(partitions)]  # all workers in step: the most collisions
        if partition not in sessions:
            sessions[partition] = factory.get_session(partition)
        drr = sessions[partition].encrypt_bytes(f"{worker}:{i}".encode())
        rows.append({"partition": partition, "plaintext": f"{worker}:{i}", "drr": drr})
    for session in sessions.values():
        session.close()
    factory.close()
    print(json.dumps({"rows": rows, "lost": lost}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
