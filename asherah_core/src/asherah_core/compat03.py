"""The older ``asherah`` 0.3.x API (the Go core through cobhan): ``Asherah().setup(config)``.

Its snake_case configuration is translated to the PascalCase one (pascalconfig.py), with the
0.3.x meanings: ``expire_after``, ``check_interval`` and ``session_cache_duration`` are Go
``time.Duration`` values, so NANOSECONDS (0 or ``None`` is Go's default); ``kms="static"`` is
the public test key with a loud warning, as in cobhan; ``enable_session_caching`` is off by
default. ``encrypt`` takes bytes or str and returns the record's JSON text; ``decrypt``
returns a ``bytearray``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from . import session as _session
from .errors import AsherahError, ConfigError, SessionError
from .pascalconfig import factory_arguments_from_asherah_config

__all__ = ["Asherah", "AsherahConfig", "AsherahException", "KMSType", "MetastoreType"]

AsherahException = AsherahError
"""0.3.x's exception class name: every error here is an `AsherahError`."""

_NANOSECONDS = 1_000_000_000
_DURATIONS = {
    "expire_after": "ExpireAfter",
    "check_interval": "CheckInterval",
    "session_cache_duration": "SessionCacheDuration",
}
_DIRECT = {
    "service_name": "ServiceName",
    "product_id": "ProductID",
    "connection_string": "ConnectionString",
    "dynamo_db_endpoint": "DynamoDBEndpoint",
    "dynamo_db_region": "DynamoDBRegion",
    "dynamo_db_table_name": "DynamoDBTableName",
    "enable_region_suffix": "EnableRegionSuffix",
    "preferred_region": "PreferredRegion",
    "region_map": "RegionMap",
    "verbose": "Verbose",
    "enable_session_caching": "EnableSessionCaching",
    "session_cache_max_size": "SessionCacheMaxSize",
    "replica_read_consistency": "ReplicaReadConsistency",
}


class KMSType(Enum):
    """0.3.x's KMS names."""

    AWS = "aws"
    STATIC = "static"


class MetastoreType(Enum):
    """0.3.x's metastore names."""

    RDBMS = "rdbms"
    DYNAMODB = "dynamodb"
    MEMORY = "memory"


@dataclass
class AsherahConfig:
    """0.3.x's configuration; durations are Go ``time.Duration`` nanoseconds."""

    kms: KMSType | str
    metastore: MetastoreType | str
    service_name: str
    product_id: str
    # Not in the repr: a connection string or an endpoint URL may hold a password.
    connection_string: str | None = field(default=None, repr=False)
    dynamo_db_endpoint: str | None = field(default=None, repr=False)
    dynamo_db_region: str | None = None
    dynamo_db_table_name: str | None = None
    enable_region_suffix: bool = False
    preferred_region: str | None = None
    region_map: dict[str, str] | None = None
    verbose: bool = False
    enable_session_caching: bool = False
    expire_after: int | None = None
    check_interval: int | None = None
    replica_read_consistency: Any = None
    session_cache_max_size: int | None = None
    session_cache_duration: int | None = None

    def to_pascal_case(self) -> dict[str, Any]:
        """The equivalent ``asherah`` 0.5 configuration (durations converted to seconds)."""
        values = asdict(self)
        config: dict[str, Any] = {}
        for name, key in _DIRECT.items():
            value = values[name]
            if isinstance(value, Enum):
                value = value.value
            if value is not None and value != 0:
                config[key] = value
        for name, key in _DURATIONS.items():
            nanoseconds = values[name]
            if nanoseconds is None or nanoseconds == 0:
                continue  # Go's default
            if isinstance(nanoseconds, bool) or not isinstance(nanoseconds, int):
                raise ConfigError(
                    f"AsherahConfig.{name}: expected whole nanoseconds (a Go time.Duration), "
                    f"got {type(nanoseconds).__name__}"
                )
            if nanoseconds < _NANOSECONDS:
                raise ConfigError(
                    f"AsherahConfig.{name}: {nanoseconds} is {nanoseconds} nanoseconds (0.3.x "
                    f"durations are Go time.Duration values); for {nanoseconds} seconds write "
                    f"{nanoseconds} * 10**9"
                )
            config[key] = nanoseconds / _NANOSECONDS
        kms = self.kms.value if isinstance(self.kms, Enum) else self.kms
        store = self.metastore.value if isinstance(self.metastore, Enum) else self.metastore
        if kms not in ("aws", "static", "test-debug-static"):
            raise ConfigError(f"AsherahConfig.kms: expected aws or static, got {kms!r}")
        if store not in ("rdbms", "dynamodb", "memory"):
            raise ConfigError(
                f"AsherahConfig.metastore: expected rdbms, dynamodb or memory, got {store!r}"
            )
        # 0.3.x's static KMS is always the public test key.
        config["KMS"] = "test-debug-static" if kms in ("static", "test-debug-static") else kms
        config["Metastore"] = store
        return config


class Asherah:
    """0.3.x's object: `setup` once, then `encrypt` / `decrypt` by partition; `shutdown`."""

    def __init__(self) -> None:
        # `_lock` is held while a factory is built and when it is taken away, so two setups at
        # once build one factory (the other is told it is set up) and none is left unclosed.
        self._lock = threading.Lock()
        self._factory: _session.SessionFactory | None = None

    def setup(self, config: AsherahConfig) -> None:
        """Build the factory; `SessionError` if this object is already set up."""
        if not isinstance(config, AsherahConfig):
            raise TypeError(f"setup takes an AsherahConfig, not {type(config).__name__}")
        with self._lock:
            if self._factory is not None:
                raise SessionError("Asherah is already set up; call shutdown() first")
            arguments = factory_arguments_from_asherah_config(config.to_pascal_case())
            service, product = arguments.pop("service"), arguments.pop("product")
            self._factory = _session.SessionFactory(service, product, **arguments)

    def encrypt(self, partition_id: str, data: bytes | bytearray | str) -> str:
        """Encrypt `data` (str as UTF-8) and return the DataRowRecord's JSON text."""
        if isinstance(data, str):
            return self._current().get_session(partition_id).encrypt_text(data)
        return self._current().get_session(partition_id).encrypt_bytes(data)

    def decrypt(self, partition_id: str, data_row_record: str) -> bytearray:
        """Decrypt a record of `partition_id` to a ``bytearray``."""
        return bytearray(self._current().get_session(partition_id).decrypt_bytes(data_row_record))

    def shutdown(self) -> None:
        """Close the factory (zeroing its keys). Idempotent."""
        with self._lock:
            factory, self._factory = self._factory, None
        if factory is not None:
            factory.close()

    def _current(self) -> _session.SessionFactory:
        if self._factory is None:
            raise SessionError("Asherah is not set up; call setup() first")
        return self._factory
