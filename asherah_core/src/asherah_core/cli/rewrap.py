"""``asherah-kms rewrap``: move the records of an application table off old keys.

Built on `asherah_core.table_rotation.rewrap_table`; this module parses the options, shows
progress (a bar with rate and ETA on a terminal, plain lines otherwise) and prints the summary.
Exit 0 only when no row failed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from asherah_core._sqlsecrets import driver_failure, shown_url
from asherah_core.errors import AsherahError
from asherah_core.rewrap_report import FailedRows, start_key

from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    PROG,
    UsageError,
    config_path,
    error,
    isatty,
    print_json,
    printable,
    warn,
)
from ._table import add_table_options, open_engine, row_table

if TYPE_CHECKING:
    from asherah_core.table_rotation import RewrapSummary

__all__ = ["add_commands"]

MAX_FAILURES_SHOWN = 20
LOG_EVERY_SECONDS = 5.0


def add_commands(commands: Any, config: argparse.ArgumentParser) -> None:
    """Add ``rewrap`` to the ``asherah-kms`` parser."""
    p = commands.add_parser(
        "rewrap",
        parents=[config],
        help="rewrap the records of a SQL table whose key is not current (or under a named key)",
        description="Walk a table in key order, in batches of one transaction each, and rewrap "
        "every record whose intermediate key is not its partition's current one (or only those "
        "under --key or --system-key): the row key is sealed again, the data stays. A row is "
        "updated only if it still holds the record read. Interrupted, run it again: it finishes "
        "the job. Exit 0 only when no row failed.",
    )
    add_table_options(p)
    what = p.add_argument_group("what to rewrap")
    what.add_argument("--key", metavar="ID[@CREATED]", help="only rows under this intermediate key")
    what.add_argument(
        "--system-key",
        metavar="ID[@CREATED]",
        help="only rows whose intermediate key this system key seals",
    )
    what.add_argument(
        "--reencrypt",
        action="store_true",
        help="a new row key and the data encrypted again, even for current rows (a row key "
        "may have leaked; use with --key)",
    )
    how = p.add_argument_group("how")
    how.add_argument("--batch-size", type=_positive, default=500, help="rows per transaction")
    how.add_argument("--dry-run", action="store_true", help="check and count; write nothing")
    how.add_argument("--start-after", metavar="KEY", help="resume after this key column value")
    how.add_argument("--json", action="store_true", help="print the summary as JSON")
    how.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="a bar on a terminal, log lines otherwise (auto), or as given",
    )
    p.set_defaults(command=_cmd_rewrap)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 1000000")
    return value


def _cmd_rewrap(args: argparse.Namespace) -> int:
    from asherah_core.session import SessionFactory  # noqa: PLC0415
    from asherah_core.table_rotation import KeySelector, rewrap_table  # noqa: PLC0415

    rows = row_table(args)
    try:
        key = None if args.key is None else KeySelector.parse(args.key)
        system_key = None if args.system_key is None else KeySelector.parse(args.system_key)
    except AsherahError as e:
        raise UsageError(str(e)) from None
    if args.reencrypt and key is None and system_key is None:
        raise UsageError(
            "--reencrypt encrypts every row again on each run; name the rows with --key or "
            "--system-key"
        )
    engine, secrets = open_engine(args)
    shown = _Progress(args.progress, sys.stderr)
    failures = FailedRows(
        lambda line: sys.stderr.write(f"{PROG}: warning: {printable(line)}\n"),
        limit=MAX_FAILURES_SHOWN,
        before=shown.done,  # off the bar's line, if one is drawn
    )
    failures.attach()  # the failures go to stderr once, through this handler
    last: list[RewrapSummary] = []

    def progress(summary: RewrapSummary) -> None:
        last[:] = [summary]
        shown.update(summary)

    import sqlalchemy as sa  # noqa: PLC0415

    # SQLAlchemy's pool logs (with a traceback) a connection it cannot reset after Ctrl-C
    # stopped a statement midway; the one-line error below says what happened.
    logging.getLogger("sqlalchemy.pool").addHandler(logging.NullHandler())
    stopped = _CtrlC()
    try:
        with stopped, SessionFactory.from_config(config_path(args)) as factory:
            summary = rewrap_table(
                engine,
                rows,
                factory,
                key=key,
                system_key=system_key,
                mode="reencrypt" if args.reencrypt else "rewrap",
                batch_size=args.batch_size,
                dry_run=args.dry_run,
                start_after=start_key(args.start_after),
                count=shown.wants_total,
                progress=progress,
            )
    except KeyboardInterrupt:
        shown.done()
        _report(args, last[0] if last else None, rows.name, engine, interrupted=True)
        return error(f"interrupted; run the same command again to finish{_resume(last)}", 130)
    except sa.exc.SQLAlchemyError as e:
        shown.done()
        _report(args, last[0] if last else None, rows.name, engine, interrupted=True)
        if stopped.pressed:  # the driver turned the interrupt into a database error
            return error(f"interrupted; run the same command again to finish{_resume(last)}", 130)
        failure = driver_failure(e, secrets)
        return error(
            f"{shown_url(engine.url)}: the database failed: {failure}; run again to finish"
            f"{_resume(last)}",
            1,
        )
    finally:
        failures.detach()
        with contextlib.suppress(Exception):  # a connection left mid-statement by Ctrl-C
            engine.dispose()
    shown.done()
    failures.flush_hidden()
    if (key is not None or system_key is not None) and summary.current and not args.reencrypt:
        warn(
            f"{summary.current} selected row(s) are under their partition's current key, so "
            "there is nothing to move them to: revoke the key first (asherah-kms revoke-key)"
        )
    _report(args, summary, rows.name, engine, interrupted=False)
    return EXIT_OK if summary.ok else EXIT_FAILED


def _report(
    args: argparse.Namespace,
    summary: RewrapSummary | None,
    table: str,
    engine: Any,
    *,
    interrupted: bool,
) -> None:
    if summary is None:
        return
    if args.json:
        print_json({"table": table, "interrupted": interrupted, **summary.to_dict()})
        return
    verb = "to rewrap" if summary.dry_run else "rewrapped"
    rate = summary.scanned / summary.seconds if summary.seconds > 0 else 0.0
    print(f"table {table} on {shown_url(engine.url)}{' (dry run)' if summary.dry_run else ''}")
    print(f"  rows scanned     {summary.scanned}  ({rate:,.0f} rows/s, {summary.seconds:.1f} s)")
    print(f"  {verb:<16} {summary.rewrapped}")
    print(f"  already current  {summary.current}")
    print(f"  skipped          {sum(summary.skipped.values())}{_reasons(summary.skipped)}")
    print(f"  failed           {sum(summary.failed.values())}{_reasons(summary.failed)}")
    if summary.last_key is not None:
        print(f"  last key         {printable(str(summary.last_key))}")


def _resume(last: list[RewrapSummary]) -> str:
    if not last or last[0].last_key is None:
        return ""
    return f" (or skip what is done with --start-after {printable(str(last[0].last_key))})"


def _reasons(counts: Any) -> str:
    if not counts:
        return ""
    return " (" + ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items())) + ")"


class _CtrlC:
    """Notes that Ctrl-C was pressed during the block (then raises KeyboardInterrupt as usual),
    so that a database error the driver made of it is reported as an interruption."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.pressed = True
        raise KeyboardInterrupt


