"""The main job: a multi-region encrypt/decrypt through plugin discovery, against LocalStack.

Run it with ``nox -s demo``, which starts LocalStack (tools/localstack/) and sets
ASHERAH_LOCALSTACK_ENDPOINT. It creates keys in three regions, writes a plugins.toml for them,
loads the KMS the way an application would, wraps and unwraps a key, shows the envelope,
unwraps again with the preferred region's endpoint dead, and prints the metrics recorded.
Exits non-zero if anything fails.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from asherah_aws_kms_v2 import describe_envelope
from asherah_core import AsherahError, available_kms, load_kms_from_file

REGIONS = ("us-west-2", "us-east-1", "eu-west-1")
PREFERRED = "us-west-2"


def main() -> int:
    endpoint = os.environ.get("ASHERAH_LOCALSTACK_ENDPOINT")
    if not endpoint:
        print("demo: ASHERAH_LOCALSTACK_ENDPOINT is not set; run it with `nox -s demo`")
        return 2
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    logging.basicConfig(format="     log %(levelname)s: %(message)s", level=logging.WARNING)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    try:
        run(endpoint, reader)
    except AsherahError as e:
        print(f"\nFAILED: {type(e).__name__}: {e}")
        return 1
    print("\nOK: the key round-tripped through three regions and survived a dead region.")
    return 0


def run(endpoint: str, reader: InMemoryMetricReader) -> None:
    print(f"Asherah multi-region AWS KMS demo against LocalStack at {endpoint}\n")
    arns = {region: create_key(endpoint, region) for region in REGIONS}
    step(1, "Created a KMS key in each region")
    for region, arn in arns.items():
        print(f"     {region:<10} {arn}")

    workdir = Path(tempfile.mkdtemp(prefix="asherah-demo-"))
    config = write_config(workdir / "plugins.toml", arns, dict.fromkeys(REGIONS, endpoint))
    step(2, f"Wrote {config}")
    print(f"     installed KMS plugins: {', '.join(available_kms())}")

    key = os.urandom(32)
    with load_kms_from_file(config) as kms:
        print(f"     loaded {kms!r}")
        start = time.perf_counter()
        envelope = kms.encrypt_key(key)
        took = ms(start)
        step(3, f"encrypt_key(32-byte key) -> {len(envelope)}-byte envelope in {took}")
        summary = describe_envelope(envelope) or {}
        print(f"     encryptedKey: {summary.get('encrypted_key_bytes')} bytes (AES-256-GCM)")
        for entry in summary.get("regions", []):
            print(
                f"     {entry['region']:<10} encryptedKek {entry['encrypted_kek_bytes']} bytes"
                f"  {entry['arn']}"
            )
        start = time.perf_counter()
        same = kms.decrypt_key(envelope) == key
        step(4, f"decrypt_key -> {'the same key' if same else 'A DIFFERENT KEY'} in {ms(start)}")
        if not same:
            raise AsherahError("decrypt_key returned a different key")

    dead = f"http://127.0.0.1:{closed_port()}"
    endpoints = dict.fromkeys(REGIONS, endpoint) | {PREFERRED: dead}
    failover = write_config(workdir / "plugins-dead.toml", arns, endpoints)
    step(5, f"Failover: {PREFERRED} now points at {dead}, where nothing listens")
    with load_kms_from_file(failover) as kms:
        for attempt in (1, 2):
            before = decrypt_counts(reader)
            start = time.perf_counter()
            same = kms.decrypt_key(envelope) == key
            took = ms(start)
            after = decrypt_counts(reader)
            answered = ", ".join(r for r in after if after[r] > before.get(r, 0)) or "?"
            print(
                f"     decrypt_key #{attempt} -> {'the same key' if same else 'A DIFFERENT KEY'} "
                f"in {took}, answered by {answered}"
            )
            if not same:
                raise AsherahError("decrypt_key returned a different key after failover")
        print(f"     ({PREFERRED} failed once, then waited at the back of the order)")

    step(6, "Metrics recorded (OpenTelemetry, in-memory reader)")
    print_metrics(reader)


def create_key(endpoint: str, region: str) -> str:
    client = boto3.client("kms", region_name=region, endpoint_url=endpoint)
    arn: str = client.create_key(Description=f"asherah demo {region}")["KeyMetadata"]["Arn"]
    return arn


def write_config(path: Path, arns: dict[str, str], endpoints: dict[str, str]) -> Path:
    lines = [
        "[kms]",
        'plugin = "aws-v2"',
        "",
        "[plugins.aws-v2]",
        f'preferred_region = "{PREFERRED}"',
        "timeout = 2.0",
        "min_regions = 2",
    ]
    for region in REGIONS:
        lines += [
            "",
            f"[plugins.aws-v2.regions.{region}]",
            f'arn = "{arns[region]}"',
            f'endpoint = "{endpoints[region]}"',
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def decrypt_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    """Successful KMS Decrypt calls per region so far, from the per-region histograms."""
    counts: dict[str, int] = {}
    for name, point in histogram_points(reader):
        if name.startswith("ael.kms.aws.decrypt.") and "error.type" not in (point.attributes or {}):
            region = name.rsplit(".", 1)[1]
            counts[region] = counts.get(region, 0) + point.count
    return counts


def histogram_points(reader: InMemoryMetricReader) -> list[tuple[str, HistogramDataPoint]]:
    data = reader.get_metrics_data()
    points: list[tuple[str, HistogramDataPoint]] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if isinstance(point, HistogramDataPoint):
                        points.append((metric.name, point))
    return points


def print_metrics(reader: InMemoryMetricReader) -> None:
    data = reader.get_metrics_data()
    rows: list[tuple[str, str, Any]] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attrs = ", ".join(
                        f"{k}={v if isinstance(v, str) else repr(v)}"
                        for k, v in sorted((point.attributes or {}).items())
                    )
                    if isinstance(point, HistogramDataPoint):
                        mean = point.sum / point.count if point.count else 0.0
                        value = f"count={point.count} mean={mean * 1000:.1f} ms"
                    else:
                        value = f"total={getattr(point, 'value', '?')}"
                    rows.append((metric.name, attrs, value))
    width = max((len(r[0]) for r in rows), default=10)
    for name, attrs, value in sorted(rows):
        print(f"     {name:<{width}}  {value:<28} {attrs}")


def step(number: int, text: str) -> None:
    print(f"\n{number}. {text}")


def ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
