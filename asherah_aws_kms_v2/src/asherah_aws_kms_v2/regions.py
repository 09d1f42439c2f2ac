"""Region order: the configured preference, with regions that just failed moved to the back.

A region that fails with a region fault (connection error, timeout, throttling, 5xx) cools
down for a period: calls try healthy regions first instead of paying the timeout again. When
the period ends, exactly one call probes the region in its usual place; success makes it
healthy again, failure starts a new cool-down. Each change is logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from asherah_core.forksafe import reset_in_child

__all__ = ["Probe", "RegionHealth"]

logger = logging.getLogger(__name__)


class Probe(NamedTuple):
    """A probe of a recovering region granted to one caller, valid until `until`."""

    region: str
    until: float


@dataclass
class _State:
    cool_until: float = 0.0  # 0 means healthy
    probe_until: float = 0.0  # a probe is granted until then
    probe_called: bool = False  # the probe's call has started


class RegionHealth:
    """Thread-safe health of each region, and the order to try regions in.

    :param cooldown: seconds a failed region stays at the back; 0 turns the feature off.
    :param probe_timeout: how long one probe holds the region before another call may probe.
    :param on_change: called as ``on_change(region, healthy)`` on every change of state.
    """

    def __init__(
        self,
        regions: Iterable[str],
        *,
        cooldown: float,
        probe_timeout: float,
        on_change: Callable[[str, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown = cooldown
        self._probe_timeout = probe_timeout
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._states = {region: _State() for region in regions}
        reset_in_child(self, RegionHealth._forked)
        self.cooling = 0
        """How many regions are cooling down (or probing): changed under the lock, read
        without it, so that the common case (every region healthy) takes no lock and calls
        nothing (`split` here, the calls' `calling` and `record_success` in `RegionalKey`)."""

    def _forked(self) -> None:
        """In a forked child: a new lock (a thread of the parent may have held it), no probe
        (those granted were the parent's threads', which do not run here), and `cooling`
        counted again from the states (a thread may have stopped between a state's change and
        the count's)."""
        self._lock = threading.Lock()
        for state in self._states.values():
            state.probe_until = 0.0
            state.probe_called = False
        self.cooling = sum(1 for state in self._states.values() if state.cool_until != 0.0)

    def order(self, preferred: Sequence[str], *, probes: list[Probe] | None = None) -> list[str]:
        """Return `preferred` with cooling regions moved to the back, in their relative order."""
        usable, cooling = self.split(preferred, probes=probes)
        return usable + cooling

    def split(
        self, preferred: Sequence[str], *, probes: list[Probe] | None = None
    ) -> tuple[list[str], list[str]]:
        """Split `preferred` into the regions to use now and those cooling down, in order.

        A region whose cool-down has ended is given back its place to exactly one caller
        (the probe) until that caller reports the outcome, gives the probe back with
        `release`, or the probe times out. The probes granted are appended to `probes`.
        """
        if self.cooldown <= 0 or not self.cooling:
            return list(preferred), []
        now = self._clock()
        front: list[str] = []
        back: list[str] = []
        with self._lock:
            for region in preferred:
                state = self._states.get(region)
                if state is None or state.cool_until == 0.0:
                    front.append(region)
                elif now >= state.cool_until and now >= state.probe_until:
                    state.probe_until = now + self._probe_timeout
                    state.probe_called = False
                    front.append(region)
                    if probes is not None:
                        probes.append(Probe(region, state.probe_until))
                else:
                    back.append(region)
        return front, back

    def calling(self, region: str) -> None:
        """Note that a call to `region` starts: a probe granted for it is now in use."""
        state = self._states.get(region)
        if state is None or state.cool_until == 0.0:
            return  # healthy: no probe to mark, and no lock on the common path
        with self._lock:
            if state.probe_until:
                state.probe_called = True

    def release(self, probes: Iterable[Probe]) -> None:
        """Give back probes from `split` whose region was never called, so that the next
        caller probes it instead of waiting for the probe timeout. A probe already used,
        or granted since to another caller, is left alone."""
        with self._lock:
            for region, granted_until in probes:
                state = self._states.get(region)
                if state and state.probe_until == granted_until and not state.probe_called:
                    state.probe_until = 0.0

    def is_healthy(self, region: str) -> bool:
        """Whether `region` is not cooling down."""
        state = self._states.get(region)
        return state is None or state.cool_until == 0.0

    def record_success(self, region: str) -> None:
        """Mark `region` healthy after a call it answered."""
        state = self._states.get(region)
        if state is None or state.cool_until == 0.0:
            return
        with self._lock:
            if state.cool_until == 0.0:
                return
            state.cool_until = state.probe_until = 0.0
            self.cooling -= 1
            self._changed(region, healthy=True, reason="")

    def record_fault(self, region: str, reason: str) -> None:
        """Move `region` to the back for the cool-down after a region fault."""
        state = self._states.get(region)
        if self.cooldown <= 0 or state is None:
            return
        with self._lock:
            was_healthy = state.cool_until == 0.0
            state.cool_until = self._clock() + self.cooldown
            state.probe_until = 0.0
            if was_healthy:
                self.cooling += 1
                self._changed(region, healthy=False, reason=reason)

    def _changed(self, region: str, *, healthy: bool, reason: str) -> None:
        """Log a change of state and report it; under the lock, so that the log lines and
        the reports of one region come in the order of its changes."""
        if healthy:
            logger.info("region %s is healthy again", region)
        else:
            logger.warning(
                "region %s moved to the back of the order for %.3g s after %s",
                region,
                self.cooldown,
                reason,
            )
        if self._on_change is not None:
            self._on_change(region, healthy)
