"""boto3 KMS clients: one per region, created once, with our timeouts and botocore's retries off."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import boto3
from botocore.config import Config

from asherah_core.forksafe import Lock

from ._version import __version__

__all__ = [
    "USER_AGENT_EXTRA",
    "KmsClient",
    "KmsClientFactory",
    "client_config",
    "client_maker",
    "default_client_factory",
]

USER_AGENT_EXTRA = f"asherah-py-aws-kms-v2/{__version__}"


class KmsClient(Protocol):
    """The part of a boto3 KMS client this plugin uses."""

    def generate_data_key(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def encrypt(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def decrypt(self, **kwargs: Any) -> Mapping[str, Any]: ...


class KmsClientFactory(Protocol):
    """Make the KMS client of one region: ``factory(region, *, session, endpoint_url, config)``."""

    def __call__(
        self,
        region: str,
        *,
        session: boto3.Session,
        endpoint_url: str | None,
        config: Config,
    ) -> KmsClient: ...


def default_client_factory(
    region: str, *, session: boto3.Session, endpoint_url: str | None, config: Config
) -> KmsClient:
    """Make a boto3 KMS client for `region` from `session`."""
    client: Any = session.client(
        "kms", region_name=region, endpoint_url=endpoint_url, config=config
    )
    return cast(KmsClient, client)


def client_config(timeout: float, max_connections: int) -> Config:
    """Client settings: our timeouts, botocore's own retries off (we retry), a connection pool,
    and botocore's parameter validation off.

    Every parameter the plugin sends is its own and already checked: the ARN at build time,
    the 32-byte data key, a CiphertextBlob of 1 to 6144 bytes from a parsed envelope. Checking
    them again against the service model cost about 3 % of the CPU time of each call.
    """
    return Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max_connections,
        user_agent_extra=USER_AGENT_EXTRA,
        parameter_validation=False,
    )


_session_lock = Lock()
"""boto3 sessions are not thread-safe: one client made at a time."""


def client_maker(
    regions: Mapping[str, str | None],
    *,
    session: boto3.Session | None,
    factory: KmsClientFactory,
    config: Config,
) -> Callable[[str], KmsClient]:
    """A function that makes the client of a region (``region -> endpoint``), from one
    session and `config` every time it is called: once per region at build time, and again
    in a forked child (see `RegionalKey.client`). Sessions are not thread-safe: one at a time."""
    with _session_lock:
        session = session if session is not None else boto3.session.Session()

    def make(region: str) -> KmsClient:
        with _session_lock:
            return factory(region, session=session, endpoint_url=regions[region], config=config)

    return make
