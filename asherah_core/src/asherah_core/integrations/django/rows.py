"""What the ``asherah_rewrap`` and ``asherah_key_usage`` commands walk: the table of an
encrypted field (``app_label.Model.field``), and a SQLAlchemy engine on the same database.

The walk itself is `asherah_core.table_rotation` (SQLAlchemy Core: the conditional ``UPDATE``,
streamed reads). Django's own connection is not handed to it: Django runs its connections in
autocommit and owns their transactions, while the walk commits one transaction per batch. So an
engine of its own is made from the same ``DATABASES`` entry (SQLite and PostgreSQL), and
``--url`` names any other database SQLAlchemy can open.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.core.management.base import CommandError
from django.db import connections

from asherah_core._sqlsecrets import shown_url, url_secrets, without_query_secrets
from asherah_core.errors import AsherahError

try:
    import sqlalchemy as sa
except ImportError as e:  # pragma: no cover - the django nox session installs SQLAlchemy
    raise ImportError(
        "the asherah_rewrap and asherah_key_usage commands need SQLAlchemy: "
        "pip install 'asherah-core[django,sql]'"
    ) from e

from asherah_core.table_rotation import RowTable

from .fields import _Encrypted

__all__ = ["FieldRows", "engine_for", "field_rows", "shown"]

# Keys of a PostgreSQL DATABASES["OPTIONS"] that are Django's own, not libpq's.
_DJANGO_ONLY_OPTIONS = frozenset(
    {"isolation_level", "pool", "server_side_binding", "assume_role", "cursor_factory"}
)


@dataclass(frozen=True)
class FieldRows:
    """An encrypted field and the table walk over its column."""

    label: str
    rows: RowTable
    database: str


def field_rows(label: str, *, database: str | None = None, where: str | None = None) -> FieldRows:
    """The table of ``app_label.Model.field`` (an `EncryptedTextField` or
    `EncryptedBinaryField`): its primary key, its column, its partition field's column."""
    parts = label.split(".")
    if len(parts) != 3 or not all(parts):
        raise CommandError(f"{label!r}: name the field as app_label.Model.field (notes.Note.body)")
    app_label, model_name, field_name = parts
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError as e:
        raise CommandError(f"{label!r}: {e}") from None
    try:
        field = model._meta.get_field(field_name)
    except FieldDoesNotExist:
        raise CommandError(f"{label!r}: {model._meta.label} has no field {field_name!r}") from None
    if not isinstance(field, _Encrypted):
        raise CommandError(
            f"{label!r} is not an EncryptedTextField or EncryptedBinaryField "
            f"(it is a {type(field).__name__})"
        )
    encrypted: Any = field  # a Django field of a model (the stubs' types do not meet here)
    owner = encrypted.model._meta
    partition: Any = owner.get_field(encrypted.partition_from)
    if partition.model is not encrypted.model or not getattr(partition, "column", None):
        raise CommandError(
            f"{label!r}: its partition field {encrypted.partition_from!r} is not a column of "
            f"{owner.db_table!r}, the field's table"
        )
    pk: Any = owner.pk
    if pk is None or not getattr(pk, "column", None) or pk.model is not encrypted.model:
        raise CommandError(
            f"{label!r}: {owner.label} has no single primary-key column in {owner.db_table!r}"
        )
    columns = dict.fromkeys([pk.column, encrypted.column, partition.column])
    table = sa.Table(owner.db_table, sa.MetaData(), *(sa.Column(c) for c in columns))
    try:
        rows = RowTable(table, encrypted.column, pk.column, partition.column, None, where)
    except AsherahError as e:
        raise CommandError(f"{label!r}: {e}") from None
    using = database or _router_db(model)
    return FieldRows(f"{model._meta.label}.{field.name}", rows, using)


def _router_db(model: Any) -> str:
    from django.db import router  # noqa: PLC0415

    return str(router.db_for_write(model))


def engine_for(database: str, url: str | None = None) -> tuple[sa.Engine, tuple[str, ...]]:
    """A SQLAlchemy engine on the ``DATABASES`` entry `database` (SQLite, PostgreSQL), or on
    `url` when given, and the credentials to scrub from every message that could hold a
    driver's text (`driver_failure`): the password, and the credentials of the URL's query or
    of ``OPTIONS`` (`url_secrets`). The password goes in the URL object (which hides it), the
    rest in the connection arguments: none is in a message or the engine's repr."""
    if url:
        try:
            parsed, connect_args, secrets = without_query_secrets(sa.make_url(url), {})
            engine = sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as e:
            raise CommandError(f"--url: cannot open it ({type(e).__name__})") from None
        return engine, secrets
    if database not in connections.settings:
        raise CommandError(f"no database {database!r} in settings.DATABASES")
    connection = connections[database]
    if connection.in_atomic_block:
        raise CommandError(
            "run this outside a transaction: it commits each batch on a connection of its own"
        )
    settings = connection.settings_dict
    vendor = connection.vendor
    if vendor == "sqlite":
        engine = _sqlite(database, settings)
    elif vendor == "postgresql":
        engine = _postgresql(settings)
    else:
        raise CommandError(
            f"database {database!r} is {vendor}; this command opens SQLite and PostgreSQL from "
            "settings.DATABASES: give --url with a SQLAlchemy URL for it"
        )
    # The PASSWORD setting is scrubbed even where the engine does not use it (SQLite).
    password = settings.get("PASSWORD") or None
    return engine, url_secrets(engine.url.set(password=password), settings.get("OPTIONS") or {})


def _sqlite(database: str, settings: dict[str, Any]) -> sa.Engine:
    name = str(settings.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        raise CommandError(
            f"database {database!r} is an SQLite database in memory; the command needs a file"
        )
    timeout = (settings.get("OPTIONS") or {}).get("timeout", 30.0)
    return sa.create_engine(
        sa.URL.create("sqlite", database=name), connect_args={"timeout": float(timeout)}
    )


def _postgresql(settings: dict[str, Any]) -> sa.Engine:
    driver = "psycopg" if importlib.util.find_spec("psycopg") is not None else "psycopg2"
    port = settings.get("PORT")
    url = sa.URL.create(
        f"postgresql+{driver}",
        username=settings.get("USER") or None,
        password=settings.get("PASSWORD") or None,
        host=settings.get("HOST") or None,
        port=int(port) if port else None,
        database=settings.get("NAME") or None,
    )
    options = {
        k: v for k, v in (settings.get("OPTIONS") or {}).items() if k not in _DJANGO_ONLY_OPTIONS
    }
    return sa.create_engine(url, connect_args=options, pool_pre_ping=True)


def shown(engine: sa.Engine) -> str:
    """The engine's URL with the password and every credential in its query hidden."""
    return shown_url(engine.url)
