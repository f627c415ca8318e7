"""From decoded packets to ``fw.connection`` events: attempts, their outcomes, the Arrow table.

What is an attempt (one event each):

- every TCP segment with SYN and without ACK (a retransmitted SYN is another event, as tshark and
  a firewall log count it; each gets the outcome of its own 4-tuple);
- the first UDP datagram of a flow, a flow being the unordered 5-tuple: later datagrams of the
  same flow, in either direction, are not new attempts;
- every ICMP and ICMPv6 message (no ports, no outcome; ``icmp_type``/``icmp_code`` in data).

Outcome of a TCP or UDP attempt: the *first* reply that follows it in the capture decides it —
``answered`` for a SYN-ACK (TCP) or any datagram (UDP) from the target on the reversed tuple,
``reset`` for an RST from the target or an ICMP destination-unreachable quoting the flow; with no
reply it is ``unanswered``. Taking the first following reply keeps a refused attempt refused even
when the same tuple is answered much later.

Everything is column-wise: flows are identified by hashing fixed-width key bytes with Arrow's
dictionary encoding, replies are found with one sort and a binary search, and the JSON ``data``
and ``key`` strings are joined by Arrow's string kernels, producing exactly what
:class:`~stormwatch.events.EventBatchBuilder` would (``json.dumps(sort_keys=True)``, compact).
"""

from __future__ import annotations

import ipaddress

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from stormwatch.events import arrow_schema, event_type
from stormwatch.ingest.normalize import FLAG_ORDER, flags_from_letters, proto_name
from stormwatch.ingest.pcap_decode import ICMP, ICMP6, RST, SYN, TCP, UDP, Packets, Quotes

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
ACK = 0x10
ANSWERED, RESET, UNANSWERED = 0, 1, 2
OUTCOMES = pa.array(["answered", "reset", "unanswered"])
# TCP flag byte → letters: the byte's bits, high to low, are C E U A P R S F (RFC 9293 3.1).
FLAG_TEXT = pa.array([flags_from_letters("".join(c for i, c in enumerate(FLAG_ORDER) if b & 0x80 >> i))
                      for b in range(256)])
_PROTOS = (TCP, UDP, ICMP, ICMP6)
PROTO_TEXT = pa.array([proto_name(p) for p in _PROTOS])


def _flow_keys(fam: I64, src: U8, dst: U8, sport: I64, dport: I64, proto: I64) -> pa.Array:
    """One 38-byte binary key per flow tuple, for hashing."""
    n = len(fam)
    k = np.empty((n, 38), dtype=np.uint8)
    k[:, 0] = fam
    k[:, 1:17] = src
    k[:, 17:33] = dst
    k[:, 33:35] = sport.astype(">u2").view(np.uint8).reshape(n, 2)
    k[:, 35:37] = dport.astype(">u2").view(np.uint8).reshape(n, 2)
    k[:, 37] = proto
    return pa.Array.from_buffers(pa.binary(38), n, [None, pa.py_buffer(k.tobytes())])


