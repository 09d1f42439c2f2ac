"""The systems compared: ours in each mode and the peers, each wrapping a 32-byte key.

Every system has ``encrypt(key) -> bytes`` and ``decrypt(blob) -> bytes`` and makes its KMS
clients from the same boto3 Session (so they all pay the same injected latency):

- `ours`: the plugin, built with `AwsKmsBuilder`, in one of the `MODES`;
- `Sequential`: what the Rust Asherah core does, written with raw boto3: GenerateDataKey in the
  preferred region, then each other region's Encrypt one after another; decrypt preferred first;
- `EncryptionSdk`: the AWS Encryption SDK for Python with the Material Providers library, a
  multi-keyring (generator: the preferred region's key; children: the others);
- `RawFloor`: one raw boto3 call (GenerateDataKey, or Decrypt), the floor of any scheme;
- `RawCalls`: the raw boto3 calls our default mode issues, one after another, nothing else
  (for CPU overhead and throughput).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .faults import CallCounter, add_delay

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter

    from asherah_aws_kms_v2 import AwsKms

__all__ = [
    "MODES",
    "REGIONS",
    "EncryptionSdk",
    "Keys",
    "Mode",
    "RawCalls",
    "RawFloor",
    "Sequential",
    "System",
    "World",
    "create_keys",
    "ours",
]

REGIONS = ("us-west-2", "us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2")
"""The regions in preference order; a benchmark with n regions uses the first n."""
MRK_PRIMARY = REGIONS[0]
SLOW_EXTRA = 0.5
"""How much later than the others a slow region answers (500 ms)."""
HEDGE_AFTER = 0.1
DOWN_TIMEOUT = 1.0
"""Connect and read timeout of every system whose preferred region is down."""
DEFAULT_TIMEOUT = 5.0
POOL_CONNECTIONS = 64
"""Connection pool of the raw clients: the plugin's own default, so 16 threads never wait."""

Mode = Literal["default", "local", "mrk", "down", "slow"]
MODES: tuple[Mode, ...] = ("default", "local", "mrk", "down", "slow")
MODE_LABELS: dict[Mode, str] = {
    "default": "ours, default",
    "local": "ours, local data key",
    "mrk": "ours, Multi-Region key",
    "down": "ours, preferred region down",
    "slow": "ours, preferred region slow (hedge 100 ms)",
}


class System(Protocol):
    """Something that wraps and unwraps a key with KMS."""

    name: str
    counter: CallCounter

    def encrypt(self, key: bytes) -> bytes: ...
    def decrypt(self, blob: bytes) -> bytes: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Keys:
    """One ordinary key per region, and one Multi-Region key replicated to every region."""

    regular: Mapping[str, str]
    mrk: Mapping[str, str]


def create_keys(endpoint: str) -> Keys:
    """Create the keys in LocalStack (no added latency; the calls of each kind at once)."""
    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test")
    clients = {r: session.client("kms", region_name=r, endpoint_url=endpoint) for r in REGIONS}
    primary = clients[MRK_PRIMARY]
    with ThreadPoolExecutor(len(REGIONS) + 1) as pool:
        regular_futures = {
            r: pool.submit(clients[r].create_key, Description=f"asherah-py bench ({r})")
            for r in REGIONS
        }
        mrk_primary = pool.submit(
            primary.create_key, Description="asherah-py bench MRK", MultiRegion=True
        ).result()["KeyMetadata"]["Arn"]
        replica_futures = {
            r: pool.submit(primary.replicate_key, KeyId=mrk_primary, ReplicaRegion=r)
            for r in REGIONS
            if r != MRK_PRIMARY
        }
        regular = {r: f.result()["KeyMetadata"]["Arn"] for r, f in regular_futures.items()}
        mrk = {MRK_PRIMARY: mrk_primary} | {
            r: f.result()["ReplicaKeyMetadata"]["Arn"] for r, f in replica_futures.items()
        }
    for client in clients.values():
        client.close()
    return Keys(regular, mrk)


