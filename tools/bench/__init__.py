"""Benchmarks of the multi-region AWS KMS plugin against its peers (``nox -s bench``).

Run inside the LocalStack harness (``ASHERAH_LOCALSTACK_ENDPOINT`` set), from the repository
root: ``python -m tools.bench``. It writes ``docs/benchmarks.md`` and
``docs/benchmarks-latency.png`` and prints the same figures.

- `faults`: the latency added to every KMS call, slow regions, black-hole endpoints, call counts.
- `systems`: ours in each mode, the sequential reference, the AWS Encryption SDK, raw boto3.
- `measure`: interleaved rounds, CPU time per operation, throughput, peak memory.
- `report`: the markdown page, the plot and the goals.
"""
