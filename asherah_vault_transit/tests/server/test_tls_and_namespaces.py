"""TLS on a real server: verification on by default with a CA bundle option, TLS certificate
auth; and namespaces (OpenBao has them, as Vault Enterprise does)."""

from __future__ import annotations

import datetime
import os
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asherah_core import KmsError

from ._admin import Admin
from .conftest import MakeKms, Spawn

pytestmark = pytest.mark.vault


def client_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed TLS client certificate and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asherah-test-client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "client.pem", folder / "client-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_tls_certificate_auth_with_a_ca_bundle(
    spawn_server: Spawn, make_kms: MakeKms, tmp_path: Path
) -> None:
    server = spawn_server(tls=True)
    admin = Admin(server.address, server.root_token, ca_cert=str(server.ca_cert))
    key = admin.new_key()
    cert_file, key_file = client_certificate(tmp_path)
    admin.enable("cert", "cert", auth=True)
    admin.call(
        "POST",
        "auth/cert/certs/asherah-app",
        {"certificate": cert_file.read_text(), "token_policies": [admin.policy(key)]},
    )
    kms = make_kms(
        address=server.address,
        transit_key=key,
        ca_cert=str(server.ca_cert),
        auth_method="cert",
        auth_role="asherah-app",
        client_cert=str(cert_file),
        client_key=str(key_file),
    )
    secret = os.urandom(32)
    assert kms.decrypt_key(kms.encrypt_key(secret)) == secret
    assert kms.credentials[0].logins == 1
    admin.close()


def test_tls_is_verified_by_default(spawn_server: Spawn, make_kms: MakeKms) -> None:
    server = spawn_server(tls=True)
    admin = Admin(server.address, server.root_token, ca_cert=str(server.ca_cert))
    key = admin.new_key()
    untrusting = make_kms(address=server.address, transit_key=key, token=server.root_token)
    with pytest.raises(KmsError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.encrypt_key(os.urandom(32))
    unverified = make_kms(
        address=server.address, transit_key=key, token=server.root_token, tls_verify=False
    )
    assert unverified.encrypt_key(os.urandom(32)).startswith(b"vault:v1:")
    admin.close()


def test_a_transit_key_in_a_namespace(admin: Admin, make_kms: MakeKms) -> None:
    namespace = f"team-{uuid.uuid4().hex[:8]}"
    admin.call("POST", f"sys/namespaces/{namespace}")
    inside = Admin(admin.address, admin.token, namespace=namespace)
    key = inside.new_key()
    kms = make_kms(address=admin.address, transit_key=key, token=admin.token, namespace=namespace)
    secret = os.urandom(32)
    wrapped = kms.encrypt_key(secret)
    assert inside.decrypt(key, wrapped.decode()) == secret
    outside = make_kms(address=admin.address, transit_key=key, token=admin.token)
    with pytest.raises(KmsError):  # the same key name is unknown outside the namespace
        outside.decrypt_key(wrapped)
    inside.close()
