"""From decoded packets to ``fw.connection`` events: attempts, their outcomes, the Arrow table.

What is an attempt (one event each):

- every TCP segment with SYN and without ACK (a retransmitted SYN is another event, as tshark and
  a firewall log count it; each gets the outcome of its own 4-tuple);
- the first UDP datagram of a flow, a flow being the unordered 5-tuple: later datagrams of the
  same flow, in either direction, are not new attempts;
- every ICMP and ICMPv6 message (no ports, no outcome; ``icmp_type``/``icmp_code`` in data).

Outcome of a TCP or UDP attempt: the *first* reply that follows it in the capture decides it —
``answered`` for a SYN-ACK (TCP) or any datagram (UDP) from the target on the reversed tuple,
``reset`` for an RST from the target or an ICMP destination unreachable quoting the flow (any
code but "fragmentation needed"; ICMPv6 type 1); with no reply it is ``unanswered``. Taking the
first following reply keeps a refused attempt refused even when the tuple is answered much later.

Everything is column-wise. Flows are compared through 64-bit fingerprints of their tuples (sort
and binary search instead of hashing in Python); every match found that way is then checked on
the full tuple, and the rare fingerprint collision is settled exactly in Python. The ``data``
JSON and ``key`` strings are joined by Arrow's string kernels from lookup tables, producing
exactly what :class:`~stormwatch.events.EventBatchBuilder` writes (compact, sorted keys).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from stormwatch.events import arrow_schema, event_type
from stormwatch.ingest.normalize import FLAG_ORDER, flags_from_letters, proto_name
from stormwatch.ingest.pcap_decode import ICMP, ICMP6, RST, SYN, TCP, UDP, Packets, Quotes

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
B = npt.NDArray[np.bool_]
ACK = 0x10
ANSWERED, RESET, UNANSWERED = 0, 1, 2
OUTCOMES = pa.array(["answered", "reset", "unanswered"])
# TCP flag byte → letters: the byte's bits, high to low, are C E U A P R S F (RFC 9293 3.1).
FLAG_TEXT = pa.array([flags_from_letters("".join(c for i, c in enumerate(FLAG_ORDER) if b & 0x80 >> i))
                      for b in range(256)])
_PROTOS = (TCP, UDP, ICMP, ICMP6)
PROTO_TEXT = pa.array([proto_name(p) for p in _PROTOS])
_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@functools.cache
def _numbers() -> pa.Array:
    """"0" … "65535": the text of ports, lengths, TTLs and ICMP codes by lookup, not formatting."""
    return pa.array([str(i) for i in range(65536)])


@functools.cache
def _halves() -> pa.Array:
    """"0.0" … "255.255": the text of each 16-bit half of an IPv4 address."""
    return pa.array([f"{i >> 8}.{i & 255}" for i in range(65536)])


class _Flows:
    """Flow tuples as columns: family, protocol, ports and the address words."""

    def __init__(self, fam: I64, proto: I64, sport: I64, dport: I64, sh: U64, sl: U64, dh: U64, dl: U64) -> None:
        self.cols = (fam, proto, sport, dport, sh, sl, dh, dl)

    def take(self, rows: I64) -> _Flows:
        return _Flows(*(c[rows] for c in self.cols))  # type: ignore[arg-type]

    def reversed(self) -> _Flows:
        fam, proto, sport, dport, sh, sl, dh, dl = self.cols
        return _Flows(fam, proto, dport, sport, dh, dl, sh, sl)

    def fingerprint(self) -> U64:
        fam, proto, sport, dport, *words = self.cols
        h = (fam.astype(np.uint64) << np.uint64(40) | proto.astype(np.uint64) << np.uint64(32)
             | sport.astype(np.uint64) << np.uint64(16) | dport.astype(np.uint64)) * _M2
        for w in words:
            h = (h ^ w.astype(np.uint64)) * _M1
            h ^= h >> np.uint64(31)
        h *= _M3
        return h ^ (h >> np.uint64(29))  # type: ignore[no-any-return]

    def equal(self, other: _Flows) -> B:
        eq = np.ones(len(self.cols[0]), dtype=np.bool_)
        for a, b in zip(self.cols, other.cols, strict=True):
            eq &= a == b
        return eq

    def row(self, i: int) -> tuple[int, ...]:
        return tuple(int(c[i]) for c in self.cols)


def _flows(p: Packets) -> _Flows:
    return _Flows(p.fam, p.proto, p.sport, p.dport, p.src_hi, p.src_lo, p.dst_hi, p.dst_lo)


def _first_of_flow(f: _Flows, udp: I64) -> I64:
    """The rows of ``udp`` that open a flow (unordered tuple) — fingerprints, then checked."""
    fwd, rev = f.take(udp), f.take(udp).reversed()
    key = np.minimum(fwd.fingerprint(), rev.fingerprint())  # the same for both directions
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    opener = first[inverse]  # each datagram's flow opener, if the fingerprint tells the truth
    same = fwd.equal(fwd.take(opener)) | fwd.equal(rev.take(opener))
    if same.all():
        return udp[np.sort(first)]
    # A fingerprint collision: settle the affected datagrams with exact tuples.
    bad_keys = np.unique(key[~same])
    firsts = set(udp[first[~np.isin(uniq, bad_keys)]].tolist())
    seen: set[tuple[int, ...]] = set()
    for i in np.flatnonzero(np.isin(key, bad_keys)).tolist():
        t, r = fwd.row(i), rev.row(i)
        if t not in seen and r not in seen:
            seen.add(t)
            firsts.add(int(udp[i]))
    return np.array(sorted(firsts), dtype=np.int64)


def attempts(p: Packets, q: Quotes) -> tuple[I64, I64]:
    """Rows of ``p`` that are events (in packet order) and the outcome code of each (-1: none)."""
    flows = _flows(p)
    tcp, udp = p.proto == TCP, p.proto == UDP
    syn = np.flatnonzero(tcp & (p.flags & (SYN | ACK) == SYN))
    udp_rows = np.flatnonzero(udp)
    att = np.sort(np.concatenate([syn, _first_of_flow(flows, udp_rows)]))
    synack = tcp & (p.flags & (SYN | ACK) == SYN | ACK)
    rst = tcp & (p.flags & RST != 0) & ~synack
    # A datagram whose two endpoints are equal is its own reverse: never a reply.
    self_flow = (p.src_hi == p.dst_hi) & (p.src_lo == p.dst_lo) & (p.sport == p.dport)
    rep = np.flatnonzero(synack | rst | (udp & ~self_flow))
    # Replies as flows in the attempt's direction: packets reversed, ICMP quotes as they are.
    rep_flows = flows.take(rep).reversed()
    quoted = _Flows(q.fam, q.proto, q.sport, q.dport, q.src_hi, q.src_lo, q.dst_hi, q.dst_lo)
    r_fp = np.concatenate([rep_flows.fingerprint(), quoted.fingerprint()])
    r_frame = np.concatenate([p.frame[rep], q.frame])
    r_kind = np.concatenate([np.where(rst[rep], RESET, ANSWERED), np.full(len(q.frame), RESET)])
    att_flows = flows.take(att)
    a_fp = att_flows.fingerprint()
    outcome = np.full(len(att), UNANSWERED, dtype=np.int64)
    if len(r_fp) and len(att):
        # Number the reply fingerprints (Arrow's hash tables), sort replies by (number, frame), and
        # find for each attempt whose fingerprint has replies the first one after its own frame.
        enc = pc.dictionary_encode(pa.array(r_fp))
        r_gid = np.asarray(enc.indices.to_numpy(), dtype=np.int64)
        a_gid = np.asarray(pc.fill_null(pc.index_in(pa.array(a_fp), value_set=enc.dictionary), -1).to_numpy(),
                           dtype=np.int64)
        cand = np.flatnonzero(a_gid >= 0)
        a_gid = a_gid[cand]
        span = int(max(p.frame.max(initial=0), q.frame.max(initial=0))) + 1
        r_pos = r_gid * span + r_frame
        order = np.argsort(r_pos, kind="stable")
        s_pos = r_pos[order]
        a_pos = a_gid * span + p.frame[att[cand]]
        at = np.minimum(np.searchsorted(s_pos, a_pos, side="right"), len(s_pos) - 1)
        ok = (r_gid[order[at]] == a_gid) & (s_pos[at] > a_pos)
        hit, reply = cand[ok], order[at[ok]]  # attempt → index of its first reply
        outcome[hit] = r_kind[reply]
        # Check the tuples behind each fingerprint match; settle mismatches exactly.
        all_rep = _concat_flows(rep_flows, quoted)
        wrong = hit[~att_flows.take(hit).equal(all_rep.take(reply))]
        for i in wrong.tolist():
            outcome[i] = _exact_outcome(att_flows.row(i), int(p.frame[att[i]]), all_rep, r_frame, r_kind,
                                        r_fp == a_fp[i])
    icmp = np.flatnonzero((p.proto == ICMP) | (p.proto == ICMP6))
    rows = np.concatenate([att, icmp])
    codes = np.concatenate([outcome, np.full(len(icmp), -1)])
    order = np.argsort(rows, kind="stable")
    return rows[order], codes[order]


def _concat_flows(a: _Flows, b: _Flows) -> _Flows:
    return _Flows(*(np.concatenate([x, y]) for x, y in zip(a.cols, b.cols, strict=True)))


def _exact_outcome(flow: tuple[int, ...], frame: int, replies: _Flows, r_frame: I64, r_kind: I64,
                   candidates: B) -> int:
    """The outcome of one attempt from exact tuple comparison (after a fingerprint collision)."""
    best: tuple[int, int] | None = None
    for j in np.flatnonzero(candidates).tolist():
        if r_frame[j] > frame and replies.row(j) == flow and (best is None or r_frame[j] < best[0]):
            best = (int(r_frame[j]), int(r_kind[j]))
    return UNANSWERED if best is None else best[1]


def _ip6_text(hi: U64, lo: U64) -> list[str]:
    """Canonical IPv6 text, as ``ipaddress`` writes it (RFC 5952 compression): ``inet_ntop`` gives
    the same except on the IPv4-embedding prefixes (::/96 and ::ffff:0:0/96), left to ipaddress."""
    raw = np.stack([hi, lo], axis=1).astype(">u8").tobytes()
    ntop, af = socket.inet_ntop, socket.AF_INET6
    out = [ntop(af, raw[i:i + 16]) for i in range(0, len(raw), 16)]
    for i in np.flatnonzero((hi == 0) & (lo >> np.uint64(48) == 0)).tolist():
        out[i] = ipaddress.IPv6Address(raw[16 * i:16 * i + 16]).compressed
    return out


def _ip_text(fam: I64, hi: U64, lo: U64) -> pa.Array:
    """Canonical address text: IPv4 from two 16-bit halves by lookup, IPv6 via the socket module."""
    halves = _halves()
    text = pc.binary_join_element_wise(halves.take(pa.array((lo >> np.uint64(16)) & np.uint64(0xFFFF))),
                                       halves.take(pa.array(lo & np.uint64(0xFFFF))), ".")
    v6 = fam == 6
    if v6.any():
        text = pc.replace_with_mask(text, pa.array(v6), pa.array(_ip6_text(hi[v6], lo[v6]), pa.string()))
    return text


def _data_tails(length: I64, ttl: I64, icmp: B, itype: I64, icode: I64) -> pa.Array:
    """The part of each row's ``data`` JSON after ``frame`` — few distinct values, formatted once."""
    code = ((length.clip(0, 0xFFFFFF) << 8 | ttl) << 17) | np.where(icmp, 0x10000 | itype << 8 | icode, 0)
    uniq, inverse = np.unique(code, return_inverse=True)
    tails = []
    for c in uniq.tolist():
        fields: dict[str, int] = {"length": c >> 25, "ttl": c >> 17 & 0xFF}
        if c & 0x10000:
            fields |= {"icmp_type": c >> 8 & 0xFF, "icmp_code": c & 0xFF}
        tails.append(json.dumps(fields, separators=(",", ":"), sort_keys=True)[1:])
    return pa.array(tails, pa.string()).take(pa.array(inverse.reshape(-1)))


