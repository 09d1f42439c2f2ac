"""The credentials a SQLAlchemy URL holds: masked where the URL is shown, kept out of the URL
an engine is made with, scrubbed from drivers' messages. Shared by the SQL metastore, the
``asherah-kms`` table commands and the Django commands; imports nothing of asherah_core, and
SQLAlchemy only for type checking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = [
    "driver_failure",
    "is_secret_parameter",
    "scrub",
    "scrubbed_line",
    "shown_url",
    "url_secrets",
    "without_query_secrets",
]

_SECRET_WORDS = ("pass", "pwd", "secret", "token", "credential", "key", "auth", "odbc_connect")
"""A URL query parameter whose name holds one of these (any case) is a credential: libpq's
``password`` and ``sslpassword``, PyMySQL's and mysqlclient's ``passwd``, ODBC's ``pwd`` and
``odbc_connect`` (a whole connection string), tokens, secrets, API keys. Masking a harmless
parameter (``sslkey``, a path) costs a little detail; missing a secret costs a leak."""
_NOT_SECRET = frozenset({"passfile"})
"""libpq's ``passfile`` names the file holding passwords, not a password: shown."""
_MOVED_TO_CONNECT_ARGS = frozenset({"psycopg", "psycopg2", "pymysql", "mysqldb"})
"""Drivers whose SQLAlchemy dialect passes every URL query parameter to ``connect()`` as a
keyword, so a credential moved from the query to ``connect_args`` connects the same way."""
_MASK = "***"
_DETAIL_CHARS = 200
"""At most this much of a driver's message is shown (after the credentials are scrubbed)."""


def is_secret_parameter(name: str) -> bool:
    """True when a URL query parameter of this name carries a credential (see `_SECRET_WORDS`)."""
    lowered = name.lower()
    return lowered not in _NOT_SECRET and any(word in lowered for word in _SECRET_WORDS)


def shown_url(url: sa.URL) -> str:
    """`url` as it may appear in a message, a log line or a repr: the password and every
    credential-bearing query parameter replaced by ``***``."""
    base = url.set(query={}).render_as_string(hide_password=True)
    if not url.query:
        return base
    pairs = []
    for name, values in url.query.items():
        for value in (values,) if isinstance(values, str) else values:
            shown = _MASK if is_secret_parameter(name) else quote_plus(value)
            pairs.append(f"{quote_plus(name)}={shown}")
    return f"{base}?{'&'.join(pairs)}"


def url_secrets(url: sa.URL, connect_args: Mapping[str, Any]) -> tuple[str, ...]:
    """Every credential in `url` and `connect_args` (to scrub from drivers' messages), longest
    first so that a password holding another is scrubbed whole. A value is a string or a list
    or tuple of strings; any other (a number, a callable) is passed over."""
    found = {str(url.password)} if url.password else set()
    for name, values in (*url.query.items(), *connect_args.items()):
        if isinstance(name, str) and is_secret_parameter(name):
            for value in values if isinstance(values, (tuple, list)) else (values,):
                if isinstance(value, str) and value:
                    found.add(value)
    return tuple(sorted(found, key=len, reverse=True))


def without_query_secrets(
    url: sa.URL, connect_args: Mapping[str, Any]
) -> tuple[sa.URL, dict[str, Any], tuple[str, ...]]:
    """What to make an engine with so that its URL (in SQLAlchemy's reprs, ``echo`` and pool
    logs) holds no credential of `url`'s query: `url` without them and `connect_args` with
    them (an entry of `connect_args` wins), when the driver reads them there alike (psycopg,
    psycopg2, PyMySQL, mysqlclient; any other URL is kept as it is); and every credential of
    `url` and `connect_args` (`url_secrets`), to scrub from messages. May raise SQLAlchemy's
    `NoSuchModuleError` for a URL without a driver name whose dialect does not exist."""
    secrets = url_secrets(url, connect_args)
    moved = {k: v for k, v in url.query.items() if is_secret_parameter(k)}
    if not moved or url.get_driver_name() not in _MOVED_TO_CONNECT_ARGS:
        return url, dict(connect_args), secrets
    return url.difference_update_query(moved), {**moved, **connect_args}, secrets


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with each of `secrets` replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, _MASK)
    return text


def scrubbed_line(text: str, secrets: tuple[str, ...]) -> str:
    """The first non-blank line of `text`, stripped, with each of `secrets` replaced by
    ``***``; empty for a blank text. Scrubbed whole, so a caller that cuts the line after leaves
    no part of a secret at the cut."""
    lines = text.strip().splitlines()
    return scrub(lines[0].strip(), secrets) if lines else ""


def driver_failure(error: Exception, secrets: tuple[str, ...]) -> str:
    """A database failure in one line: the driver's exception type and the first line of its
    message, each of `secrets` scrubbed (before the line is cut, so no part of one is left):
    those `url_secrets` or `without_query_secrets` found in the engine's URL and connection
    arguments. Only the type when SQLAlchemy raised it itself: its message holds the statement
    and its parameters."""
    original = getattr(error, "orig", None)
    if original is None:
        return type(error).__name__
    text = scrubbed_line(str(original), secrets)[:_DETAIL_CHARS]
    return f"{type(original).__name__}{': ' + text if text else ''}"
