"""The plugin's I/O as values: a flow is a generator that yields `Call`, `Pause` and `Wait`
steps and is sent a `Reply` for each call.

Every decision (which cluster, retry or not, renew the token, log in again) is written once, in
flows; `transport` runs a flow with blocking or with async httpx clients. This is how one code
path serves ``encrypt_key`` and ``encrypt_key_async``.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .latch import Latch

__all__ = ["Call", "Flow", "Pause", "Reply", "Step", "Wait"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Call:
    """One HTTP request to cluster number `cluster`: ``method /v1/<path>`` with a JSON body."""

    cluster: int
    method: str
    path: str
    timeout: float
    body: Mapping[str, Any] | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Pause:
    """Wait `seconds` before the next step (a retry's back-off)."""

    seconds: float


@dataclass(frozen=True)
class Wait:
    """Wait until `latch` opens (another caller's login is done), at most `seconds`. The flow is
    sent a `Reply` that means nothing: it looks at what the latch guards itself."""

    latch: Latch
    seconds: float


@dataclass(frozen=True)
class Reply:
    """What came back: an HTTP status and JSON body, or (``status == 0``) a transport failure.

    `problem` is a short description safe to show (never a body field that holds key material:
    a transport error's text, or Vault's ``errors`` list).
    """

    status: int
    data: Mapping[str, Any] | None = field(default=None, repr=False)
    auth: Mapping[str, Any] | None = field(default=None, repr=False)
    problem: str = ""
    retry_after: float = 0.0  # seconds the server asked us to wait (Retry-After), 0 if none

    @property
    def ok(self) -> bool:
        """Whether the call answered 2xx."""
        return 200 <= self.status < 300


Step = Call | Pause | Wait
Flow = Generator[Step, Reply, _T]
