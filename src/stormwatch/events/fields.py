"""The building blocks of the catalogue: field types, fields and event types."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa


class FieldType(StrEnum):
    """The value types a field may have, with their Arrow type in :data:`ARROW_TYPES`."""

    TIMESTAMP = "timestamp"  # UTC, microsecond resolution
    STRING = "string"
    IP = "ip"  # IPv4 or IPv6 address in canonical text form (ipaddress.ip_address(...).compressed)
    PORT = "port"  # 0-65535
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    JSON = "json"  # a list or object, kept as JSON (data fields only)


ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.TIMESTAMP: pa.timestamp("us"),
    FieldType.STRING: pa.string(),
    FieldType.IP: pa.string(),
    FieldType.PORT: pa.int32(),
    FieldType.INT: pa.int64(),
    FieldType.FLOAT: pa.float64(),
    FieldType.BOOL: pa.bool_(),
    FieldType.JSON: pa.string(),
}


@dataclass(frozen=True)
class Field:
    """One field of an event: its name, type, documentation and whether it is a store column."""

    name: str
    type: FieldType
    doc: str
    column: bool = False


@dataclass(frozen=True)
class EventType:
    """A dotted event name with its own fields (the common fields come on top)."""

    name: str
    version: int
    doc: str
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        """The field called ``name`` among this type's own fields (common fields excluded)."""
        for f in self.fields:
            if f.name == name:
                return f
        return None
