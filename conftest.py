"""Shared pytest set-up for every test in the repository (both distributions and ``tests/``).

- Tests collected from any ``integration`` folder are marked ``integration``; those in an
  ``interop`` folder are marked ``interop`` and collected only when ``-m`` names it.
- Fixtures for the integration tests, against the LocalStack named by
  ``ASHERAH_LOCALSTACK_ENDPOINT`` (``nox -s integration`` starts one and sets it):
  ``localstack_endpoint``, ``kms_client``, ``regional_keys``, ``mrk_keys`` and ``fresh_key``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

# With pytest's importlib import mode, a test module under asherah_core/tests/ is named
# "asherah_core.tests.…"; if the real package is not imported yet, pytest makes a namespace
# package of the distribution folder, which hides the installed one. Import both first.
import asherah_aws_kms_v2  # noqa: F401
import asherah_core  # noqa: F401
import asherah_vault_transit  # noqa: F401

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

ENDPOINT_ENV = "ASHERAH_LOCALSTACK_ENDPOINT"  # the same name as tools/localstack/
REGIONS = ("us-west-2", "us-east-1", "eu-west-1")
"""The regions of ``regional_keys`` and ``mrk_keys``."""
MRK_PRIMARY_REGION = "us-east-1"
INTEROP_FOLDER = "interop"
TEST_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

KmsClientFactory = Callable[[str], "KMSClient"]
FreshKeyFactory = Callable[..., str]


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark every test that lives under a folder named ``integration`` as ``integration``, and
    under one named ``interop`` as ``interop``."""
    path = Path(item.path)
    with contextlib.suppress(ValueError):
        path = path.relative_to(item.config.rootpath)
    if "integration" in path.parts[:-1]:
        item.add_marker(pytest.mark.integration)
    if INTEROP_FOLDER in path.parts[:-1]:
        item.add_marker(pytest.mark.interop)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave ``interop`` folders out unless the ``-m`` expression names ``interop``.

    Their tests need the pinned ``asherah`` package and SQLAlchemy, which only ``nox -s
    interop`` installs; the ``tests`` and ``integration`` runs must not even import them.
    """
    if collection_path.name == INTEROP_FOLDER and "interop" not in (config.option.markexpr or ""):
        return True
    return None


# --- A forked child ------------------------------------------------------------------------------

ForkedChild = Callable[[Callable[[], str]], str]


@pytest.fixture
def in_forked_child() -> ForkedChild:
    """Run ``work`` in a child made by `os.fork` and return what it returned (or the name and
    message of what it raised). The child then leaves at once, with no cleanup, so nothing of
    the parent's it holds is closed there. Skips where there is no `os.fork`."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")

    def run(work: Callable[[], str]) -> str:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            answer = "nothing"
            try:
                answer = work()
            except BaseException as e:  # reported to the parent
                answer = f"{type(e).__name__}: {e}"
            finally:
                os.write(write, answer.encode())
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
        return answer

    return run


HeldAtFork = Callable[[Callable[[], Any]], str]


@pytest.fixture
def held_at_fork(in_forked_child: ForkedChild) -> HeldAtFork:
    """``held_at_fork(lock_of)``: another thread holds the lock ``lock_of()`` returns (any
    context manager) while the process forks; the child then tries to take ``lock_of()`` (read
    again there: a reset may have replaced it) from a thread of its own. Returns ``"taken"``,
    or ``"still held"`` after 5 s. The parent's holder lets go afterwards."""

    def run(lock_of: Callable[[], Any]) -> str:
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with lock_of():
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert held.wait(10), "the lock was not taken in the parent"

            def child() -> str:
                took = threading.Event()

                def take() -> None:
                    with lock_of():
                        took.set()

                threading.Thread(target=take, daemon=True).start()
                return "taken" if took.wait(5) else "still held"

            with warnings.catch_warnings():  # (3.12+ warns of this very case at the fork)
                warnings.filterwarnings("ignore", "This process .* is multi-threaded")
                return in_forked_child(child)
        finally:
            release.set()
            holder.join()

    return run


# --- Helpers the fixtures are made of ------------------------------------------------------------


def make_kms_client(endpoint: str, region: str) -> KMSClient:
    """Return a KMS client for ``region`` at the LocalStack ``endpoint``, with test credentials."""
    from localstack_client.session import Session  # noqa: PLC0415 - only integration needs it

    parts = urlsplit(endpoint)
    session = Session(
        region_name=region,
        localstack_host=f"{parts.hostname}:{parts.port or 4566}",
        **TEST_CREDENTIALS,
    )
    client: KMSClient = session.client("kms")
    # localstack-client prefers $AWS_ENDPOINT_URL (and $USE_SSL for the scheme) over the host it
    # is given; make sure the client talks to the endpoint the tests were promised.
    if client.meta.endpoint_url.rstrip("/") != endpoint.rstrip("/"):
        pytest.fail(
            f"localstack-client built a KMS client for {client.meta.endpoint_url}, not for "
            f"{endpoint} (is AWS_ENDPOINT_URL or USE_SSL set?); unset them for the tests.",
            pytrace=False,
        )
    return client


