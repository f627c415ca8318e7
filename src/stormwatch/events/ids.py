"""Event ids: what makes an ingest idempotent.

An event's id is the 128-bit MD5 of ``event + "\\0" + sensor + "\\0" + key`` (UTF-8), read as a
little-endian number: exactly DuckDB's ``md5_number()`` of that text, which is how the store
computes it for batches that bring no ids (:mod:`stormwatch.store.db`). A reader that hashes
faster itself (the compiled iptables path) hands the id over as two unsigned 64-bit columns,
:data:`ID_FIELDS`, after the columns of :func:`~stormwatch.events.arrow_schema`; a row whose
``id_lo`` is null gets its id from the store as usual. Both ways give the same number for the
same event, so a file read by either path is never stored twice.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from stormwatch.events.catalogue import arrow_schema

ID_FIELDS: tuple[pa.Field, ...] = (pa.field("id_lo", pa.uint64()), pa.field("id_hi", pa.uint64()))


def id_prefix(event: str, sensor: str) -> bytes:
    """The bytes hashed before the key."""
    return event.encode() + b"\0" + sensor.encode() + b"\0"


def event_id(event: str, sensor: str, key: str) -> int:
    """The reference id of one event (``md5_number`` of the same text)."""
    digest = hashlib.md5(id_prefix(event, sensor) + key.encode(), usedforsecurity=False)
    return int.from_bytes(digest.digest(), "little")


def split_id(value: int) -> tuple[int, int]:
    """``(id_lo, id_hi)`` of an id."""
    return value & 0xFFFF_FFFF_FFFF_FFFF, value >> 64


def schema_with_ids() -> pa.Schema:
    """:func:`~stormwatch.events.arrow_schema` followed by :data:`ID_FIELDS`."""
    schema = arrow_schema()
    for f in ID_FIELDS:
        schema = schema.append(f)
    return schema
