"""Vectorised packet decoding: the link, IP and transport headers of many packets at once.

Given a buffer and the :class:`~stormwatch.ingest.pcap_container.Records` found in it, every
header field is gathered with numpy fancy indexing over all packets of a shape together — the
Ethernet type of every Ethernet frame, then the IPv4 header of every IPv4 packet, and so on —
instead of decoding packet by packet. Only IPv6 extension-header chains and the flows quoted
inside ICMP errors are walked in Python, one packet at a time, because they are rare and
variable.

Every gather is preceded by a length check against the captured bytes (and the IP length), so a
short or damaged packet becomes a reject with a reason and never reads past its own bytes.

References: link types https://www.tcpdump.org/linktypes.html (Ethernet 1, BSD loopback 0 and
108, raw IP 101/228/229, Linux cooked SLL 113 https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html
and SLL2 276 https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html); IEEE 802.1Q/802.1ad
VLAN tags; IPv4 RFC 791; IPv6 RFC 8200 (extension headers, section 4); TCP RFC 9293; UDP
RFC 768; ICMP RFC 792 (errors quote the IP header and 8 bytes); ICMPv6 RFC 4443.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from stormwatch.ingest.pcap_container import Records

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]

LINK_NULL, LINK_ETHERNET, LINK_LOOP, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = 0, 1, 108, 113, 228, 229, 276
RAW_LINKS = (101, 12, 14)  # LINKTYPE_RAW; 12 and 14 are DLT_RAW's numbers on some BSDs, seen in old files
# (header length, offset of the EtherType) for the link types that carry an EtherType.
_ETHERTYPE_LINKS = {LINK_ETHERNET: (14, 12), LINK_SLL: (16, 14), LINK_SLL2: (20, 0)}
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
VLAN_TPIDS = np.array([0x8100, 0x88A8, 0x9100], dtype=np.int64)  # 802.1Q, 802.1ad, old QinQ
MAX_VLAN_TAGS = 4  # a frame with more tags is not read (skipped), not walked on
AF_INET6 = np.array([10, 24, 28, 30], dtype=np.int64)  # Linux, BSDs, FreeBSD, macOS values of AF_INET6

# IPv6 extension headers walked to reach the transport header (RFC 8200 4; 51 AH: RFC 4302).
IP6_EXT = np.array([0, 43, 44, 60, 51, 135, 139, 140], dtype=np.int64)
MAX_IP6_EXT = 8  # longer chains are treated as damage
TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
SYN, RST = 0x02, 0x04

# Reject reasons, indexed by the codes below.
REASONS = ("", "truncated link-layer header", "truncated VLAN tag", "empty packet", "bad IP version",
           "truncated IPv4 header", "IPv4 header length below 20 bytes",
           "IPv4 total length shorter than its header", "truncated IPv6 header",
           "truncated or overlong IPv6 extension-header chain", "truncated TCP header",
           "TCP header length below 20 bytes", "truncated UDP header", "truncated ICMP header")
(R_LINK, R_VLAN, R_EMPTY, R_VERSION, R_IP4_TRUNC, R_IHL, R_TOTLEN, R_IP6_TRUNC, R_EXT,
 R_TCP_TRUNC, R_TCP_HLEN, R_UDP_TRUNC, R_ICMP_TRUNC) = range(1, len(REASONS))
RAW_KEPT = 256  # bytes of a rejected packet kept (as hex) for the operator


@dataclass
class Packets:
    """The decoded packets that can be or answer a connection attempt — TCP segments with SYN or
    RST, UDP datagrams, ICMP/ICMPv6 messages — in packet order. An address is two 64-bit words
    (high, low) of its 16 bytes; an IPv4 address is the low word, the high word 0. Ports and ICMP
    type/code are -1 where they do not apply."""

    frame: I64
    ts: I64
    fam: I64  # 4 or 6
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    sport: I64
    dport: I64
    proto: I64
    flags: I64  # TCP flag byte (CWR ECE URG ACK PSH RST SYN FIN), 0 for others
    icmp_type: I64
    icmp_code: I64
    ttl: I64
    iplen: I64

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def concat(cls, parts: list[Packets]) -> Packets:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


@dataclass
class Quotes:
    """Flows quoted by ICMP destination-unreachable messages, in the direction of the quoted
    packet (the refused attempt's direction), with the frame of the ICMP message."""

    frame: I64
    fam: I64
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    sport: I64
    dport: I64
    proto: I64

    @classmethod
    def concat(cls, parts: list[Quotes]) -> Quotes:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


@dataclass
class Decoded:
    packets: Packets
    quotes: Quotes
    rejects: list[tuple[int, str, bytes]]  # (frame, reason, leading bytes of the packet)


def byte_view(buf: bytes, dtype: str) -> npt.NDArray[Any]:
    """``buf`` as integers of ``dtype`` starting at *every* byte offset (a 1-byte stride), so that
    one fancy-indexing gather reads a 2-, 4- or 8-byte field of many packets at once."""
    size = np.dtype(dtype).itemsize
    return np.ndarray((max(len(buf) - size + 1, 0),), np.dtype(dtype), buf, 0, (1,))


class Words:
    """Big-endian (network order) views of a buffer at every byte offset."""

    def __init__(self, buf: bytes) -> None:
        self.u8 = np.frombuffer(buf, dtype=np.uint8)
        self.u16 = byte_view(buf, ">u2")
        self.u32 = byte_view(buf, ">u4")
        self.u64 = byte_view(buf, ">u8")

    def be16(self, o: I64) -> I64:
        return self.u16[o].astype(np.int64)

    def byte(self, o: I64) -> I64:
        return self.u8[o].astype(np.int64)


def _fail(why: I64, idx: I64, codes: I64) -> npt.NDArray[np.bool_]:
    """Record the first failing reason per packet; True where the packet is still good."""
    bad = codes > 0
    why[idx[bad]] = codes[bad]
    return ~bad


def decode_link(w: Words, link: int, idx: I64, end: I64, l3: I64, et: I64, why: I64) -> None:
    """Find the network header of every packet of one link type: its offset (``l3``) and
    EtherType (``et``; 0 for anything but IPv4/IPv6, which is then skipped)."""
    o = l3[idx]
    if link in _ETHERTYPE_LINKS:
        hlen, at = _ETHERTYPE_LINKS[link]
        ok = _fail(why, idx, np.where(end[idx] - o < hlen, R_LINK, 0))
        idx, o = idx[ok], o[ok]
        t = w.be16(o + at)
        p = o + hlen
        for _ in range(MAX_VLAN_TAGS):  # 4-byte tags: TPID then TCI, then the next EtherType
            v = np.flatnonzero(np.isin(t, VLAN_TPIDS))
            if not len(v):
                break
            short = p[v] + 4 > end[idx[v]]
            why[idx[v[short]]] = R_VLAN
            t[v[short]] = 0
            g = v[~short]
            t[g] = w.be16(p[g] + 2)
            p[g] += 4
        l3[idx], et[idx] = p, t
    elif link in RAW_LINKS:
        ok = _fail(why, idx, np.where(end[idx] <= o, R_EMPTY, 0))
        idx, o = idx[ok], o[ok]
        ver = w.u8[o] >> 4
        et[idx] = np.where(ver == 4, ETHERTYPE_IPV4, np.where(ver == 6, ETHERTYPE_IPV6, 0))
        why[idx[(ver != 4) & (ver != 6)]] = R_VERSION
    elif link == LINK_IPV4:
        et[idx] = ETHERTYPE_IPV4
    elif link == LINK_IPV6:
        et[idx] = ETHERTYPE_IPV6
    elif link in (LINK_NULL, LINK_LOOP):
        # A 4-byte address family: in the writer's byte order for NULL, network order for LOOP.
        ok = _fail(why, idx, np.where(end[idx] - o < 4, R_LINK, 0))
        idx, o = idx[ok], o[ok]
        be = w.u32[o].astype(np.int64)
        le = be.astype(np.uint32).byteswap().astype(np.int64) if link == LINK_NULL else be
        is4 = (be == 2) | (le == 2)
        is6 = np.isin(be, AF_INET6) | np.isin(le, AF_INET6)
        l3[idx] = o + 4
        et[idx] = np.where(is4, ETHERTYPE_IPV4, np.where(is6, ETHERTYPE_IPV6, 0))
    # any other link type: et stays 0, the packet is skipped


@dataclass
class IpHeaders:
    """Network-layer fields of the IP packets of a buffer (``idx`` = their record index)."""

    idx: I64
    fam: I64
    l3: I64
    proto: I64
    ttl: I64
    iplen: I64
    l4: I64
    l4end: I64  # end of the transport bytes: captured bytes cut to the IP length
    first: npt.NDArray[np.bool_]  # not a non-first fragment (only those carry the ports)


def decode_ipv4(w: Words, idx: I64, l3: I64, end: I64, why: I64) -> IpHeaders:
    o, e = l3[idx], end[idx]
    ok = _fail(why, idx, np.where(o + 20 > e, R_IP4_TRUNC, 0))
    idx, o, e = idx[ok], o[ok], e[ok]
    b0 = w.byte(o)
    ihl = (b0 & 15) * 4
    tot = w.be16(o + 2)
    tot = np.where(tot == 0, e - o, tot)  # 0: TCP segmentation offload on the capturing host
    code = np.select([b0 >> 4 != 4, ihl < 20, o + ihl > e, tot < ihl], [R_VERSION, R_IHL, R_IP4_TRUNC, R_TOTLEN])
    ok = _fail(why, idx, code)
    idx, o, e, ihl, tot = idx[ok], o[ok], e[ok], ihl[ok], tot[ok]
    frag = w.be16(o + 6) & 0x1FFF
    ttl_proto = w.be16(o + 8)
    return IpHeaders(idx, np.full(len(idx), 4), o, ttl_proto & 0xFF, ttl_proto >> 8, tot, o + ihl,
                     np.minimum(e, o + tot), frag == 0)


def ip6_chain(buf: bytes, p: int, end: int, nh: int) -> tuple[int, int, int]:
    """Walk IPv6 extension headers from ``p`` (RFC 8200 4): (transport protocol, its offset,
    status) where status is 0, 1 for a non-first fragment (no transport header) or a reason code."""
    for _ in range(MAX_IP6_EXT):
        if nh not in (0, 43, 44, 60, 51, 135, 139, 140):
            return nh, p, 0
        if p + 8 > end:
            return nh, p, R_EXT
        nxt = buf[p]
        if nh == 44:  # fragment header: 8 bytes; offset in the upper 13 bits of bytes 2-3
            if struct.unpack_from(">H", buf, p + 2)[0] >> 3:
                return nxt, p, 1
            size = 8
        elif nh == 51:  # AH: length in 4-byte units, minus 2 (RFC 4302 2.2)
            size = (buf[p + 1] + 2) * 4
        else:  # length in 8-byte units, not counting the first 8
            size = (buf[p + 1] + 1) * 8
        if p + size > end:
            return nh, p, R_EXT
        nh, p = nxt, p + size
    return nh, p, R_EXT


def decode_ipv6(buf: bytes, w: Words, idx: I64, l3: I64, end: I64, why: I64) -> IpHeaders:
    o, e = l3[idx], end[idx]
    code = np.where(o + 40 > e, R_IP6_TRUNC, 0)
    code[code == 0] = np.where(w.u8[o[code == 0]] >> 4 != 6, R_VERSION, 0)
    ok = _fail(why, idx, code)
    idx, o, e = idx[ok], o[ok], e[ok]
    plen = w.be16(o + 4)
    nh_hlim = w.be16(o + 6)
    nh = nh_hlim >> 8
    l4 = o + 40
    l4end = np.where(plen > 0, np.minimum(e, o + 40 + plen), e)  # 0: jumbogram, use what was captured
    first = np.ones(len(idx), dtype=np.bool_)
    ext = np.flatnonzero(np.isin(nh, IP6_EXT))
    status = np.zeros(len(idx), dtype=np.int64)
    for i in ext.tolist():
        nh[i], l4[i], status[i] = ip6_chain(buf, int(l4[i]), int(l4end[i]), int(nh[i]))
    first[status == 1] = False
    ok = _fail(why, idx, np.where(status > 1, status, 0))
    return IpHeaders(idx[ok], np.full(int(ok.sum()), 6), o[ok], nh[ok], nh_hlim[ok] & 0xFF, plen[ok] + 40, l4[ok],
               l4end[ok], first[ok])


def decode(buf: bytes, rec: Records) -> Decoded:
    """Decode every packet of ``rec`` (in ``buf``) at once."""
    w = Words(buf)
    n = len(rec.frame)
    end = rec.off + rec.caplen
    l3 = rec.off.copy()
    et = np.zeros(n, dtype=np.int64)
    why = np.zeros(n, dtype=np.int64)
    if n and (rec.link == rec.link[0]).all():  # one link type (always so in classic pcap)
        decode_link(w, int(rec.link[0]), np.arange(n), end, l3, et, why)
    else:
        for link in np.unique(rec.link).tolist():
            decode_link(w, link, np.flatnonzero(rec.link == link), end, l3, et, why)
    v4 = decode_ipv4(w, np.flatnonzero((et == ETHERTYPE_IPV4) & (why == 0)), l3, end, why)
    v6 = decode_ipv6(buf, w, np.flatnonzero((et == ETHERTYPE_IPV6) & (why == 0)), l3, end, why)
    if len(v6.idx) == 0:
        ip = v4
    else:
        ip = IpHeaders(*(np.concatenate([getattr(v4, f.name), getattr(v6, f.name)]) for f in fields(IpHeaders)))
        order = np.argsort(ip.idx, kind="stable")  # back to packet order (two sorted runs: cheap)
        ip = IpHeaders(*(getattr(ip, f.name)[order] for f in fields(IpHeaders)))
    packets, quotes = _transport(buf, w, ip, rec, why)
    rejects = [(fr, reason, buf[o:o + min(c, RAW_KEPT)]) for fr, reason, o, c in rec.bad]
    for i in np.flatnonzero(why).tolist():
        o = int(rec.off[i])
        rejects.append((int(rec.frame[i]), REASONS[why[i]], buf[o:o + min(int(rec.caplen[i]), RAW_KEPT)]))
    rejects.sort(key=lambda r: r[0])
    return Decoded(packets, quotes, rejects)


def _transport(buf: bytes, w: Words, ip: IpHeaders, rec: Records, why: I64) -> tuple[Packets, Quotes]:
    """Check and read the transport headers; keep what can be or answer an attempt."""
    l4, room, proto = ip.l4, ip.l4end - ip.l4, ip.proto
    tcp = np.flatnonzero((proto == TCP) & ip.first)
    udp = np.flatnonzero((proto == UDP) & ip.first)
    icmp = np.flatnonzero(((proto == ICMP) | (proto == ICMP6)) & ip.first)
    tcp = tcp[_fail(why, ip.idx[tcp], np.where(room[tcp] < 20, R_TCP_TRUNC, 0))]
    udp = udp[_fail(why, ip.idx[udp], np.where(room[udp] < 8, R_UDP_TRUNC, 0))]
    icmp = icmp[_fail(why, ip.idx[icmp], np.where(room[icmp] < 4, R_ICMP_TRUNC, 0))]
    off_flags = w.be16(l4[tcp] + 12)  # data offset (high nibble of the first byte), then the flags
    good = off_flags >= 0x5000
    tcp = tcp[_fail(why, ip.idx[tcp], np.where(good, 0, R_TCP_HLEN))]
    flags = off_flags[good] & 0xFF
    flags_all = np.zeros(len(l4), dtype=np.int64)
    flags_all[tcp] = flags
    tcp = tcp[flags & (SYN | RST) != 0]  # plain data and ACKs answer nothing
    ported = np.sort(np.concatenate([tcp, udp]))
    keep = np.sort(np.concatenate([ported, icmp])) if len(icmp) else ported
    n = len(keep)
    is_ported = np.ones(n, dtype=np.bool_) if not len(icmp) else np.isin(keep, ported, assume_unique=True)
    k_l4, k_l3, k_fam = l4[keep], ip.l3[keep], ip.fam[keep]
    sport = np.full(n, -1, dtype=np.int64)
    dport = sport.copy()
    itype = sport.copy()
    icode = sport.copy()
    ports = w.u32[k_l4[is_ported]].astype(np.int64)
    sport[is_ported], dport[is_ported] = ports >> 16, ports & 0xFFFF
    tc = w.be16(k_l4[~is_ported])
    itype[~is_ported], icode[~is_ported] = tc >> 8, tc & 0xFF
    src_hi = np.zeros(n, dtype=np.uint64)
    src_lo, dst_hi, dst_lo = src_hi.copy(), src_hi.copy(), src_hi.copy()
    f4 = k_fam == 4
    low32 = np.uint64(0xFFFFFFFF)
    if f4.all():
        both = w.u64[k_l3 + 12].astype(np.uint64)  # source and destination in one read
        src_lo, dst_lo = both >> np.uint64(32), both & low32
    else:
        f6 = ~f4
        both = w.u64[k_l3[f4] + 12].astype(np.uint64)
        src_lo[f4], dst_lo[f4] = both >> np.uint64(32), both & low32
        o6 = k_l3[f6]
        src_hi[f6], src_lo[f6], dst_hi[f6], dst_lo[f6] = (w.u64[o6 + k] for k in (8, 16, 24, 32))
    rows = ip.idx[keep]
    k_proto = proto[keep]
    packets = Packets(rec.frame[rows], rec.ts[rows], k_fam, src_hi, src_lo, dst_hi, dst_lo, sport, dport, k_proto,
                      flags_all[keep], itype, icode, ip.ttl[keep], ip.iplen[keep])
    # Destination unreachable (except "fragmentation needed", a path-MTU signal, not a refusal).
    unreach = ((k_proto == ICMP) & (itype == 3) & (icode != 4)) | ((k_proto == ICMP6) & (itype == 1))
    q: list[tuple[int, ...]] = []
    for i in np.flatnonzero(unreach).tolist():
        flow = quoted_flow(buf, int(k_l4[i]) + 8, int(ip.l4end[keep[i]]))
        if flow is not None:
            q.append((int(packets.frame[i]), *flow))
    cols = list(zip(*q, strict=True)) if q else [()] * 9
    i64 = [np.array(c, dtype=np.int64) for c in cols]
    u64 = [np.array(c, dtype=np.uint64) for c in cols]
    quotes = Quotes(i64[0], i64[1], u64[2], u64[3], u64[4], u64[5], i64[6], i64[7], i64[8])
    return packets, quotes


def quoted_flow(buf: bytes, p: int, end: int) -> tuple[int, int, int, int, int, int, int, int] | None:
    """The TCP/UDP flow of the packet an ICMP error quotes at ``p`` (RFC 792, RFC 4443 3.1):
    (family, source high/low words, destination high/low words, source port, destination port,
    protocol), or None."""
    if p >= end:
        return None
    ver = buf[p] >> 4
    if ver == 4 and p + 20 <= end:
        ihl = (buf[p] & 15) * 4
        if ihl < 20 or struct.unpack_from(">H", buf, p + 6)[0] & 0x1FFF:
            return None
        fam, proto, q = 4, buf[p + 9], p + ihl
        words = (0, *struct.unpack_from(">I", buf, p + 12), 0, *struct.unpack_from(">I", buf, p + 16))
    elif ver == 6 and p + 40 <= end:
        fam, words = 6, struct.unpack_from(">QQQQ", buf, p + 8)
        proto, q, status = ip6_chain(buf, p + 40, end, buf[p + 6])
        if status:
            return None
    else:
        return None
    if proto not in (TCP, UDP) or q + 4 > end:
        return None
    sport, dport = struct.unpack_from(">HH", buf, q)
    return fam, *words, sport, dport, proto
