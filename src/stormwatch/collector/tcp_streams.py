"""TCP segments out of a capture, and each direction of a connection put back in order.

:func:`capture_segments` reads a pcap or pcapng file with the same container walker and
vectorised header decoders as the ``pcap`` reader (:mod:`stormwatch.ingest.pcap_container`,
:mod:`stormwatch.ingest.pcap_decode`) and yields, in packet order, the TCP segments the replay
wants: every segment to or from TCP 135, 139 or 445, and every segment of a connection on another
port whose first client bytes are a DCE/RPC bind ([C706] 12.6.4.3: version 5.0, PTYPE 11) — the
dynamic RPC endpoints an endpoint-mapper lookup hands out, found by their content as Zeek finds
them. The choice is made with numpy over each block of packets; only the chosen ones reach Python.
Non-first IPv4/IPv6 fragments carry no TCP header and are not reassembled.

:class:`HalfStream` is one direction of a connection in sequence-number order (RFC 9293 3.4:
32-bit sequence space, compared modulo 2**32 around the next expected byte):

* a SYN fixes the start (ISN + 1); a direction seen without its SYN (a capture that begins
  mid-connection) starts at its first payload;
* retransmissions and the already-delivered part of overlapping segments are dropped (the first
  copy of a byte wins);
* a segment beyond the next expected byte waits, at most ``max_held`` bytes per direction and
  ``Budget.limit`` bytes for all connections together; more, or an acknowledgement from the peer
  for bytes the capture never showed (the packet was lost to the capture, not to the receiver), is
  a *gap*: the direction cannot be followed reliably any further and delivers nothing more.
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from stormwatch.errors import InputError
from stormwatch.ingest.base import Source
from stormwatch.ingest.pcap_container import ClassicPcap, PcapNg, Records, sniff_container

# The pcap reader's decoders, used as it uses them (decode() itself keeps only SYN/RST segments).
from stormwatch.ingest.pcap_decode import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    TCP,
    IpHeaders,
    Words,
    decode_ipv4,
    decode_ipv6,
    decode_link,
)

SERVICE_PORTS = np.array([135, 139, 445], dtype=np.int64)
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
BLOCK_BYTES = 8 * 1024 * 1024  # as the pcap reader reads
READ_PIECE = 4 * 1024 * 1024
MAX_DYNAMIC_FLOWS = 1 << 16  # port pairs of DCE/RPC connections on other ports, most recent kept
_SEQ_MOD, _HALF = 1 << 32, 1 << 31


@dataclass(slots=True)
class Segment:
    """One TCP segment: packet number, time (epoch microseconds), addresses, header, payload."""

    frame: int
    ts: int
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes


@functools.lru_cache(maxsize=1 << 14)
def _ip4(word: int) -> str:
    return str(ipaddress.IPv4Address(word))


@functools.lru_cache(maxsize=1 << 14)
def _ip6(raw: bytes) -> str:
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else ip.compressed


def ip_layer(buf: bytes, rec: Records) -> tuple[IpHeaders, Words]:
    """The network layer of every packet of ``rec``, in packet order (the first half of
    :func:`stormwatch.ingest.pcap_decode.decode`)."""
    w = Words(buf)
    n = len(rec.frame)
    end = rec.off + rec.caplen
    l3 = rec.off.copy()
    et = np.zeros(n, dtype=np.int64)
    why = np.zeros(n, dtype=np.int64)
    for link in np.unique(rec.link).tolist():
        decode_link(w, link, np.flatnonzero(rec.link == link), end, l3, et, why)
    v4 = decode_ipv4(w, np.flatnonzero((et == ETHERTYPE_IPV4) & (why == 0)), l3, end, why)
    v6 = decode_ipv6(buf, w, np.flatnonzero((et == ETHERTYPE_IPV6) & (why == 0)), l3, end, why)
    if len(v6.idx) == 0:
        return v4, w
    cols = [np.concatenate([getattr(v4, f), getattr(v6, f)]) for f in IpHeaders.__dataclass_fields__]
    order = np.argsort(cols[0], kind="stable")
    return IpHeaders(*(c[order] for c in cols)), w


def _segments(buf: bytes, rec: Records, dynamic: OrderedDict[int, None]) -> list[Segment]:
    if not len(rec.frame):
        return []
    ip, w = ip_layer(buf, rec)
    tcp = np.flatnonzero((ip.proto == TCP) & ip.first & (ip.l4end - ip.l4 >= 20))
    l4, l4end, l3, fam, idx = ip.l4[tcp], ip.l4end[tcp], ip.l3[tcp], ip.fam[tcp], ip.idx[tcp]
    ports = w.u32[l4].astype(np.int64)
    sport, dport = ports >> 16, ports & 0xFFFF
    off_flags = w.be16(l4 + 12)
    data = l4 + (off_flags >> 12) * 4
    good = (off_flags >= 0x5000) & (data <= l4end)
    size = l4end - data
    bind = np.zeros(len(tcp), dtype=np.bool_)
    probe = np.flatnonzero(good & (size >= 16))
    at = data[probe]
    bind[probe] = (w.u8[at] == 5) & (w.u8[at + 1] == 0) & (w.u8[at + 2] == 11)
    service = np.isin(sport, SERVICE_PORTS) | np.isin(dport, SERVICE_PORTS)
    pair = sport << 16 | dport
    for p in np.unique(pair[bind & ~service]).tolist():
        for key in (p, (p & 0xFFFF) << 16 | p >> 16):
            dynamic[key] = None
            dynamic.move_to_end(key)
    while len(dynamic) > MAX_DYNAMIC_FLOWS:
        dynamic.popitem(last=False)
    keep = good & service
    if dynamic:
        keep |= good & np.isin(pair, np.fromiter(dynamic, dtype=np.int64, count=len(dynamic)))
    out: list[Segment] = []
    u32 = w.u32
    for i in np.flatnonzero(keep).tolist():
        o3, o4 = int(l3[i]), int(l4[i])
        if fam[i] == 4:
            src, dst = _ip4(int(u32[o3 + 12])), _ip4(int(u32[o3 + 16]))
        else:
            src, dst = _ip6(buf[o3 + 8:o3 + 24]), _ip6(buf[o3 + 24:o3 + 40])
        d = int(data[i])
        out.append(Segment(int(rec.frame[idx[i]]), int(rec.ts[idx[i]]), src, int(sport[i]), dst, int(dport[i]),
                           int(u32[o4 + 4]), int(u32[o4 + 8]), int(off_flags[i]) & 0xFF, buf[d:int(l4end[i])]))
    return out


def capture_segments(src: Source) -> Iterator[Segment]:
    """The replay's TCP segments of a capture, in packet order. Reading stops quietly where the
    file is damaged or cut (the ``pcap`` reader reports that); a file that is no capture at all is
    an :class:`~stormwatch.errors.InputError`."""
    dynamic: OrderedDict[int, None] = OrderedDict()
    for buf, records in capture_blocks(src):
        yield from _segments(buf, records, dynamic)


def capture_blocks(src: Source) -> Iterator[tuple[bytes, Records]]:
    """The capture read in blocks of about BLOCK_BYTES: each block's bytes and its packet records
    (frame numbers counted across blocks). Stops quietly where the file is damaged or cut; a file
    that is no capture at all is an :class:`~stormwatch.errors.InputError`."""
    with src.open() as f:
        head = _read(f, 24)
        kind = sniff_container(head)
        if kind is None:
            raise InputError(f"{src.path}: not a pcap or pcapng capture")
        container: ClassicPcap | PcapNg
        if kind == "pcap":
            if len(head) < 24:
                return
            container, pending = ClassicPcap(head), b""
        else:
            container, pending = PcapNg(), head
        frame = 1
        while True:
            data = _read(f, BLOCK_BYTES)
            buf = pending + data if pending else data
            walk = container.walk(buf, 0, frame)
            frame += len(walk.records)
            yield buf, walk.records
            pending = buf[walk.used:]
            if walk.damage is not None or not data:
                return


def _read(f: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes. Read in pieces (``read1``) so that the bytes decompressed before a gzip
    stream breaks off are kept; the break, or an I/O error, ends the input there."""
    parts: list[bytes] = []
    got = 0
    read = getattr(f, "read1", f.read)
    try:
        while got < n:
            piece = read(min(n - got, READ_PIECE))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    except (OSError, EOFError, zlib.error):
        pass  # damaged: what was read is used, and the next read returns nothing
    return b"".join(parts)


