"""compat03: the 0.3.x configuration object shows no credential."""

from __future__ import annotations

from asherah_core.compat03 import AsherahConfig


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
