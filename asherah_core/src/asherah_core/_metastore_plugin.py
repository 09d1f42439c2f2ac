"""The built-in metastores ``memory``, ``sql`` and ``dynamodb``, registered through the same hook
as plugins."""

from __future__ import annotations

from .config import PluginConfig
from .hookspecs import RegisterMetastore, hookimpl
from .metastore.base import Metastore
from .metastore.memory import InMemoryMetastore


@hookimpl
def asherah_register_metastore(register: RegisterMetastore) -> None:
    """Register ``memory``, ``sql`` and ``dynamodb``."""
    register("memory", memory_from_config)
    register("sql", sql_from_config)
    register("dynamodb", dynamodb_from_config)


def memory_from_config(config: PluginConfig) -> Metastore:
    """``[metastores.memory]`` takes no settings."""
    config.check_keys(())
    return InMemoryMetastore()


def sql_from_config(config: PluginConfig) -> Metastore:
    """``[metastores.sql]``: ``url`` (a SQLAlchemy URL), ``table``, ``create_table``,
    ``sqlite_wal`` (absent: a new SQLite file in WAL mode, an existing one as it is)."""
    config.check_keys(("url", "table", "create_table", "sqlite_wal"))
    from .metastore.sql import DEFAULT_TABLE, SqlMetastore  # noqa: PLC0415 - an extra

    return SqlMetastore(
        config.get_str("url"),
        table=config.get_str("table", DEFAULT_TABLE),
        create_table=config.get_bool("create_table", False),
        sqlite_wal=config.get_bool("sqlite_wal", None),
    )


def dynamodb_from_config(config: PluginConfig) -> Metastore:
    """``[metastores.dynamodb]``: ``table_name``, ``region``, ``endpoint``, ``region_suffix``,
    ``connect_timeout``, ``read_timeout``, ``max_attempts``, ``create_table``."""
    config.check_keys(
        (
            "table_name",
            "region",
            "endpoint",
            "region_suffix",
            "connect_timeout",
            "read_timeout",
            "max_attempts",
            "create_table",
        )
    )
    from .metastore.dynamodb import DEFAULT_TABLE, DynamoDbMetastore  # noqa: PLC0415 - an extra

    metastore = DynamoDbMetastore(
        config.get_str("table_name", DEFAULT_TABLE),
        region=config.get_str("region", None),
        endpoint_url=config.get_str("endpoint", None),
        region_suffix=config.get_bool("region_suffix", False),
        connect_timeout=config.get_float("connect_timeout", 5.0),
        read_timeout=config.get_float("read_timeout", 10.0),
        max_attempts=config.get_int("max_attempts", 3),
    )
    if config.get_bool("create_table", False):
        metastore.create_table()
    return metastore
