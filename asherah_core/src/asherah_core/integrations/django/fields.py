"""`EncryptedTextField` and `EncryptedBinaryField`: a text column of `DataRowRecord` JSON,
plaintext on the model instance, encrypted for the partition named by another field of the row.

- Saving (``save()``, ``create()``, ``bulk_create()``): `pre_save` seals the value with the
  instance's partition, so every save writes it under the current partition (a changed
  partition re-encrypts it). The instance keeps its plaintext.
- Loading: the database value arrives as a `Record`; the model's ``post_init`` signal opens it
  with the partition loaded in the same row. A record of another partition is refused.
- A plaintext that reaches the database without its instance (``QuerySet.update()``,
  ``bulk_update()``, ``save(update_fields=[partition])`` without the encrypted fields) is
  refused with `EncryptedColumnError`: nothing is written.
- Lookups other than ``isnull`` (and ``exact`` with ``None``) raise `FieldError`: encryption is
  randomised, so the database cannot compare values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.core import checks
from django.core.exceptions import FieldError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import signals
from django.db.models.lookups import Exact

from asherah_core.integrations.records import (
    EncryptedColumnError,
    Record,
    Sealed,
    check_partition,
    open_record,
    seal,
)

from .factory import get_factory

__all__ = ["EncryptedBinaryField", "EncryptedTextField"]


def _refusal(label: str, lookup: str) -> str:
    return (
        f"{label}: the lookup {lookup!r} cannot work on an encrypted field. Encryption is "
        "randomised (each value gets its own data row key and nonce), so equal plaintexts give "
        "different records and the database cannot compare, match or sort them. Filter on "
        "another field, or load the rows and compare in Python; only __isnull works."
    )


class _NullOnlyExact(Exact):
    """``field=None`` (which Django turns into ``isnull``); any other value is refused."""

    def __init__(self, lhs: Any, rhs: Any) -> None:
        if rhs is not None:
            raise FieldError(_refusal(_label(lhs.output_field), "exact"))
        super().__init__(lhs, rhs)


def _label(field: Any) -> str:
    model = getattr(field, "model", None)
    if model is None:
        return f"field {getattr(field, 'name', '?')!r}"
    return f"{model._meta.label}.{field.name}"


class _Encrypted:
    """The behaviour both fields share; mixed in before the Django field class."""

    plain_type: ClassVar[type[str] | type[bytes]]
    partition_from: str
    attname: str
    name: str

    def _init_partition(self, partition_from: object) -> None:
        if not isinstance(partition_from, str) or not partition_from:
            raise TypeError(
                f"{type(self).__name__}: partition_from must name another field of the model "
                f"(for example partition_from='tenant'), not {partition_from!r}"
            )
        self.partition_from = partition_from

    def get_internal_type(self) -> str:
        return "TextField"

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()  # type: ignore[misc]
        kwargs["partition_from"] = self.partition_from
        return name, path, args, kwargs

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = super().check(**kwargs)  # type: ignore[misc]
        model = getattr(self, "model", None)
        if model is None:
            return errors
        names = {f.name for f in model._meta.get_fields()}
        if self.partition_from not in names:
            errors.append(
                checks.Error(
                    f"partition_from={self.partition_from!r} is not a field of {model._meta.label}",
                    obj=self,
                    id="asherah.E001",
                )
            )
        elif self.partition_from == self.name or isinstance(
            model._meta.get_field(self.partition_from), _Encrypted
        ):
            errors.append(
                checks.Error(
                    f"partition_from={self.partition_from!r} names an encrypted field; the "
                    "partition must be readable without a key",
                    obj=self,
                    id="asherah.E002",
                )
            )
        return errors

    def contribute_to_class(self, cls: Any, name: str, *args: Any, **kwargs: Any) -> None:
        super().contribute_to_class(cls, name, *args, **kwargs)  # type: ignore[misc]
        if not cls._meta.abstract:
            signals.post_init.connect(_open_loaded, sender=cls, dispatch_uid=_UID, weak=False)
            signals.pre_save.connect(_check_update_fields, sender=cls, dispatch_uid=_UID)

    # Writing ------------------------------------------------------------------------------------

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        if value is None or isinstance(value, Record):
            return value
        label = _label(self)
        partition = check_partition(
            getattr(model_instance, self.partition_from),
            label,
            f"field {self.partition_from!r}",
        )
        return seal(get_factory(), partition, value, label, self.plain_type)

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if value is None:
            return None
        if isinstance(value, Record):
            return str(value)
        raise EncryptedColumnError(
            f"{_label(self)}: a plaintext reached the database without its row's partition "
            "(QuerySet.update(), bulk_update() or an expression cannot encrypt per row); "
            "save the model instances instead. Nothing was written."
        )

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        """Django passes every value of an UPDATE through here, a SQL expression too
        (``update(body=Lower(...))``, ``F("other")``, bulk_update's ``Case``), which Django's
        own method hands back to be compiled as it is, skipping `get_db_prep_value`: the
        database would store what it computes, unencrypted. Refused, naming the field."""
        if hasattr(value, "as_sql") and getattr(value, "value", False) is not None:
            raise EncryptedColumnError(
                f"{_label(self)}: a SQL expression ({type(value).__name__}) is not a value to "
                "seal: the database would store what it computes unencrypted (QuerySet.update() "
                "and bulk_update() cannot encrypt per row); save the model instances instead. "
                "Nothing was written."
            )
        return super().get_db_prep_save(value, connection)  # type: ignore[misc]

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else Record(value)

    # Lookups ------------------------------------------------------------------------------------

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)  # type: ignore[misc]
        if lookup_name == "exact":
            return _NullOnlyExact
        raise FieldError(_refusal(_label(self), lookup_name))

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(_refusal(_label(self), lookup_name))


_UID = "asherah_core.integrations.django"

if TYPE_CHECKING:  # django-stubs makes the field classes generic; Django's own are not
    _TextField = models.TextField[Any, Any]
    _Field = models.Field[Any, Any]
else:
    _TextField = models.TextField
    _Field = models.Field


class EncryptedTextField(_Encrypted, _TextField):
    """A `str` field stored as Asherah `DataRowRecord` JSON, encrypted for the partition named
    by `partition_from` (another field of the same model).

    :param partition_from: the name of the field holding the row's partition id.
    """

    plain_type = str
    description = "Text encrypted per partition (Asherah data row record)"

    def __init__(self, *args: Any, partition_from: str, **kwargs: Any) -> None:
        self._init_partition(partition_from)
        super().__init__(*args, **kwargs)


class EncryptedBinaryField(_Encrypted, _Field):
    """A `bytes` field stored as Asherah `DataRowRecord` JSON, encrypted for the partition
    named by `partition_from`. Not editable in forms by default, like Django's BinaryField.

    :param partition_from: the name of the field holding the row's partition id.
    """

    plain_type = bytes
    description = "Bytes encrypted per partition (Asherah data row record)"

    def __init__(self, *args: Any, partition_from: str, **kwargs: Any) -> None:
        self._init_partition(partition_from)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("editable") is False:
            del kwargs["editable"]
        else:
            kwargs["editable"] = True
        return name, path, args, kwargs


def _encrypted_fields(model: Any) -> list[_Encrypted]:
    return [f for f in model._meta.concrete_fields if isinstance(f, _Encrypted)]


def _open_loaded(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    """Open the records a row was loaded with, using the partition loaded with them."""
    values = instance.__dict__
    for field in _encrypted_fields(sender):
        value = values.get(field.attname)
        if not isinstance(value, Record) or isinstance(value, Sealed):
            continue
        label = _label(field)
        partition = check_partition(
            getattr(instance, field.partition_from), label, f"field {field.partition_from!r}"
        )
        values[field.attname] = open_record(
            get_factory(), partition, value, label, field.plain_type
        )


def _check_update_fields(
    sender: Any, instance: models.Model, update_fields: Any = None, **kwargs: Any
) -> None:
    """``save(update_fields=[...])`` naming a partition field must name the fields encrypted
    under it too, or their records would stay under the old partition."""
    if not update_fields or kwargs.get("raw"):
        return
    for field in _encrypted_fields(sender):
        if field.partition_from in update_fields and field.name not in update_fields:
            raise EncryptedColumnError(
                f"{_label(field)}: save(update_fields=...) names {field.partition_from!r} but "
                f"not {field.name!r}; a new partition re-encrypts the field, so name both. "
                "Nothing was written."
            )
