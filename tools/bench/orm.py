"""The encrypted ORM column against a plain one: SQLAlchemy insert and select of the same rows.

Two mapped tables on one SQLite file, alike but for ``body``: ``Text`` in one,
``EncryptedText(factory, partition_from="tenant")`` in the other. Each round inserts `rows` rows
over `partitions` tenants into each table (one ``add_all`` and ``commit``), then selects them all
in a new ORM session and reads every body; the two tables take turns in a shuffled order. The
factory lives for the whole run, so after the warm-up round every key is cached: the figures are
the steady state of a service, the per-row cost of sealing or opening one value.

``python -m tools.bench.orm [--quick]`` runs this part alone (no LocalStack needed).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OrmConfig", "OrmResults", "orm_markdown", "run_orm"]


@dataclass(frozen=True)
class OrmConfig:
    """What to run; the defaults are the published figures' settings."""

    rows: int = 10_000
    partitions: int = 10
    body_bytes: int = 1024
    rounds: int = 7
    warmup: int = 1
    seed: int = 20261205


@dataclass
class OrmResults:
    """Seconds per row of each round: ``(table, "insert" | "select") -> [per-row seconds]``."""

    config: OrmConfig
    per_row: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def median_us(self, table: str, op: str) -> float:
        return statistics.median(self.per_row[(table, op)]) * 1e6

    def overhead_us(self, op: str) -> float:
        """The median, over rounds, of (encrypted - plain) per row, in microseconds."""
        pairs = zip(self.per_row[("encrypted", op)], self.per_row[("plain", op)], strict=True)
        return statistics.median(e - p for e, p in pairs) * 1e6


def run_orm(cfg: OrmConfig) -> OrmResults:
    """Insert and select `cfg.rows` rows in each table for `cfg.rounds` measured rounds."""
    import sqlalchemy  # noqa: PLC0415 - the bench's dependencies, not the module's
    from sqlalchemy import Integer, String, Text, create_engine, delete, select  # noqa: PLC0415
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column  # noqa: PLC0415

    import asherah_core  # noqa: PLC0415
    from asherah_core import SessionFactory, StaticKms  # noqa: PLC0415
    from asherah_core.integrations.sqlalchemy import EncryptedText  # noqa: PLC0415
    from asherah_core.metastore import InMemoryMetastore  # noqa: PLC0415

    factory = SessionFactory(
        "bench", "orm", kms=StaticKms(b"b" * 32), metastore=InMemoryMetastore(), row_metrics=False
    )

    class Base(DeclarativeBase):
        pass

    # Columns without annotations: the classes are local, and annotations would be resolved
    # in the module's namespace.
    class Plain(Base):
        __tablename__ = "plain_row"
        id = mapped_column(Integer, primary_key=True)
        tenant = mapped_column(String(64))
        body = mapped_column(Text)

    class Encrypted(Base):
        __tablename__ = "encrypted_row"
        id = mapped_column(Integer, primary_key=True)
        tenant = mapped_column(String(64))
        body = mapped_column(EncryptedText(factory, partition_from="tenant"))

    models: dict[str, Any] = {"plain": Plain, "encrypted": Encrypted}
    results = OrmResults(
        cfg,
        versions={"SQLAlchemy": sqlalchemy.__version__, "asherah-core": asherah_core.__version__},
    )
    rng = random.Random(cfg.seed)
    body = "x" * cfg.body_bytes
    tenants = [f"tenant-{n}" for n in range(cfg.partitions)]
    with tempfile.TemporaryDirectory(prefix="asherah-bench-orm-") as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'orm.db'}")
        Base.metadata.create_all(engine)
        try:
            for round_no in range(cfg.warmup + cfg.rounds):
                order = list(models)
                rng.shuffle(order)
                for name in order:
                    model = models[name]
                    with Session(engine) as session:
                        session.execute(delete(model))
                        session.commit()
                    rows = [
                        model(tenant=tenants[n % cfg.partitions], body=body)
                        for n in range(cfg.rows)
                    ]
                    with Session(engine) as session:
                        start = time.perf_counter()
                        session.add_all(rows)
                        session.commit()
                        inserted = time.perf_counter() - start
                    with Session(engine) as session:
                        start = time.perf_counter()
                        found = session.scalars(select(model)).all()
                        total = sum(len(row.body) for row in found)
                        selected = time.perf_counter() - start
                    if total != cfg.rows * cfg.body_bytes:
                        raise RuntimeError(f"{name}: read back {total} characters, not the rows")
                    if round_no >= cfg.warmup:
                        results.per_row.setdefault((name, "insert"), []).append(inserted / cfg.rows)
                        results.per_row.setdefault((name, "select"), []).append(selected / cfg.rows)
        finally:
            engine.dispose()
            factory.close()
    return results


def orm_markdown(results: OrmResults) -> list[str]:
    """The page's section on the encrypted ORM column."""
    cfg = results.config
    lines = [
        "### Encrypted ORM columns: insert and select against plain columns",
        "",
        f"SQLAlchemy {results.versions['SQLAlchemy']}, a SQLite file: {cfg.rows:,} rows over "
        f"{cfg.partitions} tenants inserted (one `add_all` and `commit`) and selected (every "
        f"body read) through the ORM, with a {cfg.body_bytes:,}-character `body` as "
        '`EncryptedText(factory, partition_from="tenant")` against the same rows with `Text`. '
        "Keys cached (the steady state of a service); medians of "
        f"{cfg.rounds} rounds, the two tables taking turns (`tools/bench/orm.py`).",
        "",
        "| | plain `Text` (µs/row) | encrypted (µs/row) | encryption overhead (µs/row) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for op in ("insert", "select"):
        lines.append(
            f"| {op} | {results.median_us('plain', op):.1f} | "
            f"{results.median_us('encrypted', op):.1f} | {results.overhead_us(op):.1f} |"
        )
    lines += [
        "",
        "The overhead is sealing (insert) or opening (select) one 1 KB value with a cached "
        "intermediate key, plus the ORM events that give it its row's partition.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.orm", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    args = parser.parse_args(argv)
    cfg = OrmConfig(rounds=3) if args.quick else OrmConfig()
    print("\n".join(orm_markdown(run_orm(cfg))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
