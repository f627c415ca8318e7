"""Handcrafted packets and capture files for the pcap reader's tests, written with struct, and
the helpers that read them back.

Each builder writes one header as its specification lays it out (field per argument, network byte
order), so a test states exactly the bytes it feeds the reader. Checksums are computed for IPv4
headers only; nothing in the reader or in tshark's default settings checks the others.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa

from stormwatch.errors import InputError
from stormwatch.events import Reject, arrow_schema
from stormwatch.ingest.base import Source
from stormwatch.ingest.pcap import PcapReader

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64, options: bytes = b"",
         frag_offset: int = 0, more_fragments: bool = False, ident: int = 1, total: int | None = None) -> bytes:
    """RFC 791 3.1: version/IHL, TOS, total length, id, flags/fragment offset, TTL, protocol,
    checksum, source, destination, options."""
    ihl = 5 + len(options) // 4
    length = ihl * 4 + len(payload) if total is None else total
    flags = (0x2000 if more_fragments else 0) | (frag_offset // 8)
    hdr = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, length, ident, flags, ttl, proto, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + options
    hdr = hdr[:10] + struct.pack(">H", _csum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, *, hlim: int = 64,
         ext: list[tuple[int, bytes]] | None = None) -> bytes:
    """RFC 8200 3: version/class/flow, payload length, next header, hop limit, addresses; then the
    extension headers ``ext`` as (header type, body after the next-header byte) in order."""
    chain = b""
    types = [t for t, _ in ext or []] + [nh]
    for i, (_t, body) in enumerate(ext or []):
        chain += bytes([types[i + 1]]) + body
    first = types[0]
    return struct.pack(">IHBB16s16s", 0x60000000, len(chain) + len(payload), first, hlim,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed) + chain + payload


def hop_by_hop() -> tuple[int, bytes]:
    """A hop-by-hop options header (8 bytes): length 0, PadN of 4 bytes."""
    return 0, bytes([0, 1, 4, 0, 0, 0, 0])


def dest_opts() -> tuple[int, bytes]:
    return 60, bytes([0, 1, 4, 0, 0, 0, 0])


def fragment(offset: int, more: bool, ident: int = 7) -> tuple[int, bytes]:
    """RFC 8200 4.5: reserved, offset (8-byte units) << 3 | M, identification."""
    return 44, struct.pack(">BHI", 0, (offset // 8) << 3 | int(more), ident)


def tcp(sport: int, dport: int, flags: int, *, seq: int = 1000, ack: int = 0, offset_words: int = 5,
        payload: bytes = b"") -> bytes:
    """RFC 9293 3.1: ports, sequence, acknowledgment, data offset, flags, window, checksum, urgent."""
    return struct.pack(">HHIIBBHHH", sport, dport, seq, ack, offset_words << 4, flags, 65535, 0, 0) + \
        bytes(max(0, offset_words - 5) * 4) + payload


def udp(sport: int, dport: int, payload: bytes = b"hello") -> bytes:
    """RFC 768: ports, length, checksum."""
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(itype: int, code: int, body: bytes = b"\0\0\0\0") -> bytes:
    """RFC 792 / RFC 4443: type, code, checksum, then the rest (4 bytes + data)."""
    return struct.pack(">BBH", itype, code, 0) + body


def unreachable(quoted: bytes, code: int = 3) -> bytes:
    """ICMP destination unreachable (type 3) quoting an IP header and the next 8 bytes."""
    ihl = (quoted[0] & 15) * 4
    return icmp(3, code, b"\0\0\0\0" + quoted[:ihl + 8])


def eth(payload: bytes, ethertype: int = 0x0800, vlans: tuple[int, ...] = (), tpid: int = 0x8100) -> bytes:
    """Ethernet II with optional 802.1Q tags (the outermost first; QinQ uses tpid 0x88a8 outside)."""
    tags = b""
    for i, vid in enumerate(vlans):
        tags += struct.pack(">HH", tpid if i == 0 else 0x8100, vid)
    return b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb" + tags + struct.pack(">H", ethertype) + payload


def sll(payload: bytes, proto: int = 0x0800) -> bytes:
    """Linux cooked v1: packet type, ARPHRD, address length, 8 address bytes, protocol."""
    return struct.pack(">HHH8sH", 0, 1, 6, b"\x00\x11\x22\x33\x44\x55\0\0", proto) + payload


def sll2(payload: bytes, proto: int = 0x0800) -> bytes:
    """Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address."""
    return struct.pack(">HHIHBB8s", proto, 0, 2, 1, 0, 6, b"\x00\x11\x22\x33\x44\x55\0\0") + payload


def null(payload: bytes, family: int = 2, order: str = "<") -> bytes:
    """BSD loopback: the address family in the capturing host's byte order."""
    return struct.pack(order + "I", family) + payload


