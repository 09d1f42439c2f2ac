"""A probe granted to a call that never asks the region is given back at once.

After a region's cool-down, one caller gets to probe it. A decrypt that gets the probe but
never calls the region (its envelope has no entry there, or an earlier region answered) used
to hold it until the probe timeout (the operation's deadline): meanwhile every encrypt left
the region out of its envelopes. Found by the soak test (a flapping region received a
handful of requests in some runs, hundreds in others).
"""

from __future__ import annotations

import json

from botocore.exceptions import EndpointConnectionError

from asherah_aws_kms_v2 import parse_envelope
from asherah_aws_kms_v2.regions import RegionHealth

from .conftest import MakeKms
from .fakes import FakeAws, FakeClock

KEY = b"k" * 32


def test_split_reports_the_probes_it_grants_and_release_gives_them_back() -> None:
    clock = FakeClock()
    health = RegionHealth(["a", "b"], cooldown=30.0, probe_timeout=20.0, clock=clock)
    health.record_fault("a", "x")
    clock.advance(30.0)

    probes: list[tuple[str, float]] = []
    assert health.split(["a", "b"], probes=probes) == (["a", "b"], [])
    assert [region for region, _ in probes] == ["a"]
    assert health.split(["a", "b"]) == (["b"], ["a"])  # held by the first caller

    health.release(probes)

    assert health.split(["a", "b"]) == (["a", "b"], [])  # the next caller probes


def test_release_does_not_cancel_a_later_callers_probe() -> None:
    clock = FakeClock()
    health = RegionHealth(["a"], cooldown=30.0, probe_timeout=20.0, clock=clock)
    health.record_fault("a", "x")
    clock.advance(30.0)
    first: list[tuple[str, float]] = []
    health.split(["a"], probes=first)
    health.record_fault("a", "the probe failed")  # the probe was used, and failed
    clock.advance(30.0)
    second: list[tuple[str, float]] = []
    health.split(["a"], probes=second)

    health.release(first)  # stale: must not free the second caller's probe

    assert health.split(["a"]) == ([], ["a"])


def test_a_decrypt_that_never_asks_the_region_gives_its_probe_back(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    clock = FakeClock()
    kms = make_kms(arns, clock=clock, sleep=clock.sleep, region_cooldown=30.0)
    aws.down["us-east-1"] = EndpointConnectionError(endpoint_url="https://kms.us-east-1")
    without_east = kms.encrypt_key(KEY)  # us-east-1 left out, and cooling
    assert "us-east-1" not in {k.region for k in parse_envelope(without_east).keks}
    del aws.down["us-east-1"]
    clock.advance(30.0)

    assert kms.decrypt_key(without_east) == KEY  # gets the probe; never calls us-east-1
    blob = kms.encrypt_key(KEY)  # so this call can probe it

    assert {k.region for k in parse_envelope(blob).keks} == set(arns)
    assert aws.calls_to("encrypt", "us-east-1")[-1].region == "us-east-1"


def test_a_decrypt_answered_before_the_probed_region_gives_its_probe_back(
    aws: FakeAws, arns: dict[str, str], make_kms: MakeKms
) -> None:
    clock = FakeClock()
    kms = make_kms(arns, clock=clock, sleep=clock.sleep, region_cooldown=30.0)
    full = kms.encrypt_key(KEY)
    aws.down["us-east-1"] = EndpointConnectionError(endpoint_url="https://kms.us-east-1")
    kms.encrypt_key(KEY)  # us-east-1 cools down
    del aws.down["us-east-1"]
    clock.advance(30.0)
    assert json.loads(full)["kmsKeks"][-1]["region"] == "us-east-1"  # asked last, if at all

    assert kms.decrypt_key(full) == KEY  # us-west-2 answers; the probe is not used
    blob = kms.encrypt_key(KEY)

    assert {k.region for k in parse_envelope(blob).keks} == set(arns)