def create_key(client: KMSClient, description: str, *, multi_region: bool = False) -> str:
    """Create a symmetric encryption key and return its ARN."""
    metadata = client.create_key(
        Description=description,
        KeySpec="SYMMETRIC_DEFAULT",
        KeyUsage="ENCRYPT_DECRYPT",
        MultiRegion=multi_region,
    )["KeyMetadata"]
    return metadata["Arn"]


def wait_enabled(client: KMSClient, arn: str, timeout: float = 30.0) -> None:
    """Wait until the key is usable (a replica starts as ``Creating`` on real AWS)."""
    deadline = time.monotonic() + timeout
    while (state := client.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]) != "Enabled":
        if time.monotonic() > deadline:
            pytest.fail(f"KMS key {arn} is still {state} after {timeout:.0f} s", pytrace=False)
        time.sleep(0.2)


def schedule_deletion(client: KMSClient, arn: str) -> None:
    """Best-effort clean-up, for an endpoint that outlives the test session."""
    with contextlib.suppress(Exception):
        client.schedule_key_deletion(KeyId=arn, PendingWindowInDays=7)


# --- Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def localstack_endpoint() -> str:
    """The URL of the LocalStack to test against, from ``ASHERAH_LOCALSTACK_ENDPOINT``."""
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip().rstrip("/")
    if not endpoint:
        pytest.fail(
            f"{ENDPOINT_ENV} is not set, and this test needs LocalStack. Run the integration "
            f"tests with `nox -s integration` (it starts LocalStack), or wrap pytest with "
            f"`python -m tools.localstack run -- pytest -m integration`, or set {ENDPOINT_ENV} "
            f"to a running LocalStack (e.g. http://localhost:4566).",
            pytrace=False,
        )
    return endpoint


@pytest.fixture(scope="session")
def kms_client(localstack_endpoint: str) -> KmsClientFactory:
    """A factory: ``kms_client(region)`` returns a KMS client for that region at LocalStack."""
    clients: dict[str, KMSClient] = {}

    def factory(region: str) -> KMSClient:
        if region not in clients:
            clients[region] = make_kms_client(localstack_endpoint, region)
        return clients[region]

    return factory


@pytest.fixture(scope="session")
def regional_keys(kms_client: KmsClientFactory) -> Iterator[dict[str, str]]:
    """One symmetric key in each of ``REGIONS``: region -> key ARN (for the whole session)."""
    keys = {
        region: create_key(kms_client(region), f"asherah-py test key ({region})")
        for region in REGIONS
    }
    yield keys
    for region, arn in keys.items():
        schedule_deletion(kms_client(region), arn)


@pytest.fixture(scope="session")
def mrk_keys(kms_client: KmsClientFactory) -> Iterator[dict[str, str]]:
    """A Multi-Region key made in us-east-1 and replicated to the other ``REGIONS``.

    Region -> ARN of the key in that region (the primary's, or the replica's); the ARNs share
    the ``mrk-...`` key id.
    """
    primary = kms_client(MRK_PRIMARY_REGION)
    arn = create_key(primary, "asherah-py test multi-Region key", multi_region=True)
    keys = {MRK_PRIMARY_REGION: arn}
    for region in REGIONS:
        if region != MRK_PRIMARY_REGION:
            replica = primary.replicate_key(KeyId=arn, ReplicaRegion=region)
            keys[region] = replica["ReplicaKeyMetadata"]["Arn"]
            wait_enabled(kms_client(region), keys[region])
    yield {region: keys[region] for region in REGIONS}
    for region in (*keys.keys() - {MRK_PRIMARY_REGION}, MRK_PRIMARY_REGION):
        schedule_deletion(kms_client(region), keys[region])


@pytest.fixture
def fresh_key(kms_client: KmsClientFactory) -> Iterator[FreshKeyFactory]:
    """A factory: ``fresh_key(region)`` creates a key of the test's own (to disable, say).

    Takes an optional ``description=``; the keys are scheduled for deletion after the test.
    """
    made: list[tuple[str, str]] = []

    def factory(region: str, *, description: str = "asherah-py test key (fresh)") -> str:
        arn = create_key(kms_client(region), description)
        made.append((region, arn))
        return arn

    yield factory
    for region, arn in made:
        schedule_deletion(kms_client(region), arn)
