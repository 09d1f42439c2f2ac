"""Rewrap throughput: ``asherah-kms rewrap`` over 100,000 rows of 1 KB on SQLite and PostgreSQL,
and the time of ``asherah-kms keys --usage`` over them.

``python -m tools.bench.rewrap`` (``nox -s bench_rewrap`` installs what it needs and provides
PostgreSQL through tools/dbservers unless ``ASHERAH_POSTGRES_URL`` names one). Each database
gets a key table and an application table ``secrets(id, tenant, payload)`` filled through our
`Session` (100 partitions); the system key is then revoked, so every row must move. The
commands run as an operator runs them, in a process of their own; the times include its
start-up (about half a second). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from asherah_core import SessionFactory, StaticKms
from asherah_core.metastore.sql import SqlMetastore

MASTER_KEY = b"thisIsAStaticMasterKeyForTesting"
SERVICE, PRODUCT = "bench", "rewrap"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Figures:
    """What one database measured."""

    database: str
    rows: int
    fill_seconds: float
    usage_seconds: float
    rewrap_seconds: float
    rewrap_inner_seconds: float
    rewrapped: int
    second_pass_seconds: float
    usage_after_seconds: float


def say(message: str) -> None:
    print(f"[bench rewrap] {message}", file=sys.stderr, flush=True)


def fill(url: str, rows: int, partitions: int, size: int) -> float:
    start = time.perf_counter()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS secrets")
        conn.exec_driver_sql(
            "CREATE TABLE secrets (id BIGINT PRIMARY KEY, tenant VARCHAR(64) NOT NULL, "
            "payload TEXT)"
        )
    metastore = SqlMetastore(url)
    metastore.create_table()
    insert = sa.text("INSERT INTO secrets (id, tenant, payload) VALUES (:i, :t, :p)")
    with SessionFactory(SERVICE, PRODUCT, kms=StaticKms(MASTER_KEY), metastore=metastore) as f:
        batch: list[dict[str, object]] = []
        for i in range(1, rows + 1):
            tenant = f"tenant-{i % partitions}"
            record = f.get_session(tenant).encrypt_bytes(os.urandom(size))
            batch.append({"i": i, "t": tenant, "p": record})
            if len(batch) == 5000 or i == rows:
                with engine.begin() as conn:
                    conn.execute(insert, batch)
                batch = []
    engine.dispose()
    return time.perf_counter() - start


def config_file(folder: Path, url: str) -> Path:
    path = folder / "plugins.toml"
    path.write_text(
        f'[asherah]\nservice = "{SERVICE}"\nproduct = "{PRODUCT}"\n\n[kms]\nplugin = "static"\n\n'
        f'[plugins.static]\nmaster_key = "{MASTER_KEY.decode()}"\n\n[metastore]\nplugin = "sql"\n\n'
        f'[metastores.sql]\nurl = "{url}"\n',
        encoding="utf-8",
    )
    return path


def cli(config: Path, url: str, *argv: str) -> tuple[float, str]:
    table = ["--table", "secrets", "--record-column", "payload", "--partition-column", "tenant"]
    env = {**os.environ, "ASHERAH_CONFIG": str(config), "ASHERAH_ROWS_URL": url}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "asherah_core.cli", *argv, *table],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"asherah-kms {' '.join(argv)} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def measure(name: str, url: str, rows: int, partitions: int, size: int) -> Figures:
    say(f"{name}: filling {rows} rows of {size} bytes over {partitions} partitions")
    filled = fill(url, rows, partitions, size)
    with tempfile.TemporaryDirectory() as folder:
        config = config_file(Path(folder), url)
        usage_seconds, out = cli(config, url, "keys", "--usage", "--json")
        usage = json.loads(out)
        (system,) = [k for k in usage["keys"] if k["kind"] == "system" and k["rows"]]
        say(f"{name}: keys --usage {usage_seconds:.2f} s; revoking {system['id']}")
        with SqlMetastore(url) as metastore:
            assert metastore.revoke(system["id"], system["created"])
        seconds, out = cli(config, url, "rewrap", "--json", "--progress", "none")
        summary = json.loads(out)
        say(f"{name}: rewrap {seconds:.2f} s ({summary['rewrapped']} rewrapped)")
        again, _ = cli(config, url, "rewrap", "--json", "--progress", "none")
        usage_after, _ = cli(config, url, "keys", "--usage", "--json")
    return Figures(
        name,
        rows,
        filled,
        usage_seconds,
        seconds,
        summary["seconds"],
        summary["rewrapped"],
        again,
        usage_after,
    )


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    given = os.environ.get("ASHERAH_POSTGRES_URL")
    if given:
        yield given
        return
    sys.path.insert(0, str(ROOT))
    from tools import dbservers  # noqa: PLC0415

    with dbservers.postgres() as server:
        yield server.url


def table(figures: list[Figures]) -> str:
    lines = [
        "| Database | Rows | `rewrap` (whole command) | rows/s | rows/s inside the walk "
        "| second pass (all current) | `keys --usage` before / after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in figures:
        lines.append(
            f"| {f.database} | {f.rows:,} | {f.rewrap_seconds:.1f} s | "
            f"{f.rows / f.rewrap_seconds:,.0f} | {f.rows / f.rewrap_inner_seconds:,.0f} | "
            f"{f.second_pass_seconds:.1f} s | {f.usage_seconds:.2f} s / "
            f"{f.usage_after_seconds:.2f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.rewrap", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes of data per row")
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    args = parser.parse_args(argv)
    figures: list[Figures] = []
    with tempfile.TemporaryDirectory() as folder:
        if args.only in (None, "sqlite"):
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            figures.append(measure("SQLite", url, args.rows, args.partitions, args.size))
        if args.only in (None, "postgres"):
            with postgres_url() as url:
                figures.append(measure("PostgreSQL", url, args.rows, args.partitions, args.size))
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
