"""The server goes away in the middle of a run of encrypts and comes back: every call either
returned a row that later decrypts or raised MetastoreError, and the calls after the restart
work without a new factory."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from asherah_core import MetastoreError, SessionFactory, StaticKms

from ._backends import Backend, kind_params
from ._race_worker import MASTER_KEY

OUTAGE_AFTER = 15  # encrypts before the server is stopped
OUTAGE_SECONDS = 1.5
AFTER_RESTART = 20  # encrypts that must succeed after it is back
DEADLINE = 120.0


@pytest.mark.parametrize("backend", kind_params("postgres", "mysql", "dynamodb"), indirect=True)
def test_an_outage_fails_calls_cleanly_and_the_factory_recovers(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    server = backend.server
    if not server.restartable:
        pytest.skip("the server was given by environment variable; not stopping it")
    service = f"fault{uuid.uuid4().hex[:8]}"
    factory = SessionFactory(service, "prod", kms=StaticKms(MASTER_KEY), metastore=backend.make())
    rows: list[tuple[str, bytes, str]] = []
    errors: list[MetastoreError] = []
    calls = 0
    reached = threading.Event()
    restarted = threading.Event()

    def outage() -> None:
        reached.wait(DEADLINE)
        server.stop()  # while the main thread keeps encrypting
        time.sleep(OUTAGE_SECONDS)
        server.start()
        restarted.set()

    thread = threading.Thread(target=outage)
    thread.start()
    ok_after_restart = 0
    deadline = time.monotonic() + DEADLINE
    try:
        while ok_after_restart < AFTER_RESTART and time.monotonic() < deadline:
            partition = f"{service}-{calls}"  # a new partition each call needs the metastore
            plaintext = f"row {calls}".encode()
            back = restarted.is_set()
            calls += 1
            try:
                with factory.get_session(partition) as session:
                    drr = session.encrypt_bytes(plaintext)
            except MetastoreError as error:
                errors.append(error)
                continue
            rows.append((partition, plaintext, drr))
            ok_after_restart += back
            if calls >= OUTAGE_AFTER:
                reached.set()
    finally:
        reached.set()
        thread.join()
        factory.close()

    assert ok_after_restart == AFTER_RESTART
    assert errors, "no call failed: the outage was not seen"
    password = getattr(server, "url", "")
    for error in errors:
        assert "_IK_" in str(error) or "_SK_" in str(error), str(error)
        if "@" in password:
            secret = password.split("://", 1)[1].split("@", 1)[0].split(":", 1)[-1]
            assert secret not in str(error)

    with SessionFactory(
        service, "prod", kms=StaticKms(MASTER_KEY), metastore=backend.make()
    ) as fresh:
        for partition, plaintext, drr in rows:
            with fresh.get_session(partition) as session:
                assert session.decrypt_bytes(drr) == plaintext
    # Nothing half-written: every row of this run parses, and each is a key some row used or a
    # key stored by a call that failed later (never a partial record).
    stored = [*backend.make().keys(f"_SK_{service}_"), *backend.make().keys(f"_IK_{service}-")]
    assert stored
    with capsys.disabled():
        print(
            f"\n  faults[{backend.kind}]: {calls} calls, {len(rows)} returned rows (all decrypt), "
            f"{len(errors)} MetastoreError, {AFTER_RESTART} after the restart"
        )
