"""The processes soak: eight processes encrypt rows over shared partitions on one metastore
(a SQLite file, then PostgreSQL) while one of them is killed with SIGKILL every few seconds,
by preference in the middle of a metastore write, and restarted. Afterwards a fresh factory
decrypts every row any process reported as written (journaled and fsynced after
`encrypt_bytes` returned it): not one may fail, and no call may have failed.

Marked ``soak``: ``nox -s soak`` runs it (PostgreSQL started by tools/dbservers unless
``ASHERAH_POSTGRES_URL`` names one). ``ASHERAH_SOAK_SECONDS`` sets how long each metastore is
soaked (default 45).
"""

from __future__ import annotations

import importlib
import json
import mmap
import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from asherah_core import CryptoPolicy

from ._process_worker import ENCRYPTING, IDLE, STORING, factory_for

pytestmark = pytest.mark.soak

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_process_worker.py")
WORKERS = 8
PARTITIONS = 24
SECONDS = float(os.environ.get("ASHERAH_SOAK_SECONDS", "45"))
KILL_EVERY = (0.5, 2.5)
"""Seconds between kills, drawn uniformly."""
MID_WRITE_WAIT = 2.0
"""How long the parent watches for a process inside a metastore store before killing."""
READY_TIMEOUT = 60.0


def dbservers() -> Any:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("tools.dbservers")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    servers = dbservers()
    try:
        with servers.postgres() as server:
            yield str(server.url)
    except servers.DbServerError as error:
        pytest.fail(f"cannot provide PostgreSQL: {error}", pytrace=False)


@dataclass
class Worker:
    """One of the eight, across its incarnations."""

    number: int
    folder: Path
    settings: dict[str, Any]
    incarnation: int = 0
    process: subprocess.Popen[str] | None = None
    state: mmap.mmap | None = None
    journals: list[Path] = field(default_factory=list)

    def start(self) -> None:
        self.incarnation += 1
        journal = self.folder / f"journal-{self.number}-{self.incarnation}.jsonl"
        self.journals.append(journal)
        state_file = self.folder / f"state-{self.number}"
        if self.state is None:
            state_file.write_bytes(b"\0")
            with state_file.open("r+b") as file:
                self.state = mmap.mmap(file.fileno(), 1)
        self.state[0] = IDLE
        settings = {
            **self.settings,
            "worker": self.number,
            "incarnation": self.incarnation,
            "journal": str(journal),
            "state": str(state_file),
        }
        stderr = (self.folder / f"stderr-{self.number}-{self.incarnation}.txt").open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(settings)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        stderr.close()

    def wait_ready(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT)
        line = self.process.stdout.readline() if readable else ""
        if line.strip() != "ready":
            self.process.kill()
            pytest.fail(f"worker {self.number} did not start: {self.stderr()}")

    def kill(self) -> int:
        """SIGKILL the process; return what it was doing (`IDLE`, `ENCRYPTING`, `STORING`)."""
        assert self.process is not None
        assert self.state is not None
        doing = self.state[0]
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return doing

    def stderr(self) -> str:
        path = self.folder / f"stderr-{self.number}-{self.incarnation}.txt"
        return path.read_text()[-2000:] if path.exists() else ""


@dataclass
class Figures:
    rows: int = 0
    kills: int = 0
    kills_mid_store: int = 0
    kills_mid_encrypt: int = 0
    torn_lines: int = 0
    failed_calls: list[str] = field(default_factory=list)
    failed_decrypts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verify_seconds: float = 0.0

    def line(self, kind: str) -> str:
        return (
            f"processes soak[{kind}]: {WORKERS} processes, {PARTITIONS} shared partitions, "
            f"{self.seconds:.0f} s: {self.rows} rows written, {self.kills} kills "
            f"({self.kills_mid_store} inside a metastore store, {self.kills_mid_encrypt} "
            f"elsewhere inside an encrypt, {self.torn_lines} torn journal lines), "
            f"{len(self.failed_calls)} failed calls, {len(self.failed_decrypts)} rows "
            f"that did not decrypt (verified in {self.verify_seconds:.1f} s)"
        )


