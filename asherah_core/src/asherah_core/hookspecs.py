"""The hook through which KMS plugins register, and the types a plugin implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pluggy

from .aead import Aead
from .config import PluginConfig
from .kms import KeyManagementService

__all__ = [
    "EnvelopeDescriber",
    "KmsFactory",
    "RegisterKms",
    "asherah_register_kms",
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
