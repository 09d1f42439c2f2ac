"""What every ``asherah-kms`` command shares: exit codes, the usage error, the configuration path,
reading input and printing output. It sits below every command module and imports none of them.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from asherah_core.config import DEFAULT_CONFIG_FILE
from asherah_core.errors import AsherahError
from asherah_core.records import MAX_CREATED

PROG = "asherah-kms"
CONFIG_ENV = "ASHERAH_CONFIG"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(AsherahError):
    """Bad input on the command line or stdin (exit 2)."""


def config_parent() -> argparse.ArgumentParser:
    """The ``-c/--config`` option, as a parent parser every configured command shares."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=None,
        help=f"the plugins.toml to use (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG_FILE})",
    )
    return config


def config_path(args: argparse.Namespace) -> Path:
    """The configuration file: ``--config``, else ``$ASHERAH_CONFIG``, else ``./plugins.toml``."""
    given: str | None = args.config
    return Path(given or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def created_seconds(text: str) -> int:
    """A ``Created`` given on the command line: Unix seconds every metastore can hold.

    Argparse type: a value out of range (a millisecond or nanosecond timestamp, a negative
    number) is a usage error naming it, before any metastore sees it.
    """
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{printable(text)!r} is not an integer (Unix seconds)"
        ) from None
    if not 0 <= value <= MAX_CREATED:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0 to 2**63-1 Unix seconds)")
    try:
        time.gmtime(value)
        if value > 253402300799:  # 9999-12-31T23:59:59Z, the last second SQL timestamps hold
            raise OverflowError
    except (OverflowError, OSError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{value} is not a date a metastore can hold (Unix seconds up to year 9999; a "
            "millisecond or nanosecond timestamp?)"
        ) from None
    return value


def read_input(stream: BinaryIO, *, base64_text: bool, what: str) -> bytes:
    """Read all of `stream`; decode it as base64 text when asked (`UsageError` if it is not)."""
    raw = stream.read()
    if not base64_text:
        return raw
    text = b"".join(raw.split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{what} is not valid base64 (standard alphabet, padded)") from None


def stdin() -> BinaryIO:
    """Standard input as bytes; a usage error when the process has none (closed)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        raise UsageError("standard input is closed; give the input on stdin (or inspect FILE)")
    return cast(BinaryIO, buffer)


def isatty(stream: object) -> bool:
    """Whether `stream` is a terminal; False for anything that cannot say."""
    method = getattr(stream, "isatty", None)
    try:
        return bool(method()) if callable(method) else False
    except (OSError, ValueError):
        return False


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print aligned columns, the last one unpadded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def print_mapping(mapping: Mapping[str, Any], indent: str) -> None:
    """Print a nested mapping as indented ``key: value`` lines (untrusted strings escaped)."""
    for key, value in mapping.items():
        if isinstance(value, Mapping | list | tuple) and not value:
            print(f"{indent}{key}: {'{}' if isinstance(value, Mapping) else '[]'}")
        elif isinstance(value, Mapping):
            print(f"{indent}{key}:")
            print_mapping(value, indent + "  ")
        elif isinstance(value, list | tuple):
            print(f"{indent}{key}:")
            for item in value:
                if isinstance(item, Mapping):
                    items = list(item.items())
                    for i, (k, v) in enumerate(items):
                        print(f"{indent}  {'- ' if i == 0 else '  '}{scalar(k)}: {scalar(v)}")
                else:
                    print(f"{indent}  - {scalar(item)}")
        else:
            print(f"{indent}{key}: {scalar(value)}")


def scalar(value: Any) -> str:
    """A value for a terminal: strings from untrusted input that are not printable ASCII
    (terminal escapes, newlines, lone surrogates) are shown JSON-escaped."""
    if isinstance(value, str) and value.isprintable() and value.isascii():
        return value
    return json.dumps(value, default=str)


def printable(text: str) -> str:
    """Escape control characters and anything not printable, so a key id cannot forge output."""
    return json.dumps(text, ensure_ascii=True)[1:-1] if not text.isprintable() else text


def utc(created: int) -> str:
    """Unix seconds as ``YYYY-MM-DD HH:MM:SS`` (UTC); the number itself when out of range."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created))
    except (OverflowError, OSError, ValueError):
        return str(created)


def key_kind(key_id: str) -> str:
    """``system``, ``intermediate`` or ``other``, from a key id's prefix."""
    if key_id.startswith("_SK_"):
        return "system"
    if key_id.startswith("_IK_"):
        return "intermediate"
    return "other"


def print_json(value: Any) -> None:
    """Print `value` as indented JSON."""
    print(json.dumps(value, indent=2, default=str))


def warn(message: str) -> None:
    """Print a warning line on stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def error(message: str, code: int) -> int:
    """Print an error line on stderr and return `code`."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def silence_stdout() -> None:
    """Point stdout at /dev/null (its reader went away)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
