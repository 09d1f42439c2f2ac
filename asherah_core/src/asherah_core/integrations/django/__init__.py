"""Encrypted Django model fields, one intermediate key per partition (``asherah-core[django]``).

Add ``"asherah_core.integrations.django"`` to ``INSTALLED_APPS`` (for the ``asherah_keys``
command and the set-up checks) and say where the factory comes from in ``settings.ASHERAH``::

    ASHERAH = {"CONFIG": "plugins.toml"}          # SessionFactory.from_config(...)
    ASHERAH = {"FACTORY": "myapp.crypto.factory"} # a callable returning a SessionFactory

Then ``body = EncryptedTextField(partition_from="tenant", null=True)`` on a model stores the
`DataRowRecord` JSON of each value, encrypted for the row's ``tenant``; instances hold plaintext.
"""

from __future__ import annotations

from asherah_core.integrations.records import EncryptedColumnError

from .factory import close_factory, get_factory
from .fields import EncryptedBinaryField, EncryptedTextField

__all__ = [
    "EncryptedBinaryField",
    "EncryptedColumnError",
    "EncryptedTextField",
    "close_factory",
    "get_factory",
]