def _ids(keys: pa.Array) -> I64:
    """Dense ids, numbered in order of first appearance."""
    return np.asarray(pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def attempts(p: Packets, q: Quotes) -> tuple[I64, I64]:
    """Rows of ``p`` that are events (in packet order) and the outcome code of each (-1: none)."""
    tcp, udp = p.proto == TCP, p.proto == UDP
    syn = tcp & (p.flags & (SYN | ACK) == SYN)
    # UDP: order each datagram's two endpoints so both directions share one key, then keep the
    # first datagram of every key (dictionary ids are numbered in order of first appearance).
    ui = np.flatnonzero(udp)
    a_ep = np.concatenate([p.src[ui], p.sport[ui, None].astype(">u2").view(np.uint8)], axis=1)
    b_ep = np.concatenate([p.dst[ui], p.dport[ui, None].astype(">u2").view(np.uint8)], axis=1)
    diff = a_ep != b_ep
    first_diff = np.argmax(diff, axis=1)
    rows = np.arange(len(ui))
    swap = diff.any(axis=1) & (a_ep[rows, first_diff] > b_ep[rows, first_diff])
    lo = np.where(swap[:, None], b_ep, a_ep)
    hi = np.where(swap[:, None], a_ep, b_ep)
    ukeys = np.concatenate([p.fam[ui, None].astype(np.uint8), lo, hi], axis=1)
    uid = _ids(pa.Array.from_buffers(pa.binary(37), len(ui), [None, pa.py_buffer(ukeys.tobytes())]))
    seen = np.maximum.accumulate(np.concatenate([[-1], uid]))[:-1]
    first_udp = np.zeros(len(p), dtype=np.bool_)
    first_udp[ui[uid > seen]] = True

    # Attempt keys in their own direction; reply keys turned into the attempt's direction.
    att = np.flatnonzero(syn | first_udp)
    synack = tcp & (p.flags & (SYN | ACK) == SYN | ACK)
    rst = tcp & (p.flags & RST != 0) & ~synack
    rep = np.flatnonzero(synack | rst | udp)
    rep_kind = np.where(rst[rep], RESET, ANSWERED)
    keys = pa.concat_arrays([
        _flow_keys(p.fam[att], p.src[att], p.dst[att], p.sport[att], p.dport[att], p.proto[att]),
        _flow_keys(p.fam[rep], p.dst[rep], p.src[rep], p.dport[rep], p.sport[rep], p.proto[rep]),
        _flow_keys(q.fam, q.src, q.dst, q.sport, q.dport, q.proto),
    ])
    ids = _ids(keys)
    a_id, r_id = ids[:len(att)], ids[len(att):]
    r_frame = np.concatenate([p.frame[rep], q.frame])
    r_kind = np.concatenate([rep_kind, np.full(len(q.frame), RESET)])
    # The first reply after each attempt: sort replies by (flow, frame), binary-search each attempt.
    span = int(max(p.frame.max(initial=0), q.frame.max(initial=0))) + 1
    r_pos = r_id * span + r_frame
    order = np.argsort(r_pos, kind="stable")
    r_pos, r_id, r_kind = r_pos[order], r_id[order], r_kind[order]
    at = np.searchsorted(r_pos, a_id * span + p.frame[att], side="right")
    found = at < len(r_pos)
    found[found] = r_id[at[found]] == a_id[found]
    outcome = np.where(found, r_kind[np.minimum(at, len(r_pos) - 1)] if len(r_pos) else 0, UNANSWERED)

    icmp = np.flatnonzero((p.proto == ICMP) | (p.proto == ICMP6))
    rows_all = np.concatenate([att, icmp])
    out_all = np.concatenate([outcome, np.full(len(icmp), -1)])
    order = np.argsort(rows_all, kind="stable")
    return rows_all[order], out_all[order]


def _ip_text(fam: I64, addr: U8) -> pa.Array:
    """Canonical address text: IPv4 dotted quads by Arrow's string kernels, IPv6 by ipaddress."""
    octets = [pa.array(addr[:, j]).cast(pa.string()) for j in range(12, 16)]
    text = pc.binary_join_element_wise(*octets, ".")
    v6 = np.flatnonzero(fam == 6)
    if len(v6):
        cache: dict[bytes, str] = {}
        six = []
        for raw in addr[v6].tobytes().__iter__.__self__[i * 16:(i + 1) * 16] for i in range(len(v6))):
            pass
    return text


def _text(values: I64) -> pa.Array:
    return pa.array(values).cast(pa.string())


def table(p: Packets, rows: I64, outcome: I64, sensor: str) -> pa.Table:
    """The events of ``rows`` of ``p`` as a table of :func:`stormwatch.events.arrow_schema`."""
    n = len(rows)
    et = event_type("fw.connection")
    proto = p.proto[rows]
    icmp = (proto == ICMP) | (proto == ICMP6)
    is_tcp = proto == TCP
    fam = p.fam[rows]
    src, dst = _ip_text(fam, p.src[rows]), _ip_text(fam, p.dst[rows])
    sport, dport = p.sport[rows], p.dport[rows]
    ts, frame = p.ts[rows], p.frame[rows]
    itype, icode = p.icmp_type[rows], p.icmp_code[rows]
    proto_code = np.searchsorted(np.array(_PROTOS), proto) if False else np.select(
        [proto == x for x in _PROTOS], list(range(len(_PROTOS))))
    proto_txt = PROTO_TEXT.take(pa.array(proto_code))
    # data: the non-column fields, as EventBatchBuilder writes them (sorted keys, compact).
    head = pc.binary_join_element_wise('{"format":"pcap","frame":', _text(frame), "")
    icmp_part = pc.binary_join_element_wise(',"icmp_code":', _text(icode), ',"icmp_type":', _text(itype), "")
    tail = pc.binary_join_element_wise(',"length":', _text(p.iplen[rows]), ',"ttl":', _text(p.ttl[rows]), "}",
                                       "")
    data = pc.binary_join_element_wise(head, pc.if_else(pa.array(icmp), icmp_part, ""), tail, "")
    # key: stable identity of the packet within its capture (ICMP: type and code in the port slots).
    k_sport = _text(np.where(icmp, itype, sport))
    k_dport = _text(np.where(icmp, icode, dport))
    key = pc.binary_join_element_wise(_text(ts), _text(frame), proto_txt, src, k_sport, dst, k_dport, "|")

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
        "tcp_flags": FLAG_TEXT.take(pa.array(p.flags[rows], mask=~is_tcp)),
        "action": const("log", pa.string()),
        "outcome": OUTCOMES.take(pa.array(outcome, mask=outcome < 0)),
        "count": const(1, pa.int64()),
        "schema_version": const(et.version, pa.int16()),
        "data": data,
        "key": key,
    }
    schema = arrow_schema()
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
