"""The ``asherah-kms`` command: list plugins, check a KMS, wrap and unwrap keys, inspect envelopes,
encrypt and decrypt data rows, list and revoke the metastore's keys (cli_rows.py).

Exit codes: 0 success, 1 a KMS operation or health probe failed, 2 a configuration, plugin or
usage error. Errors are one line on stderr (``asherah-kms: error: …``), never a traceback, and
never contain key material.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from . import __version__
from .config import DEFAULT_CONFIG_FILE, load_config_file
from .errors import AsherahError, ConfigError, KmsError, PluginError
from .hookspecs import EnvelopeDescriber
from .kms import KeyManagementService
from .plugins import KmsRegistration, PluginHost

__all__ = ["CONFIG_ENV", "main"]

PROG = "asherah-kms"
CONFIG_ENV = "ASHERAH_CONFIG"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _UsageError(AsherahError):
    """Bad input on the command line or stdin (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``asherah-kms`` with `argv` (default: ``sys.argv[1:]``) and return the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on usage errors
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_USAGE)
    return _run(args.command, args)


def _run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command and turn every failure into a one-line message and an exit code."""
    code = EXIT_FAILED
    try:
        code = command(args)
    except (ConfigError, PluginError, _UsageError) as e:
        code = _error(str(e), EXIT_USAGE)
    except AsherahError as e:
        code = _error(str(e), EXIT_FAILED)
    except KeyboardInterrupt:
        code = _error("interrupted", 130)
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (``| head``); nothing left to report to
    except Exception as e:
        code = _error(
            f"unexpected {type(e).__name__}: {e} (a bug in asherah-kms or a plugin; "
            "please report it)",
            EXIT_FAILED,
        )
    return code


# Commands -------------------------------------------------------------------------------


def _cmd_plugins(args: argparse.Namespace) -> int:
    plugins = PluginHost.default().plugins()
    if args.json:
        rows = [
            {
                "name": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "kms": list(p.kms),
                "metastores": list(p.metastores),
            }
            for p in plugins
        ]
        _print_json({"plugins": rows})
        return EXIT_OK
    _print_table(
        ["PLUGIN", "DISTRIBUTION", "VERSION", "KMS", "METASTORES"],
        [
            [
                p.name,
                p.distribution,
                p.version,
                ", ".join(p.kms) or "-",
                ", ".join(p.metastores) or "-",
            ]
            for p in plugins
        ],
    )
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    path = _config_path(args)
    name, kms = _load_configured_kms(path)
    with kms:
        results = kms.diagnose()
    if args.json:
        _print_json(
            {
                "kms": name,
                "config": str(path),
                "ok": bool(results) and all(r.ok for r in results),
                "probes": [
                    {
                        "target": r.target,
                        "ok": r.ok,
                        "milliseconds": round(r.seconds * 1000, 1),
                        "detail": r.detail,
                    }
                    for r in results
                ],
            }
        )
    else:
        print(f"KMS {name!r} from {path}")
        _print_table(
            ["TARGET", "STATUS", "MS", "DETAIL"],
            [
                [r.target, "OK" if r.ok else "FAIL", f"{r.seconds * 1000:.1f}", r.detail]
                for r in results
            ],
        )
    if not results:
        print(f"{PROG}: the KMS reported no probes", file=sys.stderr)
        return EXIT_FAILED
    failed = [r.target for r in results if not r.ok]
    if failed:
        print(f"{PROG}: failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _cmd_encrypt_key(args: argparse.Namespace) -> int:
    return _transform(args, "encrypt", lambda kms, data: kms.encrypt_key(data))


def _cmd_decrypt_key(args: argparse.Namespace) -> int:
    return _transform(args, "decrypt", lambda kms, data: kms.decrypt_key(data))


def _transform(
    args: argparse.Namespace,
    verb: str,
    operation: Callable[[KeyManagementService, bytes], bytes],
) -> int:
    if not args.base64 and _isatty(sys.stdout):
        raise _UsageError(
            f"refusing to write binary {'key' if verb == 'decrypt' else 'data'} to a terminal; "
            "redirect stdout to a file or pass --base64"
        )
    _, kms = _load_configured_kms(_config_path(args))
    with kms:
        data = _read_input(_stdin(), base64_text=args.base64, what="stdin")
        if not data:
            raise _UsageError(f"nothing to {verb}: stdin is empty")
        result = operation(kms, data)
    if args.base64:
        sys.stdout.write(base64.b64encode(result).decode("ascii") + "\n")
        sys.stdout.flush()
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(result)
        sys.stdout.buffer.flush()
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    if args.file is None or args.file == "-":
        if _isatty(sys.stdin):
            raise _UsageError("give a FILE, or pipe an encrypted key on stdin")
        data = _read_input(_stdin(), base64_text=args.base64, what="stdin")
    else:
        try:
            with open(args.file, "rb") as f:
                data = _read_input(f, base64_text=args.base64, what=args.file)
        except OSError as e:
            raise _UsageError(f"{args.file}: cannot read: {e.strerror}") from e
    if not data:
        raise _UsageError("nothing to inspect: the input is empty")

    host = PluginHost.default()
    candidates = _describers(host, _preferred_kms(args))
    if not candidates:
        return _error("no installed plugin can describe encrypted keys", EXIT_FAILED)
    for registration, describe in candidates:
        try:
            summary = describe(data)
        except KmsError as e:
            return _error(
                f"KMS {registration.name!r} recognises the format but cannot read it: {e}",
                EXIT_FAILED,
            )
        except Exception as e:
            _warn(
                f"{registration.plugin.label()} failed to describe the input "
                f"({type(e).__name__}: {e}); trying the next plugin"
            )
            continue
        if summary is None:
            continue
        if args.json:
            _print_json({"kms": registration.name, "summary": dict(summary)})
        else:
            print(f"kms: {registration.name}")
            _print_mapping(summary, indent="")
        return EXIT_OK
    tried = ", ".join(r.name for r, _ in candidates)
    return _error(
        f"no installed plugin recognises the format of the input (tried: {tried}); "
        "if it is base64 text, pass --base64",
        EXIT_FAILED,
    )


# Helpers --------------------------------------------------------------------------------


def _config_path(args: argparse.Namespace) -> Path:
    given: str | None = args.config
    return Path(given or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def _load_configured_kms(path: Path) -> tuple[str, KeyManagementService]:
    name, config = load_config_file(path)
    return name, PluginHost.default().load_kms(name, config)


def _preferred_kms(args: argparse.Namespace) -> str | None:
    """The KMS named by the configuration, if one is given or the default file exists."""
    explicit = args.config is not None or bool(os.environ.get(CONFIG_ENV))
    path = _config_path(args)
    if not explicit and not path.exists():
        return None
    try:
        name, _ = load_config_file(path)
    except ConfigError as e:
        # inspect never needs the configuration; it only decides which plugin to ask first.
        _warn(f"{e}; trying every plugin")
        return None
    return name


def _describers(
    host: PluginHost, preferred: str | None
) -> list[tuple[KmsRegistration, EnvelopeDescriber]]:
    """Every registration with a describer; the configured KMS first, then by name."""
    found = [(r, r.describe) for r in map(host.registration, host.available()) if r.describe]
    return sorted(found, key=lambda pair: (pair[0].name != preferred, pair[0].name))


def _read_input(stream: BinaryIO, *, base64_text: bool, what: str) -> bytes:
    raw = stream.read()
    if not base64_text:
        return raw
    text = b"".join(raw.split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _UsageError(f"{what} is not valid base64 (standard alphabet, padded)") from None


def _stdin() -> BinaryIO:
    """Standard input as bytes; a usage error when the process has none (closed)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        raise _UsageError("standard input is closed; give the input on stdin (or inspect FILE)")
    return cast(BinaryIO, buffer)


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def _print_mapping(mapping: Mapping[str, Any], indent: str) -> None:
    for key, value in mapping.items():
        if isinstance(value, Mapping | list | tuple) and not value:
            print(f"{indent}{key}: {'{}' if isinstance(value, Mapping) else '[]'}")
        elif isinstance(value, Mapping):
            print(f"{indent}{key}:")
            _print_mapping(value, indent + "  ")
        elif isinstance(value, list | tuple):
            print(f"{indent}{key}:")
            for item in value:
                if isinstance(item, Mapping):
                    items = list(item.items())
                    for i, (k, v) in enumerate(items):
                        print(f"{indent}  {'- ' if i == 0 else '  '}{_scalar(k)}: {_scalar(v)}")
                else:
                    print(f"{indent}  - {_scalar(item)}")
        else:
            print(f"{indent}{key}: {_scalar(value)}")


