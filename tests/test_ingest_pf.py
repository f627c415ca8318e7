"""pf logs printed by tcpdump. Vectors marked [OSSEC] are the sample lines in the comment of OSSEC's
pf decoder (ossec/ossec-hids src/analysisd/decoders/plugins/pf_decoder.c); [UTMFW] are the OpenBSD
tcpdump lines quoted in the pf log parser of sonertari/UTMFW; [OPENBSD] is the example in OpenBSD's
pf README (``tcpdump -vner``). Lines without a mark are built from tcpdump's print-pflog.c and
print-tcp.c formats (libpcap tcpdump as on FreeBSD: ``rule N/0(match): ``, ``Flags [S]``)."""

from __future__ import annotations

import gzip
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from reader_helpers import event_rows, read_table
from stormwatch.events import Reject
from stormwatch.ingest.base import Source
from stormwatch.ingest.pf import PfReader
from stormwatch.store import Store

R = PfReader()

VECTORS = [
    # 0 [OSSEC] behind a syslog header; the packet's own time is used.
    "Mar 30 15:33:26 enigma pf: Mar 30 15:32:33.483712 rule 2/(match) pass in on xl0: 140.211.166.3.6667 > "
    "192.168.2.10.16290: P 7408:7677(269) ack 1773 win 2520 <nop,nop,timestamp 3960674784 2860123562> (DF)",
    # 1 [OSSEC]
    "Mar 30 15:47:05.522341 rule 4/(match) block in on lo0: 127.0.0.1.48784 > 127.0.0.1.23: S "
    "1381529123:1381529123(0) win 16384 <mss 33184,nop,nop,sackOK,nop,wscale 0,[|tcp]> (DF) [tos 0x10]",
    # 2 [OSSEC]
    "Mar 30 15:54:22.171929 rule 3/(match) pass out on xl0: 192.168.2.10.1514 > 192.168.2.190.1030:  udp 73",
    # 3 [OSSEC]
    "Mar 30 17:47:41.400075 rule 3/(match) pass out on lo0: 127.0.0.1 > 127.0.0.1: icmp: echo request",
    # 4 [UTMFW] UDP with a DNS decoder's output instead of "udp N"
    "Sep 28 03:50:16.900084 rule 11/(match) block in on em1: 10.0.0.11.5353 > 224.0.0.251.5353: "
    "0*- [0q] 7/0/0[|domain] (DF)",
    # 5 [UTMFW]
    "Sep 28 03:50:20.124951 rule 11/(match) block in on em1: 10.0.0.11 > 224.0.0.22: igmp-2 [v2] (DF) "
    "[tos 0xc0] [ttl 1]",
    # 6 [UTMFW] IPv6, ICMPv6
    "Sep 28 03:50:03.749086 rule 11/(match) block in on em1: fe80::21f:e2ff:fe61:969a > ff02::2: "
    "icmp6: router solicitation",
    # 7 [UTMFW] the unspecified address, a hop-by-hop header, type by number
    "Sep 26 17:46:27.631418 rule 11/(match) block in on em0: :: > ff02::16: HBH icmp6: type-#143 [hlim 1]",
    # 8 [UTMFW] IPv6 ports after '.', the body glued to the destination
    "Oct 18 05:16:52.230791 rule 11/(match) block in on em1: fe80::a00:27ff:fe4f:2af9.546 > ff02::1:2.547:"
    "dhcp6 solicit [hlim 1]",
    # 9 libpcap tcpdump -tttt (FreeBSD): "rule 0/0(match): ", newer TCP style
    "2026-11-26 10:00:01.123456 rule 0/0(match): block in on em0: 198.51.100.7.51234 > 192.0.2.10.445: "
    "Flags [S], seq 1234, win 65535, options [mss 1460,nop,wscale 6], length 0",
    # 10 newer UDP style, an anchor rule
    "2026-11-26 10:00:02.000001 rule 1.inbound.3/0(match): block in on vtnet0: 198.51.100.8.40001 > "
    "192.0.2.11.137: UDP, length 50",
    # 11 newer ICMP style
    "2026-11-26 10:00:03.5 rule 0/0(match): block in on em0: 198.51.100.9 > 192.0.2.12: ICMP 198.51.100.9 "
    "udp port 33434 unreachable, length 36",
    # 12 tcpdump -tt (epoch seconds), IPv6 with ports, SYN-ACK in the newer style
    "1764151203.000250 rule 5/0(match): pass out on em0: 2001:db8::10.445 > 2001:db8::7.51234: "
    "Flags [S.], seq 1, ack 1235, win 65535, length 0",
    # 13 [OPENBSD] tcpdump -v: uid/pid of the rule and of the socket (with OpenBSD -ttt here)
    "Nov 26 10:00:04.789012 rule 3/(match) [uid 0, pid 12345] block out on em0: [uid 1000, pid 6789] "
    "192.168.1.1.1234 > 1.2.3.4.70: udp 12 (ttl 64, id 1234, len 40)",
]


def _read(path: Path, **kw: Any) -> tuple[pa.Table, list[Reject], int, int]:
    return read_table(R, path, **kw)


_rows = event_rows


