"""`SessionFactory`'s keyword arguments from what a configuration reader built.

Both readers (the ``plugins.toml`` one in appconfig.py and the ``asherah`` package's PascalCase
one in pascalconfig.py) end here; this module imports neither, so imports flow one way:
``appconfig`` -> ``pascalconfig`` -> ``factoryargs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .kms import KeyManagementService
from .metastore.base import Metastore
from .policy import CryptoPolicy

__all__ = ["assemble"]


def assemble(
    *,
    service: str,
    product: str,
    policy: CryptoPolicy,
    metastore: Metastore,
    build_kms: Callable[[], KeyManagementService],
) -> dict[str, Any]:
    """`SessionFactory`'s arguments; the metastore is closed if the KMS cannot be built."""
    try:
        kms = build_kms()
    except BaseException:
        metastore.close()
        raise
    return {
        "service": service,
        "product": product,
        "kms": kms,
        "metastore": metastore,
        "policy": policy,
    }