def _scalar(value: Any) -> str:
    # Strings come from untrusted input: anything not printable (terminal escapes, newlines,
    # lone surrogates) is shown JSON-escaped instead of reaching the terminal.
    if isinstance(value, str) and value.isprintable() and value.isascii():
        return value
    return json.dumps(value, default=str)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _error(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and use the key management services of asherah-core plugins.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=None,
        help=f"the plugins.toml to use (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG_FILE})",
    )

    p = commands.add_parser("plugins", help="list the discovered plugins and their KMS")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(command=_cmd_plugins)

    p = commands.add_parser(
        "doctor",
        parents=[config],
        help="build the configured KMS and round-trip a random key",
        description="Build the configured KMS, run its health probes and print what worked. "
        "Exit 1 if a probe failed, 2 on a configuration or plugin error.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(command=_cmd_doctor)

    for name, verb, command in (
        ("encrypt-key", "encrypt", _cmd_encrypt_key),
        ("decrypt-key", "decrypt", _cmd_decrypt_key),
    ):
        p = commands.add_parser(
            name,
            parents=[config],
            help=f"{verb} a key read from stdin, write the result to stdout",
        )
        p.add_argument(
            "--base64",
            action="store_true",
            help="read base64 text from stdin and write base64 text to stdout",
        )
        p.set_defaults(command=command)

    p = commands.add_parser(
        "inspect",
        parents=[config],
        help="show what an encrypted key holds, without decrypting it",
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="the encrypted key (default: stdin)")
    p.add_argument("--base64", action="store_true", help="the input is base64 text")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(command=_cmd_inspect)

    from .cli_rows import add_commands  # noqa: PLC0415 - it imports this module's helpers

    add_commands(commands, config)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