class _Progress:
    """A bar with rate and ETA on a terminal, a line every few seconds otherwise."""

    def __init__(self, style: str, stream: TextIO) -> None:
        if style == "auto":
            style = "bar" if isatty(stream) else "lines"
        self.style = style
        self.stream = stream
        self.wants_total = style == "bar"
        self.last_line = 0.0
        self.drawn = False

    def update(self, summary: RewrapSummary) -> None:
        if self.style == "none":
            return
        rate = summary.scanned / summary.seconds if summary.seconds > 0 else 0.0
        if self.style == "bar":
            self._bar(summary, rate)
            return
        now = time.monotonic()
        if now - self.last_line < LOG_EVERY_SECONDS:
            return
        self.last_line = now
        self.stream.write(
            f"{PROG}: rewrap: {summary.scanned} rows scanned, {summary.rewrapped} "
            f"{'to rewrap' if summary.dry_run else 'rewrapped'}, {summary.current} current, "
            f"{sum(summary.failed.values())} failed; {rate:,.0f} rows/s; last key "
            f"{printable(str(summary.last_key))}\n"
        )
        self.stream.flush()

    def _bar(self, summary: RewrapSummary, rate: float) -> None:
        total = summary.total or 0
        done = min(summary.scanned, total) if total else summary.scanned
        fraction = done / total if total else 0.0
        width = 30
        filled = int(fraction * width)
        eta = "?"
        if rate > 0 and total:
            seconds = int((total - done) / rate)
            eta = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        failed = sum(summary.failed.values())
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {done}/{total} rows  "
            f"{rate:,.0f} rows/s  ETA {eta}  rewrapped {summary.rewrapped}"
            f"{f'  failed {failed}' if failed else ''} "
        )
        self.stream.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
