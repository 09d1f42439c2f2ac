"""The ``secrets-manager`` KMS: a static master key read once from AWS Secrets Manager.

Wire-compatible with the ``asherah`` package's ``KMS: "secrets-manager"``: the secret holds
the 32-byte master key as hex text (``SecretString``; surrounding whitespace and a ``0x``
prefix are allowed) or as 32 raw bytes (``SecretBinary``), and system keys are sealed with it
exactly as the static KMS seals them (AES-256-GCM, ``ciphertext || tag || nonce``). The key is
static: Secrets Manager keeps it out of the environment, but nothing rotates it.

Settings (``[plugins.secrets-manager]`` or the PascalCase ``SecretsManagerSecretId``):
``secret_id`` (required; a name or ARN), ``region``, ``endpoint``, ``profile``,
``timeout`` (seconds, default 10).
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from asherah_core import Aead, ConfigError, KeyManagementService, KmsError, PluginConfig, StaticKms

from .settings import endpoint_problem

__all__ = ["SETTINGS", "master_key_from_secret", "secrets_manager_kms_from_config"]

logger = logging.getLogger(__name__)

SETTINGS = ("secret_id", "region", "endpoint", "profile", "timeout")
KEY_SIZE = 32


def secrets_manager_kms_from_config(config: PluginConfig, crypto: Aead) -> KeyManagementService:
    """Read the master key named by ``secret_id`` and return a static KMS over it."""
    config.check_keys(SETTINGS)
    secret_id = config.get_str("secret_id").strip()
    if not secret_id:
        raise config.error("secret_id", "must name a secret (its name or ARN)")
    timeout = config.get_float("timeout", 10.0)
    if not 0 < timeout <= 300:
        raise config.error("timeout", f"must be between 0 and 300 seconds, got {timeout}")
    endpoint = _endpoint(config)
    try:
        session = boto3.session.Session(profile_name=config.get_str("profile", None))
        client = session.client(
            "secretsmanager",
            region_name=config.get_str("region", None),
            endpoint_url=endpoint,
            config=botocore.config.Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"mode": "standard", "total_max_attempts": 3},
            ),
        )
    except (botocore.exceptions.BotoCoreError, ValueError) as e:  # ValueError: botocore checks too
        raise ConfigError(
            f"{config.source}: {config.path}: cannot make a Secrets Manager client: "
            f"{type(e).__name__}: {e}"
        ) from e
    key = master_key_from_secret(_get_secret(client, secret_id), secret_id)
    logger.warning(
        "Using a static master key from Secrets Manager (secret %s): better than an "
        "environment variable, but the key is static and nothing rotates it.",
        secret_id,
    )
    try:
        return StaticKms(bytes(key), crypto)  # StaticKms keeps its own copy
    finally:
        key[:] = bytes(len(key))


def _endpoint(config: PluginConfig) -> str | None:
    """The ``endpoint`` setting, checked as the aws-v2 KMS checks its endpoints."""
    endpoint = config.get_str("endpoint", None)
    problem = None if endpoint is None else endpoint_problem(endpoint)
    if problem:
        raise config.error("endpoint", problem)
    return endpoint


def _get_secret(client: Any, secret_id: str) -> dict[str, Any]:
    try:
        response: dict[str, Any] = client.get_secret_value(SecretId=secret_id)
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "ClientError")
        raise KmsError(f"secrets-manager: GetSecretValue for {secret_id!r} failed: {code}") from e
    except botocore.exceptions.BotoCoreError as e:
        raise KmsError(
            f"secrets-manager: GetSecretValue for {secret_id!r} failed: {type(e).__name__}"
        ) from e
    return response


def master_key_from_secret(response: dict[str, Any], secret_id: str) -> bytearray:
    """The 32-byte key in a GetSecretValue response (hex text or raw bytes), as the package
    reads it; `KmsError` says what is wrong without showing any of the secret."""
    text = response.get("SecretString")
    if text is not None:
        cleaned = "".join(str(text).split())
        if cleaned[:2] in ("0x", "0X"):
            cleaned = cleaned[2:]
        try:
            key = bytearray.fromhex(cleaned)
        except ValueError:
            raise KmsError(
                f"secrets-manager: secret {secret_id!r}: SecretString is not hex "
                f"({len(cleaned)} characters after trimming)"
            ) from None
    elif response.get("SecretBinary") is not None:
        key = bytearray(response["SecretBinary"])
    else:
        raise KmsError(
            f"secrets-manager: secret {secret_id!r} has neither SecretString nor SecretBinary"
        )
    if len(key) != KEY_SIZE:
        size = len(key)
        key[:] = bytes(size)
        raise KmsError(
            f"secrets-manager: secret {secret_id!r} holds {size} bytes; the master key must "
            f"be {KEY_SIZE} bytes (64 hex digits)"
        )
    return key
