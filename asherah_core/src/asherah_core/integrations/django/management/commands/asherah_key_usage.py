"""``manage.py asherah_key_usage app_label.Model.field``: the rows of an encrypted field per
intermediate and per system key, beside the metastore's keys, so an operator sees when a key
has no rows left and may be retired.

A thin wrapper of `asherah_core.table_rotation.key_usage`, like ``asherah-kms keys --usage``.
Exit status 1 (`CommandError`) when records do not parse or name a key the metastore lacks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asherah_core.errors import AsherahError
from asherah_core.integrations.django.factory import get_factory
from asherah_core.records import EnvelopeKeyRecord


class Command(BaseCommand):
    """One line per key: id@created, kind, revoked, rows of the field under it."""

    help = (
        "Count the rows of an encrypted field (app_label.Model.field) under each intermediate "
        "and system key; keys of the metastore with no rows show 0."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("field", help="the encrypted field: app_label.Model.field")
        parser.add_argument(
            "--prefix", default="", help="list the metastore's keys starting with this"
        )
        parser.add_argument("--where", metavar="SQL", help="an SQL condition on the rows")
        parser.add_argument("--database", help="the DATABASES alias (default: the router's)")
        parser.add_argument(
            "--url", help="a SQLAlchemy URL of the database instead (other backends)"
        )
        parser.add_argument("--json", action="store_true", help="print the counts as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            import sqlalchemy as sa  # noqa: PLC0415

            from asherah_core.integrations.django.rows import (  # noqa: PLC0415 - SQLAlchemy
                engine_for,
                field_rows,
                shown,
            )
            from asherah_core.table_rotation import key_usage  # noqa: PLC0415
        except ImportError as error:
            raise CommandError(str(error)) from None
        target = field_rows(options["field"], database=options["database"], where=options["where"])
        engine, _ = engine_for(target.database, options["url"])  # shows no driver text
        metastore = get_factory().metastore
        try:
            usage = key_usage(engine, target.rows, metastore)
            counts = {
                (meta.key_id, meta.created): n
                for meta, n in [*usage.intermediate.items(), *usage.system.items()]
            }
            stored: dict[tuple[str, int], EnvelopeKeyRecord | None] = {
                (k, c): record for k, c, record in metastore.keys(options["prefix"])
            }
            for key_id, created in set(counts) - set(stored):  # keys outside --prefix
                stored[(key_id, created)] = metastore.load(key_id, created)
        except AsherahError as error:
            raise CommandError(str(error)) from None
        except sa.exc.SQLAlchemyError as error:
            original = getattr(error, "orig", None)  # not SQLAlchemy's text: it holds parameters
            raise CommandError(
                f"{shown(engine)}: the database failed ({type(original or error).__name__})"
            ) from None
        finally:
            engine.dispose()
        keys = sorted(stored, key=lambda k: (not k[0].startswith("_SK_"), k[0], k[1]))
        entries = [
            {
                "id": key_id,
                "kind": _kind(key_id),
                "created": created,
                "created_utc": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "in_metastore": stored[(key_id, created)] is not None,
                "revoked": _revoked(stored[(key_id, created)]),
                "rows": counts.get((key_id, created), 0),
            }
            for key_id, created in keys
        ]
        problems = {
            "unreadable_records": usage.unreadable,
            "empty_records": usage.empty,
            "rows_under_keys_not_in_metastore": usage.unknown_parent,
        }
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "field": target.label,
                        "database": shown(engine),
                        "rows": usage.rows,
                        "seconds": round(usage.seconds, 3),
                        **problems,
                        "keys": entries,
                    },
                    default=str,
                )
            )
        else:
            self._table(entries)
            self.stderr.write(
                f"{usage.rows} row(s) of {target.label} counted in {usage.seconds:.2f} s; "
                f"{usage.unreadable} unreadable, {usage.empty} empty, {usage.unknown_parent} "
                "under intermediate keys the metastore does not hold"
            )
        if usage.unreadable or usage.unknown_parent:
            raise CommandError(
                "some records do not parse or name a key the metastore does not hold"
            )

    def _table(self, entries: list[dict[str, Any]]) -> None:
        header = ["KEY", "KIND", "CREATED (UTC)", "REVOKED", "ROWS"]
        rows = [
            [
                f"{e['id']}@{e['created']}",
                e["kind"],
                e["created_utc"],
                "MISSING" if not e["in_metastore"] else "yes" if e["revoked"] else "no",
                str(e["rows"]),
            ]
            for e in entries
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]).rstrip())


def _kind(key_id: str) -> str:
    if key_id.startswith("_SK_"):
        return "system"
    if key_id.startswith("_IK_"):
        return "intermediate"
    return "other"


def _revoked(record: EnvelopeKeyRecord | None) -> bool | None:
    return None if record is None else bool(record.revoked)
