"""Checks of request fields shared by every service: names, uuids, enums."""

from __future__ import annotations

import functools
import re
import unicodedata
import uuid as uuidlib
from typing import TYPE_CHECKING, TypeVar, cast

from berth.client.errors import InvalidArgument

if TYPE_CHECKING:
    # The stubs' base of every generated enum's metaclass (mypy-protobuf), generic over the
    # enum's ValueType; at run time the class is plain EnumTypeWrapper.
    from google.protobuf.descriptor import EnumDescriptor
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

E = TypeVar("E", bound=int)  # a protobuf enum's ValueType
MAX_NAME = 255


def name(field: str, value: str, *, required: bool = True, max_length: int = MAX_NAME) -> str:
    """A host, binary or aggregate name: 1-255 printable characters."""
    if not value:
        if required:
            raise InvalidArgument.field(field, "must not be empty")
        return value
    if len(value) > max_length:
        raise InvalidArgument.field(
            field, f"must be at most {max_length} characters (got {len(value)})"
        )
    # Printable ASCII (nearly every name) needs no per-character Unicode lookup.
    plain = value.isascii() and value.isprintable()
    if not plain and any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in value
    ):
        raise InvalidArgument.field(field, "must not contain control or unassigned characters")
    if value != value.strip():
        raise InvalidArgument.field(field, "must not start or end with whitespace")
    return value


def text(field: str, value: str, *, max_length: int = MAX_NAME) -> str:
    """Free text such as a disabled reason: printable, bounded, may be empty."""
    if len(value) > max_length:
        raise InvalidArgument.field(
            field, f"must be at most {max_length} characters (got {len(value)})"
        )
    if not (value.isascii() and value.isprintable()) and any(
        unicodedata.category(ch) == "Cc" and ch not in "\t" for ch in value
    ):
        raise InvalidArgument.field(field, "must not contain control characters")
    return value


# The form every Berth client sends: returned as it is, without parsing (a heartbeat's
# only check; UUID() and str() cost several times a match).
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuid(field: str, value: str) -> str:
    """`value` as a canonical (lower-case, hyphenated) UUID, whichever form it came in."""
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise InvalidArgument.field(field, f"must be a UUID (got {value[:64]!r})") from None


def looks_like_uuid(value: str) -> bool:
    try:
        uuidlib.UUID(value)
    except ValueError:
        return False
    return len(value) >= 32


def enum(
    field: str, value: int, enum_type: _EnumTypeWrapper[E], *, allow_unspecified: bool = False
) -> E:
    """Reject unknown numbers (proto3 keeps them) and, unless allowed, the zero value; the
    value as the enum's type (`host_pb2.PowerAction.ValueType`)."""
    descriptor = enum_type.DESCRIPTOR
    if value not in _numbers(descriptor):
        raise InvalidArgument.field(field, f"{value} is not a known {descriptor.name}")
    if value == 0 and not allow_unspecified:
        names = ", ".join(v.name for v in descriptor.values if v.number)
        raise InvalidArgument.field(field, f"must be set: one of {names}")
    return cast(E, value)  # a number of the enum: checked above


@functools.cache
def _numbers(descriptor: EnumDescriptor) -> frozenset[int]:
    """An enum's known numbers (descriptors live as long as the process)."""
    return frozenset(v.number for v in descriptor.values)
