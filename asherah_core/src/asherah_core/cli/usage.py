"""``asherah-kms keys --usage``: rows of an application table per intermediate and system key,
beside the metastore's keys, so an operator sees when a key has no rows left to retire it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asherah_core._sqlsecrets import driver_failure, shown_url
from asherah_core.appconfig import metastore_from_file

from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    config_path,
    error,
    key_kind,
    print_json,
    print_table,
    printable,
    utc,
)
from ._table import open_engine, row_table

__all__ = ["show_usage"]


def show_usage(args: argparse.Namespace) -> int:
    """Count the rows per key and print them with the metastore's keys (``--prefix``)."""
    from asherah_core.table_rotation import key_usage  # noqa: PLC0415 - SQLAlchemy

    rows = row_table(args)
    engine, secrets = open_engine(args)
    import sqlalchemy as sa  # noqa: PLC0415

    name, metastore = metastore_from_file(config_path(args))
    try:
        with metastore:
            usage = key_usage(engine, rows, metastore)
            stored = {
                (k.key_id, k.created): k.record
                for k in metastore.list_keys(args.prefix)
                if k.key_id is not None and k.created is not None
            }
    except sa.exc.SQLAlchemyError as e:  # SQLAlchemy's own text holds the statement
        failure = driver_failure(e, secrets)
        return error(f"{shown_url(engine.url)}: the database failed: {failure}", EXIT_FAILED)
    finally:
        engine.dispose()
    counts: dict[tuple[str, int], int] = {}
    for meta, n in [*usage.intermediate.items(), *usage.system.items()]:
        counts[(meta.key_id, meta.created)] = n
    keys = sorted(
        set(stored) | {k for k in counts if k[0].startswith(args.prefix)},
        key=lambda k: (key_kind(k[0]) != "system", k[0], k[1]),
    )
    entries: list[dict[str, Any]] = []
    for key_id, created in keys:
        record = stored.get((key_id, created))
        in_store = (key_id, created) in stored
        entries.append(
            {
                "id": key_id,
                "kind": key_kind(key_id),
                "created": created,
                "created_utc": utc(created),
                "in_metastore": in_store,
                "revoked": None if record is None else record.revoked,
                "rows": counts.get((key_id, created), 0),
            }
        )
    problems = {
        "unreadable_records": usage.unreadable,
        "empty_records": usage.empty,
        "rows_under_keys_not_in_metastore": usage.unknown_parent,
    }
    if args.json:
        print_json(
            {
                "table": rows.name,
                "database": shown_url(engine.url),
                "metastore": name,
                "rows": usage.rows,
                "seconds": round(usage.seconds, 3),
                **problems,
                "keys": entries,
            }
        )
    else:
        print_table(
            ["KEY", "KIND", "CREATED (UTC)", "REVOKED", "ROWS"],
            [
                [
                    f"{printable(e['id'])}@{e['created']}",
                    e["kind"],
                    e["created_utc"],
                    _revoked(e),
                    str(e["rows"]),
                ]
                for e in entries
            ],
        )
        print(
            f"{usage.rows} row(s) in {rows.name} counted in {usage.seconds:.2f} s; "
            f"{usage.unreadable} unreadable, {usage.empty} empty, {usage.unknown_parent} under "
            "intermediate keys the metastore does not hold",
            file=sys.stderr,
        )
    if usage.unreadable or usage.unknown_parent:
        return error(
            "some records do not parse or name a key the metastore does not hold", EXIT_FAILED
        )
    return EXIT_OK


def _revoked(entry: dict[str, Any]) -> str:
    if not entry["in_metastore"]:
        return "MISSING"
    return "yes" if entry["revoked"] else "no"
