"""The key management service interface that every KMS plugin implements."""

from __future__ import annotations

import abc
import os
import time
from dataclasses import dataclass

from ._closing import ClosesOnExit
from ._tothread import to_thread
from .errors import AsherahError

__all__ = ["KeyManagementService", "ProbeResult"]


@dataclass(frozen=True)
class ProbeResult:
    """One line of a health report: what was probed, whether it worked, and how long it took.

    :param target: what was probed, for example a region name or ``"round-trip"``.
    :param ok: whether the probe succeeded.
    :param seconds: how long the probe took.
    :param detail: a short human-readable outcome; never key material.
    """

    target: str
    ok: bool
    seconds: float
    detail: str = ""


class KeyManagementService(ClosesOnExit, abc.ABC):
    """Wraps and unwraps keys with a master key the service holds.

    Implementations are thread-safe. The coroutine variants run the blocking call in a worker
    thread so they never block the event loop. Use the object as a context manager, or call
    `close()`, to release its clients and threads.
    """

    @abc.abstractmethod
    def encrypt_key(self, key: bytes) -> bytes:
        """Wrap `key` and return the encrypted form to store beside the data."""

    @abc.abstractmethod
    def decrypt_key(self, encrypted: bytes) -> bytes:
        """Unwrap a value returned by `encrypt_key` and return the key."""

    async def encrypt_key_async(self, key: bytes) -> bytes:
        """Coroutine version of `encrypt_key`; runs it in a worker thread."""
        return await to_thread(self.encrypt_key, key)

    async def decrypt_key_async(self, encrypted: bytes) -> bytes:
        """Coroutine version of `decrypt_key`; runs it in a worker thread."""
        return await to_thread(self.decrypt_key, encrypted)

    def diagnose(self) -> list[ProbeResult]:
        """Round-trip a random key and report what worked; plugins report per region.

        Used by ``asherah-kms doctor``. Never raises for a failed probe: the failure is reported.
        """
        start = time.perf_counter()
        try:
            key = os.urandom(32)
            ok = self.decrypt_key(self.encrypt_key(key)) == key
            detail = "wrapped and unwrapped a random key" if ok else "unwrapped key differs"
        except AsherahError as e:
            ok, detail = False, str(e)
        except Exception as e:  # a plugin bug is a failed probe too, not a crash of the report
            ok, detail = False, f"{type(e).__name__}: {e}"
        return [ProbeResult("round-trip", ok, time.perf_counter() - start, detail)]

    def close(self) -> None:
        """Release clients, threads and other resources. Safe to call more than once."""
