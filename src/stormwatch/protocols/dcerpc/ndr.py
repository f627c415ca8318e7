"""A bounded NDR reader and a small NDR writer ([C706] chapter 14, transfer syntax NDR 2.0).

Reading attacker stubs:

    r = NdrReader(stub, little_endian=pdu.header.little_endian)
    server = r.unique(r.wstring)            # [in, unique, string] wchar_t*  → NdrString | None
    path = r.wstring()                      # [in, string] wchar_t* (top-level ref: no referent id)
    outbuf_len = r.u32()

Alignment is relative to the start of the stub ([C706] 14.2.2: the stub body begins aligned to 8).
Both integer byte orders are read (the PDU's data representation says which); floating point and
EBCDIC characters are not (no decoder here needs them). Every declared count is kept as evidence:
a conformant-varying string whose ``actual_count`` exceeds its ``max_count`` is what an overflow
exploit looks like, so the reader records it (:attr:`NdrString.consistent`) instead of refusing it.
What the reader refuses, as :class:`MalformedMessage` naming the limit, is work it cannot bound:
more string units, array elements or nesting than :class:`NdrLimits` allows, or bytes that are
not there.

Embedded pointers ([C706] 14.3.12.3) have their pointees deferred until the end of the enclosing
top-level construct, in the order the pointers appeared; a pointee's own embedded pointees follow
it (the depth-first order MIDL and impacket produce). :meth:`NdrReader.deferring` opens such a
construct and :meth:`NdrReader.defer` queues a pointee reader; :class:`NdrWriter` mirrors both.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from stormwatch.protocols.dcerpc.interfaces import uuid_from_wire, uuid_to_wire
from stormwatch.protocols.errors import MalformedMessage

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NdrLimits:
    """Bounds on what one stub may make the reader do; each violation names its limit."""

    max_string_units: int = 65536  # 128 KiB of UTF-16: far above MAX_PATH, far below the stub limit
    max_array_elements: int = 65536
    max_depth: int = 32  # nested deferred constructs / structures
    max_pointers: int = 65536  # referents followed in one stub


DEFAULT_LIMITS = NdrLimits()


@dataclass(frozen=True, slots=True)
class NdrString:
    """A [string] conformant-varying array ([C706] 14.3.4.4): the declared counts as sent, the raw
    bytes (``actual_count`` units of ``unit`` bytes, NOT necessarily NUL-terminated) and the text.

    ``text`` drops one trailing NUL if there is one and keeps unpaired surrogates escaped; exploit
    shellcode in a "string" survives only in ``raw``."""

    max_count: int
    offset: int
    actual_count: int
    raw: bytes
    unit: int  # 2 for wchar_t, 1 for char
    text: str
    offset_at: int  # where the string's counts start in the stub (evidence for the detectors)

    @property
    def byte_length(self) -> int:
        return len(self.raw)

    @property
    def terminated(self) -> bool:
        return len(self.raw) >= self.unit and self.raw[-self.unit:] == b"\x00" * self.unit

    @property
    def consistent(self) -> bool:
        """The counts obey [C706] 14.3.3.4 (offset + actual ≤ max); Windows' strict NDR rejects
        anything else, so an inconsistent string is a crafted one."""
        return self.offset + self.actual_count <= self.max_count


def _decode_units(raw: bytes, unit: int, little_endian: bool) -> str:
    if unit == 1:
        text = raw.decode("latin-1")
        return text[:-1] if text.endswith("\x00") else text
    codec = "utf-16-le" if little_endian else "utf-16-be"
    text = raw.decode(codec, "surrogatepass").encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:-1] if text.endswith("\x00") else text


class NdrReader:
    """Reads NDR primitives from ``buf``; ``pos`` is the offset of the next byte."""

    def __init__(self, buf: bytes, *, little_endian: bool = True, limits: NdrLimits = DEFAULT_LIMITS,
                 what: str = "NDR stub") -> None:
        self.buf = buf
        self.pos = 0
        self.little_endian = little_endian
        self.limits = limits
        self.what = what
        self._e = "<" if little_endian else ">"
        self._depth = 0
        self._pointers = 0
        self._deferred: list[list[Callable[[], None]]] = []
        self._full: set[int] = set()

    # -- errors and bounds ------------------------------------------------------------------------

    def fail(self, field: str, detail: str, offset: int | None = None) -> MalformedMessage:
        return MalformedMessage(self.what, field, self.pos if offset is None else offset, detail)

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int, field: str = "bytes") -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(field, f"{n} bytes needed, {self.remaining()} left in the stub")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def align(self, n: int) -> None:
        pad = -self.pos % n
        if pad:
            self.take(pad, "alignment padding")

    # -- primitives ([C706] 14.2) ---------------------------------------------------------------

    def _num(self, fmt: str, size: int, field: str) -> int:
        self.align(size)
        value: int = struct.unpack(self._e + fmt, self.take(size, field))[0]
        return value

    def u8(self, field: str = "small") -> int:
        return self.take(1, field)[0]

    def u16(self, field: str = "short") -> int:
        return self._num("H", 2, field)

    def u32(self, field: str = "long") -> int:
        return self._num("I", 4, field)

    def i32(self, field: str = "long") -> int:
        return self._num("i", 4, field)

    def u64(self, field: str = "hyper") -> int:
        return self._num("Q", 8, field)

    def uuid(self, field: str = "GUID") -> uuid.UUID:
        """A GUID: a structure of long, short, short, byte[8] (aligned to 4)."""
        self.align(4)
        at = self.pos
        self.take(16, field)
        return uuid_from_wire(self.buf, at, self.little_endian)

    # -- pointers ([C706] 14.3.10-12) ------------------------------------------------------------

    def referent(self, field: str = "referent id") -> int:
        """A pointer's referent id (0 is NULL); counts against ``max_pointers``."""
        ref = self.u32(field)
        if ref:
            self._pointers += 1
            if self._pointers > self.limits.max_pointers:
                raise self.fail(field, f"more than max_pointers={self.limits.max_pointers} referents")
        return ref

    def unique(self, read: Callable[[], T], field: str = "unique pointer") -> T | None:
        """A top-level [unique] pointer: referent id, then (if not NULL) the pointee at once."""
        return read() if self.referent(field) else None

    def full(self, read: Callable[[], T], field: str = "full pointer") -> tuple[int, T | None]:
        """A top-level [ptr] (full) pointer: a referent id seen before aliases the earlier pointee,
        which is not sent again; returns (referent id, pointee or None)."""
        ref = self.referent(field)
        if not ref or ref in self._full:
            return ref, None
        self._full.add(ref)
        return ref, read()

    def embedded_unique(self, read: Callable[[], T], sink: Callable[[T | None], None],
                        field: str = "embedded pointer") -> None:
        """An embedded [unique] pointer: its referent now, its pointee deferred; ``sink`` receives
        the pointee (or None) when the enclosing construct's deferred pointees are read."""
        if self.referent(field):
            self.defer(lambda: sink(read()))
        else:
            sink(None)

    @contextmanager
    def deferring(self, field: str = "construct") -> Iterator[None]:
        """Reads inside the block form one construct; pointees deferred inside it are read when
        it ends, each in its own nested construct (depth-first)."""
        self._depth += 1
        if self._depth > self.limits.max_depth:
            raise self.fail(field, f"nesting deeper than max_depth={self.limits.max_depth}")
        self._deferred.append([])
        try:
            yield
            queue = self._deferred[-1]
            while queue:
                fn = queue.pop(0)
                with self.deferring(field):
                    fn()
        finally:
            self._deferred.pop()
            self._depth -= 1

    def defer(self, fn: Callable[[], None]) -> None:
        if not self._deferred:  # a top-level pointee is not deferred
            fn()
        else:
            self._deferred[-1].append(fn)

    # -- arrays and strings ([C706] 14.3.3-4) ------------------------------------------------------

    def count(self, field: str, limit: int, limit_name: str) -> int:
        n = self.u32(field)
        if n > limit:
            raise self.fail(field, f"{n} exceeds {limit_name}={limit}", self.pos - 4)
        return n

    def conformant_array(self, read: Callable[[], T], field: str = "conformant array") -> list[T]:
        """max_count, then that many elements."""
        n = self.count(f"{field} max_count", self.limits.max_array_elements, "max_array_elements")
        return [read() for _ in range(n)]

    def varying_array(self, read: Callable[[], T], field: str = "conformant varying array",
                      ) -> tuple[int, int, list[T]]:
        """max_count, offset, actual_count, then actual_count elements → (max, offset, elements)."""
        max_count = self.u32(f"{field} max_count")
        offset = self.u32(f"{field} offset")
        n = self.count(f"{field} actual_count", self.limits.max_array_elements, "max_array_elements")
        return max_count, offset, [read() for _ in range(n)]

    def conformant_bytes(self, field: str = "byte array") -> bytes:
        """A conformant array of bytes (size_is)."""
        n = self.count(f"{field} max_count", self.limits.max_array_elements, "max_array_elements")
        return self.take(n, field)

    def _string(self, unit: int, field: str) -> NdrString:
        self.align(4)
        at = self.pos
        max_count = self.u32(f"{field} max_count")
        offset = self.u32(f"{field} offset")
        actual = self.count(f"{field} actual_count", self.limits.max_string_units, "max_string_units")
        raw = self.take(actual * unit, field)
        return NdrString(max_count, offset, actual, raw, unit, _decode_units(raw, unit, self.little_endian), at)

    def wstring(self, field: str = "wchar_t string") -> NdrString:
        """A [string] wchar_t conformant-varying string (UTF-16 in the stub's byte order)."""
        return self._string(2, field)

    def cstring(self, field: str = "char string") -> NdrString:
        """A [string] char conformant-varying string (8-bit, decoded as latin-1)."""
        return self._string(1, field)


