"""One process-wide metrics hook fed by the OpenTelemetry instruments (``compat.set_metrics_hook``).

The ``asherah`` package hands a callback dicts such as ``{"type": "encrypt", "duration_ns": 812}``
and ``{"type": "cache_hit", "name": "intermediate-key"}``. Here those events come from the same
measurements our instruments record: a `Tap` wraps a duration histogram and, while a hook is
set, reports each duration it records; cache events are the growth of the counters the
observable ``ael.cache.*`` counters read. No second clock is read and nothing is counted twice.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from .forksafe import Lock

__all__ = ["Hook", "Tap", "get_hook", "set_hook"]

Hook = Callable[[dict[str, Any]], object]

logger = logging.getLogger(__name__)

_lock = Lock()  # (forksafe: unlocked in a forked child)
_hook: Hook | None = None
# Invariants (under _lock), for every live Tap: `record` is its histogram's own `record` while
# _hook is None and its `_tapped` while a hook is set; `timed` is `heard or _hook is not None`.
# Only set_hook, Tap.__init__ and Tap.hear assign them.
_taps: weakref.WeakSet[Tap] = weakref.WeakSet()
_on_install: weakref.WeakSet[_Rebasable] = weakref.WeakSet()


class _Histogram(Protocol):
    def record(self, amount: float, attributes: Any = None) -> None: ...


class _Rebasable(Protocol):
    def rebase(self) -> None: ...


class Tap:
    """A duration histogram (seconds) whose ``record`` also reports ``{"type": kind, …}``.

    Without a hook ``record`` *is* the histogram's bound method, so the hot path pays nothing.
    ``timed`` says whether a duration given to ``record`` goes anywhere: a caller may skip
    reading the clock while it is false (no hook, and a histogram that records nothing yet).
    :param after: called with the hook after each reported duration (cache events of a row).
    :param heard: whether the histogram records what it is given now; `hear` when it starts.
    """

    __slots__ = ("__weakref__", "after", "heard", "histogram", "kind", "record", "timed")

    def __init__(
        self,
        histogram: _Histogram,
        kind: str,
        after: Callable[[Hook], None] | None = None,
        *,
        heard: bool = True,
    ) -> None:
        self.histogram = histogram
        self.kind = kind
        self.after = after
        with _lock:
            self.heard = heard
            self.timed = heard or _hook is not None
            self.record: Callable[..., None] = histogram.record if _hook is None else self._tapped
            _taps.add(self)

    def hear(self) -> None:
        """The histogram records what it is given from now on (an SDK was installed)."""
        with _lock:
            self.heard = self.timed = True

    def _tapped(self, amount: float, attributes: Any = None) -> None:
        self.histogram.record(amount, attributes)
        hook = _hook
        if hook is None:
            return
        deliver(hook, {"type": self.kind, "duration_ns": max(1, round(amount * 1e9))})
        if self.after is not None:
            self.after(hook)


def deliver(hook: Hook, event: dict[str, Any]) -> None:
    """Call `hook`; a failing hook is logged, never raised into an encrypt or decrypt."""
    try:
        hook(event)
    except Exception:
        logger.exception("the metrics hook raised on a %r event", event.get("type"))


def watch_installs(target: _Rebasable) -> None:
    """Call ``target.rebase()`` whenever a hook is installed (cache counts start from there)."""
    with _lock:
        _on_install.add(target)


def set_hook(hook: Hook | None) -> None:
    """Install `hook` (replacing any), or remove it with ``None``; `TypeError` if not callable."""
    global _hook  # noqa: PLW0603 - one hook per process, as in the asherah package
    if hook is not None and not callable(hook):
        raise TypeError(f"the metrics hook must be callable or None, not {type(hook).__name__}")
    with _lock:
        installing = _hook is None and hook is not None
        _hook = hook
        for tap in list(_taps):
            tap.record = tap.histogram.record if hook is None else tap._tapped
            tap.timed = tap.heard or hook is not None
        targets = list(_on_install) if installing else []
    for target in targets:
        target.rebase()


def get_hook() -> Hook | None:
    """The hook now installed, if any."""
    return _hook
