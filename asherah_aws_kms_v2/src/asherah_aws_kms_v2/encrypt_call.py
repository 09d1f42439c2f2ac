"""`EncryptCall`: one encrypt_key, from the data key to the envelope; its state lives with it."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future
from functools import partial

from asherah_core import CryptoError, KmsError

from .context import KmsContext
from .deadline import Deadline
from .envelope import envelope_bytes
from .errors import RegionCallError, all_failed, deadline_error
from .metrics import attributes
from .regional import DATA_KEY_BYTES, ENCRYPT, GENERATE_DATA_KEY
from .regions import Probe

__all__ = ["EncryptCall"]

logger = logging.getLogger(__name__)
_AES_256 = {"KeySpec": "AES_256"}


class EncryptCall:
    """A data key from GenerateDataKey in the first region that answers (or from the OS), the
    key sealed under it, and a KMS-encrypted copy of the data key for every other region."""

    def __init__(
        self, context: KmsContext, key: bytes, deadline: Deadline, probes: list[Probe]
    ) -> None:
        self._ctx = context
        self._key = key
        self._deadline = deadline
        self._probes = probes
        self._entries: dict[str, bytes] = {}
        self._errors: dict[str, RegionCallError] = {}

    def run(self) -> bytes:
        """Make the envelope; `KmsError` if fewer than min_regions hold a copy."""
        ctx = self._ctx
        usable, cooling = ctx.health.split(ctx.order, probes=self._probes)
        entries, errors = self._entries, self._errors
        first: str | None = None
        if ctx.settings.local_data_key:
            data_key = os.urandom(DATA_KEY_BYTES)
        else:
            first, data_key, blob = self._generate_data_key(usable + cooling)
            for region in ctx.groups[first]:
                entries[region] = blob
        try:
            encrypted_key = ctx.crypto.encrypt(self._key, data_key)
        except CryptoError as e:
            raise KmsError(f"encrypt_key: sealing the key failed: {e}") from e
        # A region that just faulted, or is cooling down, would likely cost a timeout again:
        # leave it out unless it is needed to reach min_regions.
        if errors:
            faulted = [r for r in usable if r in errors and errors[r].region_fault]
            usable = [r for r in usable if r not in faulted]
            cooling = faulted + cooling
        skipped: list[str] = []
        order = usable + cooling
        if len(usable) >= ctx.settings.min_regions:
            skipped, order = cooling, usable
            for region in skipped:
                errors.setdefault(region, _cooling_error(region))
        self._encrypt_remaining(order, data_key)
        if len(entries) < ctx.settings.min_regions and skipped:
            # The healthy regions fell short after all (a key error, say): ask the others too.
            self._encrypt_remaining(skipped, data_key)
        self._check_coverage()
        # The region that made the data key first, then the others in canonical order.
        regions = ctx.order
        if first is not None and first != regions[0]:
            regions = (first, *(r for r in regions if r != first))
        heads = ctx.entry_heads
        return envelope_bytes(
            encrypted_key, [(heads[r], entries[r]) for r in regions if r in entries]
        )

    def _generate_data_key(self, order: Sequence[str]) -> tuple[str, bytes, bytes]:
        ctx, deadline = self._ctx, self._deadline
        for i, region in enumerate(order):
            key = ctx.keys[region]
            last = i == len(order) - 1
            try:
                response = ctx.dispatcher.run(
                    partial(key.call, GENERATE_DATA_KEY, _AES_256, deadline, last),
                    deadline,
                    partial(deadline_error, region, GENERATE_DATA_KEY.api),
                )
                data_key = key.data_key(GENERATE_DATA_KEY, response)
                blob = key.ciphertext(GENERATE_DATA_KEY, response)
            except RegionCallError as e:
                self._errors[region] = e
                if not last:
                    ctx.failover("encrypt_key", e)
                continue
            return region, data_key, blob
        raise all_failed("encrypt_key: GenerateDataKey failed in every region", self._errors)

    def _encrypt_remaining(self, order: Sequence[str], data_key: bytes) -> None:
        """Encrypt the data key concurrently in each group of `order` that has no copy yet."""
        ctx = self._ctx
        # The groups of replicas without a copy, each its regions of `order` in that order,
        # and how many regions its copy would cover (all its replicas, asked or not).
        groups: list[tuple[str, ...]] = []
        covers: list[int] = []
        taken = set(self._entries)
        for region in order:
            if region not in taken:
                replicas = ctx.groups[region]
                taken.update(replicas)
                single = len(replicas) == 1
                groups.append(replicas if single else tuple(r for r in order if r in replicas))
                covers.append(len(replicas))
        reachable = len(self._entries) + sum(covers)
        # Pay a timeout again only for a copy min_regions cannot do without.
        needed = {
            g: reachable - c < ctx.settings.min_regions for g, c in zip(groups, covers, strict=True)
        }
        # This thread makes the last call itself when it is one region's (no replicas to fall
        # back on): the same concurrency as handing it to the pool, without the hand-off.
        here = groups.pop() if groups and len(groups[-1]) == 1 else None
        futures: dict[Future[tuple[str, bytes]], tuple[str, ...]] = {}
        group_errors: dict[tuple[str, ...], dict[str, RegionCallError]] = {}
        for group in groups:
            group_errors[group] = {}
            future = ctx.dispatcher.submit(
                self._encrypt_in_group, group, data_key, group_errors[group], needed[group]
            )
            futures[future] = group
        if here is not None:
            self._encrypt_here(here[0], data_key, needed[here])
        done, not_done = ctx.dispatcher.gather(futures, self._deadline)
        for future in done:
            group = futures[future]
            try:
                self._keep(*ctx.dispatcher.result(future))
            except RegionCallError:
                self._errors.update(group_errors[group])
        for future in not_done:
            for region in futures[future]:
                self._errors[region] = deadline_error(region, ENCRYPT.api)

    def _encrypt_here(self, region: str, data_key: bytes, needed: bool) -> None:
        """Encrypt the data key in `region` from this thread while an attempt fits before the
        deadline (the rest on the pool, as `Dispatcher.run` does)."""
        ctx, deadline = self._ctx, self._deadline
        key = ctx.keys[region]
        try:
            response = ctx.dispatcher.run(
                partial(key.call, ENCRYPT, {"Plaintext": data_key}, deadline, needed),
                deadline,
                partial(deadline_error, region, ENCRYPT.api),
            )
            blob = key.ciphertext(ENCRYPT, response)
        except RegionCallError as e:
            self._errors[region] = e
            return
        self._keep(region, blob)

    def _keep(self, region: str, blob: bytes) -> None:
        """Keep `region`'s copy for every configured replica of its key."""
        for member in self._ctx.groups[region]:
            self._entries[member] = blob
            self._errors.pop(member, None)

    def _encrypt_in_group(
        self,
        group: Sequence[str],
        data_key: bytes,
        errors: dict[str, RegionCallError],
        needed: bool,
    ) -> tuple[str, bytes]:
        """Encrypt the data key in the first region of `group` that answers (MRK replicas).

        Runs on the pool. Connection errors and timeouts are retried in the group's last
        region only when the copy is `needed` to reach min_regions.
        """
        for i, region in enumerate(group):
            key = self._ctx.keys[region]
            last = i == len(group) - 1
            try:
                response = key.call_to_the_end(
                    ENCRYPT, {"Plaintext": data_key}, self._deadline,
                    retry_timeouts=last and needed,
                )  # fmt: skip
                return region, key.ciphertext(ENCRYPT, response)
            except RegionCallError as e:
                errors[region] = e
                if last:
                    raise
                if e.error_type != "InvalidResponse":
                    self._ctx.failover("encrypt_key", e)
        raise KmsError("empty region group")  # pragma: no cover - groups are never empty

    def _check_coverage(self) -> None:
        ctx, entries, errors = self._ctx, self._entries, self._errors
        if len(entries) == len(ctx.order):  # the common case: every region holds a copy
            return
        left_out = [r for r in ctx.order if r not in entries]
        for region in left_out:
            reason = errors[region].summary if region in errors else "no copy was made"
            logger.warning(
                "encrypt_key: region %s left out of the envelope (%s); the data key is held "
                "in %d of %d regions",
                region,
                reason,
                len(entries),
                len(ctx.order),
            )
            ctx.metrics.regions_left_out.add(1, attributes(region))
        if len(entries) < ctx.settings.min_regions:
            detail = "; ".join(
                f"{r}: {errors[r].summary if r in errors else 'no copy'}" for r in left_out
            )
            raise all_failed(
                f"encrypt_key: only {len(entries)} of {len(ctx.order)} regions hold a copy of "
                f"the data key and min_regions is {ctx.settings.min_regions} ({detail})",
                {r: errors[r] for r in left_out if r in errors},
                summarise=False,
            )


def _cooling_error(region: str) -> RegionCallError:
    return RegionCallError(
        region, ENCRYPT.api, "RegionCoolingDown",
        "skipped while the region cools down after a fault",
        region_fault=False, retryable=False,
    )  # fmt: skip
