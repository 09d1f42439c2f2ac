"""The Django app of the encrypted fields: the ``asherah_keys`` command and its label."""

from __future__ import annotations

from django.apps import AppConfig


class AsherahConfig(AppConfig):
    """``INSTALLED_APPS += ["asherah_core.integrations.django"]``; label ``asherah``."""

    name = "asherah_core.integrations.django"
    label = "asherah"
    verbose_name = "Asherah encrypted fields"
