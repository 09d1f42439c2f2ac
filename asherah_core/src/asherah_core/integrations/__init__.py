"""Encrypted columns for ORMs, keyed per partition through the Asherah key hierarchy.

`sqlalchemy` (``asherah-core[sql]``) and `django` (``asherah-core[django]``) each give a column
type that stores the `DataRowRecord` JSON every Asherah implementation reads and hands the
application plaintext. Both are built on the public API only (`SessionFactory`, `Session`,
the errors and the metastore's ``keys()`` listing).
"""

from __future__ import annotations

from .records import EncryptedColumnError

__all__ = ["EncryptedColumnError"]
