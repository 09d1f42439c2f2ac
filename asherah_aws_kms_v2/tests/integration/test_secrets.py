"""botocore at DEBUG against LocalStack: its request and response bodies are logged, and the
data keys in them (and the session's credentials) are not.

The fault matrix and the soak scan their own DEBUG output the same way; this file shows the
plain case and that the scan would catch a leak if the redaction were not there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from asherah_aws_kms_v2 import AwsKms, AwsKmsBuilder
from asherah_aws_kms_v2.redact import RedactingFilter
from asherah_core import Aes256Gcm

from ..leakscan import LeakScanner, capture_all_logs  # noqa: TID252 - shared with unit tests
from .faultkit import KmsFactory, ScanCredentials

CREDENTIALS = ScanCredentials.make("Secrets")


@pytest.fixture
def kms_and_factory(
    localstack_endpoint: str, regional_keys: dict[str, str]
) -> Iterator[tuple[AwsKms, KmsFactory]]:
    factory = KmsFactory()
    session = CREDENTIALS.session()
    builder = (
        AwsKmsBuilder(Aes256Gcm(), regional_keys)
        .with_preferred_region("us-west-2")
        .with_session(session)
        .with_kms_factory(factory)
    )
    for region in regional_keys:
        builder.with_endpoint(region, localstack_endpoint)
    kms = builder.build()
    yield kms, factory
    kms.close()


def round_trips(kms: AwsKms, scanner: LeakScanner, count: int = 5) -> None:
    for _ in range(count):
        key = os.urandom(32)
        scanner.add_secret(key)
        assert kms.decrypt_key(kms.encrypt_key(key)) == key


def test_botocore_debug_logs_hold_no_data_key_or_credential(
    kms_and_factory: tuple[AwsKms, KmsFactory],
) -> None:
    kms, factory = kms_and_factory
    scanner = LeakScanner()

    with capture_all_logs(scanner, exclusive=True) as logs:
        round_trips(kms, scanner)

    scanner.add_secrets([*factory.data_keys, *CREDENTIALS.secrets])
    # GenerateDataKey, two Encrypts and a Decrypt per key: the bodies were logged, with DEKs in.
    assert logs.by_logger["botocore.endpoint"] >= 20
    assert logs.by_logger["botocore.parsers"] >= 20
    assert len(factory.data_keys) == 5
    assert scanner.leaks() == []


def test_the_scan_finds_them_when_the_redaction_is_taken_off(
    kms_and_factory: tuple[AwsKms, KmsFactory],
) -> None:
    """The check above has teeth: without the filters, botocore logs every data key."""
    kms, factory = kms_and_factory
    scanner = LeakScanner()
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)]
    removed = [(lg, f) for lg in loggers for f in lg.filters if isinstance(f, RedactingFilter)]
    assert removed
    try:
        for logger, f in removed:
            logger.removeFilter(f)
        with capture_all_logs(scanner, exclusive=True):
            round_trips(kms, scanner, count=2)
    finally:
        for logger, f in removed:
            logger.addFilter(f)

    scanner.add_secrets([*factory.data_keys, *CREDENTIALS.secrets])
    found = scanner.leaks()
    assert len(found) == len(factory.data_keys) + 1  # every data key, and the session token
