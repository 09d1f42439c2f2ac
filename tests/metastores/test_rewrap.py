"""``asherah-kms rewrap`` on SQLite and PostgreSQL: rows of ours and of the ``asherah`` package
moved off revoked keys and read by both afterwards; runs killed at random points and resumed
while the application keeps writing, losing nothing; ``--key`` touching only its rows.

Run through ``nox -s metastores`` (it installs the pinned ``asherah`` package and provides
PostgreSQL); every test here carries the ``servers`` marker, the SQLite ones too, so that the
unit run (``nox -s tests``) stays short.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from asherah_core import SessionFactory, StaticKms
from asherah_core.metastore.sql import SqlMetastore

from ._race_worker import MASTER_KEY

SERVICE, PRODUCT = "rewrapsvc", "prod"
PEER = Path(__file__).with_name("_asherah_peer.py")

pytestmark = pytest.mark.servers

KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
]


@dataclass
class Db:
    """One database holding both the key table and the application's ``secrets`` table."""

    kind: str
    url: str  # SQLAlchemy URL, password included (tests only)
    peer_connection: str  # what the asherah package's configuration takes
    workdir: Path

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url, **_engine_options(self.kind))

    def metastore(self) -> SqlMetastore:
        return SqlMetastore(self.url)

    def factory(self) -> SessionFactory:
        return SessionFactory(
            SERVICE, PRODUCT, kms=StaticKms(MASTER_KEY), metastore=self.metastore()
        )

    def config(self) -> Path:
        path = self.workdir / "plugins.toml"
        path.write_text(
            f"""
[asherah]
service = "{SERVICE}"
product = "{PRODUCT}"

[kms]
plugin = "static"

[plugins.static]
master_key = "{MASTER_KEY.decode()}"

[metastore]
plugin = "sql"

[metastores.sql]
url = "{self.url}"
""",
            encoding="utf-8",
        )
        return path

    def cli(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "asherah_core.cli", *argv, *self.table_args(argv[0])],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            check=False,
        )

    def env(self) -> dict[str, str]:
        return {**os.environ, "ASHERAH_CONFIG": str(self.config()), "ASHERAH_ROWS_URL": self.url}

    def table_args(self, command: str) -> list[str]:
        if command not in ("rewrap", "keys"):
            return []
        return ["--table", "secrets", "--record-column", "payload", "--partition-column", "tenant"]


def _engine_options(kind: str) -> dict[str, Any]:
    return {"connect_args": {"timeout": 30.0}} if kind == "sqlite" else {}


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    kind: str = request.param
    if kind == "sqlite":
        path = tmp_path / "app.db"
        made = Db(kind, f"sqlite:///{path}", str(path), tmp_path)
        made.metastore().create_table()
    else:
        server = request.getfixturevalue("postgres_server")
        schema = f"rw{uuid.uuid4().hex[:10]}"
        base = sa.make_url(server.url)
        with SqlMetastore(server.url) as admin, admin.engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        connection = (
            f"postgres://{base.username}:{base.password}@{base.host}:{base.port}/{base.database}"
            f"?options=-csearch_path%3D{schema}"
        )
        made = Db(kind, url.render_as_string(hide_password=False), connection, tmp_path)
        with made.metastore() as metastore:
            metastore.create_table(jsonb=True)  # the asherah package needs JSONB here
    engine = made.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE secrets (id INTEGER PRIMARY KEY, tenant VARCHAR(64) NOT NULL, "
            "payload TEXT)"
        )
    engine.dispose()
    return made


def insert(db: Db, rows: list[tuple[int, str, str]]) -> None:
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO secrets (id, tenant, payload) VALUES (:i, :t, :p)"),
            [{"i": i, "t": t, "p": p} for i, t, p in rows],
        )
    engine.dispose()


def table(db: Db) -> dict[int, tuple[str, str]]:
    engine = db.engine()
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, tenant, payload FROM secrets")).all()
    engine.dispose()
    return {i: (t, p) for i, t, p in rows}