def _file(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "pflog.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def _tuple(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["proto"])


def test_vectors(tmp_path: Path) -> None:
    events, rejects, read, skipped = _read(_file(tmp_path, VECTORS), year_hint=2026)
    assert [(x.line, x.reason) for x in rejects] == [] and read == len(VECTORS) and skipped == 0
    r = _rows(events)
    assert r[0]["ts"] == datetime(2026, 3, 30, 15, 32, 33, 483712)
    assert _tuple(r[0]) == ("140.211.166.3", 6667, "192.168.2.10", 16290, "tcp")
    assert (r[0]["tcp_flags"], r[0]["action"], r[0]["rule"], r[0]["in_iface"], r[0]["format"]) == (
        "AP", "accept", "2", "xl0", "pf")  # old style: P plus "ack N"
    assert (_tuple(r[1]), r[1]["tcp_flags"], r[1]["action"]) == (
        ("127.0.0.1", 48784, "127.0.0.1", 23, "tcp"), "S", "drop")
    assert (_tuple(r[2]), r[2]["out_iface"], r[2].get("in_iface")) == (
        ("192.168.2.10", 1514, "192.168.2.190", 1030, "udp"), "xl0", None)
    assert (r[3]["proto"], r[3]["icmp_type"], r[3]["icmp_code"], r[3]["src_port"]) == ("icmp", 8, 0, None)
    assert _tuple(r[4]) == ("10.0.0.11", 5353, "224.0.0.251", 5353, "udp")
    assert (_tuple(r[5]), r[5]["ttl"]) == (("10.0.0.11", None, "224.0.0.22", None, "igmp"), 1)
    assert (r[6]["src_ip"], r[6]["proto"], r[6]["icmp_type"]) == ("fe80::21f:e2ff:fe61:969a", "icmp6", 133)
    assert (r[7]["src_ip"], r[7]["dst_ip"], r[7]["icmp_type"], r[7]["ttl"]) == ("::", "ff02::16", 143, 1)
    assert _tuple(r[8]) == ("fe80::a00:27ff:fe4f:2af9", 546, "ff02::1:2", 547, "udp")
    assert r[9]["ts"] == datetime(2026, 11, 26, 10, 0, 1, 123456)
    assert (_tuple(r[9]), r[9]["tcp_flags"], r[9]["rule"]) == (
        ("198.51.100.7", 51234, "192.0.2.10", 445, "tcp"), "S", "0")
    assert (_tuple(r[10]), r[10]["rule"], r[10]["in_iface"]) == (
        ("198.51.100.8", 40001, "192.0.2.11", 137, "udp"), "1.inbound.3", "vtnet0")
    assert (r[11]["ts"], r[11]["icmp_type"], r[11]["icmp_code"]) == (datetime(2026, 11, 26, 10, 0, 3, 500000), 3, 3)
    assert r[12]["ts"] == datetime(2025, 11, 26, 10, 0, 3, 250)  # epoch 1764151203.000250
    assert (_tuple(r[12]), r[12]["tcp_flags"], r[12]["action"]) == (
        ("2001:db8::10", 445, "2001:db8::7", 51234, "tcp"), "AS", "accept")
    assert (_tuple(r[13]), r[13]["out_iface"], r[13]["ttl"], r[13]["length"]) == (
        ("192.168.1.1", 1234, "1.2.3.4", 70, "udp"), "em0", 64, 40)


def test_malformed_and_undated_lines_are_rejected(tmp_path: Path) -> None:
    lines = [
        VECTORS[9],  # 1
        "10:00:01.123456 rule 2/(match) block in on em0: 198.51.100.7.51234 > 192.0.2.10.445: S 1:1(0) win 1024",  # 2
        "00:00:00.000012 rule 0/0(match): block in on em0: 198.51.100.7.51234 > 192.0.2.10.445: Flags [S]",  # 3
        "Nov 26 10:00:05.000001 rule 2/(match) block in on em0: 198.51.100.777.51234 > 192.0.2.10.445: S 1:1(0) "
        "win 1",  # 4: not an address
        "Nov 26 10:00:06.000001 rule 2/(match) block in on em0: (tos 0x0, ttl 64, id 1, offset 0, flags [DF], "
        "proto TCP (6), length 60)",  # 5: tcpdump -v, the packet is on the next line
        "    198.51.100.7.51234 > 192.0.2.10.445: Flags [S], seq 1, win 65535, length 0",  # 6: skipped
        "Nov 26 10:00:07.000001 rule 2/(match) block in on em0: 198.51.100.7 > 192.0.2.10: 47 bytes of something",  # 7
        "Nov 26 10:00:08.000001 rule 2/(match) block in on em0: host.example.com.51234 > 192.0.2.10.http: "
        "S 1:1(0)",  # 8: names, not numbers (tcpdump without -n)
        "tcpdump: reading from file /var/log/pflog, link-type PFLOG (OpenBSD pflog file)",  # 9: skipped
    ]
    events, rejects, read, skipped = _read(_file(tmp_path, lines), year_hint=2026)
    assert events.num_rows == 1 and read == 9 and skipped == 2
    got = {x.line: x.reason for x in rejects}
    assert sorted(got) == [2, 3, 4, 5, 7, 8]
    assert "-tttt" in got[2] and "-tttt" in got[3]
    assert "address" in got[4] and "source > destination" in got[5]
    assert "protocol" in got[7] and "address" in got[8]
    assert all(x.format == "pf" for x in rejects)


def test_gzip_and_store_twice(tmp_path: Path) -> None:
    path = tmp_path / "pflog.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(VECTORS * 2) + "\n")
    src = Source(str(path), "t", compression="gzip", year_hint=2026)
    assert R.sniff(src.head())
    with Store(tmp_path / "t.duckdb") as st:
        first = sum(st.write_events(c.events).inserted for c in R.read(src))
        second = sum(st.write_events(c.events).inserted for c in R.read(src))
    assert (first, second) == (2 * len(VECTORS), 0)


def test_sniff() -> None:
    for line in VECTORS:
        assert R.sniff(line.encode() + b"\n"), line
    assert not R.sniff(b"tcpdump: reading from file pflog, link-type PFLOG\n")
    assert not R.sniff(b"Nov 26 10:00:00 host named[1]: rule 5 is obsolete; block in on update\n")
