"""``asherah-kms``: the parser made of every command group, and the one place that turns a
failure into a message and an exit code.

Exit codes: 0 success, 1 a KMS, metastore or row operation or a health probe failed, 2 a
configuration, plugin or usage error, 130 interrupted. Errors are one line on stderr
(``asherah-kms: error: …``), never a traceback, and never contain key material.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from asherah_core import __version__
from asherah_core.errors import AsherahError, ConfigError, PluginError

from . import keys, kms, rewrap, rows
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    UsageError,
    config_parent,
    error,
    silence_stdout,
)

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``asherah-kms`` with `argv` (default: ``sys.argv[1:]``) and return the exit code."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on usage errors
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_USAGE)
    return _run(args.command, args)


def _run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command and turn every failure into a one-line message and an exit code."""
    code = EXIT_FAILED
    try:
        code = command(args)
    except (ConfigError, PluginError, UsageError) as e:
        code = error(str(e), EXIT_USAGE)
    except AsherahError as e:
        code = error(str(e), EXIT_FAILED)
    except KeyboardInterrupt:
        code = error("interrupted", 130)
    except BrokenPipeError:
        silence_stdout()  # the reader went away (``| head``); nothing left to report to
    except Exception as e:
        code = error(
            f"unexpected {type(e).__name__}: {e} (a bug in asherah-kms or a plugin; "
            "please report it)",
            EXIT_FAILED,
        )
    return code


def parser() -> argparse.ArgumentParser:
    """The whole ``asherah-kms`` parser: the KMS, row, key and rewrap commands."""
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and use the key management services of asherah-core plugins.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(title="commands", metavar="COMMAND", required=True)
    config = config_parent()
    kms.add_commands(commands, config)
    rows.add_commands(commands, config)
    keys.add_commands(commands, config)
    rewrap.add_commands(commands, config)
    return top
