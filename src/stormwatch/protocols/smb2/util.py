"""Small helpers shared by the SMB2 body codecs."""

from __future__ import annotations

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.wire import take


def pad8(offset: int) -> int:
    """The first 8-byte-aligned offset at or after ``offset`` ([MS-SMB2] aligns contexts and compounds)."""
    return offset + (-offset % 8)


def check_size(found: int, expected: int, what: str, offset: int) -> None:
    """[MS-SMB2] 2.2: every body starts with its fixed StructureSize; anything else is not this body."""
    if found != expected:
        raise MalformedMessage(what, "StructureSize", offset, f"{found}, not {expected}")


def utf16(raw: bytes, what: str, field: str, offset: int) -> str:
    """A counted UTF-16LE string (SMB2 strings carry no terminator). Unpaired surrogates are kept
    as escapes, as :func:`stormwatch.protocols.wire.utf16z` does: attacker data is data."""
    if len(raw) % 2:
        raise MalformedMessage(what, field, offset, f"odd UTF-16 length {len(raw)}")
    return raw.decode("utf-16-le", "surrogatepass").encode("utf-8", "backslashreplace").decode("utf-8")


def field(msg: bytes, offset: int, length: int, what: str) -> bytes:
    """A buffer located by (offset from the header, length); an empty one's offset is not checked
    (clients leave 0 or stale values there)."""
    return take(msg, offset, length, what) if length else b""
