"""The hooks through which KMS and metastore plugins register, and the types they implement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from .aead import Aead
from .config import PluginConfig
from .kms import KeyManagementService

if TYPE_CHECKING:
    from .metastore.base import Metastore

__all__ = [
    "EnvelopeDescriber",
    "KmsFactory",
    "MetastoreFactory",
    "RegisterKms",
    "RegisterMetastore",
    "asherah_register_kms",
    "asherah_register_metastore",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker("asherah")
hookimpl = pluggy.HookimplMarker("asherah")


class KmsFactory(Protocol):
    """Build a KMS from its validated ``plugins.toml`` table and the AEAD to use."""

    def __call__(self, config: PluginConfig, crypto: Aead, /) -> KeyManagementService: ...


class EnvelopeDescriber(Protocol):
    """Describe an encrypted key without decrypting it (``asherah-kms inspect``).

    Return a JSON-serialisable summary (regions, ARNs, sizes; never key material), or ``None``
    when the bytes are not in this plugin's format. Raise `KmsError` when they are in its
    format but malformed.
    """

    def __call__(self, encrypted: bytes, /) -> Mapping[str, Any] | None: ...


class RegisterKms(Protocol):
    """The callback handed to `asherah_register_kms`."""

    def __call__(
        self, name: str, factory: KmsFactory, *, describe: EnvelopeDescriber | None = None
    ) -> None: ...


class MetastoreFactory(Protocol):
    """Build a metastore from its validated ``plugins.toml`` table."""

    def __call__(self, config: PluginConfig, /) -> Metastore: ...


class RegisterMetastore(Protocol):
    """The callback handed to `asherah_register_metastore`."""

    def __call__(self, name: str, factory: MetastoreFactory) -> None: ...


@hookspec
def asherah_register_kms(register: RegisterKms) -> None:
    """Register the key management services this plugin provides.

    Call ``register(name, factory)`` once per KMS; ``factory(config, crypto)`` is called by
    `load_kms` with the plugin's ``plugins.toml`` table and must return a
    `KeyManagementService`. Pass ``describe=`` to let ``asherah-kms inspect`` summarise the
    plugin's encrypted keys. Names are unique across all installed plugins.

    :param register: the callback that records a named KMS factory.

    .. versionadded:: 0.1.0
    """


@hookspec
def asherah_register_metastore(register: RegisterMetastore) -> None:
    """Register the metastores this plugin provides.

    Call ``register(name, factory)`` once per metastore; ``factory(config)`` is called by
    `load_metastore` with the ``[metastores.<name>]`` table of ``plugins.toml`` and must return
    a `Metastore`. Names are unique across all installed plugins; the core registers
    ``memory`` and ``sql``.

    :param register: the callback that records a named metastore factory.

    .. versionadded:: 0.2.0
    """
