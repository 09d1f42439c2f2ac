"""The ``asherah`` package's SQL ``ConnectionString`` forms, read as that package reads them.

- SQLite: ``sqlite://`` (or ``sqlite:`` / ``file:``) is cut off and the rest is a file path,
  taken literally: ``%41`` or ``?`` in it are part of the file name.
- A URL (``mysql://``, ``postgres://``): the user information ends at the LAST ``@`` before
  the first ``/``, so a password with an unescaped ``@`` or ``?`` is read whole (SQLAlchemy
  would cut it at the first ``@``); the query starts only after the host.
- Go's MySQL DSN ``user:pass@tcp(host:3306)/db?tls=true&parseTime=true``.

The options of a MySQL connection string become the driver's settings or a `ConfigError`
naming the option: none is dropped silently. The result is a SQLAlchemy URL string with every
part quoted, and the ``connect_args`` the driver needs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from .errors import ConfigError

__all__ = ["SqlTarget", "rdbms_target", "sqlite_url"]

_SCHEMES = {
    "mysql": "mysql+pymysql",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
}
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_GO_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class SqlTarget:
    """A SQLAlchemy URL (password inside, so never shown) and the driver's connect arguments."""

    url: str = field(repr=False)
    connect_args: dict[str, Any] = field(default_factory=dict, repr=False)


def sqlite_url(connection_string: str) -> str:
    """The SQLAlchemy URL of the SQLite file `connection_string` names (the package's reading)."""
    target = connection_string.strip()
    for prefix in ("sqlite://", "sqlite:", "file:"):
        if target.startswith(prefix):
            target = target[len(prefix) :]
            break
    if target in ("", ":memory:"):
        return "sqlite://"
    # SQLAlchemy unquotes the database part and stops it at "?": quote so the path is literal.
    return "sqlite:///" + quote(target, safe="/")


def rdbms_target(connection_string: str, db_type: str, where: str) -> SqlTarget:
    """Read a URL or a Go MySQL DSN; `ConfigError` (prefixed `where`) names what is wrong."""
    text = connection_string.strip()
    kind = db_type.strip().lower()
    if "://" in text:
        scheme, rest = text.split("://", 1)
        return _from_url(_SCHEMES.get(scheme.lower(), scheme), rest, where)
    if kind in ("", "mysql") and "@" in text and "(" in text:
        return _from_go_dsn(text, where)
    if kind in _SCHEMES:
        return _from_url(_SCHEMES[kind], text, where)
    raise ConfigError(
        f"{where}: ConnectionString: expected a URL such as mysql://user:pass@host:3306/db or "
        "postgres://user@host/db, or a Go MySQL DSN such as user:pass@tcp(host:3306)/db"
    )


def _from_url(driver: str, rest: str, where: str) -> SqlTarget:
    credentials, host, path, query = _url_parts(rest)
    user, _, password = credentials.partition(":")
    auth = ""
    if user or password:
        # Already-escaped parts (%40) stay as they are; a raw "@" or ":" is escaped here.
        auth = quote(unquote(user), safe="") + (
            f":{quote(unquote(password), safe='')}" if password else ""
        )
        auth += "@"
    options = _options(query, where)
    if driver.startswith("mysql"):
        return _mysql(f"{driver}://{auth}{host}/{path}", options, where)
    return SqlTarget(f"{driver}://{auth}{host}/{path}" + _rejoin(options))


def _url_parts(rest: str) -> tuple[str, str, str, str]:
    """(user information, host, path, query) of a URL after its ``scheme://``.

    The user information ends at the last "@" before the first "/", so a "?" or "@" in the
    password is read whole; only then does the host end, at "/" or "?". (Without a "/db" part,
    an "@" in an option's value must be written %40.)"""
    first_slash = rest.find("/")
    at = rest.rfind("@", 0, len(rest) if first_slash < 0 else first_slash)
    credentials, after = (rest[:at], rest[at + 1 :]) if at >= 0 else ("", rest)
    cut = min((i for i in (after.find("/"), after.find("?")) if i >= 0), default=len(after))
    host, tail = after[:cut], after[cut:]
    path, _, query = tail.removeprefix("/").partition("?")
    return credentials, host, path, query


def _from_go_dsn(dsn: str, where: str) -> SqlTarget:
    credentials, _, rest = dsn.rpartition("@")
    user, _, password = credentials.partition(":")
    if not rest.startswith("tcp(") or ")" not in rest:
        raise ConfigError(
            f"{where}: ConnectionString: a MySQL DSN must look like user:pass@tcp(host:port)/db"
        )
    address, _, tail = rest[4:].partition(")")
    database, _, query = tail.lstrip("/").partition("?")
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    url = f"mysql+pymysql://{auth}@{address}/{quote(database, safe='')}"
    return _mysql(url, _options(query, where), where)


