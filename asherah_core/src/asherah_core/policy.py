"""`CryptoPolicy`: when keys expire, how often revocation is checked, and what is cached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .errors import ConfigError

__all__ = ["MAX_CACHE_SIZE", "CryptoPolicy"]

MAX_CACHE_SIZE = 10_000_000
"""The largest size of each cache (keys or sessions)."""


@dataclass(frozen=True, slots=True)
class CryptoPolicy:
    """One immutable value with every rule of the key hierarchy; the defaults are Asherah's.

    :param expire_after: a system or intermediate key older than this is not used to encrypt
        (it still decrypts); the next encrypt makes a new one.
    :param revoke_check_interval: a cached key is re-read from the metastore after this long,
        so a revocation written by another process is seen within it.
    :param create_date_precision: new system and intermediate keys get a ``Created`` truncated
        to this, so processes that make the same key at the same time collide and agree on one.
        At most `expire_after` (a `ConfigError` otherwise: keys would expire as they are made).
    :param cache_system_keys: keep unwrapped system keys in memory (one KMS call per key).
    :param cache_intermediate_keys: keep unsealed intermediate keys in memory.
    :param system_key_cache_max_size: at most this many system keys are cached.
    :param intermediate_key_cache_max_size: at most this many intermediate keys are cached,
        shared by every session of the factory (keyed by id, which holds the partition).
    :param cache_sessions: `SessionFactory.get_session` returns the same session for a
        partition while it is cached.
    :param session_cache_max_size: at most this many sessions are cached.
    :param session_cache_duration: a cached session is dropped after this long unused.
    """

    expire_after: timedelta = timedelta(days=90)
    revoke_check_interval: timedelta = timedelta(minutes=60)
    create_date_precision: timedelta = timedelta(minutes=1)
    cache_system_keys: bool = True
    cache_intermediate_keys: bool = True
    system_key_cache_max_size: int = 1000
    intermediate_key_cache_max_size: int = 1000
    cache_sessions: bool = False
    session_cache_max_size: int = 1000
    session_cache_duration: timedelta = timedelta(hours=2)

    def __post_init__(self) -> None:
        for name in (
            "expire_after",
            "revoke_check_interval",
            "create_date_precision",
            "session_cache_duration",
        ):
            value = getattr(self, name)
            if not isinstance(value, timedelta):
                raise ConfigError(
                    f"CryptoPolicy.{name}: expected a timedelta, got {type(value).__name__}"
                )
            if value <= timedelta(0):
                raise ConfigError(f"CryptoPolicy.{name}: must be positive, got {value}")
            if value > timedelta(days=365 * 1000):
                raise ConfigError(f"CryptoPolicy.{name}: at most 1000 years, got {value}")
        if self.create_date_precision.total_seconds() % 1:
            raise ConfigError(
                "CryptoPolicy.create_date_precision: must be a whole number of seconds, got "
                f"{self.create_date_precision}"
            )
        if self.expire_after < self.create_date_precision:
            # A key's Created is truncated to the precision, so it would be expired within its
            # own window: every encrypt after that would make a new key (one a second, each a
            # KMS call for a new system key). Refused rather than flooding the KMS.
            raise ConfigError(
                f"CryptoPolicy.expire_after ({self.expire_after}) is shorter than "
                f"CryptoPolicy.create_date_precision ({self.create_date_precision}): new keys "
                "would be expired as soon as they are made, and each partition would make a "
                "new key and call the KMS about once a second; set create_date_precision to "
                "at most expire_after"
            )
        for name in ("cache_system_keys", "cache_intermediate_keys", "cache_sessions"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"CryptoPolicy.{name}: expected True or False")
        for name in (
            "system_key_cache_max_size",
            "intermediate_key_cache_max_size",
            "session_cache_max_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"CryptoPolicy.{name}: expected an integer")
            if not 1 <= value <= MAX_CACHE_SIZE:
                raise ConfigError(
                    f"CryptoPolicy.{name}: must be 1 to {MAX_CACHE_SIZE}, got {value}"
                )

    @property
    def expire_seconds(self) -> float:
        """`expire_after` in seconds."""
        return self.expire_after.total_seconds()

    @property
    def revoke_check_seconds(self) -> float:
        """`revoke_check_interval` in seconds."""
        return self.revoke_check_interval.total_seconds()

    @property
    def precision_seconds(self) -> int:
        """`create_date_precision` in whole seconds."""
        return int(self.create_date_precision.total_seconds())

    def new_key_created(self, now: float) -> int:
        """The ``Created`` of a system or intermediate key made at `now`: truncated."""
        precision = self.precision_seconds
        second = int(now)
        return second - second % precision

    def is_expired(self, created: int, now: float) -> bool:
        """Whether a key made at `created` is too old to encrypt with at `now`."""
        return now - created > self.expire_seconds
