"""compat03: the 0.3.x configuration object shows no credential; its `Asherah` object is set up
once however many threads ask at the same moment."""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import pytest

from asherah_core import compat03
from asherah_core.compat03 import AsherahConfig
from asherah_core.errors import SessionError


def test_the_0_3_config_repr_holds_no_password() -> None:
    config = AsherahConfig(
        kms="aws",
        metastore="rdbms",
        service_name="s",
        product_id="p",
        connection_string="mysql://app:S3cretPassw0rd@db:3306/keys",
        dynamo_db_endpoint="https://proxy:S3cretPassw0rd@dynamodb.internal",
    )
    assert "S3cretPassw0rd" not in repr(config)
    assert "service_name='s'" in repr(config)
    pascal = config.to_pascal_case()
    assert pascal["ConnectionString"] == "mysql://app:S3cretPassw0rd@db:3306/keys"
    assert pascal["DynamoDBEndpoint"] == "https://proxy:S3cretPassw0rd@dynamodb.internal"


def test_setups_at_once_build_one_factory_and_shutdown_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[object] = []
    real = compat03._session.SessionFactory

    class SlowFactory(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)  # a metastore or KMS being reached: the window two setups race in
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(compat03._session, "SessionFactory", SlowFactory)
    asherah = compat03.Asherah()
    config = AsherahConfig(kms="static", metastore="memory", service_name="s", product_id="p")
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def set_up() -> None:
        start.wait()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the static key's warning
                asherah.setup(config)
            outcomes.append("set up")
        except SessionError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=set_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["Asherah is already set up; call shutdown() first"] * 3 + ["set up"]
    assert len(built) == 1
    row = asherah.encrypt("partition", b"data")
    assert asherah.decrypt("partition", row) == bytearray(b"data")
    asherah.shutdown()
    with pytest.raises(SessionError, match="not set up"):
        asherah.encrypt("partition", b"data")
