"""botocore's DEBUG logs carry data keys, session tokens and signatures; the plugin redacts them.

The integration tests (``integration/test_secrets.py``) prove the same against LocalStack; these
do it offline, with a real boto3 client whose HTTP answers come from a ``before-send`` handler.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from asherah_aws_kms_v2 import AwsKmsBuilder
from asherah_aws_kms_v2.redact import REDACTED, RedactingFilter, install_log_redaction, redact
from asherah_core import Aes256Gcm, KmsError

from .conftest import MakeKms
from .fakes import FakeAws
from .leakscan import LeakScanner, capture_all_logs

SECRET_KEY = "asherahTestSecretKey/" + os.urandom(12).hex()
SESSION_TOKEN = "asherahTestSessionToken+" + os.urandom(24).hex()
ARN = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


# --- redact() on the shapes botocore logs ---------------------------------------------------


def test_the_request_params_lose_the_plaintext_but_keep_the_rest() -> None:
    dek = base64.b64encode(os.urandom(32)).decode()
    body = json.dumps({"KeyId": ARN, "Plaintext": dek}).encode()
    message = f"Making request for OperationModel(name=Encrypt) with params: {{'body': {body!r}}}"

    out = redact(message)

    assert dek not in out
    assert f'"Plaintext": "{REDACTED}"' in out
    assert ARN in out


def test_the_response_body_loses_the_plaintext_but_keeps_the_ciphertext() -> None:
    dek = base64.b64encode(os.urandom(32)).decode()
    blob = base64.b64encode(os.urandom(100)).decode()
    body = json.dumps(
        {"CiphertextBlob": blob, "Plaintext": dek, "KeyId": ARN}, separators=(",", ":")
    ).encode()

    out = redact(f"Response body:\n{body!r}")

    assert dek not in out
    assert blob in out


def test_a_bytes_literal_value_with_escaped_quotes_is_redacted_whole() -> None:
    dek = b"'\"\\" + os.urandom(29)
    out = redact(f"params: {{'Plaintext': {dek!r}, 'KeyId': 'k'}}")
    assert repr(dek)[2:-1] not in out
    assert out.endswith("'KeyId': 'k'}")


def test_the_session_token_and_signature_leave_the_headers_and_the_canonical_request() -> None:
    signature = os.urandom(32).hex()
    headers = (
        "Sending http request: <AWSPreparedRequest headers={'X-Amz-Security-Token': "
        f"b'{SESSION_TOKEN}', 'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"
        f"20260101/us-west-2/kms/aws4_request, SignedHeaders=host, Signature={signature}'}}>"
    )
    canonical = (
        f"CanonicalRequest:\nPOST\n/\n\nx-amz-security-token:{SESSION_TOKEN}\nx-amz-target:T"
    )

    for text in (headers, canonical, f"Signature:\n{signature}"):
        out = redact(text)
        assert SESSION_TOKEN not in out
        assert signature not in out
        assert REDACTED in out


def test_text_without_secrets_is_returned_unchanged() -> None:
    text = "Event before-send.kms.Decrypt: calling handler <function f at 0x1>"
    assert redact(text) is text


def test_the_filter_leaves_records_without_secrets_alone_and_never_drops_one() -> None:
    keep = logging.LogRecord("botocore.hooks", logging.DEBUG, __file__, 1, "x=%s", ("y",), None)
    secret = logging.LogRecord(
        "botocore.parsers", logging.DEBUG, __file__, 1, "Response body:\n%r",
        (b'{"Plaintext":"c2VjcmV0"}',), None,
    )  # fmt: skip
    bad = logging.LogRecord("botocore.hooks", logging.DEBUG, __file__, 1, "%s %s", ("a",), None)

    assert RedactingFilter().filter(keep)
    assert keep.args == ("y",)
    assert RedactingFilter().filter(secret)
    assert secret.getMessage() == f'Response body:\nb\'{{"Plaintext":"{REDACTED}"}}\''
    assert RedactingFilter().filter(bad)  # the handler reports the broken record, as before


# --- Installation -----------------------------------------------------------------------------


def test_building_an_aws_kms_installs_the_filter_once_per_logger(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    make_kms(arns)
    make_kms(arns)
    install_log_redaction()
    for name in ("botocore.endpoint", "botocore.parsers", "botocore.auth"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, RedactingFilter) for f in filters) == 1, name


# --- A real boto3 client at DEBUG, answered offline -------------------------------------------


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def _stubbed_session(deks: list[bytes]) -> boto3.Session:
    """A session whose KMS calls never leave the process; each answer's data key is recorded."""

    def answer(request: Any, event_name: str, **_: Any) -> AWSResponse:
        dek = os.urandom(32)
        deks.append(dek)
        body = {"KeyId": ARN, "CiphertextBlob": base64.b64encode(os.urandom(80)).decode()}
        if not event_name.endswith(".Encrypt"):
            body["Plaintext"] = base64.b64encode(dek).decode()
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 200, headers, _Body(json.dumps(body).encode()))

    session = boto3.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
    )
    session.events.register("before-send.kms", answer)
    return session


def test_a_real_boto3_client_at_debug_logs_no_data_key_token_or_secret(
    offline_boto3: None,
) -> None:
    """GenerateDataKey, Encrypt and Decrypt through botocore with every logger at DEBUG."""
    scanner = LeakScanner()
    deks: list[bytes] = []
    arns = {"us-west-2": ARN, "eu-west-1": ARN.replace("us-west-2", "eu-west-1")}
    kms = (
        AwsKmsBuilder(Aes256Gcm(), arns)
        .with_preferred_region("us-west-2")
        .with_session(_stubbed_session(deks))
        .build()
    )
    key = os.urandom(32)
    with capture_all_logs(scanner) as captured, kms:
        blob = kms.encrypt_key(key)
        with pytest.raises(KmsError):  # the stub's Decrypt answers with another data key
            kms.decrypt_key(blob)

    scanner.add_secrets([key, *deks, SECRET_KEY, SESSION_TOKEN])
    assert captured.by_logger.get("botocore.parsers", 0) >= 3  # the bodies were logged …
    assert scanner.leaks() == []  # … without what is secret in them


def test_without_the_filter_botocore_would_log_the_data_key(offline_boto3: None) -> None:
    """The check above has teeth: take the filter off and the same calls leak."""
    install_log_redaction()
    deks: list[bytes] = []
    client = _stubbed_session(deks).client("kms", region_name="us-west-2")
    scanner = LeakScanner()
    loggers = [logging.getLogger(n) for n in logging.Logger.manager.loggerDict]
    removed = [(lg, f) for lg in loggers for f in lg.filters if isinstance(f, RedactingFilter)]
    try:
        for logger, f in removed:
            logger.removeFilter(f)
        with capture_all_logs(scanner):
            client.generate_data_key(KeyId=ARN, KeySpec="AES_256")
    finally:
        for logger, f in removed:
            logger.addFilter(f)
        client.close()
    scanner.add_secrets([*deks, SESSION_TOKEN])
    assert len(scanner.leaks()) == 2  # the data key and the session token