@dataclass
class World:
    """Where the systems of one latency setting get their clients from."""

    endpoint: str
    session: boto3.Session
    keys: Keys
    black_hole: str
    made: list[System] = field(default_factory=list)

    def client(
        self,
        region: str,
        counter: CallCounter,
        *,
        down: bool = False,
        slow: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Any:
        """A raw boto3 KMS client for `region` (the black hole if `down`, slower if `slow`)."""
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=POOL_CONNECTIONS,
        )
        endpoint = self.black_hole if down else self.endpoint
        client = self.session.client(
            "kms", region_name=region, endpoint_url=endpoint, config=config
        )
        counter.attach(client)
        if slow:
            add_delay(client, SLOW_EXTRA)
        return client

    def close(self) -> None:
        """Close every system made in this world."""
        for system in self.made:
            system.close()


class Ours:
    """The plugin, as a `System`."""

    def __init__(self, name: str, kms: AwsKms, counter: CallCounter) -> None:
        self.name = name
        self.kms = kms
        self.counter = counter

    def encrypt(self, key: bytes) -> bytes:
        return self.kms.encrypt_key(key)

    def decrypt(self, blob: bytes) -> bytes:
        return self.kms.decrypt_key(blob)

    def close(self) -> None:
        self.kms.close()


def ours(world: World, regions: Sequence[str], mode: Mode, *, meter: Meter | None = None) -> Ours:
    """Build the plugin over `regions` (preferred first) in `mode`, from the world's session.

    Imported here, so that the raw boto3 side of the memory figure does not load the plugin.
    """
    from asherah_aws_kms_v2 import AwsKmsBuilder  # noqa: PLC0415
    from asherah_core import Aes256Gcm  # noqa: PLC0415

    counter = CallCounter()
    preferred = regions[0]

    def factory(
        region: str, *, session: boto3.Session, endpoint_url: str | None, config: Config
    ) -> Any:
        client = session.client("kms", region_name=region, endpoint_url=endpoint_url, config=config)
        counter.attach(client)
        if mode == "slow" and region == preferred:
            add_delay(client, SLOW_EXTRA)
        return client

    keys = world.keys.mrk if mode == "mrk" else world.keys.regular
    builder = (
        AwsKmsBuilder(Aes256Gcm(), {r: keys[r] for r in regions})
        .with_preferred_region(preferred)
        .with_session(world.session)
        .with_kms_factory(factory)
    )
    for region in regions:
        builder.with_endpoint(region, world.endpoint)
    if mode == "local":
        builder.with_local_data_key(True)
    elif mode == "down":
        builder.with_endpoint(preferred, world.black_hole).with_timeout(DOWN_TIMEOUT)
    elif mode == "slow":
        builder.with_hedge_after(HEDGE_AFTER)
    if meter is not None:
        builder.with_meter(meter)
    system = Ours(MODE_LABELS[mode], builder.build(), counter)
    world.made.append(system)
    return system


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _seal(key: bytes, data_key: bytes) -> bytes:
    nonce = os.urandom(12)
    return AESGCM(data_key).encrypt(nonce, key, None) + nonce


def _open(sealed: bytes, data_key: bytes) -> bytes:
    return AESGCM(data_key).decrypt(sealed[-12:], sealed[:-12], None)


