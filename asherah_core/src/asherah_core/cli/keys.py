"""The ``asherah-kms`` commands over the metastore's keys: ``keys`` (and ``keys --usage``, rows
per key in an application table), ``revoke-key`` and ``create-table``. They build the metastore
alone, no KMS. Nothing here prints key bytes: ``keys`` shows ids, dates, parents, flags and sizes.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asherah_core.appconfig import metastore_from_file
from asherah_core.errors import MetastoreError
from asherah_core.metastore.base import ListedKey

from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    config_path,
    created_seconds,
    error,
    key_kind,
    print_json,
    print_table,
    printable,
    utc,
    warn,
)
from ._table import add_table_options

__all__ = ["add_commands"]


def add_commands(commands: Any, config: argparse.ArgumentParser) -> None:
    """Add the key commands to the ``asherah-kms`` parser."""
    p = commands.add_parser(
        "keys",
        parents=[config],
        help="list the system and intermediate keys the metastore holds (no key bytes)",
    )
    p.add_argument("--prefix", default="", help="only ids that start with this")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--usage",
        action="store_true",
        help="count the rows of an application table under each key (the table options)",
    )
    add_table_options(p)
    p.set_defaults(command=_cmd_keys)

    p = commands.add_parser(
        "revoke-key",
        parents=[config],
        help="mark a key revoked in the metastore (it still decrypts; nothing encrypts with it)",
    )
    p.add_argument("key_id", metavar="KEY_ID", help="for example _IK_customer-42_svc_prod")
    p.add_argument(
        "created", metavar="CREATED", type=created_seconds, help="its Created, Unix seconds"
    )
    p.set_defaults(command=_cmd_revoke)

    p = commands.add_parser(
        "create-table",
        parents=[config],
        help="create the metastore's key table if it does not exist",
    )
    p.set_defaults(command=_cmd_create_table)


def _cmd_keys(args: argparse.Namespace) -> int:
    if args.usage:
        from .usage import show_usage  # noqa: PLC0415 - SQLAlchemy only for --usage

        return show_usage(args)
    if args.table or args.record_column or args.url or args.where:
        raise UsageError("the table options count rows with --usage; add it")
    name, metastore = metastore_from_file(config_path(args))
    rows: list[dict[str, Any]] = []
    with metastore:
        for listed in metastore.list_keys(args.prefix):
            rows.append(_key_row(listed))
    bad = [row for row in rows if "error" in row]
    if args.json:
        print_json({"metastore": name, "keys": rows})
    else:
        print_table(
            ["ID", "KIND", "CREATED (UTC)", "REVOKED", "PARENT"],
            [_key_cells(row) for row in rows],
        )
        print(f"{len(rows) - len(bad)} key(s) in the {name} metastore", file=sys.stderr)
    for row in bad:
        warn(f"key row {printable(row['id'] or '?')}: {row['error']}")
    if bad:
        return error(
            f"{len(bad)} key row(s) of the {name} metastore could not be read (marked UNREADABLE)",
            EXIT_FAILED,
        )
    return EXIT_OK


def _key_row(listed: ListedKey) -> dict[str, Any]:
    created = listed.created
    row: dict[str, Any] = {
        "id": listed.key_id,
        "kind": "unreadable" if listed.key_id is None else key_kind(listed.key_id),
        "created": created,
        "created_utc": None if created is None else utc(created),
    }
    record = listed.record
    if record is None:
        row["error"] = listed.problem or "unreadable"
        return row
    parent = record.parent_key_meta
    row["parent"] = None if parent is None else {"id": parent.key_id, "created": parent.created}
    row["revoked"] = record.revoked
    row["sealed_bytes"] = len(record.encrypted_key)
    return row


def _key_cells(row: dict[str, Any]) -> list[str]:
    key_id = "?" if row["id"] is None else printable(row["id"])
    when = row["created_utc"] or "?"
    if "error" in row:
        return [key_id, row["kind"], when, "?", f"UNREADABLE: {row['error']}"]
    parent = row["parent"]
    return [
        key_id,
        row["kind"],
        when,
        "yes" if row["revoked"] else "no",
        "-" if parent is None else f"{printable(parent['id'])}@{utc(parent['created'])}",
    ]


def _cmd_revoke(args: argparse.Namespace) -> int:
    name, metastore = metastore_from_file(config_path(args))
    with metastore:
        if not metastore.revoke(args.key_id, args.created):
            raise MetastoreError(
                f"{name} metastore: no key {printable(args.key_id)!r} created {args.created}"
            )
    print(f"revoked {printable(args.key_id)} created {utc(args.created)}")
    return EXIT_OK


def _cmd_create_table(args: argparse.Namespace) -> int:
    name, metastore = metastore_from_file(config_path(args))
    with metastore:
        create = getattr(metastore, "create_table", None)
        if not callable(create):
            raise UsageError(f"the {name} metastore has no table to create")
        create()
    print(f"the {name} metastore's table exists")
    return EXIT_OK