def _options(query: str, where: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        name, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"{where}: ConnectionString: option {name!r} has no value")
        options[unquote(name)] = unquote(value)
    return options


def _rejoin(options: dict[str, str]) -> str:
    if not options:
        return ""
    return "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in options.items())


def _mysql(url: str, options: dict[str, str], where: str) -> SqlTarget:
    """Go's go-sql-driver/mysql options, as PyMySQL settings; anything else is refused."""
    connect: dict[str, Any] = {}
    for name, value in options.items():
        handler = _MYSQL_OPTIONS.get(name)
        if handler is None:
            supported = ", ".join(_MYSQL_OPTIONS)
            raise _bad(where, name, value, f"not supported here (supported: {supported})")
        problem = handler(value.strip(), connect)
        if problem is not None:
            raise _bad(where, name, value, problem)
    return SqlTarget(url, connect)


def _bad(where: str, name: str, value: str, problem: str) -> ConfigError:
    """The error for option `name`; its value is shown only for the options read here (TLS
    mode, timeouts...): any other may be a credential (``password``, ``passwd``)."""
    shown = f"{name}={value!r}" if name in _MYSQL_OPTIONS else repr(name)
    return ConfigError(f"{where}: ConnectionString: option {shown}: {problem}")


def _tls(value: str, connect: dict[str, Any]) -> str | None:
    import ssl  # noqa: PLC0415 - only for tls=: it loads OpenSSL, ~4 MiB of resident memory

    lowered = value.lower()
    if lowered in ("true", "1", "skip-verify", "preferred") and _pymysql_too_old():
        # Before 1.2 PyMySQL silently talks plain text to a server that offers no TLS.
        return "TLS needs PyMySQL 1.2 or later here (older ones fall back to plain text)"
    if lowered in ("true", "1"):
        connect["ssl"] = ssl.create_default_context()  # verifies the chain and the host name
    elif lowered == "skip-verify":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connect["ssl"] = context
    elif lowered == "preferred":
        pass  # PyMySQL's own default: TLS when the server offers it, unverified, as in Go
    elif lowered in ("false", "0"):
        connect["ssl_disabled"] = True  # Go's tls=false: plain text, no attempt at TLS
    else:
        return (
            "a named TLS configuration cannot be read from a connection string here; use "
            "tls=true or tls=skip-verify, or pass your own engine"
        )
    return None


def _pymysql_too_old() -> bool:
    """Whether an installed PyMySQL predates 1.2 (where a required TLS is enforced)."""
    import importlib.metadata  # noqa: PLC0415 - about 4 MiB of imports, for this check only

    try:
        text = importlib.metadata.version("PyMySQL")
    except importlib.metadata.PackageNotFoundError:
        return False  # no driver: the engine will say so
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2]) < (1, 2)


def _parse_time(value: str, connect: dict[str, Any]) -> str | None:
    # Go scans DATETIME into time.Time with parseTime=true; PyMySQL always returns datetimes.
    return None if value.lower() in ("true", "false", "1", "0") else "expected true or false"


def _loc(value: str, connect: dict[str, Any]) -> str | None:
    return None if value == "UTC" else "key rows are written and read in UTC here; use loc=UTC"


def _charset(value: str, connect: dict[str, Any]) -> str | None:
    first = value.split(",", maxsplit=1)[0].strip()
    if not re.fullmatch(r"[A-Za-z0-9_]+", first):
        return "expected a character set name such as utf8mb4"
    connect["charset"] = first
    return None


def _timeout(key: str) -> Callable[[str, dict[str, Any]], str | None]:
    def read(value: str, connect: dict[str, Any]) -> str | None:
        match = _GO_DURATION.fullmatch(value)
        if match is None:
            return "expected a Go duration such as 5s or 500ms"
        seconds = float(match.group(1)) * _GO_UNITS[match.group(2)]
        connect[key] = max(1, math.ceil(seconds)) if key == "connect_timeout" else seconds
        return None

    return read


_MYSQL_OPTIONS: dict[str, Callable[[str, dict[str, Any]], str | None]] = {
    "tls": _tls,
    "parseTime": _parse_time,
    "loc": _loc,
    "charset": _charset,
    "timeout": _timeout("connect_timeout"),
    "readTimeout": _timeout("read_timeout"),
    "writeTimeout": _timeout("write_timeout"),
}
