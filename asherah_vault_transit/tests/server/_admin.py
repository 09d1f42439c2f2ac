"""What the tests do to a Vault as its operator (root token): mounts, keys, tokens, roles.

Plain httpx calls, independent of the plugin's code, so the plugin is judged by Vault itself.
"""

from __future__ import annotations

import base64
import ssl
import uuid
from typing import Any

import httpx


class Admin:
    """Operator calls on one Vault (or OpenBao) server."""

    def __init__(
        self, address: str, token: str, *, ca_cert: str | None = None, namespace: str = ""
    ) -> None:
        self.address = address
        self.token = token
        headers = {"X-Vault-Token": token}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        verify: Any = ssl.create_default_context(cafile=ca_cert) if ca_cert else True
        self._http = httpx.Client(
            base_url=f"{address}/v1/", headers=headers, timeout=10, verify=verify
        )

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self._http.request(method, path, json=body)
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path}: HTTP {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else {}

    def enable(self, kind: str, path: str, *, auth: bool = False) -> None:
        """Mount a secrets engine or auth method unless one is mounted there."""
        where = "sys/auth" if auth else "sys/mounts"
        mounted = self.call("GET", where)
        table = mounted.get("data", mounted)
        if f"{path}/" not in table:
            self.call("POST", f"{where}/{path}", {"type": kind})

    def new_key(self, *, exportable: bool = False) -> str:
        """A fresh aes256-gcm96 Transit key with a unique name."""
        self.enable("transit", "transit")
        name = f"asherah-test-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {"type": "aes256-gcm96"}
        if exportable:
            body.update(exportable=True, allow_plaintext_backup=True)
        self.call("POST", f"transit/keys/{name}", body)
        return name

    def policy(self, key: str) -> str:
        """A policy that may only encrypt and decrypt with `key` (the one the docs give)."""
        name = f"asherah-{key}"
        rules = (
            f'path "transit/encrypt/{key}" {{ capabilities = ["update"] }}\n'
            f'path "transit/decrypt/{key}" {{ capabilities = ["update"] }}\n'
        )
        self.call("PUT", f"sys/policies/acl/{name}", {"policy": rules})
        return name

    def new_token(
        self, policies: list[str], ttl: str, *, renewable: bool = True, **extra: Any
    ) -> str:
        auth = self.call(
            "POST",
            "auth/token/create",
            {"policies": policies, "ttl": ttl, "renewable": renewable, **extra},
        )["auth"]
        token: str = auth["client_token"]
        return token

    def approle(self, policies: list[str], **role: Any) -> tuple[str, str]:
        """An AppRole role with `policies`; return its role id and a new secret id."""
        self.enable("approle", "approle", auth=True)
        name = f"asherah-{uuid.uuid4().hex[:8]}"
        self.call("POST", f"auth/approle/role/{name}", {"token_policies": policies, **role})
        role_id = self.call("GET", f"auth/approle/role/{name}/role-id")["data"]["role_id"]
        secret = self.call("POST", f"auth/approle/role/{name}/secret-id")["data"]["secret_id"]
        return role_id, secret

    def revoke(self, token: str) -> None:
        self.call("POST", "auth/token/revoke", {"token": token})

    def rotate(self, key: str) -> None:
        self.call("POST", f"transit/keys/{key}/rotate")

    def configure_key(self, key: str, **config: Any) -> None:
        self.call("POST", f"transit/keys/{key}/config", config)

    def encrypt(self, key: str, plaintext: bytes) -> str:
        body = {"plaintext": base64.b64encode(plaintext).decode()}
        text: str = self.call("POST", f"transit/encrypt/{key}", body)["data"]["ciphertext"]
        return text

    def decrypt(self, key: str, ciphertext: str) -> bytes:
        data = self.call("POST", f"transit/decrypt/{key}", {"ciphertext": ciphertext})["data"]
        return base64.b64decode(data["plaintext"])

    def copy_key_to(self, key: str, other: Admin) -> None:
        """Give `other` the same key material (backup here, restore there), as replication
        would."""
        backup = self.call("GET", f"transit/backup/{key}")["data"]["backup"]
        other.enable("transit", "transit")
        other.call("POST", f"transit/restore/{key}", {"backup": backup})
