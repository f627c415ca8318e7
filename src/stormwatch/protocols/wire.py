"""Declarative wire layouts: each fixed header is declared once as a table of (name, format).

    NBSS_HEADER = Layout("NBSS header", ">", (("type", "B"), ("flags", "B"), ("length", "H")))
    fields = NBSS_HEADER.unpack(buf, 0)          # tuple in declaration order
    raw = NBSS_HEADER.pack(0x00, 0, len(body))

``unpack`` raises :class:`NeedMoreData` when the buffer is too short, so a caller never indexes
past the end of attacker-supplied bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from stormwatch.protocols.errors import MalformedMessage, NeedMoreData


class Layout:
    """A fixed-size wire structure with named fields."""

    def __init__(self, name: str, endian: str, fields: tuple[tuple[str, str], ...]) -> None:
        self.name = name
        self.names = tuple(n for n, _ in fields)
        self._struct = struct.Struct(endian + "".join(f for _, f in fields))
        self.size = self._struct.size

    def unpack(self, buf: bytes | memoryview, offset: int = 0) -> tuple[Any, ...]:
        if offset < 0 or len(buf) - offset < self.size:
            raise NeedMoreData(self.name, offset + self.size)
        return self._struct.unpack_from(buf, offset)

    def unpack_dict(self, buf: bytes | memoryview, offset: int = 0) -> dict[str, Any]:
        return dict(zip(self.names, self.unpack(buf, offset), strict=True))

    def pack(self, *values: Any) -> bytes:
        return self._struct.pack(*values)


def take(buf: bytes | memoryview, offset: int, length: int, what: str) -> bytes:
    """``length`` bytes at ``offset``, or MalformedMessage if they are not all there (for lengths
    declared inside a complete message, where running short is a lie, not a partial read)."""
    if length < 0 or offset < 0 or offset + length > len(buf):
        raise MalformedMessage(what, "length", offset, f"{length} bytes declared, {max(0, len(buf) - offset)} present")
    return bytes(buf[offset:offset + length])


def utf16z(buf: bytes | memoryview, offset: int, what: str, limit: int = 65536) -> tuple[str, int]:
    """A NUL-terminated UTF-16LE string at ``offset`` → (text, offset after the terminator).
    Unpaired surrogates are kept escaped (attacker data is data)."""
    end = offset
    n = len(buf)
    while end + 1 < n and (buf[end] or buf[end + 1]):
        end += 2
        if end - offset > limit:
            raise MalformedMessage(what, "string", offset, f"longer than {limit} bytes")
    if end + 1 >= n:
        raise MalformedMessage(what, "string", offset, "no terminator")
    return bytes(buf[offset:end]).decode("utf-16-le", "surrogatepass").encode(
        "utf-8", "backslashreplace").decode("utf-8"), end + 2


def asciiz(buf: bytes | memoryview, offset: int, what: str, limit: int = 65536) -> tuple[str, int]:
    """A NUL-terminated 8-bit string (OEM code page: decoded as latin-1) → (text, next offset)."""
    end = bytes(buf[offset:offset + limit + 1]).find(b"\x00")
    if end < 0:
        raise MalformedMessage(what, "string", offset, "no terminator")
    return bytes(buf[offset:offset + end]).decode("latin-1"), offset + end + 1
