"""The main job: encrypt and decrypt data rows through sessions, with the multi-region AWS KMS
plugin against LocalStack and an embedded SQLite metastore.

Run it with ``nox -s demo``, which starts LocalStack (tools/localstack/) and sets
ASHERAH_LOCALSTACK_ENDPOINT. It creates a KMS key in three regions, writes a plugins.toml that
selects the ``aws-v2`` KMS and the ``sql`` metastore on a SQLite file, builds a
``SessionFactory`` from it the way an application would, encrypts and decrypts rows of a few
partitions, shows the metastore's rows, then decrypts and encrypts again from a fresh factory
whose preferred region is dead, and prints the metrics recorded. Exits non-zero if anything fails.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from asherah_core import AsherahError, SessionFactory, available_kms, available_metastores

REGIONS = ("us-west-2", "us-east-1", "eu-west-1")
PREFERRED = "us-west-2"
PARTITIONS = ("customer-17", "customer-42", "customer-99")
ROWS = {
    "customer-17": [b"card ending 4242", b"", "Zoë's address".encode()],
    "customer-42": [b"x" * 1024, os.urandom(64)],
    "customer-99": [b"tax id 12-3456789"],
}


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
    print(
        "\nOK: rows of three partitions encrypted and decrypted through sessions, keys shared "
        "through SQLite, and a dead region survived."
    )
    return 0


def run(endpoint: str, reader: InMemoryMetricReader) -> None:
    print(f"Asherah sessions demo: AWS KMS in three regions (LocalStack at {endpoint}) + SQLite\n")
    arns = {region: create_key(endpoint, region) for region in REGIONS}
    step(1, "Created a KMS key in each region")
    for region, arn in arns.items():
        print(f"     {region:<10} {arn}")

    workdir = Path(tempfile.mkdtemp(prefix="asherah-demo-"))
    database = workdir / "keys.db"
    config = write_config(
        workdir / "plugins.toml", arns, dict.fromkeys(REGIONS, endpoint), database
    )
    step(2, f"Wrote {config}")
    print(
        f"     KMS plugins: {', '.join(available_kms())}; metastores: "
        f"{', '.join(available_metastores())}"
    )

    records: dict[str, list[str]] = {}
    with SessionFactory.from_config(config) as factory:
        print(f"     {factory!r}")
        step(3, "Encrypted rows (each a DataRowRecord as JSON, for the application's own table)")
        for partition in PARTITIONS:
            with factory.get_session(partition) as session:
                for data in ROWS[partition]:
                    start = time.perf_counter()
                    text = session.encrypt_bytes(data)
                    took = ms(start)
                    records.setdefault(partition, []).append(text)
                    print(f"     {partition}: {len(data):>5} B -> {len(text):>5} chars in {took}")
        sample = records["customer-99"][0]
        print(f"     e.g. {sample[:96]}…")
        step(4, "Decrypted every row in the same factory (keys cached)")
        check_rows(factory, records)
        with factory.get_session("customer-42") as other:
            try:
                other.decrypt_bytes(records["customer-17"][0])
            except AsherahError as e:
                print(f"     customer-42 cannot read customer-17's row: {type(e).__name__}")
            else:
                raise AsherahError("a session decrypted another partition's row")

    step(5, f"The metastore's rows in {database} (no key bytes shown)")
    show_rows(database)

    dead = f"http://127.0.0.1:{closed_port()}"
    endpoints = dict.fromkeys(REGIONS, endpoint) | {PREFERRED: dead}
    failover = write_config(workdir / "plugins-dead.toml", arns, endpoints, database)
    step(
        6, f"A fresh factory whose preferred region {PREFERRED} points at {dead} (nothing listens)"
    )
    with SessionFactory.from_config(failover) as factory:
        start = time.perf_counter()
        check_rows(factory, records)
        print(f"     every row decrypted in {ms(start)} (the system key unwrapped elsewhere)")
        with factory.get_session("customer-123") as session:
            text = session.encrypt_bytes(b"a new customer")
            if session.decrypt_bytes(text) != b"a new customer":
                raise AsherahError("a new partition's row did not round-trip")
        print("     a new partition encrypted and decrypted with the cached system key")

    step(7, "Metrics recorded (OpenTelemetry, in-memory reader)")
    print_metrics(reader)


def check_rows(factory: SessionFactory, records: dict[str, list[str]]) -> None:
    for partition, texts in records.items():
        with factory.get_session(partition) as session:
            for text, data in zip(texts, ROWS[partition], strict=True):
                if session.decrypt_bytes(text) != data:
                    raise AsherahError(f"a row of {partition} decrypted to different data")
        print(f"     {partition}: {len(texts)} row(s) decrypted to the original data")


def show_rows(database: Path) -> None:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT id, created, length(key_record) FROM encryption_key ORDER BY id, created"
        ).fetchall()
    for key_id, created, size in rows:
        print(f"     {key_id:<34} {created}  key_record {size} chars")


def create_key(endpoint: str, region: str) -> str:
    client = boto3.client("kms", region_name=region, endpoint_url=endpoint)
    arn: str = client.create_key(Description=f"asherah demo {region}")["KeyMetadata"]["Arn"]
    return arn


def write_config(
    path: Path, arns: dict[str, str], endpoints: dict[str, str], database: Path
) -> Path:
    lines = [
        "[asherah]",
        'service = "demo-service"',
        'product = "demo-product"',
        "",
        "[metastore]",
        'plugin = "sql"',
        "",
        "[metastores.sql]",
        f'url = "sqlite:///{database}"',
        "create_table = true",
        "",
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
                        value = f"count={point.count} mean={mean * 1000:.3f} ms"
                    else:
                        value = f"total={getattr(point, 'value', '?')}"
                    rows.append((metric.name, attrs, value))
    width = max((len(r[0]) for r in rows), default=10)
    for name, attrs, value in sorted(rows):
        print(f"     {name:<{width}}  {value:<28} {attrs}".rstrip())


def step(number: int, text: str) -> None:
    print(f"\n{number}. {text}")


def ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
