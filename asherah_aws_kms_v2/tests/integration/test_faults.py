"""The fault matrix, against LocalStack: every fault, in the preferred region and in another one.

Each case runs four steps on fresh instances (three regions, per-call timeout 0.5 s, deadline
3 s, 2 retries, cool-down 0.25 s), with every logger at DEBUG captured and scanned for secrets:

1. **Resilient**: the call with the fault present succeeds by failover or retry (or, for a
   tampered ``encryptedKey``, fails naming every region); the faulty region received exactly
   the expected number of requests (retried or not); encrypt's envelope holds exactly the
   expected regions, and decrypts.
2. **No way around it**: encrypt with ``min_regions="all"``, or decrypt of an envelope whose
   only entry is the faulty region's, fails with `KmsError` naming the region and the cause
   (or succeeds when the fault was transient or does not touch that path).
3. Both calls return within the deadline; a failed call returns nothing.
4. **Recovery**: with the fault cleared and the cool-down over, the same instance uses the
   region again (GenerateDataKey in the preferred region, an entry for the other region) and
   round-trips; no partial state is left behind.

Region faults (refused, hang) come from a `FlakyEndpoint` in front of LocalStack; throttling,
5xx, AccessDenied and a wrong-length data key from a ``before-send`` hook on the region's
client; a disabled key, a missing key, another key's ciphertext and tampered ciphertext are
real LocalStack answers.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from asherah_aws_kms_v2 import AwsKms, AwsKmsBuilder, parse_envelope
from asherah_core import Aes256Gcm, KmsError

from ..leakscan import LeakScanner, capture_all_logs  # noqa: TID252 - shared with unit tests
from .faultkit import (
    ACCESS_DENIED,
    FORWARD,
    HOLD,
    REFUSE,
    SERVER_ERROR,
    SHORT_DATA_KEY,
    THROTTLED,
    FlakyEndpoint,
    KmsFactory,
    ScanCredentials,
)

USW, EUW, USE = "us-west-2", "eu-west-1", "us-east-1"  # canonical order, us-west-2 preferred
ALL = (USW, EUW, USE)
TIMEOUT, DEADLINE, RETRIES, COOLDOWN = 0.5, 3.0, 2, 0.25
SLACK = 0.5  # scheduling on a busy two-core machine; the deadline itself is enforced in code
CREDENTIALS = ScanCredentials.make("Faults")


@dataclass(frozen=True)
class Case:
    """One cell of the matrix and its documented outcome."""

    op: str  # "encrypt" or "decrypt"
    fault: str
    where: str  # "preferred", "other" or (tampered encryptedKey) "every"
    attempts: int  # requests the faulty region receives in step 1 (retries included)
    cause: str  # the error named when there is no way around the fault; "" when there is none
    holds: tuple[str, ...] = ()  # encrypt: the envelope's regions after step 1, in order

    @property
    def region(self) -> str:
        return USW if self.where in ("preferred", "every") else EUW

    @property
    def id(self) -> str:
        return f"{self.op}-{self.fault}-{self.where}"


E, D = "encrypt", "decrypt"
P, OTHER = "preferred", "other"
CONN, TIMED_OUT = "EndpointConnectionError", "ReadTimeoutError|DeadlineExceeded"
CASES = [
    # encrypt, fault in the preferred region: GenerateDataKey fails over; the region is left
    # out (a region fault also cools it, so it is not asked for Encrypt either).
    Case(E, "refused", P, 1, CONN, (EUW, USE)),
    Case(E, "hang", P, 1, TIMED_OUT, (EUW, USE)),
    Case(E, "throttled", P, 1 + RETRIES, "ThrottlingException", (EUW, USE)),
    Case(E, "throttled-once", P, 2, "", ALL),
    Case(E, "5xx", P, 1 + RETRIES, "KMSInternalException", (EUW, USE)),
    Case(E, "5xx-once", P, 2, "", ALL),
    Case(E, "access-denied", P, 2, "AccessDeniedException", (EUW, USE)),
    Case(E, "disabled", P, 2, "DisabledException", (EUW, USE)),
    Case(E, "not-found", P, 2, "NotFoundException", (EUW, USE)),
    Case(E, "short-data-key", P, 2, "", (EUW, USW, USE)),  # its Encrypt still works
    # encrypt, fault in another region: left out; throttling and 5xx after their retries,
    # connection faults at once (min_regions is met without that copy, so no second timeout).
    Case(E, "refused", OTHER, 1, CONN, (USW, USE)),
    Case(E, "hang", OTHER, 1, TIMED_OUT, (USW, USE)),
    Case(E, "throttled", OTHER, 1 + RETRIES, "ThrottlingException", (USW, USE)),
    Case(E, "throttled-once", OTHER, 2, "", ALL),
    Case(E, "5xx", OTHER, 1 + RETRIES, "KMSInternalException", (USW, USE)),
    Case(E, "5xx-once", OTHER, 2, "", ALL),
    Case(E, "access-denied", OTHER, 1, "AccessDeniedException", (USW, USE)),
    Case(E, "disabled", OTHER, 1, "DisabledException", (USW, USE)),
    Case(E, "not-found", OTHER, 1, "NotFoundException", (USW, USE)),
    # decrypt: the faulty region is asked first (for "other", the envelope has no entry for
    # the preferred region); connection faults fail over at once, throttling and 5xx after
    # their retries, key faults at once.
    *(
        Case(D, fault, where, attempts, cause)
        for where in (P, OTHER)
        for fault, attempts, cause in [
            ("refused", 1, CONN),
            ("hang", 1, TIMED_OUT),
            ("throttled", 1 + RETRIES, "ThrottlingException"),
            ("throttled-once", 2, ""),
            ("5xx", 1 + RETRIES, "KMSInternalException"),
            ("5xx-once", 2, ""),
            ("access-denied", 1, "AccessDeniedException"),
            ("disabled", 1, "DisabledException"),
            ("not-found", 1, "NotFoundException"),
            ("short-data-key", 1, "InvalidDataKeyLength"),
            ("other-key-ciphertext", 1, "IncorrectKeyException"),
            ("tampered-encryptedKek", 1, "InvalidCiphertextException"),
        ]
    ),
    Case(D, "tampered-encryptedKey", "every", 1, "CryptoError"),
]
NETWORK = {"refused": REFUSE, "hang": HOLD}
INJECTED = {
    "throttled": (THROTTLED, None),
    "throttled-once": (THROTTLED, 1),
    "5xx": (SERVER_ERROR, None),
    "5xx-once": (SERVER_ERROR, 1),
    "access-denied": (ACCESS_DENIED, None),
    "short-data-key": (SHORT_DATA_KEY, None),
}
REGION_FAULTS = {"refused", "hang", "throttled", "5xx"}  # these cool the region down


def test_the_matrix_has_every_cell() -> None:
    encrypt = {c.id for c in CASES if c.op == E}
    decrypt = {c.id for c in CASES if c.op == D}
    assert len(CASES) == len({c.id for c in CASES}) == 44
    assert (len(encrypt), len(decrypt)) == (19, 25)
    # Not applicable to encrypt: Encrypt returns no data key (so a short one can only come
    # from the GenerateDataKey of the preferred region), and the ciphertext faults are inputs.
    assert "encrypt-short-data-key-other" not in encrypt


# --- The fixture: one case's world ----------------------------------------------------------------


class World:
    """The instances, faults and captures of one case."""

    def __init__(
        self,
        case: Case,
        endpoint: str,
        kms_client: Callable[[str], Any],
        regional_keys: dict[str, str],
        fresh_key: Callable[..., str],
        scanner: LeakScanner,
    ) -> None:
        self.case = case
        self.admin = kms_client(case.region)
        self.scanner = scanner
        self.factory = KmsFactory()
        self.session = CREDENTIALS.session()
        self.arns = dict(regional_keys)
        if case.fault == "disabled":
            self.arns[case.region] = fresh_key(case.region, description="asherah fault: disabled")
        if case.fault == "not-found":  # well-formed, in the right account and region, absent
            self.arns[case.region] = f"arn:aws:kms:{case.region}:000000000000:key/{uuid.uuid4()}"
        self.proxy = FlakyEndpoint(endpoint) if case.fault in NETWORK else None
        endpoints = dict.fromkeys(ALL, endpoint)
        if self.proxy is not None:
            endpoints[case.region] = self.proxy.url
        self.made: list[AwsKms] = []
        self.kms = self.build(endpoints)
        self.strict = self.build(endpoints, strict=True) if case.op == E else None
        # Envelopes made before the fault, by an instance with the real keys.
        direct = dict.fromkeys(ALL, endpoint)
        self.maker = (
            self.build(direct, arns=regional_keys) if case.fault == "not-found" else self.kms
        )
        self.key = os.urandom(32)
        self.blob = self.maker.encrypt_key(self.key)
        self.scanner.add_secret(self.key)

    def build(
        self, endpoints: dict[str, str], *, strict: bool = False, arns: dict[str, str] | None = None
    ) -> AwsKms:
        builder = (
            AwsKmsBuilder(Aes256Gcm(), arns or self.arns)
            .with_preferred_region(USW)
            .with_timeout(TIMEOUT)
            .with_operation_timeout(DEADLINE)
            .with_retry_config(RETRIES, 20)
            .with_region_cooldown(COOLDOWN)
            .with_session(self.session)
            .with_kms_factory(self.factory)
            .with_min_regions("all" if strict else 1)
        )
        for region, url in endpoints.items():
            builder.with_endpoint(region, url)
        kms = builder.build()
        self.made.append(kms)
        return kms

    # The fault ------------------------------------------------------------------------------

    def fault_on(self) -> None:
        fault, region = self.case.fault, self.case.region
        if fault in NETWORK:
            assert self.proxy is not None
            self.proxy.set_mode(NETWORK[fault])
        elif fault in INJECTED:
            kind, times = INJECTED[fault]
            self.factory.inject(region, kind, times)
        elif fault == "disabled":
            self.admin.disable_key(KeyId=self.arns[region])

    def rearm(self) -> None:
        """Make a transient fault happen once more (for the second step)."""
        if self.case.fault in INJECTED:
            self.fault_on()

    def fault_off(self) -> None:
        if self.proxy is not None:
            self.proxy.set_mode(FORWARD)
        self.factory.clear()
        if self.case.fault == "disabled":
            self.admin.enable_key(KeyId=self.arns[self.case.region])

    def faulty_envelope(self, only: str | None = None) -> bytes:
        """The envelope to decrypt: without the preferred region's entry for a fault in
        another region, only `only`'s entry if given, and with the ciphertext fault applied."""
        document = json.loads(self.blob)
        keks = document["kmsKeks"]
        if only is not None:
            keks = [k for k in keks if k["region"] == only]
        elif self.case.where == "other":
            keks = [k for k in keks if k["region"] != USW]
        for entry in keks:
            if entry["region"] != self.case.region:
                continue
            if self.case.fault == "other-key-ciphertext":
                stranger = self.other_key_blob()
                entry["encryptedKek"] = base64.b64encode(stranger).decode()
            elif self.case.fault == "tampered-encryptedKek":
                raw = bytearray(base64.b64decode(entry["encryptedKek"]))
                raw[-1] ^= 0x01
                entry["encryptedKek"] = base64.b64encode(raw).decode()
        document["kmsKeks"] = keks
        if self.case.fault == "tampered-encryptedKey":
            raw = bytearray(base64.b64decode(document["encryptedKey"]))
            raw[len(raw) // 2] ^= 0x01
            document["encryptedKey"] = base64.b64encode(raw).decode()
        return json.dumps(document, separators=(",", ":")).encode()

    def original_only(self, region: str) -> bytes:
        """The envelope made before the fault, with only `region`'s entry."""
        document = json.loads(self.blob)
        document["kmsKeks"] = [k for k in document["kmsKeks"] if k["region"] == region]
        return json.dumps(document).encode()

    def other_key_blob(self) -> bytes:
        """A valid KMS ciphertext, in the same region, made under a key we are not using."""
        stranger = self.admin.create_key(Description="asherah fault: other key")["KeyMetadata"]
        blob = self.admin.encrypt(KeyId=stranger["Arn"], Plaintext=os.urandom(32))
        self.admin.schedule_key_deletion(KeyId=stranger["Arn"], PendingWindowInDays=7)
        return bytes(blob["CiphertextBlob"])

    # Timing and errors ----------------------------------------------------------------------

    def timed(self, call: Callable[[], bytes]) -> tuple[bytes | None, KmsError | None, float]:
        start = time.monotonic()
        result: bytes | None = None
        error: KmsError | None = None
        try:
            result = call()
        except KmsError as e:
            error = e
            self.scanner.add_error(e)
        elapsed = time.monotonic() - start
        assert elapsed <= DEADLINE + SLACK, f"took {elapsed:.2f} s, the deadline is {DEADLINE} s"
        return result, error, elapsed

    def close(self) -> None:
        for kms in self.made:
            kms.close()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def world_for(
    localstack_endpoint: str,
    kms_client: Callable[[str], Any],
    regional_keys: dict[str, str],
    fresh_key: Callable[..., str],
) -> Iterator[Callable[[Case, LeakScanner], World]]:
    worlds: list[World] = []

    def make(case: Case, scanner: LeakScanner) -> World:
        world = World(case, localstack_endpoint, kms_client, regional_keys, fresh_key, scanner)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.close()


def assert_names(error: KmsError | None, region: str, cause: str) -> None:
    assert error is not None, f"expected KmsError naming {region} and {cause}"
    message = str(error)
    assert region in message, message
    assert any(c in message for c in cause.split("|")), message


# --- The matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, world_for: Callable[[Case, LeakScanner], World]) -> None:
    scanner = LeakScanner()
    with capture_all_logs(scanner, exclusive=True) as logs:
        world = world_for(case, scanner)
        world.fault_on()
        world.factory.reset_counts()
        if case.op == E:
            run_encrypt_case(world, logs.messages)
        else:
            run_decrypt_case(world)
        recover(world)

    scanner.add_secrets([*world.factory.data_keys, *CREDENTIALS.secrets])
    assert logs.by_logger.get("botocore.parsers", 0) > 0  # response bodies were logged …
    assert world.factory.data_keys  # DEKs were in flight, so the scan looked for them
    assert scanner.leaks() == []  # … and no secret in them, nor anywhere else
    # Clients are made when an instance is built, never per call.
    assert sum(world.factory.clients_made.values()) == 3 * len(world.made)


def run_encrypt_case(world: World, messages: list[str]) -> None:
    case = world.case
    # 1. The fault is routed around: failover, retry, or the region left out (with a warning).
    blob, error, _ = world.timed(lambda: world.kms.encrypt_key(world.key))
    assert error is None, error
    assert blob is not None
    assert [k.region for k in parse_envelope(blob).keks] == list(case.holds)
    assert world.factory.attempts(case.region) == case.attempts
    for region in set(ALL) - set(case.holds):
        assert any(f"region {region} left out" in m for m in messages), region
    world.fault_off()
    assert world.kms.decrypt_key(blob) == world.key
    # 2. With every region required, the fault cannot be routed around.
    world.fault_on()
    assert world.strict is not None
    blob, error, _ = world.timed(lambda: world.strict.encrypt_key(world.key))  # type: ignore[union-attr]
    if case.cause and case.fault != "short-data-key":
        assert blob is None  # a failed encrypt returns nothing
        assert_names(error, case.region, case.cause)
    else:
        assert error is None, error
        assert blob is not None
        assert len(parse_envelope(blob).keks) == 3
    world.fault_off()


def run_decrypt_case(world: World) -> None:
    case = world.case
    envelope = world.faulty_envelope()
    # 1. Failover (or, for a tampered encryptedKey, every region refuses).
    key, error, _ = world.timed(lambda: world.kms.decrypt_key(envelope))
    if case.fault == "tampered-encryptedKey":
        assert key is None
        for region in ALL:
            assert_names(error, region, "CryptoError")
            assert world.factory.attempts(region) == 1
        return
    assert error is None, error
    assert key == world.key
    assert world.factory.attempts(case.region) == case.attempts
    fallback = EUW if case.where == "preferred" else USE
    assert world.factory.attempts(fallback) == (1 if case.cause else 0)
    # 2. With only the faulty region's entry, there is no way around it.
    world.rearm()
    alone = world.faulty_envelope(only=case.region)
    key, error, _ = world.timed(lambda: world.kms.decrypt_key(alone))
    if case.cause:
        assert key is None
        assert_names(error, case.region, case.cause)
    else:
        assert error is None, error
        assert key == world.key


def recover(world: World) -> None:
    """4. Fault cleared, cool-down over: the region is used again and nothing was left behind."""
    case = world.case
    world.fault_off()
    time.sleep(COOLDOWN + 0.05)
    usable = [r for r in ALL if not (case.fault == "not-found" and r == case.region)]
    key = os.urandom(32)
    world.scanner.add_secret(key)
    blob, error, _ = world.timed(lambda: world.kms.encrypt_key(key))
    assert error is None, error
    assert blob is not None
    regions = [k.region for k in parse_envelope(blob).keks]
    assert regions[0] == usable[0]  # GenerateDataKey back in the preferred region
    assert sorted(regions) == sorted(usable)
    assert world.kms.decrypt_key(blob) == key
    if case.fault != "not-found":  # the region's own entry unwraps through it again
        assert world.kms.decrypt_key(world.original_only(case.region)) == world.key
