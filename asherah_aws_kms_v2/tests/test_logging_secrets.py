"""No key, data key or encrypted key in any log line, error message or repr, in any encoding."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable

import pytest
from botocore.exceptions import EndpointConnectionError

from asherah_aws_kms_v2 import Envelope, describe_envelope, parse_envelope
from asherah_core import KmsError

from .conftest import MakeKms
from .fakes import FakeAws, client_error
from .leakscan import exception_texts, forms

# Keys with printable stretches too, so a raw (decoded) leak would be readable in a log.
KEYS = [os.urandom(32), b"PLAINTEXT-KEY-" + os.urandom(18), os.urandom(100)]


def leaks(text: str, secrets: list[bytes]) -> list[str]:
    return [
        f"{secret[:4].hex()}… as {form[:16]!r}…"
        for secret in secrets
        for form in forms(secret)
        if len(form) >= 12 and form in text
    ]


class Recorder:
    """Runs steps, keeping every exception they raise."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def expect_error(self, step: Callable[[], object]) -> None:
        with pytest.raises(KmsError) as caught:
            step()
        self.errors.append(caught.value)


def test_nothing_secret_reaches_logs_errors_or_reprs(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    run = Recorder()
    kms = make_kms(arns, hedge_after=0.05)
    strict = make_kms(arns, min_regions="all", region_cooldown=0)
    blobs = [kms.encrypt_key(key) for key in KEYS]

    # Failover, retries, left-out regions, a dead region, hedging.
    aws.fail_next("us-west-2", "generate_data_key", client_error("AccessDeniedException"))
    aws.fail_next("us-east-1", "encrypt", client_error("DisabledException"))
    blobs.append(kms.encrypt_key(KEYS[0]))
    aws.fail_next("us-west-2", "decrypt", client_error("ThrottlingException"))
    aws.fail_next("eu-west-1", "decrypt", client_error("KMSInternalException", 500))
    for blob, key in zip(blobs, [*KEYS, KEYS[0]], strict=True):
        assert kms.decrypt_key(blob) == key
    aws.down["us-west-2"] = EndpointConnectionError(endpoint_url="https://kms.us-west-2")
    assert kms.decrypt_key(blobs[1]) == KEYS[1]
    del aws.down["us-west-2"]
    aws.delays["us-west-2"] = 0.2
    assert kms.decrypt_key(blobs[2]) == KEYS[2]
    aws.delays.clear()

    # Failures of every kind.
    envelope = parse_envelope(blobs[0])
    tampered = Envelope(
        bytes([envelope.encrypted_key[0] ^ 1]) + envelope.encrypted_key[1:], envelope.keks
    )
    run.expect_error(lambda: kms.decrypt_key(tampered.to_bytes()))
    stranger = make_kms({"us-west-2": aws.create_key("us-west-2")})
    run.expect_error(lambda: kms.decrypt_key(stranger.encrypt_key(KEYS[1])))
    run.expect_error(lambda: stranger.decrypt_key(blobs[1]))
    aws.data_key_sizes["eu-west-1"] = 16
    aws.fail_next("us-west-2", "decrypt", client_error("AccessDeniedException"))
    aws.fail_next("us-east-1", "decrypt", client_error("AccessDeniedException"))
    run.expect_error(lambda: strict.decrypt_key(blobs[0]))
    aws.data_key_sizes.clear()
    aws.fail_next("eu-west-1", "encrypt", client_error("AccessDeniedException"))
    run.expect_error(lambda: strict.encrypt_key(KEYS[2]))
    for region in arns:
        aws.fail_next(region, "generate_data_key", client_error("NotFoundException"))
    run.expect_error(lambda: strict.encrypt_key(KEYS[0]))
    run.expect_error(lambda: kms.decrypt_key(blobs[0][:-5]))
    run.expect_error(lambda: kms.decrypt_key(blobs[0].replace(b'"kmsKeks"', b'"kmsKekz"')))
    run.expect_error(lambda: kms.encrypt_key(b""))
    kms.close()
    run.expect_error(lambda: kms.encrypt_key(KEYS[0]))

    # What was seen: every log record (with any traceback) and every error, and the reprs.
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = [formatter.format(record) for record in caplog.records]
    texts += [text for error in run.errors for text in exception_texts(error)]
    texts += [repr(kms), repr(strict), repr(envelope), *map(repr, envelope.keks)]
    texts += [str(describe_envelope(blob)) for blob in blobs]
    seen = "\n".join(texts)

    envelopes = [parse_envelope(blob) for blob in blobs]
    secrets = [
        *KEYS,
        *aws.plaintexts,  # every data key that went in or out of KMS
        *(e.encrypted_key for e in envelopes),
        *(k.encrypted_kek for e in envelopes for k in e.keks),
    ]
    assert len(aws.plaintexts) > 10
    assert leaks(seen, secrets) == []

    # The run did log and fail in the ways it meant to, so the check above looked at something.
    levels = {record.levelname for record in caplog.records}
    assert {"INFO", "WARNING"} <= levels
    assert "left out of the envelope" in seen
    assert "trying the next region" in seen
    assert "moved to the back of the order" in seen
    assert "AES-256-GCM authentication failed" in seen
    assert "IncorrectKeyException" in seen
    assert "InvalidDataKeyLength" in seen
    assert len(run.errors) == 10


def test_the_leak_check_itself_finds_each_form() -> None:
    secret = os.urandom(32)
    padded = b"xy" + secret + b"z"

    assert leaks(secret.hex(), [secret])
    assert leaks(f"key={secret!r}", [secret])
    assert leaks(base64.b64encode(padded).decode(), [secret])
    assert leaks(base64.urlsafe_b64encode(b"q" + secret).decode(), [secret])
    assert leaks(secret.decode("latin-1"), [secret])
    assert not leaks("nothing to see", [secret])
