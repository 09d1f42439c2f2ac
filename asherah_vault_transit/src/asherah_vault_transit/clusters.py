"""The order in which clusters are tried: configured order, with recently failed ones last."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from asherah_core.forksafe import new_locks_in_child

__all__ = ["ClusterHealth"]


class ClusterHealth:
    """Remembers when each cluster last failed; a cluster that failed less than `cooldown`
    seconds ago goes to the back of the order (still tried, after the others).

    Invariant: ``_failed_at`` is read and written only with ``_lock`` held; it maps a cluster
    number to the clock time of its last failure and holds no entry for a healthy cluster.
    """

    def __init__(
        self, count: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._count = count
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()  # one dict write under it: renewed in a forked child
        self._failed_at: dict[int, float] = {}
        new_locks_in_child(self, "_lock")

    def order(self) -> list[int]:
        """The cluster numbers to try, healthy first (in configured order), then the cooling
        ones, the longest-failed first."""
        now = self._clock()
        with self._lock:
            cooling = {i: at for i, at in self._failed_at.items() if now - at < self._cooldown}
        healthy = [i for i in range(self._count) if i not in cooling]
        return healthy + sorted(cooling, key=lambda i: (cooling[i], i))

    def failed(self, cluster: int) -> bool:
        """Record a failure; return whether the cluster was healthy until now."""
        now = self._clock()
        with self._lock:
            before = self._failed_at.get(cluster)
            self._failed_at[cluster] = now
        return before is None or now - before >= self._cooldown

    def succeeded(self, cluster: int) -> bool:
        """Record a success; return whether the cluster was cooling down until now."""
        with self._lock:
            return self._failed_at.pop(cluster, None) is not None

    def healthy(self, cluster: int) -> bool:
        """Whether the cluster is not cooling down."""
        now = self._clock()
        with self._lock:
            at = self._failed_at.get(cluster)
        return at is None or now - at >= self._cooldown