def ik_of(record: str) -> tuple[str, int]:
    meta = json.loads(record)["Key"]["ParentKeyMeta"]
    return meta["KeyId"], meta["Created"]


def revoked_keys(db: Db) -> set[tuple[str, int]]:
    with db.metastore() as metastore:
        return {(k, c) for k, c, r in metastore.keys("") if r.revoked}


# --- Rows of both implementations ---------------------------------------------------------------


def peer(db: Db, **job: Any) -> dict[str, list[str]]:
    config = {
        "ServiceName": SERVICE,
        "ProductID": PRODUCT,
        "KMS": "static",
        "StaticMasterKeyHex": MASTER_KEY.hex(),
        "ConfigDriftForceRun": True,
        "Metastore": "sqlite" if db.kind == "sqlite" else "rdbms",
        "ConnectionString": db.peer_connection,
    }
    env = {**os.environ, "ASHERAH_CONFIG_DRIFT_FORCE_RUN": "true"}
    done = subprocess.run(
        [sys.executable, str(PEER), json.dumps({"config": config, **job})],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.skipif(
    importlib.util.find_spec("asherah") is None,
    reason="the asherah package is not installed (nox -s metastores installs it)",
)
def test_rows_of_ours_and_of_the_asherah_package_rewrapped_and_read_by_both(db: Db) -> None:
    """The system key is revoked (routine rotation): every row, whoever wrote it, moves to new
    keys; both implementations read every row afterwards."""
    ours = [(f"p{i % 3}", f"ours {i}") for i in range(9)]
    theirs = [(f"p{i % 3}", f"theirs {i}") for i in range(9)]
    with db.factory() as factory:
        mine = [factory.get_session(p).encrypt_bytes(t.encode()) for p, t in ours]
    their_rows = peer(db, encrypt=[[p, t] for p, t in theirs])["encrypted"]
    rows = [
        (i, p, r)
        for i, ((p, _), r) in enumerate(zip(ours + theirs, mine + their_rows, strict=True), 1)
    ]
    insert(db, rows)
    expected = {i: text for i, (_, text) in enumerate(ours + theirs, 1)}
    old_keys = {ik_of(r) for _, _, r in rows}

    usage = db.cli("keys", "--usage", "--json")
    assert usage.returncode == 0, usage.stderr
    counts = {(k["id"], k["created"]): k["rows"] for k in json.loads(usage.stdout)["keys"]}
    (system,) = [k for k in counts if k[0].startswith("_SK_") and counts[k]]
    assert counts[system] == 18
    assert db.cli("revoke-key", system[0], str(system[1])).returncode == 0

    done = db.cli("rewrap", "--json", "--batch-size", "4")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rewrapped"], summary["current"], summary["failed"]) == (18, 0, {})

    after = table(db)
    assert not {ik_of(p) for _, p in after.values()} & old_keys
    with db.factory() as factory:
        for i, (tenant, record) in after.items():
            assert factory.get_session(tenant).decrypt_bytes(record).decode() == expected[i]
    decrypted = peer(db, decrypt=[[t, r] for _, (t, r) in sorted(after.items())])["decrypted"]
    assert decrypted == [expected[i] for i in sorted(after)]

    usage = db.cli("keys", "--usage", "--json")
    counts = {(k["id"], k["created"]): k["rows"] for k in json.loads(usage.stdout)["keys"]}
    assert counts[system] == 0  # the old system key may be retired
    assert all(counts.get(key, 0) == 0 for key in old_keys)


def test_key_touches_only_the_rows_of_that_key(db: Db) -> None:
    with db.factory() as factory:
        insert(
            db,
            [
                (i, f"t{i % 3}", factory.get_session(f"t{i % 3}").encrypt_bytes(b"%d" % i))
                for i in range(1, 31)
            ],
        )
    before = table(db)
    targets = {ik_of(before[i][1]) for i in (1, 2)}
    for key_id, created in targets:
        assert db.cli("revoke-key", key_id, str(created)).returncode == 0
    chosen = ik_of(before[1][1])
    done = db.cli("rewrap", "--key", f"{chosen[0]}@{chosen[1]}", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rewrapped"] == 10
    after = table(db)
    changed = {i for i in after if after[i] != before[i]}
    assert changed == {i for i in before if ik_of(before[i][1]) == chosen}
    assert all(ik_of(after[i][1]) != chosen for i in after)


# --- Killed and resumed while the application writes --------------------------------------------


class Application:
    """Rewrites random rows with new data until stopped, through a factory that made its keys
    before the revocation (so it keeps writing under the revoked key, as a process would until
    its next revocation check); records what each row must decrypt to. A reader checks at
    the same time that every row it reads opens."""

    def __init__(self, db: Db, expected: dict[int, bytes]) -> None:
        self.db = db
        self.expected = expected
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.writes = 0
        self.reads = 0
        self.factory = db.factory()
        for tenant in {f"t{i % 4}" for i in expected}:
            self.factory.get_session(tenant).encrypt_bytes(b"warm the cache")
        self.threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        self.factory.close()

    def _write(self) -> None:
        engine = self.db.engine()
        rng = random.Random(7)
        try:
            while not self.stop.is_set():
                i = rng.choice(list(self.expected))
                data = os.urandom(24)
                record = self.factory.get_session(f"t{i % 4}").encrypt_bytes(data)
                try:
                    with engine.begin() as conn:
                        conn.execute(
                            sa.text("UPDATE secrets SET payload = :p WHERE id = :i"),
                            {"p": record, "i": i},
                        )
                except sa.exc.OperationalError as e:  # SQLite busy past its timeout
                    self.errors.append(f"write {i}: {type(e.orig).__name__}")
                    continue
                with self.lock:
                    self.expected[i] = data
                    self.writes += 1
                time.sleep(0.003)
        finally:
            engine.dispose()

    def _read(self) -> None:
        engine = self.db.engine()
        rng = random.Random(11)
        with self.db.factory() as factory:
            try:
                while not self.stop.is_set():
                    i = rng.choice(list(self.expected))
                    with engine.connect() as conn:
                        record = conn.execute(
                            sa.text("SELECT payload FROM secrets WHERE id = :i"), {"i": i}
                        ).scalar_one()
                    try:
                        factory.get_session(f"t{i % 4}").decrypt_bytes(record)
                    except Exception as e:
                        self.errors.append(f"read {i}: {type(e).__name__}: {e}")
                    self.reads += 1
            finally:
                engine.dispose()


class StillOld:
    """Counts the rows whose record names one of the old keys, in SQL."""

    def __init__(self, db: Db, keys: set[tuple[str, int]]) -> None:
        self.engine = db.engine()
        patterns = {f"p{n}": f'%"KeyId":"{k}","Created":{c}}}%' for n, (k, c) in enumerate(keys)}
        where = " OR ".join(f"payload LIKE :{name}" for name in patterns)
        self.query = sa.text(f"SELECT count(*) FROM secrets WHERE {where}")
        self.params = patterns

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self.query, self.params).scalar_one())


