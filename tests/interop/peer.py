"""Run the published ``asherah`` package in its own process: JSON on stdin, JSON on stdout.

The interop tests start this script with the test venv's Python, so that the package's
process-wide state, and its synchronous calls that keep the GIL during I/O, stay out of the
test process (a KMS proxy served by a thread of the test process would otherwise stall).

Input: ``{"config": {...PascalCase...}, "api": "factory" | "module", "ops": [...]}``, each op
one of::

    {"op": "encrypt", "partition": p, "data": "<b64>", "async": false}   -> {"drr": "..."}
    {"op": "decrypt", "partition": p, "drr": "...", "async": false}      -> {"data": "<b64>"}
    {"op": "encrypt_text", "partition": p, "text": "..."}               -> {"drr": "..."}
    {"op": "decrypt_text", "partition": p, "drr": "..."}                -> {"text": "..."}

Output: ``{"version": "...", "results": [...]}``; an op that raised gives
``{"error": "<type>: <message>"}`` and the next op still runs. One factory (or one ``setup``)
serves every op, in order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asherah


class _Api:
    """The same operations over ``SessionFactory`` or over the module-level functions."""

    def __init__(self, config: dict[str, Any], kind: str) -> None:
        self.kind = kind
        self.factory: Any = None
        if kind == "module":
            asherah.setup(config)
        else:
            self.factory = asherah.SessionFactory(config)
        self.sessions: dict[str, Any] = {}

    def session(self, partition: str) -> Any:
        if partition not in self.sessions:
            self.sessions[partition] = self.factory.get_session(partition)
        return self.sessions[partition]

    def run(self, op: dict[str, Any]) -> dict[str, Any]:
        name, partition, use_async = op["op"], op["partition"], bool(op.get("async"))
        module = self.kind == "module"
        if name == "encrypt":
            data = base64.b64decode(op["data"])
            if use_async:
                call: Callable[[], Awaitable[str]] = (
                    (lambda: asherah.encrypt_bytes_async(partition, data))
                    if module
                    else (lambda: self.session(partition).encrypt_bytes_async(data))
                )
                return {"drr": asyncio.run(_await(call))}
            if module:
                return {"drr": asherah.encrypt_bytes(partition, data)}
            return {"drr": self.session(partition).encrypt_bytes(data)}
        if name == "decrypt":
            drr = op["drr"]
            if use_async:
                back: Callable[[], Awaitable[bytes]] = (
                    (lambda: asherah.decrypt_bytes_async(partition, drr))
                    if module
                    else (lambda: self.session(partition).decrypt_bytes_async(drr))
                )
                plain = asyncio.run(_await(back))
            elif module:
                plain = asherah.decrypt_bytes(partition, drr)
            else:
                plain = self.session(partition).decrypt_bytes(drr)
            return {"data": base64.b64encode(plain).decode("ascii")}
        if name == "encrypt_text":
            if module:
                return {"drr": asherah.encrypt_string(partition, op["text"])}
            return {"drr": self.session(partition).encrypt_text(op["text"])}
        if name == "decrypt_text":
            if module:
                return {"text": asherah.decrypt_string(partition, op["drr"])}
            return {"text": self.session(partition).decrypt_text(op["drr"])}
        raise ValueError(f"unknown op {name!r}")

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        if self.kind == "module":
            asherah.shutdown()
        else:
            self.factory.close()


async def _await(make: Callable[[], Awaitable[Any]]) -> Any:
    # The package's coroutines need a running event loop when they are created.
    return await make()


def main() -> int:
    request = json.load(sys.stdin)
    api = _Api(request["config"], request.get("api", "factory"))
    results: list[dict[str, Any]] = []
    try:
        for op in request["ops"]:
            try:
                results.append(api.run(op))
            except Exception as e:  # reported per op: a test may expect a refusal
                results.append({"error": f"{type(e).__name__}: {e}"})
    finally:
        api.close()
    json.dump({"version": asherah.version(), "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
