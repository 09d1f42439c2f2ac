"""``manage.py asherah_rewrap app_label.Model.field``: move the records of an encrypted field
off keys that are not current (or off a named key).

A thin wrapper of `asherah_core.table_rotation.rewrap_table`, like ``asherah-kms rewrap``: the
table, key column and partition column come from the field (its ``partition_from``), the
factory from ``settings.ASHERAH``. Exit status 1 (`CommandError`) when a row failed.
"""

from __future__ import annotations

import json
import time
from argparse import ArgumentTypeError
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asherah_core._sqlsecrets import driver_failure
from asherah_core.errors import AsherahError
from asherah_core.integrations.django.factory import get_factory
from asherah_core.rewrap_report import FailedRows, start_key

if TYPE_CHECKING:  # imported in handle(): SQLAlchemy may be missing, said by a CommandError
    from asherah_core.table_rotation import RewrapSummary

DEFAULT_BATCH_SIZE = 500  # table_rotation.DEFAULT_BATCH_SIZE
LOG_EVERY_SECONDS = 5.0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 1_000_000:
        raise ArgumentTypeError(f"{value} is not between 1 and 1000000")
    return value


class Command(BaseCommand):
    """Rewrap (or re-encrypt) the stored records of one encrypted field."""

    help = (
        "Walk the table of an encrypted field (app_label.Model.field) in primary-key order, one "
        "transaction per batch, and rewrap every record whose intermediate key is not its "
        "partition's current one (or only those under --key / --system-key). A row is updated "
        "only if it still holds the record read; interrupted, run it again to finish."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("field", help="the encrypted field: app_label.Model.field")
        parser.add_argument("--key", metavar="ID[@CREATED]", help="only rows under this key")
        parser.add_argument(
            "--system-key",
            metavar="ID[@CREATED]",
            help="only rows whose intermediate key this system key seals",
        )
        parser.add_argument(
            "--reencrypt",
            action="store_true",
            help="a new row key and the data encrypted again (a row key may have leaked; "
            "needs --key or --system-key)",
        )
        parser.add_argument("--dry-run", action="store_true", help="check and count; write nothing")
        parser.add_argument(
            "--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, help="rows per transaction"
        )
        parser.add_argument("--start-after", metavar="PK", help="resume after this primary key")
        parser.add_argument("--where", metavar="SQL", help="an SQL condition on the rows")
        parser.add_argument("--database", help="the DATABASES alias (default: the router's)")
        parser.add_argument(
            "--url", help="a SQLAlchemy URL of the database instead (other backends)"
        )
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            import sqlalchemy as sa  # noqa: PLC0415 - the walk's database layer

            from asherah_core.integrations.django.rows import (  # noqa: PLC0415
                engine_for,
                field_rows,
                shown,
            )
            from asherah_core.table_rotation import KeySelector, rewrap_table  # noqa: PLC0415
        except ImportError as error:
            raise CommandError(str(error)) from None
        try:
            key = None if options["key"] is None else KeySelector.parse(options["key"])
            system_key = (
                None if options["system_key"] is None else KeySelector.parse(options["system_key"])
            )
        except AsherahError as error:
            raise CommandError(str(error)) from None
        if options["reencrypt"] and key is None and system_key is None:
            raise CommandError(
                "--reencrypt encrypts every row again on each run; name the rows with --key or "
                "--system-key"
            )
        target = field_rows(options["field"], database=options["database"], where=options["where"])
        engine, secrets = engine_for(target.database, options["url"])
        failures = FailedRows(lambda line: self.stderr.write(f"warning: {line}"))
        failures.attach()  # each failed row shown once, here
        progress = _Progress(self, options["verbosity"])
        try:
            summary = rewrap_table(
                engine,
                target.rows,
                get_factory(),
                key=key,
                system_key=system_key,
                mode="reencrypt" if options["reencrypt"] else "rewrap",
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                start_after=start_key(options["start_after"]),
                progress=progress,
            )
        except AsherahError as error:
            raise CommandError(str(error)) from None
        except sa.exc.SQLAlchemyError as error:
            failure = driver_failure(error, secrets)
            raise CommandError(
                f"{shown(engine)}: the database failed ({failure}); run the "
                f"same command again to finish{_resume(progress.last)}"
            ) from None
        finally:
            failures.detach()
            engine.dispose()
        failures.flush_hidden()
        selected = key is not None or system_key is not None
        if selected and summary.current and not options["reencrypt"]:
            self.stderr.write(
                f"warning: {summary.current} selected row(s) are under their partition's "
                "current key, so there is nothing to move them to: revoke the key first"
            )
        self._report(target.label, shown(engine), summary, as_json=options["json"])
        failed = sum(summary.failed.values())
        if failed:
            raise CommandError(
                f"{failed} row(s) failed and keep their record; see the warnings above"
            )

    def _report(self, label: str, url: str, summary: RewrapSummary, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps({"field": label, **summary.to_dict()}, default=str))
            return
        verb = "to rewrap" if summary.dry_run else "rewrapped"
        rate = summary.scanned / summary.seconds if summary.seconds > 0 else 0.0
        lines = [
            f"field {label} on {url}{' (dry run)' if summary.dry_run else ''}",
            f"  rows scanned     {summary.scanned}  ({rate:,.0f} rows/s, {summary.seconds:.1f} s)",
            f"  {verb:<16} {summary.rewrapped}",
            f"  already current  {summary.current}",
            f"  skipped          {sum(summary.skipped.values())}{_reasons(summary.skipped)}",
            f"  failed           {sum(summary.failed.values())}{_reasons(summary.failed)}",
        ]
        if summary.last_key is not None:
            lines.append(f"  last key         {summary.last_key!s}")
        for line in lines:
            self.stdout.write(line)


class _Progress:
    """A line on stderr every few seconds (verbosity 1 and up), and the last counts."""

    def __init__(self, command: BaseCommand, verbosity: int) -> None:
        self.command = command
        self.verbosity = verbosity
        self.last: RewrapSummary | None = None
        self.shown_at = time.monotonic()

    def __call__(self, summary: RewrapSummary) -> None:
        self.last = summary
        now = time.monotonic()
        if self.verbosity < 1 or now - self.shown_at < LOG_EVERY_SECONDS:
            return
        self.shown_at = now
        rate = summary.scanned / summary.seconds if summary.seconds > 0 else 0.0
        self.command.stderr.write(
            f"rewrap: {summary.scanned} rows scanned, {summary.rewrapped} "
            f"{'to rewrap' if summary.dry_run else 'rewrapped'}, {summary.current} current, "
            f"{sum(summary.failed.values())} failed; {rate:,.0f} rows/s; last key "
            f"{summary.last_key!s}"
        )


def _reasons(counts: Any) -> str:
    if not counts:
        return ""
    return " (" + ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items())) + ")"


def _resume(last: RewrapSummary | None) -> str:
    if last is None or last.last_key is None:
        return ""
    return f" (or skip what is done with --start-after {last.last_key!s})"