def pcap(packets: list[tuple[int, bytes]], link: int = 1, *, order: str = "<", nanos: bool = False,
         snaplen: int = 65535) -> bytes:
    """A classic pcap file of (timestamp in µs, packet bytes)."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link)]
    for ts, data in packets:
        frac = ts % 1_000_000 * (1000 if nanos else 1)
        out.append(struct.pack(order + "IIII", ts // 1_000_000, frac, len(data), len(data)) + data)
    return b"".join(out)


def _pad(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def ng_block(btype: int, body: bytes, order: str = "<") -> bytes:
    body = _pad(body)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def ng_option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad(value)


def ng_shb(order: str = "<") -> bytes:
    """Section Header Block: byte-order magic, version 1.0, unknown section length, no options."""
    return ng_block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def ng_idb(link: int, order: str = "<", tsresol: int | None = None, snaplen: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = ng_option(9, bytes([tsresol]), order) + ng_option(0, b"", order)
    return ng_block(1, struct.pack(order + "HHI", link, 0, snaplen) + opts, order)


def ng_epb(iface: int, ts_units: int, data: bytes, order: str = "<") -> bytes:
    body = struct.pack(order + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data))
    return ng_block(6, body + _pad(data), order)


def ng_spb(data: bytes, order: str = "<") -> bytes:
    return ng_block(3, struct.pack(order + "I", len(data)) + _pad(data), order)


def mixed_packets() -> list[bytes]:
    """IP packets of many shapes, for agreement tests against an independent dissector: TCP
    handshakes, resets and unanswered SYNs, UDP flows in both directions, ICMP errors quoting TCP
    and UDP, IPv6 with extension headers, fragments of both families, IPv4 options."""
    a, b, c = "198.51.100.7", "192.0.2.10", "203.0.113.5"
    a6, b6 = "2001:db8::7", "2001:db8:0:1::10"
    out: list[bytes] = []
    for i in range(6):
        out.append(ipv4(a, b, 6, tcp(40000 + i, 445, SYN)))
        if i % 3 == 0:
            out.append(ipv4(b, a, 6, tcp(445, 40000 + i, SYN | ACK)))
        elif i % 3 == 1:
            out.append(ipv4(b, a, 6, tcp(445, 40000 + i, RST | ACK)))
    out += [
        ipv4(a, c, 6, tcp(41000, 80, SYN | ECE | CWR)),
        ipv4(c, a, 1, unreachable(ipv4(a, c, 6, tcp(41000, 80, SYN)), 1)),
        ipv4(a, c, 17, udp(5353, 53)), ipv4(c, a, 17, udp(53, 5353)), ipv4(a, c, 17, udp(5353, 53)),
        ipv4(a, b, 17, udp(6000, 161)), ipv4(b, a, 1, unreachable(ipv4(a, b, 17, udp(6000, 161)))),
        ipv4(a, b, 17, udp(6001, 1900, b"x" * 40), more_fragments=True),
        ipv4(a, b, 17, b"y" * 16, frag_offset=48),
        ipv4(a, b, 6, tcp(42000, 22, SYN), options=b"\x01\x01\x01\x00"),
        ipv4(a, b, 1, icmp(8, 0, b"\0\1\0\1ping")), ipv4(b, a, 1, icmp(0, 0, b"\0\1\0\1ping")),
        ipv6(a6, b6, 6, tcp(43000, 443, SYN), ext=[hop_by_hop(), dest_opts()]),
        ipv6(b6, a6, 6, tcp(443, 43000, SYN | ACK)),
        ipv6(a6, b6, 17, udp(7000, 53, b"z" * 24), ext=[fragment(0, True)]),
        ipv6(a6, b6, 17, b"w" * 16, ext=[fragment(32, False)]),
        ipv6(a6, b6, 58, icmp(128, 0, b"\0\1\0\1")),
        ipv6(b6, a6, 58, icmp(1, 4, b"\0\0\0\0" + ipv6(a6, b6, 17, udp(7001, 123))[:48])),
        ipv6(a6, b6, 17, udp(7001, 123)),
        ipv6(a6, b6, 6, tcp(43001, 25, SYN)),
    ]
    return out


def mixed_captures() -> dict[str, bytes]:
    """The packets of :func:`mixed_packets` in every container and link type the reader supports."""
    pkts = mixed_packets()
    ts = [1_700_000_000_000_000 + i * 1000 for i in range(len(pkts))]

    def ether(p: bytes, vlans: tuple[int, ...] = (), tpid: int = 0x8100) -> bytes:
        return eth(p, 0x86DD if p[0] >> 4 == 6 else 0x0800, vlans, tpid)

    def cooked(p: bytes, f: Any) -> bytes:
        return f(p, 0x86DD if p[0] >> 4 == 6 else 0x0800)  # type: ignore[no-any-return]

    vl = [ether(p, ((10,), (), (20, 30))[i % 3], 0x88A8 if i % 3 == 2 else 0x8100) for i, p in enumerate(pkts)]
    ng = ng_shb() + ng_idb(1) + ng_idb(101, tsresol=9)
    for i, p in enumerate(pkts[:20]):
        ng += ng_epb(0, ts[i], ether(p)) if i % 2 else ng_epb(1, ts[i] * 1000, p)
    ng += ng_shb(">") + ng_idb(113, ">") + ng_idb(276, ">", tsresol=0x80 | 20)
    for i, p in enumerate(pkts[20:], 20):
        ng += ng_epb(0, ts[i], cooked(p, sll), ">") if i % 2 else ng_epb(1, ts[i] * 2**20 // 1_000_000, cooked(p, sll2),
                                                                         ">")
    return {
        "ether-vlan.pcap": pcap(list(zip(ts, vl, strict=True))),
        "raw-be-nanos.pcap": pcap(list(zip(ts, pkts, strict=True)), 101, order=">", nanos=True),
        "sll.pcap": pcap([(t, cooked(p, sll)) for t, p in zip(ts, pkts, strict=True)], 113),
        "sll2.pcap": pcap([(t, cooked(p, sll2)) for t, p in zip(ts, pkts, strict=True)], 276),
        "null.pcap": pcap([(t, null(p, 2 if p[0] >> 4 == 4 else 30)) for t, p in zip(ts, pkts, strict=True)], 0),
        "mixed.pcapng": ng,
    }


# -- reading captures back ------------------------------------------------------------------
A, B, C = "198.51.100.7", "192.0.2.10", "203.0.113.5"
A6, B6 = "2001:db8::7", "2001:db8:0:1::10"
T0 = 1_700_000_000_000_000  # epoch µs of the first packet


def read(tmp_path: Path, data: bytes, name: str = "t.pcap", gz: bool = False) -> tuple[
        pa.Table, list[Reject], InputError | None, int]:
    """All events, rejects, the error raised (if any) and the packet count of a capture."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if gz else data)
    tables, rejects, error, total = [], [], None, 0
    try:
        for chunk in PcapReader().read(Source(str(path), "s1", "gzip" if gz else None)):
            tables.append(chunk.events)
            rejects += chunk.rejects
            total += chunk.read
            assert chunk.read == len(chunk.events) + len(chunk.rejects) + chunk.skipped or chunk.read == 0
    except InputError as exc:
        error = exc
    table = pa.concat_tables(tables) if tables else arrow_schema().empty_table()
    return table, rejects, error, total


def rows(table: pa.Table) -> list[dict[str, Any]]:
    out = table.to_pylist()
    for r in out:
        r.update(json.loads(r.pop("data")))
    return out


def brief(table: pa.Table) -> list[tuple[Any, ...]]:
    """(frame, src, sport, dst, dport, proto, flags, outcome) per event."""
    return [(r["frame"], r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["proto"], r["tcp_flags"],
             r["outcome"]) for r in rows(table)]


def eth4(src: str, dst: str, proto: int, payload: bytes, **kw: Any) -> bytes:
    return eth(ipv4(src, dst, proto, payload, **kw))


def at(packets: list[bytes]) -> list[tuple[int, bytes]]:
    """Timestamps one millisecond apart."""
    return [(T0 + i * 1000, p) for i, p in enumerate(packets)]
