"""Every TCP connection of chosen hosts out of a capture, each direction reassembled with its holes.

The replay (:mod:`stormwatch.collector.tcp_streams`) keeps the segments of 135/139/445 and of
DCE/RPC; following an attack past its exploit needs the other connections of the hosts involved —
the bind or connect-back shell, the FTP control and data connections — whatever their ports.
:func:`host_segments` walks the capture with the same container walker and vectorised decoders as
the pcap reader and keeps the TCP segments to or from a set of addresses (chosen with numpy per
block of packets for IPv4); :class:`FlowTable` groups them into connections.

Unlike the replay's :class:`~stormwatch.collector.tcp_streams.HalfStream`, which must stop at a
hole because the session behind it cannot skip bytes, a :class:`Direction` here keeps every
segment (up to a cap) by its position in the stream (RFC 9293 3.4: 32-bit sequence numbers
counted from the ISN + 1, or from the first payload when the SYN was not captured) and assembles
at the end: a hole becomes zero bytes with its range recorded, so a file cut by a lost packet is
still recovered around it and flagged, as Zeek's file analysis counts ``missing_bytes``. Where two
copies of a byte differ, the one at the lower sequence position, then the earlier captured, wins.
The sender's FIN fixes the stream's true length (its sequence number minus the ISN + 1) even when
the capture lost segments in the middle.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from stormwatch.collector.tcp_streams import (  # the replay's own walkers, shared
    ACK,
    FIN,
    RST,
    SYN,
    Segment,
    capture_blocks,
    ip_layer,
)
from stormwatch.ingest.base import Source
from stormwatch.ingest.pcap_container import Records
from stormwatch.ingest.pcap_decode import TCP

MAX_REFUSED = 1 << 16  # port pairs remembered as not followed, so their later packets stay out
_SEQ_MOD, _HALF = 1 << 32, 1 << 31


@dataclass(frozen=True)
class FlowLimits:
    """Bounds of one capture's flow collection."""

    max_flows: int = 4096  # connections followed
    max_stream_bytes: int = 16 << 20  # bytes kept per direction (a downloaded file is one direction)
    max_total_bytes: int = 256 << 20  # bytes kept for all connections together


