"""The ``asherah`` package (Rust core) as a peer, in a process of its own: its synchronous calls
hold the GIL during I/O, so it must not share a process with a Python-threaded server.

``python _asherah_peer.py '<json>'`` with ``config`` (its PascalCase configuration),
``encrypt`` (a list of ``[partition, plaintext]``) and ``decrypt`` (a list of
``[partition, drr]``); prints ``{"encrypted": [drr...], "decrypted": [plaintext...]}``.
"""

from __future__ import annotations

import json
import sys

import asherah


def main(job: dict[str, object]) -> None:
    encrypted: list[str] = []
    decrypted: list[str] = []
    with asherah.SessionFactory(job["config"]) as factory:
        for partition, drr in job.get("decrypt", []):  # type: ignore[attr-defined]
            with factory.get_session(partition) as session:
                decrypted.append(session.decrypt_bytes(drr).decode())
        for partition, plaintext in job.get("encrypt", []):  # type: ignore[attr-defined]
            with factory.get_session(partition) as session:
                encrypted.append(session.encrypt_bytes(plaintext.encode()))
    print(json.dumps({"encrypted": encrypted, "decrypted": decrypted}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
