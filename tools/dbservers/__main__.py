"""``python -m tools.dbservers run [postgres] [mariadb] [dynamodb] -- CMD``: start the servers,
run CMD with ``ASHERAH_POSTGRES_URL`` / ``ASHERAH_MYSQL_URL`` / ``ASHERAH_DYNAMODB_ENDPOINT``
set, stop the servers, exit with CMD's code."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from . import ENV_VARS, DbServerError, Terminated, dynamodb, mariadb, postgres

PROVIDERS = {"postgres": postgres, "mariadb": mariadb, "dynamodb": dynamodb}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tools.dbservers")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start servers, run CMD with their variables set")
    run.add_argument("servers", nargs="*", choices=list(PROVIDERS), metavar="SERVER")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("run needs a command: run SERVER... -- CMD [ARGS...]")
    try:
        with contextlib.ExitStack() as stack:
            env = dict(os.environ)
            for name in args.servers or list(PROVIDERS):
                server = stack.enter_context(PROVIDERS[name](quiet=args.quiet))
                env[ENV_VARS[name]] = server.url
            child = subprocess.Popen(command, env=env)
            try:
                return child.wait()
            except KeyboardInterrupt:
                child.send_signal(signal.SIGTERM)
                child.wait()
                raise
    except DbServerError as error:
        print(f"dbservers: error: {error}", file=sys.stderr)
        return 2
    except Terminated as terminated:
        return 128 + terminated.signum
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