@dataclass(frozen=True)
class Assembled:
    """One direction put together: ``data`` with holes zero-filled."""

    data: bytes
    holes: tuple[tuple[int, int], ...]  # [start, end) byte ranges the capture lacks
    fin_length: int | None  # the length the sender's FIN announced, when captured
    truncated: bool  # more bytes came than the cap allowed
    starts: tuple[int, ...]  # stream offset of each captured piece, ascending
    times: tuple[int, ...]  # ... and its capture time (epoch microseconds)

    @property
    def missing(self) -> int:
        return sum(b - a for a, b in self.holes)

    def ts_at(self, offset: int) -> int | None:
        """Capture time of the piece holding byte ``offset``."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.times[i] if i >= 0 else (self.times[0] if self.times else None)


class Direction:
    """One direction's segments by stream position (see the module docstring)."""

    __slots__ = ("base", "fin_pos", "pieces", "stored", "syn", "truncated")

    def __init__(self) -> None:
        self.base: int | None = None  # sequence number of stream offset 0
        self.syn = False
        self.pieces: list[tuple[int, int, bytes]] = []  # (offset, capture time, bytes), capture order
        self.stored = 0
        self.fin_pos: int | None = None
        self.truncated = False

    def start_syn(self, seq: int) -> None:
        if self.base is None:
            self.base, self.syn = (seq + 1) % _SEQ_MOD, True

    def _offset(self, seq: int) -> int:
        assert self.base is not None
        d = (seq - self.base) % _SEQ_MOD
        return d - _SEQ_MOD if d >= _HALF else d

    def add(self, seq: int, ts: int, data: bytes, cap: int, budget: list[int]) -> None:
        """Keep ``data`` at ``seq``, within ``cap`` for this direction and ``budget[0]`` in all."""
        if self.base is None:
            self.base = seq
        at = self._offset(seq)
        if at < 0:
            data, at = data[-at:], 0  # bytes before the first seen: a mid-stream capture's past
        if not data:
            return
        room = min(cap - at, budget[0])
        if room < len(data):
            self.truncated = True
            data = data[:max(0, room)]
            if not data:
                return
        self.pieces.append((at, ts, data))
        self.stored += len(data)
        budget[0] -= len(data)

    def fin(self, seq: int, payload_len: int) -> None:
        if self.base is None:
            self.base = seq
        self.fin_pos = self._offset(seq) + payload_len

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes of the stream, up to its first hole (cheap: for classifying)."""
        out = b""
        for at, _, data in sorted(self.pieces, key=lambda p: p[0]):
            if at > len(out) or len(out) >= n:
                break
            out += data[len(out) - at:n - at] if at + len(data) > len(out) else b""
        return out[:n]

    def assemble(self) -> Assembled:
        ordered = sorted(enumerate(self.pieces), key=lambda p: (p[1][0], p[0]))
        out = bytearray()
        holes: list[tuple[int, int]] = []
        starts: list[int] = []
        times: list[int] = []
        for _, (at, ts, data) in ordered:
            end = at + len(data)
            if end <= len(out):
                continue  # a retransmission
            if at > len(out):
                holes.append((len(out), at))
                out += bytes(at - len(out))
            starts.append(max(at, len(out)))
            times.append(ts)
            out += data[len(out) - at:]
        fin = self.fin_pos if self.fin_pos is not None and self.fin_pos >= 0 else None
        if fin is not None and fin > len(out) and not self.truncated:
            holes.append((len(out), fin))  # the tail the FIN says was sent, lost to the capture
        return Assembled(bytes(out), tuple(holes), fin, self.truncated, tuple(starts), tuple(times))


@dataclass
class Flow:
    """One TCP connection: ``client`` opened it (sent the SYN; failing that, a guess)."""

    client: str
    cport: int
    server: str
    sport: int
    first_ts: int
    first_frame: int
    last_ts: int = 0
    syn: bool = False  # the client's SYN was captured
    up: Direction = field(default_factory=Direction)  # client -> server
    down: Direction = field(default_factory=Direction)  # server -> client
    fin_client: bool = False
    fin_server: bool = False
    reset: bool = False

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.client, self.cport, self.server, self.sport)

    def label(self) -> str:
        return f"{self.client}:{self.cport} -> {self.server}:{self.sport}"


class FlowTable:
    """Segments grouped into connections; ``admit`` decides whether a new connection is followed."""

    def __init__(self, admit: Callable[[Segment], bool], limits: FlowLimits | None = None) -> None:
        self.admit = admit
        self.limits = limits or FlowLimits()
        self.flows: list[Flow] = []
        self.notes: list[str] = []
        self._open: dict[tuple[str, int, str, int], Flow] = {}
        self._refused: set[tuple[str, int, str, int]] = set()
        self._budget = [self.limits.max_total_bytes]

    def segment(self, seg: Segment) -> None:
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        back = (seg.dst, seg.dport, seg.src, seg.sport)
        syn_only = seg.flags & (SYN | ACK) == SYN
        flow = self._open.get(key) or self._open.get(back)
        if flow is not None and syn_only and flow.key == key and flow.up.syn \
                and flow.up.base != (seg.seq + 1) % _SEQ_MOD \
                and (flow.up.pieces or flow.down.pieces or flow.reset or flow.fin_client):
            self._open.pop(key)  # the port pair is used again by a new connection
            flow = None
        if flow is None:
            if key in self._refused or back in self._refused:
                if not syn_only:
                    return
                self._refused.discard(key)
            flow = self._new(seg, key, syn_only)
            if flow is None:
                return
        flow.last_ts = seg.ts
        from_client = flow.key == key
        this = flow.up if from_client else flow.down
        if seg.flags & SYN:
            this.start_syn(seg.seq)
            flow.syn |= from_client and syn_only
        if seg.payload:
            seq = (seg.seq + 1) % _SEQ_MOD if seg.flags & SYN else seg.seq
            this.add(seq, seg.ts, seg.payload, self.limits.max_stream_bytes, self._budget)
        if seg.flags & FIN:
            this.fin(seg.seq, len(seg.payload))
            if from_client:
                flow.fin_client = True
            else:
                flow.fin_server = True
        if seg.flags & RST:
            flow.reset = True

    def _new(self, seg: Segment, key: tuple[str, int, str, int], syn_only: bool) -> Flow | None:
        if not self.admit(seg):
            if len(self._refused) >= MAX_REFUSED:
                self._refused.clear()  # forgetting costs an admit() call per segment, never memory
            self._refused.add(key)
            return None
        if len(self.flows) >= self.limits.max_flows:
            if len(self.notes) < 100:
                self.notes.append(f"more than {self.limits.max_flows} connections: "
                                  f"{seg.src}:{seg.sport} -> {seg.dst}:{seg.dport} not followed")
            self._refused.add(key)
            return None
        # the SYN's sender; a SYN-ACK's receiver; mid-stream, the side on the higher (ephemeral) port
        client_is_src = syn_only or (not seg.flags & SYN and seg.sport >= seg.dport)
        if client_is_src:
            flow = Flow(seg.src, seg.sport, seg.dst, seg.dport, seg.ts, seg.frame)
        else:
            flow = Flow(seg.dst, seg.dport, seg.src, seg.sport, seg.ts, seg.frame)
        self.flows.append(flow)
        self._open[flow.key] = flow
        return flow


def host_segments(src: Source, hosts: Iterable[str]) -> Iterator[Segment]:
    """The TCP segments of a capture to or from any of ``hosts``, in packet order. A damaged or
    cut file ends quietly where it breaks; a file that is no capture is an InputError."""
    v4: list[int] = []
    v6: set[bytes] = set()
    for h in hosts:
        ip = ipaddress.ip_address(h)
        if ip.version == 4:
            v4.append(int(ip))
        else:
            v6.add(ip.packed)
    want4 = np.array(sorted(v4), dtype=np.int64)
    for buf, records in capture_blocks(src):
        yield from _block(buf, records, want4, v6)


def _block(buf: bytes, rec: Records, want4: np.ndarray, want6: set[bytes]) -> list[Segment]:
    if not len(rec.frame):
        return []
    ip, w = ip_layer(buf, rec)
    tcp = np.flatnonzero((ip.proto == TCP) & ip.first & (ip.l4end - ip.l4 >= 20))
    l4, l4end, l3, fam, idx = ip.l4[tcp], ip.l4end[tcp], ip.l3[tcp], ip.fam[tcp], ip.idx[tcp]
    u32 = w.u32
    keep = np.zeros(len(tcp), dtype=np.bool_)
    is4 = fam == 4
    if len(want4):
        at4 = l3[is4]
        keep[is4] = np.isin(u32[at4 + 12].astype(np.int64), want4) | np.isin(u32[at4 + 16].astype(np.int64), want4)
    if want6:
        for i in np.flatnonzero(~is4).tolist():
            o3 = int(l3[i])
            keep[i] = buf[o3 + 8:o3 + 24] in want6 or buf[o3 + 24:o3 + 40] in want6
    off_flags = w.be16(l4 + 12)
    data = l4 + (off_flags >> 12) * 4
    keep &= (off_flags >= 0x5000) & (data <= l4end)
    out: list[Segment] = []
    for i in np.flatnonzero(keep).tolist():
        o3, o4 = int(l3[i]), int(l4[i])
        if fam[i] == 4:
            src, dst = str(ipaddress.IPv4Address(int(u32[o3 + 12]))), str(ipaddress.IPv4Address(int(u32[o3 + 16])))
        else:
            src = _v6(buf[o3 + 8:o3 + 24])
            dst = _v6(buf[o3 + 24:o3 + 40])
        ports = int(u32[o4])
        out.append(Segment(int(rec.frame[idx[i]]), int(rec.ts[idx[i]]), src, ports >> 16, dst, ports & 0xFFFF,
                           int(u32[o4 + 4]), int(u32[o4 + 8]), int(off_flags[i]) & 0xFF,
                           buf[int(data[i]):int(l4end[i])]))
    return out


def _v6(raw: bytes) -> str:
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else ip.compressed
