"""Eight processes start at once on fresh partitions and a fresh system key, each encrypting
200 rows; one fresh factory then decrypts every row, and every key any row names is the one
row the metastore holds for that id and created instant."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from asherah_core import SessionFactory, StaticKms
from asherah_core.records import DataRowRecord

from ._backends import Backend, kind_params
from ._race_worker import MASTER_KEY, make_metastore

WORKERS = 8
ROWS = 200
PARTITIONS = 10
WORKER = Path(__file__).with_name("_race_worker.py")

pytestmark = pytest.mark.parametrize(
    "backend",
    [
        pytest.param("sqlite", marks=pytest.mark.servers, id="sqlite"),
        *kind_params("postgres", "mysql", "dynamodb"),
    ],
    indirect=True,
)


def target_of(backend: Backend, tmp_path: Path) -> str:
    if backend.kind == "sqlite":
        return f"sqlite:///{tmp_path / 'keys.db'}"
    return str(backend.server.url)


def start_workers(settings: dict[str, Any]) -> list[subprocess.Popen[str]]:
    workers = []
    for worker in range(WORKERS):
        workers.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps({**settings, "worker": worker})],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    return workers


ATTEMPTS = 3
"""Runs until the processes overlapped (some store lost a race); each run is checked whole."""
START_DELAY = 0.5
"""Seconds from sending the start instant to it: enough for eight pipe writes and wake-ups."""


def test_concurrent_processes_never_lose_a_key(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend.make()  # creates the table
    for attempt in range(1, ATTEMPTS + 1):
        lost, summary = race_once(backend, tmp_path)  # a fresh service each run
        with capsys.disabled():
            print(f"\n  race[{backend.kind}] run {attempt}: {summary}")
        if lost > 0:
            return
    pytest.fail(
        f"no store lost a race in {ATTEMPTS} runs: the processes never overlapped, so the "
        "race was not tested"
    )


def race_once(backend: Backend, tmp_path: Path) -> tuple[int, str]:
    """One race on a fresh service: every check but overlap; return the lost stores and a
    summary line."""
    service = f"race{uuid.uuid4().hex[:8]}"
    partitions = [f"{service}-p{n}" for n in range(PARTITIONS)]  # ids that start with the run
    target = target_of(backend, tmp_path)
    settings = {
        "kind": backend.kind,
        "target": target,
        "service": service,
        "product": "prod",
        "partitions": partitions,
        "rows": ROWS,
    }
    workers = start_workers(settings)
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        # Every worker sleeps until the same instant (time.monotonic is CLOCK_MONOTONIC, one
        # clock for all processes), so they start together however the writes are scheduled.
        started = time.monotonic() + START_DELAY
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(f"go {started!r}\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
        elapsed = time.monotonic() - started
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [worker.returncode for worker in workers] == [0] * WORKERS
    results = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    rows = [row for result in results for row in result["rows"]]
    lost = sum(result["lost"] for result in results)
    assert len(rows) == WORKERS * ROWS

    # One fresh factory decrypts every row.
    with SessionFactory(
        service, "prod", kms=StaticKms(MASTER_KEY), metastore=make_metastore(backend.kind, target)
    ) as factory:
        sessions = {p: factory.get_session(p) for p in partitions}
        for row in rows:
            assert sessions[row["partition"]].decrypt_bytes(row["drr"]) == row["plaintext"].encode()

    # Every intermediate key a row names is a row of the metastore, sealed by a stored system key.
    metastore = make_metastore(backend.kind, target)
    ours = {
        (key_id, created): record
        for prefix in (f"_SK_{service}_", f"_IK_{service}-")
        for key_id, created, record in metastore.keys(prefix)
    }
    used = Counter()
    for row in rows:
        meta = DataRowRecord.from_json(row["drr"]).parent_key_meta
        used[(meta.key_id, meta.created)] += 1
        assert (meta.key_id, meta.created) in ours
        ik = ours[(meta.key_id, meta.created)]
        assert ik.parent_key_meta is not None
        assert (ik.parent_key_meta.key_id, ik.parent_key_meta.created) in ours
    per_id = Counter(key_id for key_id, _ in ours)
    system_keys = per_id[f"_SK_{service}_prod"]
    intermediate = {key_id: n for key_id, n in per_id.items() if key_id.startswith("_IK_")}
    assert len(intermediate) == PARTITIONS
    # One key per id, or two when the run crossed a minute (the created precision).
    assert 1 <= system_keys <= 2
    assert all(n <= 2 for n in intermediate.values())
    metastore.close()
    return lost, (
        f"{WORKERS} processes x {ROWS} rows = {len(rows)} rows in {elapsed:.1f} s; system keys "
        f"stored {system_keys}, intermediate keys stored {sum(intermediate.values())} for "
        f"{PARTITIONS} partitions, keys used {len(used)}, stores that lost a race {lost}"
    )
