"""sqlurl: the package's ConnectionString forms read without a credential in any message."""

from __future__ import annotations

import pytest

from asherah_core.errors import ConfigError
from asherah_core.sqlurl import rdbms_target

sa = pytest.importorskip("sqlalchemy")


@pytest.mark.parametrize(
    "connection_string",
    [
        "mysql://app@db:3306/keys?password=S3cretPassw0rd",
        "app@tcp(db:3306)/keys?passwd=S3cretPassw0rd",
        "mysql://app@db/keys?tls=true&auth_token=S3cretPassw0rd",
    ],
)
def test_an_unsupported_mysql_option_is_named_without_its_value(connection_string: str) -> None:
    with pytest.raises(ConfigError, match=r"ConnectionString: option '\w+': not supported") as e:
        rdbms_target(connection_string, "", "cfg")
    assert "S3cretPassw0rd" not in str(e.value)


@pytest.mark.parametrize(
    ("connection_string", "password"),
    [
        ("mysql://app:S3cr?et@db", "S3cr?et"),
        ("mysql://app:S3cr?x=et@db", "S3cr?x=et"),
        ("postgres://app:S3cr?x=et@db", "S3cr?x=et"),
        ("postgres://app:S3cr?x=et@db/keys", "S3cr?x=et"),
        ("postgres://app:S3cr?x=et@db?sslmode=require", "S3cr?x=et"),
    ],
)
def test_a_question_mark_in_the_password_is_read_whole(
    connection_string: str, password: str
) -> None:
    url = sa.make_url(rdbms_target(connection_string, "", "cfg").url)
    assert (url.username, url.password, url.host) == ("app", password, "db")


def test_the_query_starts_after_the_host_even_without_a_database() -> None:
    url = sa.make_url(rdbms_target("postgres://app@db?sslrootcert=/etc/ca.pem", "", "c").url)
    assert (url.host, url.database, dict(url.query)) == ("db", "", {"sslrootcert": "/etc/ca.pem"})
    target = rdbms_target("mysql://app:pw@db?tls=false", "", "c")
    assert (sa.make_url(target.url).host, target.connect_args) == ("db", {"ssl_disabled": True})
