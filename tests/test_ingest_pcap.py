"""The pcap reader on handcrafted captures: containers, link types, IP shapes, outcomes, damage.

Every capture here is written byte by byte by tests/pcap_synth.py; tests/test_ingest_pcap_tshark.py
checks the same reader against tshark on real captures.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import pcap_synth as ps
from pcap_synth import A6, B6, T0, A, B, C, at, brief, eth4, read, rows
from stormwatch.errors import InputError, TruncatedInput
from stormwatch.events import EventBatchBuilder
from stormwatch.ingest import pcap as pcap_module
from stormwatch.ingest.base import Source
from stormwatch.ingest.pcap import PcapReader


def test_tcp_outcomes(tmp_path: Path) -> None:
    syn_a = ps.ipv4(A, B, 6, ps.tcp(40000, 445, ps.SYN))
    pkts = [
        ps.eth(syn_a),                                                 # 1 SYN → answered by 2
        eth4(B, A, 6, ps.tcp(445, 40000, ps.SYN | ps.ACK)),            # 2 SYN-ACK
        eth4(A, B, 6, ps.tcp(40001, 139, ps.SYN)),                     # 3 SYN → reset by 4
        eth4(B, A, 6, ps.tcp(139, 40001, ps.RST | ps.ACK)),            # 4 RST-ACK
        eth4(A, B, 6, ps.tcp(40002, 23, ps.SYN)),                      # 5 SYN, never answered
        eth4(A, B, 6, ps.tcp(40002, 23, ps.SYN)),                      # 6 its retransmission
        eth4(A, C, 6, ps.tcp(40003, 80, ps.SYN | ps.ECE | ps.CWR)),    # 7 ECN-setup SYN → ICMP 8
        eth4(C, A, 1, ps.unreachable(ps.ipv4(A, C, 6, ps.tcp(40003, 80, ps.SYN)), code=3)),  # 8
        eth4(A, B, 6, ps.tcp(40000, 445, ps.ACK)),                     # 9 not an attempt
        eth4(A, B, 6, ps.tcp(40004, 22, ps.SYN)),                      # 10 SYN, only A's own RST follows
        eth4(A, B, 6, ps.tcp(40004, 22, ps.RST)),                      # 11
        eth4(A, B, 6, ps.tcp(40005, 25, ps.SYN)),                      # 12 reset first, answered later
        eth4(B, A, 6, ps.tcp(25, 40005, ps.RST | ps.ACK)),             # 13
        eth4(B, A, 6, ps.tcp(25, 40005, ps.SYN | ps.ACK)),             # 14
    ]
    table, rejects, error, total = read(tmp_path, ps.pcap(at(pkts)))
    assert error is None and rejects == [] and total == 14
    assert brief(table) == [
        (1, A, 40000, B, 445, "tcp", "S", "answered"),
        (3, A, 40001, B, 139, "tcp", "S", "reset"),
        (5, A, 40002, B, 23, "tcp", "S", "unanswered"),
        (6, A, 40002, B, 23, "tcp", "S", "unanswered"),
        (7, A, 40003, C, 80, "tcp", "CES", "reset"),
        (8, C, None, A, None, "icmp", None, None),
        (10, A, 40004, B, 22, "tcp", "S", "unanswered"),
        (12, A, 40005, B, 25, "tcp", "S", "reset"),
    ]
    first = rows(table)[0]
    assert first["ts"].timestamp() * 1e6 == pytest.approx(T0)
    assert (first["length"], first["ttl"], first["action"], first["count"]) == (len(syn_a), 64, "log", 1)
    icmp_row = rows(table)[5]
    assert (icmp_row["icmp_type"], icmp_row["icmp_code"]) == (3, 3)


def test_udp_first_of_flow_and_outcomes(tmp_path: Path) -> None:
    pkts = [
        eth4(A, B, 17, ps.udp(5353, 53)),         # 1 first of flow → answered (2)
        eth4(B, A, 17, ps.udp(53, 5353)),         # 2 reply: same flow, not an attempt
        eth4(A, B, 17, ps.udp(5353, 53)),         # 3 same flow again
        eth4(A, C, 17, ps.udp(5000, 161)),        # 4 → port unreachable (5)
        eth4(C, A, 1, ps.unreachable(ps.ipv4(A, C, 17, ps.udp(5000, 161)))),  # 5
        eth4(B, C, 17, ps.udp(1900, 1900)),       # 6 never answered
        eth4(C, B, 17, ps.udp(1900, 1901)),       # 7 another flow (ports differ), unanswered
        eth4(A, A, 17, ps.udp(7, 7)),             # 8 to itself: its own repeat is no reply
        eth4(A, A, 17, ps.udp(7, 7)),             # 9
    ]
    table, _, error, _ = read(tmp_path, ps.pcap(at(pkts)))
    assert error is None
    assert brief(table) == [
        (1, A, 5353, B, 53, "udp", None, "answered"),
        (4, A, 5000, C, 161, "udp", None, "reset"),
        (5, C, None, A, None, "icmp", None, None),
        (6, B, 1900, C, 1900, "udp", None, "unanswered"),
        (7, C, 1900, B, 1901, "udp", None, "unanswered"),
        (8, A, 7, A, 7, "udp", None, "unanswered"),
    ]


def test_table_matches_event_batch_builder(tmp_path: Path) -> None:
    """The column-wise table equals what EventBatchBuilder makes of the same events."""
    pkts = [eth4(A, B, 6, ps.tcp(1, 2, ps.SYN)), eth4(A, B, 1, ps.icmp(8, 0)),
            ps.eth(ps.ipv6(A6, B6, 17, ps.udp(3, 4)), 0x86DD)]
    table, _, _, _ = read(tmp_path, ps.pcap(at(pkts)))
    b = EventBatchBuilder("s1")
    keys = table.column("key").to_pylist()
    b.add("fw.connection", T0, keys[0], src_ip=A, src_port=1, dst_ip=B, dst_port=2, proto="tcp", tcp_flags="S",
          action="log", outcome="unanswered", format="pcap", frame=1, length=40, ttl=64)
    b.add("fw.connection", T0 + 1000, keys[1], src_ip=A, dst_ip=B, proto="icmp", action="log", format="pcap",
          frame=2, length=28, ttl=64, icmp_type=8, icmp_code=0)
    b.add("fw.connection", T0 + 2000, keys[2], src_ip=A6, src_port=3, dst_ip=B6, dst_port=4, proto="udp",
          action="log", outcome="unanswered", format="pcap", frame=3, length=53, ttl=64)
    assert table.equals(b.take())
    assert keys[0] == f"{T0}|1|tcp|{A}|1|{B}|2"
    assert keys[1] == f"{T0 + 1000}|2|icmp|{A}|8|{B}|0"


@pytest.mark.parametrize(("order", "nanos"), [("<", False), (">", False), ("<", True), (">", True)])
def test_classic_pcap_byte_orders_and_resolutions(tmp_path: Path, order: str, nanos: bool) -> None:
    pkts = [(T0 + 123_456, eth4(A, B, 6, ps.tcp(1, 2, ps.SYN))), (T0 + 999_999, eth4(A, C, 17, ps.udp(3, 4)))]
    table, _, error, _ = read(tmp_path, ps.pcap(pkts, order=order, nanos=nanos))
    assert error is None
    assert [r["frame"] for r in rows(table)] == [1, 2]
    assert table.column("ts").cast(pa.int64()).to_pylist() == [T0 + 123_456, T0 + 999_999]


def test_modified_pcap_record_headers(tmp_path: Path) -> None:
    """Kuznetzov's "modified" pcap (magic a1b2cd34) has 8 more bytes per record header."""
    pkt = eth4(A, B, 6, ps.tcp(1, 2, ps.SYN))
    head = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    recs = b"".join(struct.pack("<IIIIIHBB", T0 // 1_000_000, i, len(pkt), len(pkt), 2, 0x0800, 0, 0) + pkt
                    for i in range(3))
    table, rejects, error, total = read(tmp_path, head + recs)
    assert (error, rejects, total, len(table)) == (None, [], 3, 3)


def test_nanosecond_fraction_is_truncated_to_microseconds(tmp_path: Path) -> None:
    data = bytearray(ps.pcap([(T0, eth4(A, B, 6, ps.tcp(1, 2, ps.SYN)))], nanos=True))
    struct.pack_into("<I", data, 28, 999)  # 999 ns past the second
    table, _, _, _ = read(tmp_path, bytes(data))
    assert table.column("ts").cast(pa.int64()).to_pylist() == [T0 // 1_000_000 * 1_000_000]


def test_pcapng_sections_interfaces_and_blocks(tmp_path: Path) -> None:
    syn = ps.ipv4(A, B, 6, ps.tcp(1000, 445, ps.SYN))
    opb = eth4(A, C, 1, ps.icmp(8, 0))
    section1 = (ps.ng_shb() + ps.ng_idb(1) + ps.ng_idb(101, tsresol=9)
                + ps.ng_epb(0, T0, ps.eth(syn))                         # frame 1, µs
                + ps.ng_block(4, b"\0\0\0\0")                            # name resolution: skipped
                + ps.ng_epb(1, (T0 + 5) * 1000, syn)                     # frame 2, ns, raw IP
                + ps.ng_block(5, struct.pack("<III", 0, 0, 0))           # interface statistics
                + ps.ng_block(0x40000BAD, b"custom!")                    # custom block
                + ps.ng_block(2, struct.pack("<HHIIII", 0, 0, (T0 + 7) >> 32, (T0 + 7) & 0xFFFFFFFF, len(opb), len(opb))
                              + opb)                                     # frame 3: obsolete Packet Block
                + ps.ng_epb(0, T0 + 9, ps.eth(ps.ipv4(B, A, 6, ps.tcp(445, 1000, ps.SYN | ps.ACK)))))
    section2 = (ps.ng_shb(">") + ps.ng_idb(113, ">", tsresol=0x80 | 10)   # 2^-10 s units
                + ps.ng_epb(0, (T0 // 1_000_000 * 1024) + 512, ps.sll(ps.ipv4(C, A, 17, ps.udp(9, 9))), ">")
                + ps.ng_spb(ps.sll(ps.ipv4(C, B, 6, ps.tcp(7, 7, ps.SYN))), ">"))  # frame 5, no timestamp
    table, rejects, error, total = read(tmp_path, section1 + section2, "t.pcapng")
    assert error is None and rejects == [] and total == 6
    assert brief(table) == [
        (1, A, 1000, B, 445, "tcp", "S", "answered"),
        (2, A, 1000, B, 445, "tcp", "S", "answered"),
        (3, A, None, C, None, "icmp", None, None),
        (5, C, 9, A, 9, "udp", None, "unanswered"),
        (6, C, 7, B, 7, "tcp", "S", "unanswered"),
    ]
    ts = table.column("ts").cast(pa.int64()).to_pylist()
    assert ts[:4] == [T0, T0 + 5, T0 + 7, T0 // 1_000_000 * 1_000_000 + 500_000]
    assert ts[4] == ts[3]  # a Simple Packet Block takes the timestamp before it


def test_vlan_and_qinq(tmp_path: Path) -> None:
    ip = ps.ipv4(A, B, 6, ps.tcp(1, 2, ps.SYN))
    pkts = [ps.eth(ip, vlans=(100,)), ps.eth(ip, vlans=(10, 20), tpid=0x88A8),
            ps.eth(ps.ipv6(A6, B6, 6, ps.tcp(3, 4, ps.SYN)), 0x86DD, vlans=(5,))]
    table, rejects, _, _ = read(tmp_path, ps.pcap(at(pkts)))
    assert rejects == []
    assert [(r["frame"], r["src_ip"], r["dst_port"]) for r in rows(table)] == [(1, A, 2), (2, A, 2), (3, A6, 4)]


def test_ipv6_extension_headers_and_fragments(tmp_path: Path) -> None:
    pkts = [
        ps.ipv6(A6, B6, 6, ps.tcp(1, 22, ps.SYN), ext=[ps.hop_by_hop(), ps.dest_opts()]),    # 1
        ps.ipv6(A6, B6, 17, ps.udp(5, 53), ext=[ps.fragment(0, True)]),                     # 2 first fragment
        ps.ipv6(A6, B6, 17, b"rest of it", ext=[ps.fragment(16, False)]),                   # 3 later fragment
        ps.ipv6(A6, B6, 58, ps.icmp(128, 0), hlim=3),                                       # 4 echo request
        ps.ipv6(A6, B6, 59, b""),                                                            # 5 no next header
        ps.ipv6(A6, B6, 6, b"", ext=[(0, bytes([9, 0, 0, 0, 0, 0, 0]))]),                   # 6 chain runs off
    ]
    table, rejects, _, _ = read(tmp_path, ps.pcap(at(pkts), link=229))
    got = rows(table)
    assert [(r["frame"], r["proto"], r["src_port"], r["dst_port"]) for r in got] == [
        (1, "tcp", 1, 22), (2, "udp", 5, 53), (4, "icmp6", None, None)]
    assert (got[2]["icmp_type"], got[2]["ttl"], got[0]["length"]) == (128, 3, 40 + 16 + 20)
    assert [(r.line, r.reason) for r in rejects] == [(6, "truncated or overlong IPv6 extension-header chain")]


def test_ipv4_fragments_and_options(tmp_path: Path) -> None:
    pkts = [
        eth4(A, B, 17, ps.udp(1, 2, b"x" * 16), more_fragments=True),      # 1 first fragment: ports
        eth4(A, B, 17, b"y" * 8, frag_offset=24),                          # 2 later fragment: skipped
        eth4(A, B, 6, ps.tcp(3, 4, ps.SYN), options=b"\x01\x01\x01\x00"),  # 3 IHL 6
    ]
    table, rejects, _, total = read(tmp_path, ps.pcap(at(pkts)))
    assert rejects == [] and total == 3
    assert [(r["frame"], r["src_port"], r["length"]) for r in rows(table)] == [(1, 1, 44), (3, 3, 44)]


@pytest.mark.parametrize(("link", "wrap"), [
    (113, ps.sll), (276, ps.sll2), (101, lambda p: p), (228, lambda p: p),
    (0, lambda p: ps.null(p, 2, "<")), (0, lambda p: ps.null(p, 2, ">")), (108, lambda p: ps.null(p, 2, ">"))])
def test_link_types(tmp_path: Path, link: int, wrap: Any) -> None:
    table, rejects, _, _ = read(tmp_path, ps.pcap(at([wrap(ps.ipv4(A, B, 6, ps.tcp(1, 2, ps.SYN)))]), link=link))
    assert rejects == []
    assert brief(table) == [(1, A, 1, B, 2, "tcp", "S", "unanswered")]


def test_null_link_ipv6_family_values(tmp_path: Path) -> None:
    pkts = [ps.null(ps.ipv6(A6, B6, 6, ps.tcp(1, 2, ps.SYN)), fam, order) for fam in (24, 28, 30) for order in "<>"]
    table, _, _, _ = read(tmp_path, ps.pcap(at(pkts), link=0))
    assert len(table) == 6 and set(table.column("src_ip").to_pylist()) == {A6}


def test_non_ip_and_unknown_link_types_are_skipped(tmp_path: Path) -> None:
    arp = ps.eth(bytes(28), 0x0806)
    table, rejects, _, total = read(tmp_path, ps.pcap(at([arp, arp])))
    assert (len(table), rejects, total) == (0, [], 2)
    table, rejects, _, total = read(tmp_path, ps.pcap(at([bytes(40)]), link=147))
    assert (len(table), rejects, total) == (0, [], 1)


def test_malformed_packets_are_rejects(tmp_path: Path) -> None:
    good = eth4(A, B, 6, ps.tcp(1, 2, ps.SYN))
    v5 = bytearray(good)
    v5[14] = 0x55
    pkts = [good, good[:20], bytes(v5), good[:40], eth4(A, B, 6, ps.tcp(1, 2, ps.SYN, offset_words=2)),
            eth4(A, B, 6, b"", total=10), ps.eth(b"", vlans=(1,))[:15], good[:8]]
    table, rejects, error, total = read(tmp_path, ps.pcap(at(pkts)))
    assert error is None and total == 8
    assert [r["frame"] for r in rows(table)] == [1]
    assert [(r.line, r.reason) for r in rejects] == [
        (2, "truncated IPv4 header"), (3, "bad IP version"), (4, "truncated TCP header"),
        (5, "TCP header length below 20 bytes"), (6, "IPv4 total length shorter than its header"),
        (7, "truncated VLAN tag"), (8, "truncated link-layer header")]
    assert all(r.format == "pcap" and r.source.endswith("t.pcap") for r in rejects)
    assert rejects[0].raw == good[:20].hex()


def test_truncated_capture_keeps_events_before_the_cut(tmp_path: Path) -> None:
    pkts = at([eth4(A, B, 6, ps.tcp(1, 2, ps.SYN)), eth4(B, A, 6, ps.tcp(2, 1, ps.SYN | ps.ACK)),
               eth4(A, C, 6, ps.tcp(3, 4, ps.SYN))])
    data = ps.pcap(pkts)
    cut = len(data) - 10
    table, _, error, total = read(tmp_path, data[:cut])
    assert isinstance(error, TruncatedInput)
    assert error.offset == len(ps.pcap(pkts[:2])) and "inside a record" in str(error)
    assert total == 2 and brief(table) == [(1, A, 1, B, 2, "tcp", "S", "answered")]
    # cut inside the record header, and inside the file header
    table, _, error, _ = read(tmp_path, ps.pcap(pkts)[:24 + 5])
    assert isinstance(error, TruncatedInput) and error.offset == 24 and len(table) == 0
    _, _, error, _ = read(tmp_path, data[:20])
    assert isinstance(error, TruncatedInput)


def test_damaged_record_length_stops_reading(tmp_path: Path) -> None:
    pkts = at([eth4(A, B, 6, ps.tcp(1, 2, ps.SYN)), eth4(A, C, 6, ps.tcp(3, 4, ps.SYN))])
    data = bytearray(ps.pcap(pkts))
    second = len(ps.pcap(pkts[:1]))
    struct.pack_into("<I", data, second + 8, 0x7FFFFFFF)
    table, _, error, _ = read(tmp_path, bytes(data))
    assert isinstance(error, TruncatedInput) and error.offset == second and "claims" in str(error)
    assert len(table) == 1


def test_truncated_pcapng_block(tmp_path: Path) -> None:
    data = ps.ng_shb() + ps.ng_idb(1) + ps.ng_epb(0, T0, eth4(A, B, 6, ps.tcp(1, 2, ps.SYN)))
    whole = data + ps.ng_epb(0, T0, eth4(A, C, 6, ps.tcp(1, 2, ps.SYN)))
    table, _, error, _ = read(tmp_path, whole[:-6], "t.pcapng")
    assert isinstance(error, TruncatedInput) and error.offset == len(data)
    assert len(table) == 1
    bad = bytearray(whole)
    struct.pack_into("<I", bad, len(bad) - 4, 999)  # trailing length disagrees
    table, _, error, _ = read(tmp_path, bytes(bad), "t.pcapng")
    assert isinstance(error, TruncatedInput) and "disagree" in str(error) and len(table) == 1


def test_gzip_capture_and_truncated_gzip(tmp_path: Path) -> None:
    pkts = at([eth4(A, B, 17, ps.udp(i, 53, bytes(200))) for i in range(1, 400)])
    data = ps.pcap(pkts)
    plain, _, _, _ = read(tmp_path, data)
    packed, _, error, _ = read(tmp_path, data, "t.pcap.gz", gz=True)
    assert error is None and packed.equals(plain) and len(plain) == 399
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(gzip.compress(data)[:-300])
    got, error = [], None
    try:
        for chunk in PcapReader().read(Source(str(path), "s1", "gzip")):
            got.append(chunk.events)
    except InputError as exc:
        error = exc
    assert isinstance(error, TruncatedInput)
    assert 0 < sum(len(t) for t in got) < 399


def test_small_read_blocks_give_the_same_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records straddling read blocks are carried over, for both containers."""
    pkts = at([eth4(A, B, 6, ps.tcp(i, 80, ps.SYN)) for i in range(1, 60)] + [eth4(B, A, 6, ps.tcp(80, 5, ps.RST))])
    ng = ps.ng_shb() + ps.ng_idb(1) + b"".join(ps.ng_epb(0, ts, p) for ts, p in pkts)
    whole_pcap, _, _, _ = read(tmp_path, ps.pcap(pkts))
    whole_ng, _, _, _ = read(tmp_path, ng, "t.pcapng")
    monkeypatch.setattr(pcap_module, "BLOCK_BYTES", 97)
    monkeypatch.setattr(pcap_module, "READ_PIECE", 13)
    small_pcap, _, error, _ = read(tmp_path, ps.pcap(pkts))
    small_ng, _, error_ng, _ = read(tmp_path, ng, "t.pcapng")
    assert error is None and error_ng is None
    assert small_pcap.equals(whole_pcap) and small_ng.equals(whole_ng) and len(whole_pcap) == 59
    assert whole_ng.column("outcome").to_pylist()[4] == "reset"


def test_keys_are_stable_and_unique(tmp_path: Path) -> None:
    same = eth4(A, B, 6, ps.tcp(1, 2, ps.SYN))
    data = ps.pcap([(T0, same), (T0, same), (T0, same)])
    first, _, _, _ = read(tmp_path, data)
    again, _, _, _ = read(tmp_path, data)
    keys = first.column("key").to_pylist()
    assert keys == again.column("key").to_pylist() and len(set(keys)) == 3


def test_sniff() -> None:
    r = PcapReader()
    for magic in ("a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1"):
        assert r.sniff(bytes.fromhex(magic) + bytes(20))
    assert r.sniff(ps.ng_shb(">")) and r.sniff(ps.ng_shb("<"))
    assert not r.sniff(b"Oct  1 12:00:00 host kernel: IN=eth0 OUT= SRC=1.2.3.4")
    assert not r.sniff(b"\x0a\x0d\x0d\x0a" + bytes(20))  # SHB type without a byte-order mark
    assert not r.sniff(b"")


def test_not_a_capture(tmp_path: Path) -> None:
    _, _, error, _ = read(tmp_path, b"#fields\tts\tuid\n")
    assert isinstance(error, InputError) and "not a pcap" in str(error)
    _, _, error, _ = read(tmp_path, b"")
    assert isinstance(error, InputError)


def test_store_keeps_each_packet_once_across_rereads(tmp_path: Path, store: Any) -> None:
    """Keys are stable: the second read of a capture adds nothing to the store."""
    path = tmp_path / "m.pcap"
    path.write_bytes(ps.mixed_captures()["ether-vlan.pcap"])
    results = []
    for _ in range(2):
        for chunk in PcapReader().read(Source(str(path), "s1")):
            results.append(store.write_events(chunk.events))
    assert results[0].inserted == results[0].offered == 21
    assert (results[1].offered, results[1].inserted) == (21, 0)