class NdrWriter:
    """Builds little-endian NDR; referent ids count up from 0x00020000 by 4 as Windows' do."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._next_ref = 0x00020000
        self._deferred: list[list[Callable[[], None]]] = []

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    def align(self, n: int) -> None:
        self.buf += b"\x00" * (-len(self.buf) % n)

    def raw(self, data: bytes) -> None:
        self.buf += data

    def u16(self, v: int) -> None:
        self.align(2)
        self.buf += struct.pack("<H", v)

    def u32(self, v: int) -> None:
        self.align(4)
        self.buf += struct.pack("<I", v)

    def u64(self, v: int) -> None:
        self.align(8)
        self.buf += struct.pack("<Q", v)

    def uuid(self, v: uuid.UUID | str) -> None:
        self.align(4)
        self.buf += uuid_to_wire(v)

    def referent(self, present: bool = True) -> None:
        if present:
            self.u32(self._next_ref)
            self._next_ref += 4
        else:
            self.u32(0)

    @contextmanager
    def deferring(self) -> Iterator[None]:
        self._deferred.append([])
        try:
            yield
            queue = self._deferred[-1]
            while queue:
                fn = queue.pop(0)
                with self.deferring():
                    fn()
        finally:
            self._deferred.pop()

    def defer(self, fn: Callable[[], None]) -> None:
        if not self._deferred:
            fn()
        else:
            self._deferred[-1].append(fn)

    def embedded_wstring(self, text: str | None) -> None:
        """An embedded [unique, string] wchar_t*: referent now, string deferred (None → NULL)."""
        self.referent(text is not None)
        if text is not None:
            self.defer(lambda: self.wstring(text))

    def wstring(self, text: str, terminate: bool = True) -> None:
        """A conformant-varying UTF-16LE string, NUL-terminated by default."""
        data = text.encode("utf-16-le") + (b"\x00\x00" if terminate else b"")
        n = len(data) // 2
        self.u32(n)
        self.u32(0)
        self.u32(n)
        self.buf += data

    def conformant_bytes(self, data: bytes) -> None:
        self.u32(len(data))
        self.buf += data
