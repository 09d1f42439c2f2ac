"""The command line: ``run -- CMD``, ``serve``, ``provision``."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from tools.signals import Terminated, signals_held, sigterm_raises

from .common import _PREFIX, ENDPOINT_ENV, LocalStackError, _say
from .process import localstack
from .venv import provision


def _wait_child(child: subprocess.Popen[bytes]) -> int:
    """Wait for ``child``; if interrupted, stop it (bounded) and re-raise."""
    try:
        return child.wait()
    except KeyboardInterrupt as interrupt:
        with signals_held():
            steps: list[tuple[float, int]] = (
                [(0.0, signal.SIGTERM), (5.0, signal.SIGKILL)]
                if isinstance(interrupt, Terminated)
                # Ctrl-C from a terminal reaches the child too: give it a moment first.
                else [(1.0, signal.SIGINT), (5.0, signal.SIGTERM), (5.0, signal.SIGKILL)]
            )
            for grace, signum in steps:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=grace)
                if child.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)
            child.wait()
        raise


def _run(command: Sequence[str], *, quiet: bool) -> int:
    with localstack(quiet=quiet) as endpoint:
        env = {**os.environ, ENDPOINT_ENV: endpoint}
        try:
            child = subprocess.Popen(list(command), env=env)
        except OSError as error:
            _say(f"cannot run {command[0]}: {error}", quiet=False)
            return 127
        return _wait_child(child)


def _serve(*, quiet: bool) -> int:
    with localstack(quiet=quiet) as endpoint:
        print(f"export {ENDPOINT_ENV}={endpoint}", flush=True)
        _say("running; Ctrl-C to stop", quiet=quiet)
        while True:
            time.sleep(3600)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.localstack",
        description="Run LocalStack (KMS) on this host for the integration tests.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help=f"start LocalStack, run CMD with {ENDPOINT_ENV} set, stop LocalStack"
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    commands.add_parser("serve", help="start LocalStack, print the endpoint, wait for Ctrl-C")
    commands.add_parser("provision", help="only build LocalStack's cached venv")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "provision":
            with sigterm_raises():
                python = provision(quiet=args.quiet)
            print(python)
            return 0
        if args.command == "serve":
            return _serve(quiet=args.quiet)
        command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not command:
            parser.error("run needs a command: run -- CMD [ARGS...]")
        return _run(command, quiet=args.quiet)
    except LocalStackError as error:
        print(f"{_PREFIX} error: {error}", file=sys.stderr)
        return 2
    except Terminated as terminated:
        return 128 + terminated.signum
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
