"""Capture file containers: classic pcap and pcapng, walked record by record.

A container turns a buffer of capture bytes into :class:`Records` — for every packet its number in
the file, where its bytes start in the buffer, how many were captured, its timestamp (epoch
microseconds) and its link type — without looking inside the packets. The walk is the only
per-packet Python loop of the pcap reader, so it does as little as it can per record: classic
pcap reads one length per record and gathers the other header fields afterwards with numpy.

Formats:

- classic pcap: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html (and the
  "modified" Kuznetzov variant, magic ``a1b2cd34``, whose record header is 8 bytes longer);
- pcapng: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html — Section Header
  (4.1), Interface Description with ``if_tsresol``/``if_tsoffset`` (4.2), Enhanced Packet (4.3),
  Simple Packet (4.4) and the obsolete Packet Block (Appendix A); every other block is skipped.

A buffer may end inside a record: the walk stops before it and reports how far it got, so the
caller can read more and walk again. Framing that cannot be right (a length no capture tool
writes, disagreeing pcapng length fields) is *damage*: the walk stops there and names it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from stormwatch.errors import InputError

I64 = npt.NDArray[np.int64]

# Magic number (as file bytes) → (byte order, nanosecond timestamps, record header length).
PCAP_MAGICS: dict[bytes, tuple[str, bool, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", False, 16),
    b"\xa1\xb2\xc3\xd4": (">", False, 16),
    b"\x4d\x3c\xb2\xa1": ("<", True, 16),
    b"\xa1\xb2\x3c\x4d": (">", True, 16),
    b"\x34\xcd\xb2\xa1": ("<", False, 24),  # "modified" pcap (Kuznetzov patches)
    b"\xa1\xb2\xcd\x34": (">", False, 24),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"  # Section Header Block type, a palindrome: same in both orders
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}

# Wireshark refuses records above 256 KiB unless the snapshot length says more; a larger claim
# in a real capture means the framing is lost, so it is damage rather than a huge packet.
STANDARD_MAX_PACKET = 262_144
MAX_PACKET = 16 * 1024 * 1024  # no capture tool writes a packet above this
MAX_BLOCK = 64 * 1024 * 1024  # a pcapng block larger than this is damage, not data

_EPB, _SPB, _OPB, _IDB = 6, 3, 2, 1


@dataclass
class Records:
    """The packets found in one buffer, one array element per packet."""

    frame: I64  # 1-based packet number in the file
    off: I64  # where the packet's bytes start in the buffer
    caplen: I64  # captured bytes
    ts: I64  # epoch microseconds
    link: I64  # link type (LINKTYPE_* number)
    # Packets whose framing is intact but that cannot be used: (frame, reason, data offset, length).
    bad: list[tuple[int, str, int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame) + len(self.bad)


@dataclass
class Walk:
    """Result of walking a buffer: its records, where the walk stopped, and damage if any."""

    records: Records
    used: int  # offset of the first byte not consumed (an incomplete record starts there)
    damage: str | None = None  # why the framing is lost at ``used``


def sniff_container(head: bytes) -> str | None:
    """``"pcap"``, ``"pcapng"`` or None from the first bytes of a file."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_SHB and head[8:12] in _BOM:
        return "pcapng"
    return None


def _empty() -> I64:
    return np.zeros(0, np.int64)


