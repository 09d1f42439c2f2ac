"""Django set up once for these tests: the app in noteapp/, a SQLite file (or the PostgreSQL of
tools/dbservers when ``ASHERAH_DJANGO_DB=postgres``), migrations made by ``makemigrations`` into
a temporary package and applied by ``migrate``.

Run through ``nox -s django`` (SQLite, each supported Django) and ``nox -s metastores``
(PostgreSQL); the ``tests`` run has no Django and skips them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

HAS_DJANGO = importlib.util.find_spec("django") is not None
if not HAS_DJANGO:  # the ``tests`` run installs no Django: leave these tests out, quietly
    collect_ignore_glob = ["*.py"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORK = Path(tempfile.mkdtemp(prefix="asherah-django-"))
MIGRATIONS = "noteapp_migrations"
_STACK = contextlib.ExitStack()


def _postgres() -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from tools import dbservers  # noqa: PLC0415

    server = _STACK.enter_context(dbservers.postgres())
    url = urlsplit(server.url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname,
        "PORT": str(url.port or 5432),
    }


def pytest_configure(config: pytest.Config) -> None:
    if not HAS_DJANGO:
        return
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415

    if settings.configured:
        return
    (WORK / MIGRATIONS).mkdir()
    (WORK / MIGRATIONS / "__init__.py").write_text("")
    sys.path[:0] = [str(HERE), str(WORK)]
    backend = os.environ.get("ASHERAH_DJANGO_DB", "sqlite")
    database = (
        _postgres()
        if backend == "postgres"
        else {"ENGINE": "django.db.backends.sqlite3", "NAME": str(WORK / "app.sqlite3")}
    )
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["testserver"],
        DATABASES={"default": database},
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "asherah_core.integrations.django",
            "noteapp",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF="urls",
        MIGRATION_MODULES={"noteapp": MIGRATIONS},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        ASHERAH={"FACTORY": "noteapp.crypto.make_factory"},
    )
    django.setup()
    from django.core.management import call_command  # noqa: PLC0415
    from django.test.utils import setup_test_environment  # noqa: PLC0415

    setup_test_environment()
    out = io.StringIO()
    call_command("makemigrations", "noteapp", stdout=out, verbosity=1)
    call_command("migrate", stdout=out, verbosity=0)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not HAS_DJANGO:
        return
    with contextlib.suppress(Exception):
        from asherah_core.integrations.django import close_factory  # noqa: PLC0415

        close_factory()
    _STACK.close()


@pytest.fixture
def migrations_dir() -> Path:
    return WORK / MIGRATIONS


@pytest.fixture(autouse=True)
def clean_tables() -> Iterator[None]:
    from django.db import connection  # noqa: PLC0415

    yield
    with connection.cursor() as cursor:  # no ORM: a test may leave rows that do not open
        cursor.execute("DELETE FROM noteapp_note")