class Sequential:
    """The Rust Asherah core's way, with raw boto3: every KMS call one after another."""

    name = "sequential reference (Rust core)"

    def __init__(self, world: World, regions: Sequence[str], *, down: bool = False) -> None:
        self.counter = CallCounter()
        timeout = DOWN_TIMEOUT if down else DEFAULT_TIMEOUT
        self._regions = tuple(regions)
        self._arns = {r: world.keys.regular[r] for r in regions}
        self._clients = {
            r: world.client(r, self.counter, down=down and i == 0, timeout=timeout)
            for i, r in enumerate(regions)
        }
        world.made.append(self)

    def encrypt(self, key: bytes) -> bytes:
        first, *others = self._regions
        generated = self._clients[first].generate_data_key(
            KeyId=self._arns[first], KeySpec="AES_256"
        )
        data_key: bytes = generated["Plaintext"]
        keks = [self._kek(first, generated["CiphertextBlob"])]
        for region in others:
            blob = self._clients[region].encrypt(KeyId=self._arns[region], Plaintext=data_key)
            keks.append(self._kek(region, blob["CiphertextBlob"]))
        envelope = {"encryptedKey": _b64(_seal(key, data_key)), "kmsKeks": keks}
        return json.dumps(envelope, separators=(",", ":")).encode()

    def _kek(self, region: str, blob: bytes) -> dict[str, str]:
        return {"region": region, "arn": self._arns[region], "encryptedKek": _b64(blob)}

    def decrypt(self, blob: bytes) -> bytes:
        envelope = json.loads(blob)
        entries = {k["region"]: k for k in envelope["kmsKeks"] or []}
        sealed = base64.b64decode(envelope["encryptedKey"])
        failures: list[str] = []
        for region in self._regions:
            if region not in entries:
                continue
            try:
                response = self._clients[region].decrypt(
                    KeyId=self._arns[region],
                    CiphertextBlob=base64.b64decode(entries[region]["encryptedKek"]),
                )
                return _open(sealed, response["Plaintext"])
            except (BotoCoreError, ClientError, InvalidTag) as e:
                failures.append(f"{region}: {type(e).__name__}")
        raise RuntimeError(f"sequential decrypt failed: {'; '.join(failures)}")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


class EncryptionSdk:
    """The AWS Encryption SDK (4.x) with a multi-keyring over the regions' keys."""

    name = "AWS Encryption SDK"

    def __init__(self, world: World, regions: Sequence[str]) -> None:
        import aws_encryption_sdk  # noqa: PLC0415 - only the benchmark needs it
        from aws_cryptographic_material_providers.mpl import (  # noqa: PLC0415
            AwsCryptographicMaterialProviders,
        )
        from aws_cryptographic_material_providers.mpl.config import (  # noqa: PLC0415
            MaterialProvidersConfig,
        )
        from aws_cryptographic_material_providers.mpl.models import (  # noqa: PLC0415
            CreateAwsKmsKeyringInput,
            CreateMultiKeyringInput,
        )

        self.counter = CallCounter()
        self._clients = [world.client(r, self.counter) for r in regions]
        mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
        keyrings = [
            mpl.create_aws_kms_keyring(
                CreateAwsKmsKeyringInput(kms_key_id=world.keys.regular[r], kms_client=client)
            )
            for r, client in zip(regions, self._clients, strict=True)
        ]
        self._keyring = mpl.create_multi_keyring(
            CreateMultiKeyringInput(generator=keyrings[0], child_keyrings=keyrings[1:])
        )
        self._sdk = aws_encryption_sdk.EncryptionSDKClient(
            commitment_policy=aws_encryption_sdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
        )
        world.made.append(self)

    def encrypt(self, key: bytes) -> bytes:
        ciphertext, _header = self._sdk.encrypt(source=key, keyring=self._keyring)
        return bytes(ciphertext)

    def decrypt(self, blob: bytes) -> bytes:
        plaintext, _header = self._sdk.decrypt(source=blob, keyring=self._keyring)
        return bytes(plaintext)

    def close(self) -> None:
        for client in self._clients:
            client.close()


class RawFloor:
    """One raw boto3 call in the preferred region: GenerateDataKey, or Decrypt of its blob."""

    name = "raw boto3, one call (floor)"

    def __init__(self, world: World, regions: Sequence[str]) -> None:
        self.counter = CallCounter()
        self.region = regions[0]
        self._arn = world.keys.regular[self.region]
        self.client = world.client(self.region, self.counter)
        world.made.append(self)

    def encrypt(self, key: bytes) -> bytes:
        blob: bytes = self.client.generate_data_key(KeyId=self._arn, KeySpec="AES_256")[
            "CiphertextBlob"
        ]
        return blob

    def decrypt(self, blob: bytes) -> bytes:
        plaintext: bytes = self.client.decrypt(KeyId=self._arn, CiphertextBlob=blob)["Plaintext"]
        return plaintext

    def encrypt_call(self, key: bytes) -> bytes:
        """One raw Encrypt (a third kind of single call, for the unit T)."""
        blob: bytes = self.client.encrypt(KeyId=self._arn, Plaintext=key)["CiphertextBlob"]
        return blob

    def close(self) -> None:
        self.client.close()


