"""The ``asherah-kms`` commands of the KMS plugins: ``plugins``, ``doctor``, ``encrypt-key``,
``decrypt-key`` and ``inspect``. They need a KMS only (``[kms]`` of the configuration), never a
metastore.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asherah_core.config import load_config_file
from asherah_core.errors import ConfigError, KmsError
from asherah_core.hookspecs import EnvelopeDescriber
from asherah_core.kms import KeyManagementService
from asherah_core.plugins import KmsRegistration, PluginHost

from ._common import (
    CONFIG_ENV,
    EXIT_FAILED,
    EXIT_OK,
    PROG,
    UsageError,
    config_path,
    error,
    isatty,
    print_json,
    print_mapping,
    print_table,
    read_input,
    stdin,
    warn,
)

__all__ = ["add_commands"]


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
        print_json({"plugins": rows})
        return EXIT_OK
    print_table(
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
    path = config_path(args)
    name, kms = _load_configured_kms(path)
    with kms:
        results = kms.diagnose()
    if args.json:
        print_json(
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
        print_table(
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
    if not args.base64 and isatty(sys.stdout):
        raise UsageError(
            f"refusing to write binary {'key' if verb == 'decrypt' else 'data'} to a terminal; "
            "redirect stdout to a file or pass --base64"
        )
    _, kms = _load_configured_kms(config_path(args))
    with kms:
        data = read_input(stdin(), base64_text=args.base64, what="stdin")
        if not data:
            raise UsageError(f"nothing to {verb}: stdin is empty")
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
        if isatty(sys.stdin):
            raise UsageError("give a FILE, or pipe an encrypted key on stdin")
        data = read_input(stdin(), base64_text=args.base64, what="stdin")
    else:
        try:
            with open(args.file, "rb") as f:
                data = read_input(f, base64_text=args.base64, what=args.file)
        except OSError as e:
            raise UsageError(f"{args.file}: cannot read: {e.strerror}") from e
    if not data:
        raise UsageError("nothing to inspect: the input is empty")

    host = PluginHost.default()
    candidates = _describers(host, _preferred_kms(args))
    if not candidates:
        return error("no installed plugin can describe encrypted keys", EXIT_FAILED)
    for registration, describe in candidates:
        try:
            summary = describe(data)
        except KmsError as e:
            return error(
                f"KMS {registration.name!r} recognises the format but cannot read it: {e}",
                EXIT_FAILED,
            )
        except Exception as e:
            warn(
                f"{registration.plugin.label()} failed to describe the input "
                f"({type(e).__name__}: {e}); trying the next plugin"
            )
            continue
        if summary is None:
            continue
        if args.json:
            print_json({"kms": registration.name, "summary": dict(summary)})
        else:
            print(f"kms: {registration.name}")
            print_mapping(summary, indent="")
        return EXIT_OK
    tried = ", ".join(r.name for r, _ in candidates)
    return error(
        f"no installed plugin recognises the format of the input (tried: {tried}); "
        "if it is base64 text, pass --base64",
        EXIT_FAILED,
    )


# Helpers --------------------------------------------------------------------------------


def _load_configured_kms(path: Path) -> tuple[str, KeyManagementService]:
    name, config = load_config_file(path)
    return name, PluginHost.default().load_kms(name, config)


def _preferred_kms(args: argparse.Namespace) -> str | None:
    """The KMS named by the configuration, if one is given or the default file exists."""
    explicit = args.config is not None or bool(os.environ.get(CONFIG_ENV))
    path = config_path(args)
    if not explicit and not path.exists():
        return None
    try:
        name, _ = load_config_file(path)
    except ConfigError as e:
        # inspect never needs the configuration; it only decides which plugin to ask first.
        warn(f"{e}; trying every plugin")
        return None
    return name


def _describers(
    host: PluginHost, preferred: str | None
) -> list[tuple[KmsRegistration, EnvelopeDescriber]]:
    """Every registration with a describer; the configured KMS first, then by name."""
    found = [(r, r.describe) for r in map(host.registration, host.available()) if r.describe]
    return sorted(found, key=lambda pair: (pair[0].name != preferred, pair[0].name))


def add_commands(commands: Any, config: argparse.ArgumentParser) -> None:
    """Add the KMS commands to the ``asherah-kms`` parser (`config` gives ``--config``)."""
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
