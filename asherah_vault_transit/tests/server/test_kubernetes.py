"""Kubernetes auth on a real OpenBao: its ``kubernetes`` auth method asks a TokenReview API
whether the service account JWT is valid. No Kubernetes here, so a small stand-in answers the
TokenReview calls; the login, the role binding and the token are OpenBao's own."""

from __future__ import annotations

import base64
import datetime
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ._admin import Admin
from .conftest import MakeKms

pytestmark = pytest.mark.vault

NAMESPACE, ACCOUNT = "payments", "asherah-sa"


def service_account_jwt(serial: int) -> str:
    """An (unsigned) service account token with the legacy claims OpenBao reads."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": NAMESPACE,
        "kubernetes.io/serviceaccount/service-account.name": ACCOUNT,
        "kubernetes.io/serviceaccount/service-account.uid": "uid-1",
        "sub": f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}",
        "serial": serial,
    }
    return ".".join([part({"alg": "RS256", "typ": "JWT"}), part(claims), "c2lnbmF0dXJl"])


class TokenReviewApi:
    """Answers ``POST /apis/authentication.k8s.io/v1/tokenreviews``: authenticated when the
    token is one of `valid`."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.reviewed: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                token = body["spec"]["token"]
                api.reviewed.append(token)
                status = {
                    "authenticated": token in api.valid,
                    "user": {
                        "username": f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}",
                        "uid": "uid-1",
                    },
                }
                out = json.dumps({"kind": "TokenReview", "status": status}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def some_ca_pem() -> str:
    """OpenBao wants a CA for the Kubernetes API even over http; any certificate will do."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in kubernetes CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def review_api() -> Iterator[TokenReviewApi]:
    api = TokenReviewApi()
    yield api
    api.close()


def test_kubernetes_login_reads_the_service_account_token_at_each_login(
    admin: Admin, key: str, make_kms: MakeKms, review_api: TokenReviewApi, tmp_path: Path
) -> None:
    mount = f"k8s-{os.urandom(4).hex()}"
    admin.enable("kubernetes", mount, auth=True)
    admin.call(
        "POST",
        f"auth/{mount}/config",
        {
            "kubernetes_host": review_api.url,
            "token_reviewer_jwt": "reviewer",
            "disable_local_ca_jwt": True,
            "kubernetes_ca_cert": some_ca_pem(),
        },
    )
    admin.call(
        "POST",
        f"auth/{mount}/role/asherah",
        {
            "bound_service_account_names": [ACCOUNT],
            "bound_service_account_namespaces": [NAMESPACE],
            "token_policies": [admin.policy(key)],
            "token_ttl": "1h",
        },
    )
    jwt_file = tmp_path / "token"
    first = service_account_jwt(1)
    jwt_file.write_text(first + "\n")
    review_api.valid = {first}
    kms = make_kms(
        address=admin.address,
        transit_key=key,
        auth_method="kubernetes",
        auth_role="asherah",
        auth_mount=mount,
        k8s_token_path=str(jwt_file),
    )
    secret = os.urandom(32)
    assert kms.decrypt_key(kms.encrypt_key(secret)) == secret
    assert review_api.reviewed == [first]
    # Kubernetes rotates the projected token; Vault's token is revoked: the next login must
    # read the file again.
    second = service_account_jwt(2)
    jwt_file.write_text(second)
    review_api.valid = {second}
    lease = kms.credentials[0].lease()
    assert lease is not None
    admin.revoke(lease.token)
    assert kms.decrypt_key(kms.encrypt_key(secret)) == secret
    assert review_api.reviewed[-1] == second
    assert kms.credentials[0].logins == 2
