"""A small in-memory stand-in for AWS KMS: keys per region, Multi-Region replicas, faults.

`FakeAws` holds the keys; `FakeAws.client(region)` returns a client with the three methods the
plugin calls. Ciphertext is really sealed (AES-GCM under the key's material) and names its
key, so a blob only decrypts under the key (or an MRK replica) that made it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ACCOUNT = "111122223333"


def client_error(code: str, status: int = 400, message: str = "injected") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Op",
    )


@dataclass
class FakeKey:
    arn: str
    material: bytes
    enabled: bool = True

    @property
    def family(self) -> str:
        """Replicas of one MRK share the family (the key id); other keys are their own."""
        return self.arn.rsplit("/", 1)[1]


@dataclass
class Call:
    region: str
    operation: str
    key_id: str
    thread: int
    thread_name: str = ""


@dataclass
class FakeAws:
    """The fake account: keys by ARN, recorded calls, injected faults and delays."""

    keys: dict[str, FakeKey] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # (region, operation) -> list of exceptions raised by the next calls, in order
    faults: dict[tuple[str, str], list[BaseException]] = field(default_factory=dict)
    # region -> every call fails with this (a dead region)
    down: dict[str, BaseException] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    data_key_size: int = 32
    data_key_sizes: dict[str, int] = field(default_factory=dict)  # per-region override
    lock: threading.Lock = field(default_factory=threading.Lock)
    clients_made: int = 0
    clients: list[FakeClient] = field(default_factory=list)
    # every data key plaintext that went in or out of the fake (to check nothing leaks it)
    plaintexts: list[bytes] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0  # the most calls that were inside the fake at once
    # calls inside an injected delay now: each stays under way for its region's delay, where
    # a call without one leaves `in_flight` within microseconds
    delayed_in_flight: int = 0

    def create_key(self, region: str) -> str:
        arn = f"arn:aws:kms:{region}:{ACCOUNT}:key/{uuid.uuid4()}"
        self.keys[arn] = FakeKey(arn, os.urandom(32))
        return arn

    def create_mrk(self, regions: list[str]) -> dict[str, str]:
        key_id = "mrk-" + uuid.uuid4().hex
        material = os.urandom(32)
        arns = {}
        for region in regions:
            arn = f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"
            self.keys[arn] = FakeKey(arn, material)
            arns[region] = arn
        return arns

    def client(self, region: str) -> FakeClient:
        client = FakeClient(self, region)
        with self.lock:
            self.clients_made += 1
            self.clients.append(client)
        return client

    def factory(self) -> Callable[..., FakeClient]:
        def make(region: str, *, session: Any, endpoint_url: str | None, config: Any) -> FakeClient:
            return self.client(region)

        return make

    def fail_next(self, region: str, operation: str, *errors: BaseException) -> None:
        self.faults.setdefault((region, operation), []).extend(errors)

    def calls_to(self, operation: str | None = None, region: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if (operation is None or c.operation == operation)
            and (region is None or c.region == region)
        ]


class FakeClient:
    def __init__(self, aws: FakeAws, region: str) -> None:
        self.aws = aws
        self.region = region
        self.closed = False
        self.close_calls = 0

    def _enter(self, operation: str, key_id: str) -> FakeKey:
        aws = self.aws
        thread = threading.current_thread()
        with aws.lock:
            aws.calls.append(Call(self.region, operation, key_id, thread.ident or 0, thread.name))
            queued = aws.faults.get((self.region, operation))
            fault = queued.pop(0) if queued else None
            delay = aws.delays.get(self.region, 0.0)
            aws.in_flight += 1
            aws.max_in_flight = max(aws.max_in_flight, aws.in_flight)
            if delay:
                aws.delayed_in_flight += 1
        try:
            if delay:
                time.sleep(delay)
        finally:
            with aws.lock:
                aws.in_flight -= 1
                if delay:
                    aws.delayed_in_flight -= 1
        if self.region in aws.down:
            raise aws.down[self.region]
        if fault is not None:
            raise fault
        key = aws.keys.get(key_id)
        if key is None or key.arn.split(":")[3] != self.region:
            raise client_error("NotFoundException", 400, "key not found")
        if not key.enabled:
            raise client_error("DisabledException", 400, "key is disabled")
        return key

    def generate_data_key(self, **kw: Any) -> Mapping[str, Any]:
        assert kw.get("KeySpec") == "AES_256", kw
        key = self._enter("generate_data_key", kw["KeyId"])
        plaintext = os.urandom(self.aws.data_key_sizes.get(self.region, self.aws.data_key_size))
        self.aws.plaintexts.append(plaintext)
        return {"KeyId": key.arn, "Plaintext": plaintext, "CiphertextBlob": _seal(key, plaintext)}

    def encrypt(self, **kw: Any) -> Mapping[str, Any]:
        key = self._enter("encrypt", kw["KeyId"])
        self.aws.plaintexts.append(kw["Plaintext"])
        return {"KeyId": key.arn, "CiphertextBlob": _seal(key, kw["Plaintext"])}

    def decrypt(self, **kw: Any) -> Mapping[str, Any]:
        key = self._enter("decrypt", kw["KeyId"])
        blob: bytes = kw["CiphertextBlob"]
        family, _, sealed = blob.partition(b"|")
        if family.decode(errors="replace") != key.family:
            raise client_error("IncorrectKeyException", 400, "ciphertext is for another key")
        try:
            plaintext = AESGCM(key.material).decrypt(sealed[:12], sealed[12:], None)
        except Exception:
            raise client_error("InvalidCiphertextException", 400, "invalid ciphertext") from None
        size = self.aws.data_key_sizes.get(self.region, self.aws.data_key_size)
        if size != 32:
            plaintext = (plaintext + b"\0" * size)[:size]
        self.aws.plaintexts.append(plaintext)
        return {"KeyId": key.arn, "Plaintext": plaintext}

    def close(self) -> None:
        self.closed = True
        self.close_calls += 1


def _seal(key: FakeKey, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    return key.family.encode() + b"|" + nonce + AESGCM(key.material).encrypt(nonce, plaintext, None)


class FakeClock:
    """A monotonic clock that moves only when told to; `sleep` advances it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
