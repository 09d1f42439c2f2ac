"""The options that name an application table (``rewrap``, ``keys --usage``) and the engine
they open. Below the command modules; imports SQLAlchemy only when a command runs."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from asherah_core._sqlsecrets import shown_url, without_query_secrets
from asherah_core.errors import AsherahError

from ._common import UsageError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from asherah_core.table_rotation import RowTable

ROWS_URL_ENV = "ASHERAH_ROWS_URL"


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--table``, the column options and ``--where``."""
    group = parser.add_argument_group("the application table")
    group.add_argument(
        "--url",
        metavar="URL",
        default=None,
        help=f"SQLAlchemy URL of the application database (default: ${ROWS_URL_ENV}; keep "
        "passwords out of the command line)",
    )
    group.add_argument("--table", metavar="NAME", help="the table (NAME or SCHEMA.NAME)")
    group.add_argument(
        "--record-column", metavar="COLUMN", help="the column holding the records' JSON"
    )
    group.add_argument(
        "--key-column",
        metavar="COLUMN",
        default="id",
        help="a unique, ordered column: the walk's order (default: id)",
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument("--partition-column", metavar="COLUMN", help="the rows' partition ids")
    where.add_argument("--partition", metavar="ID", help="one partition id for every row")
    group.add_argument(
        "--where",
        metavar="SQL",
        default=None,
        help="an SQL condition on the rows to consider (trusted text, put into the query)",
    )


def row_table(args: argparse.Namespace) -> RowTable:
    """The `RowTable` the options name; `UsageError` for a missing or bad one."""
    from asherah_core.table_rotation import RowTable  # noqa: PLC0415 - SQLAlchemy

    missing = [
        option
        for option, value in (("--table", args.table), ("--record-column", args.record_column))
        if not value
    ]
    if args.partition_column is None and args.partition is None:
        missing.append("--partition-column or --partition")
    if missing:
        raise UsageError(f"give {', '.join(missing)} (the application table)")
    try:
        return RowTable(
            args.table,
            args.record_column,
            args.key_column,
            args.partition_column,
            args.partition,
            args.where,
        )
    except AsherahError as e:
        raise UsageError(str(e)) from None


def open_engine(args: argparse.Namespace) -> tuple[sa.Engine, tuple[str, ...]]:
    """An engine on ``--url`` (or ``$ASHERAH_ROWS_URL``), and the credentials to scrub from
    its drivers' messages (`driver_failure`). Credentials never shown: those of the URL's query
    go to the driver as connection arguments where it takes them so, as in the SQL metastore,
    and are then not in the engine's URL either (`without_query_secrets`)."""
    try:
        import sqlalchemy as sa  # noqa: PLC0415
    except ImportError:
        raise UsageError("this command needs SQLAlchemy: pip install 'asherah-core[sql]'") from None
    url = args.url or os.environ.get(ROWS_URL_ENV)
    if not url:
        raise UsageError(f"give --url or set ${ROWS_URL_ENV} (the application database)")
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise UsageError("--url is not a SQLAlchemy URL (e.g. postgresql+psycopg://…)") from None
    options: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        connect_args = {"timeout": 30.0}
    else:
        options["pool_pre_ping"] = True
    try:
        url, connect_args, secrets = without_query_secrets(parsed, connect_args)
        if connect_args:
            options["connect_args"] = connect_args
        return sa.create_engine(url, **options), secrets
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
        raise UsageError(f"cannot open {shown_url(parsed)}: {type(e).__name__}") from None
