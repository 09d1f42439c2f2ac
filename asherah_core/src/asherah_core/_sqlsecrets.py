"""The credentials a SQLAlchemy URL holds: masked where the URL is shown, scrubbed from drivers'
messages. Shared by the SQL metastore, the ``asherah-kms`` table commands and the Django
commands; imports nothing of asherah_core, and SQLAlchemy only for type checking."""

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
]

_SECRET_WORDS = ("pass", "pwd", "secret", "token", "credential", "key", "auth", "odbc_connect")
"""A URL query parameter whose name holds one of these (any case) is a credential: libpq's
``password`` and ``sslpassword``, PyMySQL's and mysqlclient's ``passwd``, ODBC's ``pwd`` and
``odbc_connect`` (a whole connection string), tokens, secrets, API keys. Masking a harmless
parameter (``sslkey``, a path) costs a little detail; missing a secret costs a leak."""
_NOT_SECRET = frozenset({"passfile"})
"""libpq's ``passfile`` names the file holding passwords, not a password: shown."""
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
    first so that a password holding another is scrubbed whole."""
    found = {str(url.password)} if url.password else set()
    for name, values in (*url.query.items(), *connect_args.items()):
        if isinstance(name, str) and is_secret_parameter(name):
            for value in (values,) if isinstance(values, str) else values or ():
                if isinstance(value, str) and value:
                    found.add(value)
    return tuple(sorted(found, key=len, reverse=True))


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


def driver_failure(error: Exception, url: sa.URL) -> str:
    """A database failure in one line: the driver's exception type and the first line of its
    message, the credentials of `url` scrubbed (before the line is cut, so no part of one is
    left). Only the type when SQLAlchemy raised it itself: its message holds the statement
    and its parameters."""
    original = getattr(error, "orig", None)
    if original is None:
        return type(error).__name__
    text = scrubbed_line(str(original), url_secrets(url, {}))[:_DETAIL_CHARS]
    return f"{type(original).__name__}{': ' + text if text else ''}"