def table(p: Packets, rows: I64, outcome: I64, sensor: str) -> pa.Table:
    """The events of ``rows`` of ``p`` as a table of :func:`stormwatch.events.arrow_schema`."""
    n = len(rows)
    et = event_type("fw.connection")
    proto = p.proto[rows]
    icmp = (proto == ICMP) | (proto == ICMP6)
    fam = p.fam[rows]
    src = _ip_text(fam, p.src_hi[rows], p.src_lo[rows])
    dst = _ip_text(fam, p.dst_hi[rows], p.dst_lo[rows])
    sport, dport = p.sport[rows], p.dport[rows]
    ts, frame = p.ts[rows], p.frame[rows]
    itype, icode = p.icmp_type[rows], p.icmp_code[rows]
    proto_txt = PROTO_TEXT.take(pa.array(np.select([proto == x for x in _PROTOS], range(len(_PROTOS)))))
    frame_txt = pa.array(frame).cast(pa.string())
    # data: the non-column fields, as EventBatchBuilder writes them ("format" < "frame" < the rest).
    # The frame comes after a fixed prefix; what follows it (length, ttl, ICMP type/code) takes
    # few distinct values, each formatted once with json.dumps.
    tails = _data_tails(p.iplen[rows], p.ttl[rows], icmp, itype, icode)
    data = pc.binary_join_element_wise('{"format":"pcap","frame":', frame_txt, ",", tails, "")
    # key: the packet's identity in its capture (ICMP: type and code in the port slots).
    numbers = _numbers()
    k_sport = numbers.take(pa.array(np.where(icmp, itype, sport)))
    k_dport = numbers.take(pa.array(np.where(icmp, icode, dport)))
    key = pc.binary_join_element_wise(pa.array(ts).cast(pa.string()), frame_txt, proto_txt, src, k_sport, dst,
                                      k_dport, "|")

    def const(value: object, typ: pa.DataType) -> pa.Array:
        return pa.repeat(pa.scalar(value, typ), n)

    columns = {
        "event": const(et.name, pa.string()),
        "ts": pa.array(ts, type=pa.timestamp("us")),
        "sensor": const(sensor, pa.string()),
        "session": pa.nulls(n, pa.string()),
        "src_ip": src,
        "src_port": pa.array(sport.astype(np.int32), mask=icmp),
        "dst_ip": dst,
        "dst_port": pa.array(dport.astype(np.int32), mask=icmp),
        "proto": proto_txt,
        "tcp_flags": FLAG_TEXT.take(pa.array(p.flags[rows], mask=proto != TCP)),
        "action": const("log", pa.string()),
        "outcome": OUTCOMES.take(pa.array(outcome, mask=outcome < 0)),
        "count": const(1, pa.int64()),
        "schema_version": const(et.version, pa.int16()),
        "data": data,
        "key": key,
    }
    schema = arrow_schema()
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
