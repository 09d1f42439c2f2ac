"""A metastore in a DynamoDB table, in the layout every Asherah implementation shares.

Table ``EncryptionKey``: hash key ``Id`` (S), range key ``Created`` (N), and the record as the
map ``KeyRecord`` (``Key`` S, ``Created`` N, ``ParentKeyMeta`` M with ``KeyId`` S and
``Created`` N, ``Revoked`` BOOL). Reads are strongly consistent, the latest key is a descending
query with limit 1, and a store is a put conditioned on ``attribute_not_exists(Id)``.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

from asherah_core.errors import MetastoreError, RecordError
from asherah_core.forksafe import Lock, PerProcess
from asherah_core.records import EnvelopeKeyRecord

from .base import ListedKey, Metastore, StoredKey, readable

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url
except ImportError as e:  # pragma: no cover - exercised by the install tests
    raise ImportError("DynamoDbMetastore needs boto3: pip install 'asherah-core[dynamodb]'") from e

if TYPE_CHECKING:
    from boto3.session import Session

__all__ = [
    "DEFAULT_TABLE",
    "DynamoDbClient",
    "DynamoDbClientFactory",
    "DynamoDbMetastore",
    "default_client_factory",
]

DEFAULT_TABLE = "EncryptionKey"
PARTITION_KEY = "Id"
SORT_KEY = "Created"
RECORD = "KeyRecord"

_T = TypeVar("_T")
_session_lock = Lock()
"""boto3 sessions are not thread-safe: one client made at a time."""


def _made_by(factory: DynamoDbClientFactory, region: str | None, **settings: Any) -> DynamoDbClient:
    """A client from `factory`, one at a time: boto3 sessions are not thread-safe."""
    with _session_lock:
        return factory(region, **settings)


class DynamoDbClient(Protocol):
    """The part of a boto3 DynamoDB client this metastore uses."""

    meta: Any

    def get_item(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def put_item(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def query(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def scan(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def update_item(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def create_table(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def describe_table(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def close(self) -> None: ...


class DynamoDbClientFactory(Protocol):
    """Make the client: ``factory(region, *, session, endpoint_url, config)``."""

    def __call__(
        self,
        region: str | None,
        *,
        session: Session,
        endpoint_url: str | None,
        config: Config,
    ) -> DynamoDbClient: ...


def default_client_factory(
    region: str | None, *, session: Session, endpoint_url: str | None, config: Config
) -> DynamoDbClient:
    """Make a boto3 DynamoDB client from `session` (its region when `region` is None)."""
    client: Any = session.client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
    )
    return cast(DynamoDbClient, client)


class DynamoDbMetastore(Metastore):
    """Key records in a DynamoDB table (``EncryptionKey`` unless named otherwise).

    :param table_name: the table; `create_table` makes it when asked, nothing else does.
    :param region: the table's region; by default the session's (``AWS_REGION`` and friends).
    :param endpoint_url: another endpoint (DynamoDB Local, moto, a VPC endpoint).
    :param session: the `boto3.session.Session` to make the client from; a new one by default,
        so the process-wide AWS settings are not touched.
    :param region_suffix: for global tables: key ids get ``_<region>`` appended (the client's
        region), so each region creates its own system and intermediate keys.
    :param client_factory: makes the client (tests, instrumentation); `default_client_factory`.
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for a reply.
    :param max_attempts: tries per call, botocore's standard retry mode (throttling, 5xx).
    """

    kind: ClassVar[str] = "dynamodb"

    def __init__(
        self,
        table_name: str = DEFAULT_TABLE,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: Session | None = None,
        region_suffix: bool = False,
        client_factory: DynamoDbClientFactory | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        if not isinstance(table_name, str) or not 3 <= len(table_name) <= 255:
            raise MetastoreError(
                f"dynamodb metastore: table name {table_name!r} must be 3 to 255 characters"
            )
        self._table = table_name
        self._endpoint = _shown_endpoint(table_name, endpoint_url)
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max(1, max_attempts)},
        )
        factory = client_factory or default_client_factory
        try:
            with _session_lock:
                session = session if session is not None else boto3.session.Session()
            # One client per process: a forked child makes its own (see forksafe.py).
            self._clients = PerProcess(
                functools.partial(
                    _made_by,
                    factory,
                    region,
                    session=session,
                    endpoint_url=endpoint_url,
                    config=config,
                )
            )
        except (BotoCoreError, ValueError) as e:
            raise MetastoreError(
                f"dynamodb metastore (table {table_name!r}): cannot make a client: "
                f"{type(e).__name__}: {_first_line(e)}"
            ) from None
        client = self._clients.get()
        self._region: str | None = getattr(client.meta, "region_name", None) or region
        if not self._region:
            raise MetastoreError(
                f"dynamodb metastore (table {table_name!r}): no region; pass region= or set "
                "AWS_REGION (or a profile's region)"
            )
        self._suffix = self._region if region_suffix else None
        self._where = (
            f"dynamodb metastore (table {table_name!r}, region {self._region}"
            f"{', endpoint ' + self._endpoint if self._endpoint else ''})"
        )
        self._closed = False

    @property
    def table_name(self) -> str:
        """The table in use."""
        return self._table

    @property
    def region(self) -> str:
        """The region of the client."""
        assert self._region is not None
        return self._region

    @property
    def client(self) -> DynamoDbClient:
        """The DynamoDB client in use (this process's own: see `_client`)."""
        return self._client

    @property
    def _client(self) -> DynamoDbClient:
        """The client of this process: a forked child makes its own on first use, from the
        same session and settings (the parent's shares its connections with the parent)."""
        return self._clients.get()

    @property
    def region_suffix(self) -> str | None:
        """The client's region when the region suffix is enabled, else ``None``."""
        return self._suffix

    # Metastore ---------------------------------------------------------------------------

    def load(self, key_id: str, created: int) -> EnvelopeKeyRecord | None:
        """Return the item ``(key_id, created)`` or ``None`` (a strongly consistent read)."""
        response = self._call(
            "load",
            key_id,
            lambda: self._client.get_item(
                TableName=self._table,
                Key=self._key(key_id, created),
                ConsistentRead=True,
            ),
        )
        item = response.get("Item")
        return None if item is None else self._parse(item, key_id)

    def load_latest(self, key_id: str) -> EnvelopeKeyRecord | None:
        """Return the item of `key_id` with the largest ``Created`` (descending query, limit 1)."""
        response = self._call(
            "load latest",
            key_id,
            lambda: self._client.query(
                TableName=self._table,
                KeyConditionExpression="#id = :id",
                ExpressionAttributeNames={"#id": PARTITION_KEY},
                ExpressionAttributeValues={":id": {"S": key_id}},
                ConsistentRead=True,
                ScanIndexForward=False,
                Limit=1,
            ),
        )
        items = response.get("Items") or []
        return self._parse(items[0], key_id) if items else None

    def store(self, key_id: str, created: int, record: EnvelopeKeyRecord) -> bool:
        """Put the item unless ``(key_id, created)`` exists; False when it does."""
        item = {**self._key(key_id, created), RECORD: _to_attribute(record.to_dict())}

        def put() -> bool:
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#id)",
                    ExpressionAttributeNames={"#id": PARTITION_KEY},
                )
            except ClientError as e:
                if _code(e) == "ConditionalCheckFailedException":
                    return False
                raise
            return True

        return self._call("store", key_id, put)

    def keys(self, prefix: str = "") -> Iterator[StoredKey]:
        """Yield every item whose id starts with `prefix`, by id then created (a full scan)."""
        yield from readable(self.list_keys(prefix))

    def list_keys(self, prefix: str = "") -> Iterator[ListedKey]:
        """`keys`, each item read on its own: one that cannot be read is listed with why."""
        rows: list[ListedKey] = []
        start: Mapping[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True}
            if prefix:
                kwargs["FilterExpression"] = "begins_with(#id, :prefix)"
                kwargs["ExpressionAttributeNames"] = {"#id": PARTITION_KEY}
                kwargs["ExpressionAttributeValues"] = {":prefix": {"S": prefix}}
            if start:
                kwargs["ExclusiveStartKey"] = start
            scan = functools.partial(self._scan, kwargs)  # (the client inside: see _client)
            page = self._call("list keys", None, scan)
            for item in page.get("Items") or []:
                rows.append(self._listed(item))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        rows.sort(key=lambda row: (row.key_id or "", row.created or 0))
        yield from rows

    def _listed(self, item: Mapping[str, Any]) -> ListedKey:
        try:
            key_id, created = self._item_key(item)
        except MetastoreError as e:
            return ListedKey(None, None, None, str(e))
        try:
            return ListedKey(key_id, created, self._parse(item, key_id))
        except MetastoreError as e:
            return ListedKey(key_id, created, None, str(e))

    def revoke(self, key_id: str, created: int) -> bool:
        """Set ``KeyRecord.Revoked``; False when there is no such item. Other fields stay."""

        def update() -> bool:
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(key_id, created),
                    UpdateExpression="SET #rec.#revoked = :true",
                    ConditionExpression="attribute_exists(#id)",
                    ExpressionAttributeNames={
                        "#id": PARTITION_KEY,
                        "#rec": RECORD,
                        "#revoked": "Revoked",
                    },
                    ExpressionAttributeValues={":true": {"BOOL": True}},
                )
            except ClientError as e:
                if _code(e) == "ConditionalCheckFailedException":
                    return False
                raise
            return True

        return self._call("revoke", key_id, update)

    def create_table(self, *, wait: bool = True) -> None:
        """Create the table (on-demand capacity) unless it exists, and wait until it is active."""

        def create() -> None:
            try:
                self._client.create_table(
                    TableName=self._table,
                    KeySchema=[
                        {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                        {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                    ],
                    AttributeDefinitions=[
                        {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                        {"AttributeName": SORT_KEY, "AttributeType": "N"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
            except ClientError as e:
                if _code(e) != "ResourceInUseException":
                    raise
            if wait:
                waiter = cast(Any, self._client).get_waiter("table_exists")
                waiter.wait(TableName=self._table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

        self._call("create the table", None, create)

    def close(self) -> None:
        """Close the client's connections."""
        if not self._closed:
            self._closed = True
            close = getattr(self._clients.mine(), "close", None)  # a parent's stays open
            if callable(close):
                close()

    def __repr__(self) -> str:
        endpoint = f", endpoint={self._endpoint!r}" if self._endpoint else ""
        suffix = f", region_suffix={self._suffix!r}" if self._suffix else ""
        return f"DynamoDbMetastore({self._table!r}, region={self._region!r}{endpoint}{suffix})"

    # Internals ---------------------------------------------------------------------------

    def _scan(self, kwargs: dict[str, Any]) -> Any:
        return self._client.scan(**kwargs)

    def _call(self, what: str, key_id: str | None, work: Callable[[], _T]) -> _T:
        if self._closed:
            raise MetastoreError(f"{self._where}: closed")
        try:
            return work()
        except MetastoreError:
            raise
        except ClientError as e:
            code = _code(e)
            hint = ""
            if code == "ResourceNotFoundException":
                hint = "; create the table with DynamoDbMetastore(...).create_table()"
            message = _first_line(e.response.get("Error", {}).get("Message", ""))
            raise MetastoreError(
                f"{self._where}: {what}{_for(key_id)} failed: {code}"
                f"{': ' + message if message else ''}{hint}"
            ) from None
        except (BotoCoreError, OSError, ValueError, TypeError) as e:
            raise MetastoreError(
                f"{self._where}: {what}{_for(key_id)} failed: {type(e).__name__}: {_first_line(e)}"
            ) from None

    def _key(self, key_id: str, created: int) -> dict[str, Any]:
        if isinstance(created, bool) or not isinstance(created, int):
            raise MetastoreError(
                f"{self._where}: created must be an integer (Unix seconds), "
                f"got {type(created).__name__}"
            )
        if created not in _INT64:
            shown = str(created) if abs(created) < 10**40 else f"of {created.bit_length()} bits"
            raise MetastoreError(
                f"{self._where}: created {shown} is out of range: expected Unix seconds that "
                "fit a signed 64-bit integer"
            )
        return {PARTITION_KEY: {"S": key_id}, SORT_KEY: {"N": str(created)}}

    def _item_key(self, item: Mapping[str, Any]) -> tuple[str, int]:
        try:
            key_id = item[PARTITION_KEY]["S"]
            created = int(item[SORT_KEY]["N"])
        except (KeyError, TypeError, ValueError):
            raise MetastoreError(f"{self._where}: an item without a valid Id and Created") from None
        return key_id, created

    def _parse(self, item: Mapping[str, Any], key_id: str) -> EnvelopeKeyRecord:
        try:
            value = _from_attribute(item[RECORD])
            return EnvelopeKeyRecord.from_dict(value, "KeyRecord")
        except KeyError:
            detail = "it has no KeyRecord"
        except (RecordError, ValueError, TypeError) as e:
            detail = f"{e}" if isinstance(e, RecordError) else f"{type(e).__name__}"
        raise MetastoreError(f"{self._where}: the item of {key_id!r} does not parse: {detail}")


_INT64 = range(-(2**63), 2**63)
"""``Created`` as every Asherah reads it (Go's ``int64``)."""


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "ClientError"))


def _for(key_id: str | None) -> str:
    return "" if key_id is None else f" of {key_id!r}"


_USERINFO = re.compile(r"""(?<=://)[^\s"'<>]*@""")
"""The ``user:password@`` of a URL in a message (botocore quotes the endpoint it was given)."""


def _first_line(text: object) -> str:
    """The first line of `text`, at most 200 characters, without any URL's user information."""
    cleaned = _USERINFO.sub("", str(text)).strip()
    return cleaned.splitlines()[0][:200] if cleaned else ""


def _shown_endpoint(table_name: str, endpoint: str | None) -> str | None:
    """The endpoint without any user information (never shown), once it is known to be an
    http(s) URL with a host botocore takes and a port from 0 to 65535: else `MetastoreError`
    naming ``endpoint_url``."""
    if not endpoint:
        return None
    where = f"dynamodb metastore (table {table_name!r}): endpoint_url"
    try:
        parts = urllib.parse.urlsplit(endpoint)
        port = parts.port
    except ValueError:  # an unclosed [ of an IPv6 host, a port out of range
        unparsed = "a URL with an @ (not shown)" if "@" in endpoint else repr(endpoint[:200])
        raise MetastoreError(
            f"{where}: expected http:// or https:// then a host and a port from 0 to 65535, "
            f"got {unparsed}"
        ) from None
    shown = _without_userinfo(parts, port)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MetastoreError(f"{where}: expected an http:// or https:// URL, got {shown!r}")
    if not (is_valid_endpoint_url(endpoint) or is_valid_ipv6_endpoint_url(endpoint)):
        raise MetastoreError(
            f"{where}: botocore refuses {shown!r}: the host must be letters, digits, hyphens "
            "and dots (no underscores) or an IP address, and the URL may hold no tab or line break"
        )
    return shown


def _without_userinfo(parts: urllib.parse.SplitResult, port: int | None) -> str:
    """Scheme, host, port and path: no user information, query or fragment."""
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += "" if port is None else f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _to_attribute(value: Any) -> dict[str, Any]:
    """A JSON value as a DynamoDB attribute value (maps, lists, numbers, strings, bools)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):  # a number read from JSON text keeps that text
        return {"N": str(getattr(value, "text", None) or repr(value))}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): _to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [_to_attribute(v) for v in value]}
    raise TypeError(f"cannot store a {type(value).__name__} in a key record")


def _from_attribute(attribute: Any) -> Any:
    """A DynamoDB attribute value as a JSON value (numbers as int when whole)."""
    if not isinstance(attribute, Mapping) or len(attribute) != 1:
        raise ValueError("not an attribute value")
    ((kind, value),) = attribute.items()
    if kind == "M":
        return {str(k): _from_attribute(v) for k, v in value.items()}
    if kind in ("L", "SS", "NS"):
        return [_from_attribute(v) if kind == "L" else _SCALARS[kind[0]](v) for v in value]
    if kind not in _SCALARS:
        raise ValueError(f"attribute type {kind} is not supported in a key record")
    return _SCALARS[kind](value)


def _number(text: object) -> int | float:
    text = str(text)
    try:
        return int(text)
    except ValueError:
        return float(text)


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "S": str,
    "N": _number,
    "BOOL": bool,
    "NULL": lambda _value: None,
}
