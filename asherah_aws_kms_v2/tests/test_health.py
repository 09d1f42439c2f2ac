"""Region health: a region that just faulted goes to the back for a cool-down, then one probe."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from asherah_aws_kms_v2.regions import RegionHealth
from asherah_core import KmsError

from .conftest import MakeKms
from .fakes import FakeAws, FakeClock, client_error

KEY = b"k" * 32
LOGGER = "asherah_aws_kms_v2"
URL = "https://kms.us-west-2.amazonaws.com"


class Changes(list[tuple[str, bool]]):
    def __call__(self, region: str, healthy: bool) -> None:
        self.append((region, healthy))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def health(clock: FakeClock, changes: Changes) -> RegionHealth:
    return RegionHealth(
        ["a", "b", "c"], cooldown=30.0, probe_timeout=5.0, on_change=changes, clock=clock
    )


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    ours = [r for r in caplog.records if r.name.split(".")[0] == LOGGER]
    return [r.getMessage() for r in ours if r.levelno == level]


# RegionHealth ---------------------------------------------------------------------------


def test_healthy_regions_keep_the_preferred_order(health: RegionHealth) -> None:
    assert health.split(["a", "b", "c"]) == (["a", "b", "c"], [])
    assert health.order(["c", "a", "b"]) == ["c", "a", "b"]


def test_a_faulting_region_moves_to_the_back_for_the_cooldown(
    health: RegionHealth, clock: FakeClock
) -> None:
    health.record_fault("a", "EndpointConnectionError: no route")

    assert health.split(["a", "b", "c"]) == (["b", "c"], ["a"])
    assert health.order(["a", "b", "c"]) == ["b", "c", "a"]
    assert not health.is_healthy("a")
    clock.advance(29.9)
    assert health.order(["a", "b", "c"]) == ["b", "c", "a"]


def test_cooling_regions_keep_their_relative_order_at_the_back(health: RegionHealth) -> None:
    health.record_fault("b", "x")
    health.record_fault("a", "x")

    assert health.order(["a", "b", "c"]) == ["c", "a", "b"]


def test_the_change_is_logged_once_and_reported_once_not_on_every_fault(
    health: RegionHealth, changes: Changes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(5):
            health.record_fault("a", "ReadTimeoutError: timed out")

    warnings = records(caplog, logging.WARNING)
    assert warnings == [
        "region a moved to the back of the order for 30 s after ReadTimeoutError: timed out"
    ]
    assert changes == [("a", False)]


def test_after_the_cooldown_exactly_one_of_many_concurrent_callers_gets_the_probe(
    health: RegionHealth, clock: FakeClock
) -> None:
    health.record_fault("a", "x")
    clock.advance(30.0)
    callers = 32
    barrier = threading.Barrier(callers)
    results: list[tuple[list[str], list[str]]] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        result = health.split(["a", "b", "c"])
        with lock:
            results.append(result)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    probes = [r for r in results if r == (["a", "b", "c"], [])]
    others = [r for r in results if r == (["b", "c"], ["a"])]
    assert (len(probes), len(others)) == (1, callers - 1)


def test_a_successful_probe_makes_the_region_healthy_logged_once(
    health: RegionHealth, clock: FakeClock, changes: Changes, caplog: pytest.LogCaptureFixture
) -> None:
    health.record_fault("a", "x")
    clock.advance(30.0)
    health.split(["a", "b", "c"])  # the probe

    with caplog.at_level(logging.INFO, logger=LOGGER):
        health.record_success("a")
        health.record_success("a")

    assert records(caplog, logging.INFO) == ["region a is healthy again"]
    assert changes == [("a", False), ("a", True)]
    assert health.is_healthy("a")
    assert health.order(["a", "b", "c"]) == ["a", "b", "c"]
    assert health.order(["a", "b", "c"]) == ["a", "b", "c"]  # for everyone, not just one


def test_a_failed_probe_starts_a_new_cooldown_without_logging_again(
    health: RegionHealth, clock: FakeClock, changes: Changes, caplog: pytest.LogCaptureFixture
) -> None:
    health.record_fault("a", "x")
    clock.advance(30.0)
    assert health.order(["a", "b", "c"])[0] == "a"  # the probe
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        health.record_fault("a", "still down")

    assert records(caplog, logging.WARNING) == []
    assert changes == [("a", False)]
    clock.advance(29.9)
    assert health.order(["a", "b", "c"]) == ["b", "c", "a"]
    clock.advance(0.1)
    assert health.order(["a", "b", "c"]) == ["a", "b", "c"]  # the next probe


def test_the_order_follows_every_fault_and_recovery_of_several_regions(
    health: RegionHealth, clock: FakeClock
) -> None:
    # While every region is healthy the order is read without the lock; each fault and each
    # recovery must still show at once, however they interleave.
    health.record_fault("a", "x")
    health.record_fault("b", "x")
    health.record_fault("b", "again")  # already cooling: counted once
    assert health.order(["a", "b", "c"]) == ["c", "a", "b"]
    health.record_success("a")
    assert health.order(["a", "b", "c"]) == ["a", "c", "b"]
    health.record_success("b")
    health.record_success("b")  # already healthy: counted once
    assert health.order(["a", "b", "c"]) == ["a", "b", "c"]
    health.record_fault("c", "x")
    assert health.order(["a", "b", "c"]) == ["a", "b", "c"]  # c is last already
    assert health.order(["c", "a", "b"]) == ["a", "b", "c"]
    clock.advance(30.0)
    assert health.order(["c", "a", "b"]) == ["c", "a", "b"]  # c's probe


def test_a_probe_that_does_not_report_lets_another_caller_probe_after_the_probe_timeout(
    health: RegionHealth, clock: FakeClock
) -> None:
    health.record_fault("a", "x")
    clock.advance(30.0)
    assert health.order(["a", "b", "c"]) == ["a", "b", "c"]  # probe 1, never reports

    clock.advance(4.9)
    assert health.order(["a", "b", "c"]) == ["b", "c", "a"]
    clock.advance(0.1)
    assert health.order(["a", "b", "c"]) == ["a", "b", "c"]  # probe 2
    assert health.order(["a", "b", "c"]) == ["b", "c", "a"]


def test_a_cooldown_of_zero_turns_health_tracking_off(
    clock: FakeClock, changes: Changes, caplog: pytest.LogCaptureFixture
) -> None:
    health = RegionHealth(["a", "b"], cooldown=0.0, probe_timeout=5.0, on_change=changes)

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        health.record_fault("a", "x")

    assert health.split(["a", "b"]) == (["a", "b"], [])
    assert health.is_healthy("a")
    assert changes == []
    assert caplog.records == []


def test_regions_it_does_not_know_are_left_in_place(health: RegionHealth) -> None:
    health.record_fault("zz", "x")
    health.record_success("zz")

    assert health.order(["zz", "a"]) == ["zz", "a"]


# Through AwsKms -------------------------------------------------------------------------


def dead() -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url=URL)


def build(make_kms: MakeKms, arns: dict[str, str], clock: FakeClock, **options: Any) -> Any:
    options.setdefault("region_cooldown", 30.0)
    return make_kms(arns, clock=clock, sleep=clock.sleep, **options)


def test_only_the_first_decrypt_pays_for_a_dead_preferred_region(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock
) -> None:
    kms = build(make_kms, arns, clock)
    blob = kms.encrypt_key(KEY)
    aws.down["us-west-2"] = dead()

    for _ in range(6):
        assert kms.decrypt_key(blob) == KEY

    decrypts = [c.region for c in aws.calls_to("decrypt")]
    assert decrypts == ["us-west-2"] + ["eu-west-1"] * 6


def test_after_the_cooldown_one_decrypt_probes_the_region_again(
    aws: FakeAws,
    arns: dict[str, str],
    make_kms: MakeKms,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kms = build(make_kms, arns, clock)
    blob = kms.encrypt_key(KEY)
    aws.down["us-west-2"] = dead()
    kms.decrypt_key(blob)  # us-west-2 fails, cools down
    clock.advance(30.0)

    kms.decrypt_key(blob)  # probes us-west-2 (still dead), then eu-west-1
    kms.decrypt_key(blob)  # a new cool-down: straight to eu-west-1
    del aws.down["us-west-2"]
    clock.advance(30.0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        kms.decrypt_key(blob)  # the probe succeeds
        kms.decrypt_key(blob)

    decrypts = [c.region for c in aws.calls_to("decrypt")]
    assert decrypts == [
        "us-west-2",
        "eu-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-west-1",
        "us-west-2",
        "us-west-2",
    ]
    assert records(caplog, logging.INFO).count("region us-west-2 is healthy again") == 1


def test_encrypt_leaves_a_cooling_region_out_without_calling_it(
    aws: FakeAws,
    arns: dict[str, str],
    make_kms: MakeKms,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kms = build(make_kms, arns, clock, min_regions=2)
    aws.down["us-east-1"] = dead()
    kms.encrypt_key(KEY)  # us-east-1's Encrypt fails: left out, and now cooling
    calls = len(aws.calls_to(region="us-east-1"))
    caplog.clear()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        blob = kms.encrypt_key(KEY)

    assert len(aws.calls_to(region="us-east-1")) == calls
    assert kms.decrypt_key(blob) == KEY
    assert [k["region"] for k in json.loads(blob)["kmsKeks"]] == [
        "us-west-2",
        "eu-west-1",
    ]
    (warning,) = records(caplog, logging.WARNING)
    assert "region us-east-1 left out" in warning
    assert "RegionCoolingDown" in warning


def test_encrypt_includes_a_cooling_region_when_min_regions_needs_it(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock
) -> None:
    kms = build(make_kms, arns, clock, min_regions="all")
    aws.down["us-east-1"] = dead()
    with pytest.raises(KmsError, match="us-east-1: EndpointConnectionError"):
        kms.encrypt_key(KEY)  # us-east-1 is now cooling
    del aws.down["us-east-1"]
    calls = len(aws.calls_to(region="us-east-1"))

    blob = kms.encrypt_key(KEY)

    assert len(aws.calls_to(region="us-east-1")) == calls + 1
    assert kms.decrypt_key(blob) == KEY


def test_encrypt_asks_a_skipped_cooling_region_when_the_healthy_ones_fall_short(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock
) -> None:
    kms = build(make_kms, arns, clock, min_regions=2)
    aws.down["us-east-1"] = dead()
    kms.encrypt_key(KEY)  # us-east-1 left out, and now cooling
    del aws.down["us-east-1"]
    aws.keys[arns["eu-west-1"]].enabled = False  # a key error the health order cannot foresee
    calls = len(aws.calls_to(region="us-east-1"))

    blob = kms.encrypt_key(KEY)

    assert len(aws.calls_to(region="us-east-1")) == calls + 1
    assert [k["region"] for k in json.loads(blob)["kmsKeks"]] == ["us-west-2", "us-east-1"]
    assert kms.decrypt_key(blob) == KEY


def test_generate_data_key_skips_a_cooling_preferred_region(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock
) -> None:
    kms = build(make_kms, arns, clock)
    aws.down["us-west-2"] = dead()
    kms.encrypt_key(KEY)  # GenerateDataKey in us-west-2 fails, eu-west-1 generates
    before = len(aws.calls_to(region="us-west-2"))

    for _ in range(3):
        kms.encrypt_key(KEY)

    assert len(aws.calls_to(region="us-west-2")) == before == 1
    assert {c.region for c in aws.calls_to("generate_data_key")[1:]} == {"eu-west-1"}


def test_throttling_that_outlasts_the_retries_cools_the_region(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock
) -> None:
    kms = build(make_kms, arns, clock, max_retries=1)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", *(client_error("ThrottlingException") for _ in range(2)))

    kms.decrypt_key(blob)
    kms.decrypt_key(blob)

    assert [c.region for c in aws.calls_to("decrypt")] == [
        "us-west-2",
        "us-west-2",
        "eu-west-1",
        "eu-west-1",
    ]


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "DisabledException", "InvalidCiphertextException"]
)
def test_key_level_errors_do_not_cool_a_region(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock, code: str
) -> None:
    kms = build(make_kms, arns, clock)
    blob = kms.encrypt_key(KEY)
    aws.fail_next("us-west-2", "decrypt", client_error(code))

    kms.decrypt_key(blob)
    kms.decrypt_key(blob)

    assert [c.region for c in aws.calls_to("decrypt")] == ["us-west-2", "eu-west-1", "us-west-2"]


def test_with_cooldown_zero_every_decrypt_tries_the_dead_region_first(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms, clock: FakeClock
) -> None:
    kms = build(make_kms, arns, clock, region_cooldown=0)
    blob = kms.encrypt_key(KEY)
    aws.down["us-west-2"] = dead()

    for _ in range(3):
        kms.decrypt_key(blob)

    assert [c.region for c in aws.calls_to("decrypt")] == ["us-west-2", "eu-west-1"] * 3