class ClassicPcap:
    """A classic pcap file: a 24-byte header, then (record header, packet bytes) pairs."""

    header_len = 24

    def __init__(self, header: bytes) -> None:
        if len(header) < 24 or header[:4] not in PCAP_MAGICS:
            raise InputError("not a pcap file header")
        self.order, self.nanos, self.rec_len = PCAP_MAGICS[header[:4]]
        snaplen, network = struct.unpack_from(self.order + "II", header, 16)
        # Bits 16-31 of the link-type field carry FCS information (pcap draft, section 4).
        self.link = network & 0xFFFF
        self.limit = max(STANDARD_MAX_PACKET, min(snaplen, MAX_PACKET))
        self._incl = struct.Struct(self.order + "I").unpack_from

    def _u32(self, buf: bytes) -> npt.NDArray[np.uint32]:
        """``buf`` as 4-byte integers in the file's byte order at every byte offset."""
        size = max(len(buf) - 3, 0)
        return np.ndarray((size,), np.dtype(self.order + "u4"), buf, 0, (1,))

    def walk(self, buf: bytes, start: int, first_frame: int) -> Walk:
        hdr, incl_at, limit, unpack = self.rec_len, 8, self.limit, self._incl
        offs: list[int] = []
        append = offs.append
        off, last, damage = start, len(buf) - hdr, None
        while off <= last:
            incl = unpack(buf, off + incl_at)[0]
            if incl > limit:
                damage = f"record claims {incl} captured bytes (more than {limit})"
                break
            append(off)
            off += hdr + incl
        if damage is None and offs and off > len(buf):  # only the last record can overrun
            off = offs.pop()
        h = np.array(offs, dtype=np.int64)
        n = len(h)
        if n == 0:
            return Walk(Records(_empty(), _empty(), _empty(), _empty(), _empty()), off, damage)
        # Each record ends where the next begins: the captured lengths need no second read.
        caplen = np.empty(n, dtype=np.int64)
        caplen[:-1] = h[1:] - h[:-1] - hdr
        caplen[-1] = off - h[-1] - hdr
        sec = self._u32(buf)[h].astype(np.int64)
        frac = self._u32(buf)[h + 4].astype(np.int64)
        ts = sec * 1_000_000 + (frac // 1000 if self.nanos else frac)
        frame = np.arange(first_frame, first_frame + n, dtype=np.int64)
        link = np.full(n, self.link, dtype=np.int64)
        return Walk(Records(frame, h + hdr, caplen, ts, link), off, damage)


@dataclass
class _Interface:
    link: int
    snaplen: int
    tsresol: int = 6  # decimal exponent, or 0x80 | binary exponent (pcapng 4.2, if_tsresol)
    tsoffset: int = 0  # seconds added to every timestamp (if_tsoffset)


class PcapNg:
    """A pcapng file: sections of typed blocks, each section with its own byte order and
    interfaces. Packet numbers count Enhanced, Simple and obsolete Packet Blocks across sections."""

    header_len = 0  # the Section Header Block is walked like any other block

    def __init__(self) -> None:
        self.order = ""  # of the current section; empty before the first SHB
        self.interfaces: list[_Interface] = []  # every interface of the file, all sections
        self.section_base = 0  # index in self.interfaces of the current section's interface 0
        self.last_ts = 0  # for Simple Packet Blocks, which carry no timestamp

    def walk(self, buf: bytes, start: int, first_frame: int) -> Walk:
        frames: list[int] = []
        offs: list[int] = []
        caps: list[int] = []
        ifaces: list[int] = []
        raw_ts: list[int] = []  # in the interface's units; 0 for Simple Packet Blocks
        spb: list[int] = []  # positions (in the lists above) of Simple Packet Blocks
        bad: list[tuple[int, str, int, int]] = []
        frame = first_frame
        off, n = start, len(buf)
        damage: str | None = None
        while off + 12 <= n:
            btype_b = buf[off:off + 4]
            if btype_b == PCAPNG_SHB:
                order = _BOM.get(buf[off + 8:off + 12])
                if order is None:
                    damage = "section header with an unknown byte-order mark"
                    break
            elif not self.order:
                damage = "pcapng data before any section header"
                break
            else:
                order = self.order
            btype, blen = struct.unpack_from(order + "II", buf, off)
            if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                damage = f"pcapng block of type {btype:#x} claims length {blen}"
                break
            if off + blen > n:
                break  # incomplete: wait for more bytes
            if struct.unpack_from(order + "I", buf, off + blen - 4)[0] != blen:
                damage = f"pcapng block of type {btype:#x}: its two length fields disagree"
                break
            body_end = off + blen - 4
            if btype_b == PCAPNG_SHB:
                self.order = order
                self.section_base = len(self.interfaces)
            elif btype in (_EPB, _OPB):
                if blen < 32:
                    damage = f"pcapng packet block of length {blen} is too short"
                    break
                if btype == _EPB:
                    ifid, hi, lo, cap = struct.unpack_from(order + "IIII", buf, off + 8)
                else:
                    ifid, _drops, hi, lo, cap = struct.unpack_from(order + "HHIII", buf, off + 8)
                data = off + 28
                gid = self.section_base + ifid
                if data + cap > body_end:
                    bad.append((frame, "captured length exceeds its block", data, body_end - data))
                elif gid >= len(self.interfaces):
                    bad.append((frame, f"packet on undeclared interface {ifid}", data, cap))
                else:
                    frames.append(frame)
                    offs.append(data)
                    caps.append(cap)
                    ifaces.append(gid)
                    raw_ts.append(hi << 32 | lo)
                frame += 1
            elif btype == _SPB:
                orig = struct.unpack_from(order + "I", buf, off + 8)[0]
                if self.section_base >= len(self.interfaces):
                    bad.append((frame, "simple packet block without an interface", off + 12, 0))
                else:
                    snap = self.interfaces[self.section_base].snaplen or orig
                    frames.append(frame)
                    offs.append(off + 12)
                    caps.append(min(orig, snap, body_end - off - 12))
                    ifaces.append(self.section_base)
                    spb.append(len(raw_ts))
                    raw_ts.append(0)
                frame += 1
            elif btype == _IDB:
                if blen < 20:
                    damage = f"pcapng interface block of length {blen} is too short"
                    break
                self.interfaces.append(self._interface(buf, off, body_end, order))
            off += blen
        return Walk(self._records(frames, offs, caps, ifaces, raw_ts, spb, bad), off, damage)

    @staticmethod
    def _interface(buf: bytes, off: int, body_end: int, order: str) -> _Interface:
        link, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, off + 8)
        iface = _Interface(link, snaplen)
        p = off + 16
        while p + 4 <= body_end:  # options: code, length, value padded to 4 bytes
            code, olen = struct.unpack_from(order + "HH", buf, p)
            if code == 0 or p + 4 + olen > body_end:
                break
            if code == 9 and olen >= 1:
                iface.tsresol = buf[p + 4]
            elif code == 14 and olen >= 8:
                iface.tsoffset = struct.unpack_from(order + "q", buf, p + 4)[0]
            p += 4 + (olen + 3) // 4 * 4
        return iface

    def _records(self, frames: list[int], offs: list[int], caps: list[int], ifaces: list[int],
                 raw_ts: list[int], spb: list[int], bad: list[tuple[int, str, int, int]]) -> Records:
        iface = np.array(ifaces, dtype=np.int64)
        ts = np.zeros(len(frames), dtype=np.int64)
        raw = np.array(raw_ts, dtype=np.uint64)
        # Timestamps are 64-bit counts of the interface's resolution (4.2): convert per interface.
        for gid in np.unique(iface).tolist():
            m = iface == gid
            ts[m] = _to_micros(raw[m], self.interfaces[gid])
        if spb:  # carry the last known timestamp forward into Simple Packet Blocks
            idx = np.arange(len(ts))
            idx[spb] = -1
            idx = np.maximum.accumulate(idx)
            ts = np.where(idx >= 0, ts[np.maximum(idx, 0)], self.last_ts)
        if len(ts):
            self.last_ts = int(ts[-1])
        link = np.array([self.interfaces[g].link for g in ifaces], dtype=np.int64)
        return Records(np.array(frames, dtype=np.int64), np.array(offs, dtype=np.int64),
                       np.array(caps, dtype=np.int64), ts, link, bad)


def _to_micros(raw: npt.NDArray[np.uint64], iface: _Interface) -> I64:
    """Timestamps in units of ``iface``'s resolution → epoch microseconds. An exponent no clock
    has (beyond 10^-18 or 2^-63) is read as the default, microseconds."""
    r = iface.tsresol
    offset = (iface.tsoffset * 1_000_000 + 2**63) % 2**64 - 2**63  # wrapped into int64, like the rest
    if r & 0x80 and (r & 0x7F) <= 63:
        k = np.uint64(r & 0x7F)
        whole = (raw >> k) * np.uint64(1_000_000)
        part = ((raw & ((np.uint64(1) << k) - np.uint64(1))).astype(np.float64) * 1e6 / 2.0 ** int(k))
        return (whole.astype(np.int64) + part.astype(np.int64)) + offset
    if not r & 0x80 and r <= 18:
        if r >= 6:
            return (raw // np.uint64(10 ** (r - 6))).astype(np.int64) + offset
        return (raw * np.uint64(10 ** (6 - r))).astype(np.int64) + offset
    return raw.astype(np.int64) + offset
