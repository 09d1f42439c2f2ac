"""The ``asherah-kms`` row commands: ``encrypt`` and ``decrypt`` a data row through a
`SessionFactory` built from the configuration file (``[asherah]``, ``[kms]``, ``[metastore]``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asherah_core.records import b64encode
from asherah_core.session import SessionFactory

from ._common import EXIT_OK, UsageError, config_path, isatty, read_input, warn

__all__ = ["add_commands", "partition_id"]


def add_commands(commands: Any, config: argparse.ArgumentParser) -> None:
    """Add the row commands to the ``asherah-kms`` parser."""
    p = commands.add_parser(
        "encrypt",
        parents=[config],
        help="encrypt stdin as a data row of a partition; print the record's JSON",
        description="Encrypt the bytes on stdin for PARTITION through a session factory built "
        "from the configuration ([asherah], [kms], [metastore]) and print the DataRowRecord "
        "JSON, which any Asherah implementation decrypts.",
    )
    p.add_argument("-p", "--partition", required=True, type=partition_id, help="the partition id")
    p.add_argument("--base64", action="store_true", help="stdin is base64 text")
    p.set_defaults(command=_cmd_encrypt)

    p = commands.add_parser(
        "decrypt",
        parents=[config],
        help="decrypt a data row record's JSON from stdin; write the data to stdout",
    )
    p.add_argument("-p", "--partition", required=True, type=partition_id, help="the partition id")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--base64", action="store_true", help="write the data as base64 text")
    out.add_argument("--text", action="store_true", help="write the data as UTF-8 text")
    p.set_defaults(command=_cmd_decrypt)


def partition_id(text: str) -> str:
    """Argparse type of a partition id: not empty (a usage error, exit 2)."""
    if not text:
        raise argparse.ArgumentTypeError("the partition id must not be empty")
    return text


def _factory(args: argparse.Namespace) -> SessionFactory:
    return SessionFactory.from_config(config_path(args))


def _stdin_or_refuse(what: str) -> None:
    if sys.stdin is None or isatty(sys.stdin):
        raise UsageError(f"pipe the {what} on stdin")


def _cmd_encrypt(args: argparse.Namespace) -> int:
    _stdin_or_refuse("data to encrypt")
    data = read_input(sys.stdin.buffer, base64_text=args.base64, what="stdin")
    with _factory(args) as factory, factory.get_session(args.partition) as session:
        if factory.metastore.kind == "memory":
            warn(
                "the memory metastore forgets its keys when this command ends: nothing can "
                "decrypt this record later; configure [metastore] for real use"
            )
        text = session.encrypt_bytes(data)
    sys.stdout.write(text + "\n")
    return EXIT_OK


def _cmd_decrypt(args: argparse.Namespace) -> int:
    _stdin_or_refuse("data row record (JSON)")
    if not (args.base64 or args.text) and isatty(sys.stdout):
        raise UsageError(
            "refusing to write binary data to a terminal; redirect stdout, or pass --text or "
            "--base64"
        )
    record = sys.stdin.buffer.read().strip()
    if not record:
        raise UsageError("nothing to decrypt: stdin is empty")
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
