"""The built-in metastores ``memory`` and ``sql``, registered through the same hook as plugins."""

from __future__ import annotations

from .config import PluginConfig
from .hookspecs import RegisterMetastore, hookimpl
from .metastore.base import Metastore
from .metastore.memory import InMemoryMetastore


@hookimpl
def asherah_register_metastore(register: RegisterMetastore) -> None:
    """Register ``memory`` and ``sql``."""
    register("memory", memory_from_config)
    register("sql", sql_from_config)


def memory_from_config(config: PluginConfig) -> Metastore:
    """``[metastores.memory]`` takes no settings."""
    config.check_keys(())
    return InMemoryMetastore()


def sql_from_config(config: PluginConfig) -> Metastore:
    """``[metastores.sql]``: ``url`` (a SQLAlchemy URL), ``table``, ``create_table``."""
    config.check_keys(("url", "table", "create_table"))
    from .metastore.sql import DEFAULT_TABLE, SqlMetastore  # noqa: PLC0415 - an extra

    return SqlMetastore(
        config.get_str("url"),
        table=config.get_str("table", DEFAULT_TABLE),
        create_table=config.get_bool("create_table", False),
    )