def soak(target: str, folder: Path) -> Figures:
    figures = Figures()
    service = f"soak-{uuid.uuid4().hex[:8]}"
    stop = folder / "stop"
    settings = {
        "service": service,
        "target": target,
        "partitions": [f"p{i}" for i in range(PARTITIONS)],
        "stop": str(stop),
    }
    workers = [Worker(n, folder, settings) for n in range(WORKERS)]
    rng = random.Random()
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        started = time.monotonic()
        while time.monotonic() - started < SECONDS:
            time.sleep(rng.uniform(*KILL_EVERY))
            victim = pick_victim(workers, rng)
            figures.kills += 1
            doing = victim.kill()
            figures.kills_mid_store += doing == STORING
            figures.kills_mid_encrypt += doing == ENCRYPTING
            victim.start()
            victim.wait_ready()
        figures.seconds = time.monotonic() - started
        stop.touch()
        for worker in workers:
            assert worker.process is not None
            code = worker.process.wait(timeout=120)
            assert code == 0, f"worker {worker.number} exited {code}: {worker.stderr()}"
    finally:
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
    verify(service, target, workers, figures)
    return figures


def pick_victim(workers: list[Worker], rng: random.Random) -> Worker:
    """A process inside a metastore store if one is seen within `MID_WRITE_WAIT`, else any."""
    deadline = time.monotonic() + MID_WRITE_WAIT
    while time.monotonic() < deadline:
        storing = [w for w in workers if w.state is not None and w.state[0] == STORING]
        if storing:
            return rng.choice(storing)
        time.sleep(0.0005)
    return rng.choice(workers)


def verify(service: str, target: str, workers: list[Worker], figures: Figures) -> None:
    """Decrypt every journaled row in a fresh factory (nothing cached, a new engine), with
    the default policy: its caches hold every key the soak made."""
    started = time.monotonic()
    factory = factory_for(service, target, CryptoPolicy())
    sessions: dict[str, Any] = {}
    try:
        for journal in (j for w in workers for j in w.journals if j.exists()):
            for raw in journal.read_bytes().split(b"\n"):
                if not raw:
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    figures.torn_lines += 1  # the process died while writing it: not reported
                    continue
                if "failed" in line:
                    figures.failed_calls.append(line["failed"])
                    continue
                figures.rows += 1
                partition = line["partition"]
                if partition not in sessions:
                    sessions[partition] = factory.get_session(partition)
                try:
                    plaintext = sessions[partition].decrypt_bytes(line["drr"])
                except Exception as error:  # each failure is counted and shown
                    figures.failed_decrypts.append(f"{type(error).__name__}: {error}"[:300])
                    continue
                if plaintext != line["plaintext"].encode():
                    figures.failed_decrypts.append(f"wrong plaintext for {line['plaintext']}")
    finally:
        factory.close()
    figures.verify_seconds = time.monotonic() - started


def check(figures: Figures) -> None:
    assert figures.kills > 0
    assert figures.rows > 0
    assert not figures.failed_calls, figures.failed_calls[:5]
    assert not figures.failed_decrypts, figures.failed_decrypts[:5]


def test_processes_killed_mid_write_on_a_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    factory = factory_for("setup", url)
    factory.metastore.create_table()
    factory.close()
    figures = soak(url, tmp_path)
    with capsys.disabled():
        print(f"\n  {figures.line('sqlite')}")
    check(figures)


def test_processes_killed_mid_write_on_postgresql(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = factory_for("setup", postgres_url)
    factory.metastore.create_table()
    factory.close()
    figures = soak(postgres_url, tmp_path)
    with capsys.disabled():
        print(f"\n  {figures.line('postgresql')}")
    check(figures)
