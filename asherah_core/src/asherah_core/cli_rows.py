"""The framework's ``asherah-kms`` commands: rows (encrypt, decrypt) and the metastore's keys.

``encrypt`` / ``decrypt`` go through a `SessionFactory` built from the configuration file
(``[asherah]``, ``[kms]``, ``[metastore]``); ``keys``, ``revoke-key`` and ``create-table``
only build the metastore. Nothing here prints key bytes: ``keys`` shows ids, dates, parents,
flags and sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from .appconfig import metastore_from_file
from .cli import (
    EXIT_OK,
    _config_path,
    _isatty,
    _print_json,
    _print_table,
    _read_input,
    _UsageError,
    _warn,
)
from .errors import MetastoreError
from .records import b64encode
from .session import SessionFactory

__all__ = ["add_commands"]

_Command = Callable[[argparse.Namespace], int]


def add_commands(commands: Any, config: argparse.ArgumentParser) -> None:
    """Add the row and key commands to the ``asherah-kms`` parser."""
    p = commands.add_parser(
        "encrypt",
        parents=[config],
        help="encrypt stdin as a data row of a partition; print the record's JSON",
        description="Encrypt the bytes on stdin for PARTITION through a session factory built "
        "from the configuration ([asherah], [kms], [metastore]) and print the DataRowRecord "
        "JSON, which any Asherah implementation decrypts.",
    )
    p.add_argument("-p", "--partition", required=True, help="the partition id")
    p.add_argument("--base64", action="store_true", help="stdin is base64 text")
    p.set_defaults(command=_cmd_encrypt)

    p = commands.add_parser(
        "decrypt",
        parents=[config],
        help="decrypt a data row record's JSON from stdin; write the data to stdout",
    )
    p.add_argument("-p", "--partition", required=True, help="the partition id")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--base64", action="store_true", help="write the data as base64 text")
    out.add_argument("--text", action="store_true", help="write the data as UTF-8 text")
    p.set_defaults(command=_cmd_decrypt)

    p = commands.add_parser(
        "keys",
        parents=[config],
        help="list the system and intermediate keys the metastore holds (no key bytes)",
    )
    p.add_argument("--prefix", default="", help="only ids that start with this")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(command=_cmd_keys)

    p = commands.add_parser(
        "revoke-key",
        parents=[config],
        help="mark a key revoked in the metastore (it still decrypts; nothing encrypts with it)",
    )
    p.add_argument("key_id", metavar="KEY_ID", help="for example _IK_customer-42_svc_prod")
    p.add_argument("created", metavar="CREATED", type=int, help="its Created, Unix seconds")
    p.set_defaults(command=_cmd_revoke)

    p = commands.add_parser(
        "create-table",
        parents=[config],
        help="create the metastore's key table if it does not exist",
    )
    p.set_defaults(command=_cmd_create_table)


def _factory(args: argparse.Namespace) -> SessionFactory:
    return SessionFactory.from_config(_config_path(args))


def _stdin_or_refuse(what: str) -> None:
    if sys.stdin is None or _isatty(sys.stdin):
        raise _UsageError(f"pipe the {what} on stdin")


def _cmd_encrypt(args: argparse.Namespace) -> int:
    _stdin_or_refuse("data to encrypt")
    data = _read_input(sys.stdin.buffer, base64_text=args.base64, what="stdin")
    with _factory(args) as factory, factory.get_session(args.partition) as session:
        if factory.metastore.kind == "memory":
            _warn(
                "the memory metastore forgets its keys when this command ends: nothing can "
                "decrypt this record later; configure [metastore] for real use"
            )
        text = session.encrypt_bytes(data)
    sys.stdout.write(text + "\n")
    return EXIT_OK


def _cmd_decrypt(args: argparse.Namespace) -> int:
    _stdin_or_refuse("data row record (JSON)")
    if not (args.base64 or args.text) and _isatty(sys.stdout):
        raise _UsageError(
            "refusing to write binary data to a terminal; redirect stdout, or pass --text or "
            "--base64"
        )
    record = sys.stdin.buffer.read().strip()
    if not record:
        raise _UsageError("nothing to decrypt: stdin is empty")
    with _factory(args) as factory, factory.get_session(args.partition) as session:
        data = session.decrypt_bytes(record)
    if args.text:
        sys.stdout.write(data.decode("utf-8", errors="replace") + "\n")
    elif args.base64:
        sys.stdout.write(b64encode(data) + "\n")
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return EXIT_OK


def _cmd_keys(args: argparse.Namespace) -> int:
    name, metastore = metastore_from_file(_config_path(args))
    rows: list[dict[str, Any]] = []
    with metastore:
        for key_id, created, record in metastore.keys(args.prefix):
            parent = record.parent_key_meta
            rows.append(
                {
                    "id": key_id,
                    "kind": _kind(key_id),
                    "created": created,
                    "created_utc": _utc(created),
                    "parent": None
                    if parent is None
                    else {"id": parent.key_id, "created": parent.created},
                    "revoked": record.revoked,
                    "sealed_bytes": len(record.encrypted_key),
                }
            )
    if args.json:
        _print_json({"metastore": name, "keys": rows})
        return EXIT_OK
    _print_table(
        ["ID", "KIND", "CREATED (UTC)", "REVOKED", "PARENT"],
        [
            [
                _printable(row["id"]),
                row["kind"],
                row["created_utc"],
                "yes" if row["revoked"] else "no",
                "-"
                if row["parent"] is None
                else f"{_printable(row['parent']['id'])}@{_utc(row['parent']['created'])}",
            ]
            for row in rows
        ],
    )
    print(f"{len(rows)} key(s) in the {name} metastore", file=sys.stderr)
    return EXIT_OK


def _cmd_revoke(args: argparse.Namespace) -> int:
    name, metastore = metastore_from_file(_config_path(args))
    with metastore:
        if not metastore.revoke(args.key_id, args.created):
            raise MetastoreError(
                f"{name} metastore: no key {_printable(args.key_id)!r} created {args.created}"
            )
    print(f"revoked {_printable(args.key_id)} created {_utc(args.created)}")
    return EXIT_OK


def _cmd_create_table(args: argparse.Namespace) -> int:
    name, metastore = metastore_from_file(_config_path(args))
    with metastore:
        create = getattr(metastore, "create_table", None)
        if not callable(create):
            raise _UsageError(f"the {name} metastore has no table to create")
        create()
    print(f"the {name} metastore's table exists")
    return EXIT_OK


def _kind(key_id: str) -> str:
    if key_id.startswith("_SK_"):
        return "system"
    if key_id.startswith("_IK_"):
        return "intermediate"
    return "other"


def _utc(created: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created))
    except (OverflowError, OSError, ValueError):
        return str(created)


def _printable(text: str) -> str:
    """Escape control characters and anything not printable, so a key id cannot forge output."""
    return json.dumps(text, ensure_ascii=True)[1:-1] if not text.isprintable() else text
