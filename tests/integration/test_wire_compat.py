"""Byte compatibility with the other Asherah implementations, against LocalStack.

The reference writer and reader here follow the published format facts (Go's and Rust's
algorithm: GenerateDataKey, AES-256-GCM with the nonce appended, Encrypt per other region,
compact JSON with padded standard base64), built from raw boto3 and `cryptography` calls,
not from this project's code.
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from asherah_aws_kms_v2 import AwsKms, AwsKmsBuilder
from asherah_core import Aes256Gcm

PREFERRED = "us-west-2"


def reference_seal(key: bytes, data: bytes) -> bytes:
    nonce = os.urandom(12)
    return AESGCM(key).encrypt(nonce, data, None) + nonce


def reference_open(key: bytes, sealed: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[-12:], sealed[:-12], None)


def reference_write(
    clients: dict[str, Any], arns: dict[str, str], key: bytes, *, order: str
) -> bytes:
    """What the Go and Rust writers do, step by step."""
    generated = clients[PREFERRED].generate_data_key(KeyId=arns[PREFERRED], KeySpec="AES_256")
    dek = generated["Plaintext"]
    entries = [{"region": PREFERRED, "arn": arns[PREFERRED], "blob": generated["CiphertextBlob"]}]
    for region, arn in arns.items():
        if region != PREFERRED:
            blob = clients[region].encrypt(KeyId=arn, Plaintext=dek)["CiphertextBlob"]
            entries.append({"region": region, "arn": arn, "blob": blob})
    if order == "go":  # Go's order is not deterministic
        random.shuffle(entries)
    else:  # the Rust core sorts by region
        entries.sort(key=lambda e: e["region"])
    document = {
        "encryptedKey": base64.b64encode(reference_seal(dek, key)).decode(),
        "kmsKeks": [
            {
                "region": e["region"],
                "arn": e["arn"],
                "encryptedKek": base64.b64encode(e["blob"]).decode(),
            }
            for e in entries
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def reference_read(clients: dict[str, Any], arns: dict[str, str], blob: bytes) -> bytes:
    """What the Go and Rust readers do: preferred region first, local ARN as KeyId."""
    document = json.loads(blob)
    entries = {e["region"]: e for e in document["kmsKeks"]}
    errors = []
    for region in [PREFERRED, *sorted(r for r in arns if r != PREFERRED)]:
        if region not in entries:
            continue
        try:
            dek = clients[region].decrypt(
                KeyId=arns[region],
                CiphertextBlob=base64.b64decode(entries[region]["encryptedKek"]),
            )["Plaintext"]
            return reference_open(dek, base64.b64decode(document["encryptedKey"]))
        except Exception as e:  # the reference moves on to the next region
            errors.append(e)
    raise AssertionError(f"reference reader failed: {errors}")


@pytest.fixture
def clients(kms_client: Callable[[str], Any], regional_keys: dict[str, str]) -> dict[str, Any]:
    return {region: kms_client(region) for region in regional_keys}


@pytest.fixture
def ours(localstack_endpoint: str, regional_keys: dict[str, str]) -> Iterator[AwsKms]:
    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test")
    builder = (
        AwsKmsBuilder(Aes256Gcm(), regional_keys)
        .with_preferred_region(PREFERRED)
        .with_session(session)
    )
    for region in regional_keys:
        builder = builder.with_endpoint(region, localstack_endpoint)
    with builder.build() as kms:
        yield kms


@pytest.mark.parametrize("order", ["go", "rust"])
def test_we_read_what_the_reference_writers_write(
    ours: AwsKms, clients: dict[str, Any], regional_keys: dict[str, str], order: str
) -> None:
    key = os.urandom(32)
    blob = reference_write(clients, regional_keys, key, order=order)
    assert ours.decrypt_key(blob) == key


def test_reference_readers_read_what_we_write(
    ours: AwsKms, clients: dict[str, Any], regional_keys: dict[str, str]
) -> None:
    key = os.urandom(32)
    blob = ours.encrypt_key(key)
    assert reference_read(clients, regional_keys, blob) == key
    # and each region's entry alone unwraps it, as a reader configured for one region would
    document = json.loads(blob)
    for entry in document["kmsKeks"]:
        region = entry["region"]
        dek = clients[region].decrypt(
            KeyId=regional_keys[region], CiphertextBlob=base64.b64decode(entry["encryptedKek"])
        )["Plaintext"]
        assert reference_open(dek, base64.b64decode(document["encryptedKey"])) == key


def test_our_envelope_has_the_reference_shape(ours: AwsKms) -> None:
    blob = ours.encrypt_key(os.urandom(32))
    text = blob.decode()
    assert text.startswith('{"encryptedKey":"')
    assert " " not in text
    document = json.loads(blob)
    assert list(document) == ["encryptedKey", "kmsKeks"]
    for entry in document["kmsKeks"]:
        assert list(entry) == ["region", "arn", "encryptedKek"]
        assert (
            base64.b64encode(base64.b64decode(entry["encryptedKek"], validate=True)).decode()
            == entry["encryptedKek"]
        )
    assert len(base64.b64decode(document["encryptedKey"])) == 60  # 32 + tag 16 + nonce 12


def test_a_metastore_key_chain_written_by_another_implementation(
    ours: AwsKms, clients: dict[str, Any], regional_keys: dict[str, str]
) -> None:
    """System key in a metastore row as the KMS envelope; intermediate key and data row
    record sealed beneath it, as in an Asherah metastore shared between implementations."""
    system_key, intermediate_key, data_row_key = os.urandom(32), os.urandom(32), os.urandom(32)
    sk_row = {
        "Created": 1732838400,
        "Key": base64.b64encode(
            reference_write(clients, regional_keys, system_key, order="go")
        ).decode(),
    }
    ik_row = {
        "Created": 1732838460,
        "Key": base64.b64encode(reference_seal(system_key, intermediate_key)).decode(),
        "ParentKeyMeta": {"KeyId": "_SK_service_product", "Created": 1732838400},
        "Revoked": False,
    }
    record = {
        "Key": {
            "Created": 1732838470,
            "Key": base64.b64encode(reference_seal(intermediate_key, data_row_key)).decode(),
            "ParentKeyMeta": {"KeyId": "_IK_partition_service_product", "Created": 1732838460},
        },
        "Data": base64.b64encode(reference_seal(data_row_key, b"customer data")).decode(),
    }
    rows = json.loads(json.dumps({"sk": sk_row, "ik": ik_row, "drr": record}))

    aead = Aes256Gcm()
    sk = ours.decrypt_key(base64.b64decode(rows["sk"]["Key"]))
    ik = aead.decrypt(base64.b64decode(rows["ik"]["Key"]), sk)
    drk = aead.decrypt(base64.b64decode(rows["drr"]["Key"]["Key"]), ik)
    assert aead.decrypt(base64.b64decode(rows["drr"]["Data"]), drk) == b"customer data"