class Budget:
    """Bytes waiting behind holes in all streams together."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class HalfStream:
    """One direction of a TCP connection in sequence order (see the module docstring). Positions
    are sequence numbers unwrapped into Python integers around :attr:`next`."""

    __slots__ = ("acked", "budget", "delivered", "gap", "held", "held_bytes", "isn", "max_held", "next",
                 "positions", "syn")

    def __init__(self, budget: Budget, max_held: int) -> None:
        self.budget = budget
        self.max_held = max_held
        self.next: int | None = None  # position of the next byte to deliver
        self.isn: int | None = None  # the SYN's sequence number, when seen
        self.syn = False
        self.held: dict[int, bytes] = {}  # out-of-order segments by position
        self.positions: list[int] = []  # heap of held positions
        self.held_bytes = 0
        self.acked: int | None = None  # highest position the peer acknowledged
        self.delivered = 0
        self.gap: str | None = None  # why this direction stopped, once it has

    def start_syn(self, seq: int) -> None:
        """A SYN: the data starts after its sequence number (RFC 9293 3.4.1)."""
        if self.next is None:
            self.isn, self.syn, self.next = seq, True, (seq + 1) % _SEQ_MOD

    def _pos(self, seq: int) -> int:
        assert self.next is not None
        d = (seq - self.next) % _SEQ_MOD
        return self.next + (d - _SEQ_MOD if d >= _HALF else d)

    @property
    def waiting(self) -> int:
        """Bytes held behind a hole."""
        return self.held_bytes

    def add(self, seq: int, data: bytes) -> bytes:
        """The bytes that ``data`` at ``seq`` makes deliverable, in order (often ``data`` itself)."""
        if self.gap is not None or not data:
            return b""
        if self.next is None:
            self.next = seq  # mid-stream: the first payload seen is where the stream starts
        pos = self._pos(seq)
        nxt = self.next
        end = pos + len(data)
        if end <= nxt:
            return b""  # a retransmission of delivered bytes
        if pos < nxt:
            data, pos = data[nxt - pos:], nxt
        if pos > nxt:
            self._hold(pos, data)
            return b""
        out = [data]
        nxt = end
        while self.positions and self.positions[0] <= nxt:
            p = heapq.heappop(self.positions)
            chunk = self.held.pop(p)
            self._release(len(chunk))
            if p + len(chunk) > nxt:
                out.append(chunk[nxt - p:])
                nxt = p + len(chunk)
        self.next = nxt
        got = out[0] if len(out) == 1 else b"".join(out)
        self.delivered += len(got)
        return got

    def ack(self, ack: int) -> None:
        """The peer acknowledged up to ``ack``: bytes it received that the capture lacks make a gap."""
        if self.next is None or self.gap is not None:
            return
        pos = self._pos(ack)
        if self.acked is None or pos > self.acked:
            self.acked = pos
        if self.held and pos > self.next:
            self._gap(f"the receiver acknowledged {pos - self.next} bytes the capture does not hold")

    def _hold(self, pos: int, data: bytes) -> None:
        assert self.next is not None
        if self.acked is not None and self.acked > self.next:
            self._gap(f"the receiver acknowledged {self.acked - self.next} bytes the capture does not hold")
            return
        old = self.held.get(pos)
        if old is None:
            heapq.heappush(self.positions, pos)
            self.held[pos] = data
            grow = len(data)
        elif len(data) > len(old):
            self.held[pos] = old + data[len(old):]  # the first copy of a byte wins
            grow = len(data) - len(old)
        else:
            return
        self.held_bytes += grow
        self.budget.used += grow
        if self.held_bytes > self.max_held:
            self._gap(f"more than {self.max_held} bytes waited behind a hole of the capture")
        elif self.budget.used > self.budget.limit:
            self._gap(f"bytes waiting behind holes in all connections exceeded {self.budget.limit}")

    def _release(self, n: int) -> None:
        self.held_bytes -= n
        self.budget.used -= n

    def _gap(self, why: str) -> None:
        self.gap = why
        self.drop()

    def hole(self) -> str | None:
        """Why the stream ends incomplete (bytes held behind a hole at its end), or None."""
        if self.gap is not None:
            return self.gap
        if self.held:
            return f"{self.held_bytes} bytes waited behind a hole of the capture when the connection ended"
        return None

    def drop(self) -> None:
        """Forget held bytes (the connection ended or the direction broke off)."""
        self._release(self.held_bytes)
        self.held.clear()
        self.positions.clear()