class RawCalls:
    """Exactly the KMS calls ours makes in `mode`, raw, nothing else.

    encrypt: default, GenerateDataKey then the other regions' Encrypt; local, every region's
    Encrypt; mrk, one GenerateDataKey. decrypt: one Decrypt in the preferred region. The blob
    passed to decrypt is ours' envelope, from which the preferred region's entry is taken.

    By default the calls run one after another in the caller's thread. With ``pooled=True``
    they run the way ours runs them: a single call (GenerateDataKey, Decrypt) in the caller's
    thread; calls made at once (the regional Encrypt calls) each on a worker thread of a pool
    but the last, which the caller makes itself meanwhile. That separates the cost of running
    calls concurrently from the cost of our own code.
    """

    def __init__(
        self, world: World, regions: Sequence[str], mode: Mode = "default", *, pooled: bool = False
    ) -> None:
        self.name = self.label(mode, pooled=pooled)
        self.counter = CallCounter()
        self._mode = mode
        self._regions = tuple(regions)
        keys = world.keys.mrk if mode == "mrk" else world.keys.regular
        self._arns = {r: keys[r] for r in regions}
        self._clients = {r: world.client(r, self.counter) for r in regions}
        self._blobs: dict[bytes, bytes] = {}
        self._pool = ThreadPoolExecutor(POOL_CONNECTIONS) if pooled else None
        world.made.append(self)

    @staticmethod
    def label(mode: Mode, *, pooled: bool) -> str:
        """The name of the raw calls of `mode`, sent one after another or through a pool."""
        how = "concurrent ones through a thread pool" if pooled else "one after another"
        return f"raw boto3, the calls of {MODE_LABELS[mode]}, {how}"

    def _each(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        if self._pool is None or not calls:
            return [call() for call in calls]
        *others, last = calls
        futures = [self._pool.submit(call) for call in others]
        mine = last()
        return [*(future.result() for future in futures), mine]

    def encrypt(self, key: bytes) -> bytes:
        first, *others = self._regions
        blob = b""
        if self._mode == "local":
            others = list(self._regions)
        else:
            client, arn = self._clients[first], self._arns[first]
            (generated,) = self._each(
                [lambda: client.generate_data_key(KeyId=arn, KeySpec="AES_256")]
            )
            blob, key = generated["CiphertextBlob"], generated["Plaintext"]
        if self._mode != "mrk":
            self._each([self._encrypt_call(region, key) for region in others])
        return bytes(blob)

    def _encrypt_call(self, region: str, plaintext: bytes) -> Callable[[], Any]:
        client, arn = self._clients[region], self._arns[region]
        return lambda: client.encrypt(KeyId=arn, Plaintext=plaintext)

    def decrypt(self, blob: bytes) -> bytes:
        """Decrypt the preferred region's entry of envelope `blob` (parsed once, then cached)."""
        kek_blob = self._blobs.get(blob)
        if kek_blob is None:
            kek = next(k for k in json.loads(blob)["kmsKeks"] if k["region"] == self._regions[0])
            kek_blob = self._blobs.setdefault(blob, base64.b64decode(kek["encryptedKek"]))
        return self.decrypt_kek(kek_blob)

    def decrypt_kek(self, kek_blob: bytes) -> bytes:
        """One raw Decrypt in the preferred region of a KMS ciphertext."""
        client, arn = self._clients[self._regions[0]], self._arns[self._regions[0]]
        (response,) = self._each([lambda: client.decrypt(KeyId=arn, CiphertextBlob=kek_blob)])
        plaintext: bytes = response["Plaintext"]
        return plaintext

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        for client in self._clients.values():
            client.close()