def test_runs_killed_at_random_points_and_resumed_lose_nothing(db: Db) -> None:
    count = 3000
    expected: dict[int, bytes] = {}
    rows = []
    with db.factory() as factory:
        for i in range(1, count + 1):
            data = os.urandom(24)
            expected[i] = data
            rows.append((i, f"t{i % 4}", factory.get_session(f"t{i % 4}").encrypt_bytes(data)))
    insert(db, rows)
    app = Application(db, expected)
    old_keys = {ik_of(r) for _, _, r in rows}  # every partition's key
    for key_id, created in old_keys:
        assert db.cli("revoke-key", key_id, str(created)).returncode == 0
    still_old = StillOld(db, old_keys)

    rng = random.Random(2026)
    command = [sys.executable, "-m", "asherah_core.cli", "rewrap", "--batch-size", "200"]
    command += ["--progress", "none", *db.table_args("rewrap")]
    killed = 0
    app.start()
    try:
        for run in range(6):
            # Mostly SIGKILL (a crash: no clean-up at all); every third run Ctrl-C instead.
            sig = signal.SIGINT if run % 3 == 2 else signal.SIGKILL
            process = subprocess.Popen(
                command, env=db.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            # Stop it at a random point of the work left: after a random share of the rows
            # still under the old keys has moved (the application keeps adding some).
            left = still_old.count()
            target = left - int(left * rng.uniform(0.1, 0.8))
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                if still_old.count() <= target:
                    break
                time.sleep(0.05)
            if process.poll() is None:
                process.send_signal(sig)
                killed += 1
            _, raw = process.communicate(timeout=60)
            err = raw.decode()
            # 130: Ctrl-C seen by the command; -SIGINT: it came before the command started;
            # 1: rows the application kept rewriting during every retry (named on stderr).
            assert process.returncode in (0, 1, 130, -signal.SIGINT, -signal.SIGKILL), err
            if process.returncode == 1:
                assert "Traceback" not in err, err[-2000:]
                assert all(
                    "changed by the application" in line
                    for line in err.splitlines()
                    if "warning: row" in line
                ), err[-2000:]
            if process.returncode == 130:
                assert "interrupted" in err
                assert "Traceback" not in err
        assert killed >= 3, "the runs finished before they could be stopped; add rows"
    finally:
        app.finish()
    assert not app.errors, app.errors[:5]
    assert app.writes > 50
    assert app.reads > 10  # SQLite's readers wait for its writers

    done = db.cli("rewrap", "--json")  # the application stopped: this run finishes the job
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["failed"] == {}
    revoked = revoked_keys(db)
    with db.factory() as factory:
        for i, (tenant, record) in table(db).items():
            assert factory.get_session(tenant).decrypt_bytes(record) == expected[i], i
            assert ik_of(record) not in revoked, i
    again = db.cli("rewrap", "--json")
    assert json.loads(again.stdout)["rewrapped"] == 0


@pytest.mark.parametrize("db", [KINDS[1]], indirect=True)
def test_a_database_restart_mid_run_fails_cleanly_and_the_next_run_finishes(
    db: Db, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("postgres_server")
    if not server.restartable:
        pytest.skip("the server was given by environment variable; not stopping it")
    expected: dict[int, bytes] = {}
    rows = []
    with db.factory() as factory:
        for i in range(1, 10001):
            expected[i] = os.urandom(24)
            rows.append(
                (i, f"t{i % 4}", factory.get_session(f"t{i % 4}").encrypt_bytes(expected[i]))
            )
    insert(db, rows)
    for key_id, created in {ik_of(r) for _, _, r in rows}:
        assert db.cli("revoke-key", key_id, str(created)).returncode == 0

    command = [sys.executable, "-m", "asherah_core.cli", "rewrap", "--batch-size", "10"]
    process = subprocess.Popen(
        [*command, "--progress", "none", *db.table_args("rewrap")],
        env=db.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    original = {i: r for i, _, r in rows}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        moved = sum(original[i] != record for i, (_, record) in table(db).items())
        if moved >= 200:  # well under way: now the database goes away
            break
        time.sleep(0.02)
    server.stop()
    try:
        out, err = process.communicate(timeout=120)
    finally:
        server.start()
    assert process.returncode == 1, err
    assert "Traceback" not in err
    assert "run again" in err
    password = sa.make_url(db.url).password
    assert not password or str(password) not in err + out

    done = db.cli("rewrap", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rewrapped"] > 0  # the first run did not get to every row
    with db.factory() as factory:
        for i, (tenant, record) in table(db).items():
            assert factory.get_session(tenant).decrypt_bytes(record) == expected[i], i
