"""`DecryptCall`: one decrypt_key over the regions, in order or hedged; its state lives with it."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from functools import partial
from typing import Any

from asherah_core import CryptoError, KmsError

from .context import KmsContext
from .deadline import Deadline
from .envelope import Entry, find_entry, printable_region_names, read_envelope
from .errors import RegionCallError, all_failed, deadline_error
from .metrics import attributes
from .regional import DECRYPT, RegionalKey
from .regions import Probe

__all__ = ["DecryptCall"]


_Attempt = tuple[RegionalKey, bytes]  # a region's key and the envelope's blob it can decrypt


class DecryptCall:
    """The regions in order (preferred first, cooling regions last), optionally hedged,
    until one unwraps the key."""

    def __init__(
        self, context: KmsContext, envelope: bytes, deadline: Deadline, probes: list[Probe]
    ) -> None:
        self._ctx = context
        self._sealed_key, entries = read_envelope(envelope)
        self._deadline = deadline
        self._attempts = self._plan(entries, probes)

    def run(self) -> bytes:
        """Unwrap the key; `KmsError` naming each region's failure if none could.

        Without hedging, one region after another, each in this thread while it fits.
        """
        ctx, deadline = self._ctx, self._deadline
        if ctx.settings.hedge_after > 0:
            return self._hedged()
        errors: dict[str, RegionCallError] = {}
        for i, (key, blob) in enumerate(self._attempts):
            last = i == len(self._attempts) - 1
            try:
                response = ctx.dispatcher.run(
                    partial(key.call, DECRYPT, {"CiphertextBlob": blob}, deadline, last),
                    deadline,
                    partial(deadline_error, key.name, DECRYPT.api),
                )
                return self._open(key, response)
            except RegionCallError as e:
                errors[key.name] = e
                if not last:
                    ctx.failover("decrypt_key", e)
        raise all_failed("decrypt_key failed in every region tried", errors)

    def _plan(self, entries: Mapping[str, Entry], probes: list[Probe]) -> list[_Attempt]:
        ctx = self._ctx
        mrk_aware = ctx.settings.mrk_awareness
        attempts: list[_Attempt] = []
        health = ctx.health
        for region in health.order(ctx.order, probes=probes) if health.cooling else ctx.order:
            key = ctx.keys[region]
            # The region's own entry first, as find_entry would, without a call per region.
            entry = entries.get(region) or find_entry(entries, region, key.arn, mrk_aware=mrk_aware)
            if entry is not None:
                attempts.append((key, entry[2]))
        if not attempts:
            raise KmsError(
                "decrypt_key: the envelope holds no copy of the data key for a configured "
                f"region (envelope regions: {printable_region_names(entries)}; "
                f"configured: {', '.join(ctx.order)})"
            )
        return attempts

    def _hedged(self) -> bytes:
        """When a region is slow to answer, the next is asked too; the first answer wins."""
        ctx, deadline, attempts = self._ctx, self._deadline, self._attempts
        dispatcher, hedge = ctx.dispatcher, ctx.settings.hedge_after
        clock = deadline.clock
        errors: list[RegionCallError] = []
        pending: dict[Future[bytes], str] = {}
        launched = 0
        last_launch = 0.0

        def launch() -> None:
            nonlocal launched, last_launch
            key, blob = attempts[launched]
            launched += 1
            future = dispatcher.submit(self._decrypt_in, key, blob, launched == len(attempts))
            pending[future] = key.name
            last_launch = clock()

        launch()
        try:
            while pending and not deadline.expired():
                can_hedge = launched < len(attempts)
                cap = last_launch + hedge - clock() if can_hedge else None
                done = dispatcher.first_completed(pending, deadline, cap)
                if not done:
                    if can_hedge and clock() >= last_launch + hedge:
                        ctx.metrics.hedges.add(1, attributes(attempts[launched][0].name))
                        launch()
                    continue
                for future in done:
                    pending.pop(future)
                    try:
                        return dispatcher.result(future)
                    except RegionCallError as e:
                        errors.append(e)
                        if launched < len(attempts) or pending:
                            ctx.failover("decrypt_key", e)
                if launched < len(attempts):
                    launch()
            for region in pending.values():
                errors.append(deadline_error(region, DECRYPT.api))
        finally:
            for future in pending:
                future.cancel()
        raise all_failed("decrypt_key failed in every region tried", {e.region: e for e in errors})

    def _decrypt_in(self, key: RegionalKey, blob: bytes, last: bool) -> bytes:
        response = key.call_to_the_end(
            DECRYPT, {"CiphertextBlob": blob}, self._deadline, retry_timeouts=last
        )
        return self._open(key, response)

    def _open(self, key: RegionalKey, response: Mapping[str, Any]) -> bytes:
        """Check the data key KMS returned and open the sealed key with it."""
        data_key = key.data_key(DECRYPT, response)
        try:
            return self._ctx.crypto.decrypt(self._sealed_key, data_key)
        except CryptoError as e:
            raise RegionCallError(
                key.name, DECRYPT.api, "CryptoError", str(e), region_fault=False, retryable=False
            ) from e
