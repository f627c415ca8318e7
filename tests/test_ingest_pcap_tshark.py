"""The pcap reader agrees with tshark, an independent dissector, on every real capture of the data
set and on synthetic captures of every supported container and link type.

tshark gives, per packet, the fields it dissected; this file derives the expected events from them
with the reader's documented rules written out plainly (dicts, no numpy): every TCP SYN without
ACK, the first UDP datagram of each unordered 5-tuple, every ICMP/ICMPv6 message, and the outcome
of each TCP/UDP attempt from the first reply after it (SYN-ACK or UDP datagram on the reversed
tuple: answered; RST from the target or an ICMP destination unreachable quoting the flow: reset).

IP reassembly is switched off in tshark so that, like the reader, it reads the ports of a first
fragment in that fragment. Packets inside ICMP errors are excluded from the TCP/UDP queries (tshark
dissects the quoted headers too) and read, with every occurrence, only to find the quoted flow.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import pcap_synth as ps
from stormwatch.ingest.base import Source
from stormwatch.ingest.pcap import PcapReader

pytestmark = pytest.mark.tshark
TSHARK = shutil.which("tshark")
NO_REASSEMBLY = ["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
Event = tuple[Any, ...]  # (frame, ts µs, src, sport, dst, dport, proto, outcome, icmp type, icmp code)


@pytest.fixture(scope="module")
def tshark() -> str:
    if TSHARK is None:
        pytest.skip("tshark is not installed (apt-get install tshark); the agreement tests need it")
    return TSHARK


def run(tshark: str, path: Path, display_filter: str, fields: list[str], occurrence: str) -> list[list[str]]:
    cmd = [tshark, "-n", "-r", str(path), *NO_REASSEMBLY, "-T", "fields", "-E", f"occurrence={occurrence}",
           "-E", "separator=\t", "-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def ip(text: str) -> str:
    return ipaddress.ip_address(text).compressed


def first(v: str) -> str:
    return v.split(",", maxsplit=1)[0]


ADDR = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst"]


def expected(tshark: str, path: Path) -> tuple[set[tuple[int, str, str, int, int]], list[Event]]:
    """(the SYN set of the classic tshark query, the events derived from tshark's fields)."""
    syn_query = run(tshark, path, "tcp.flags.syn==1 && tcp.flags.ack==0 && !icmp && !icmpv6",
                    ["frame.number", *ADDR, "tcp.srcport", "tcp.dstport"], "f")
    syns = {(int(r[0]), ip(r[1] or r[2]), ip(r[3] or r[4]), int(r[5]), int(r[6])) for r in syn_query}

    fields = ["frame.number", "frame.time_epoch", *ADDR, "tcp.srcport", "tcp.dstport", "udp.srcport",
              "udp.dstport", "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.reset", "icmp.type", "icmp.code",
              "icmpv6.type", "icmpv6.code"]
    packets = run(tshark, path, "tcp || udp || icmp || icmpv6", fields, "a")
    events: list[Event] = []
    attempts: dict[int, tuple[tuple[Any, ...], int]] = {}  # event index → (flow key, frame)
    replies: dict[tuple[Any, ...], list[tuple[int, str]]] = {}  # flow (attempt direction) → replies
    flows_seen: set[frozenset[tuple[str, int]]] = set()
    for r in packets:
        frame = int(r[0])
        ts = int(Decimal(r[1]) * 1_000_000)
        v = dict(zip(fields, r, strict=True))
        src_all, dst_all = (v["ip.src"] or v["ipv6.src"]).split(","), (v["ip.dst"] or v["ipv6.dst"]).split(",")
        src, dst = ip(src_all[0]), ip(dst_all[0])
        itype, icode = first(v["icmp.type"] or v["icmpv6.type"]), first(v["icmp.code"] or v["icmpv6.code"])
        if itype:  # an ICMP message; TCP/UDP fields here belong to the packet it quotes
            proto = "icmp" if v["icmp.type"] else "icmp6"
            events.append((frame, ts, src, None, dst, None, proto, None, int(itype), int(icode)))
            unreachable = (proto == "icmp" and itype == "3" and icode != "4") or (proto == "icmp6" and itype == "1")
            sport, dport = v["tcp.srcport"] or v["udp.srcport"], v["tcp.dstport"] or v["udp.dstport"]
            if unreachable and len(src_all) > 1 and sport:
                quoted = ("tcp" if v["tcp.srcport"] else "udp", ip(src_all[1]), int(first(sport)), ip(dst_all[1]),
                          int(first(dport)))
                replies.setdefault(quoted, []).append((frame, "reset"))
            continue
        if v["tcp.srcport"]:
            sport, dport = int(v["tcp.srcport"]), int(v["tcp.dstport"])
            syn, ack, rst = v["tcp.flags.syn"] == "1", v["tcp.flags.ack"] == "1", v["tcp.flags.reset"] == "1"
            back = ("tcp", dst, dport, src, sport)
            if syn and ack:
                replies.setdefault(back, []).append((frame, "answered"))
            elif rst:
                replies.setdefault(back, []).append((frame, "reset"))
            if syn and not ack:
                attempts[len(events)] = (("tcp", src, sport, dst, dport), frame)
                events.append((frame, ts, src, sport, dst, dport, "tcp", None, None, None))
        elif v["udp.srcport"]:
            sport, dport = int(v["udp.srcport"]), int(v["udp.dstport"])
            if (src, sport) != (dst, dport):
                replies.setdefault(("udp", dst, dport, src, sport), []).append((frame, "answered"))
            flow = frozenset({(src, sport), (dst, dport)})
            if flow not in flows_seen:
                flows_seen.add(flow)
                attempts[len(events)] = (("udp", src, sport, dst, dport), frame)
                events.append((frame, ts, src, sport, dst, dport, "udp", None, None, None))
    for i, (key, frame) in attempts.items():
        later = [kind for f, kind in sorted(replies.get(key, [])) if f > frame]
        events[i] = (*events[i][:7], later[0] if later else "unanswered", None, None)
    return syns, events


def ours(path: Path) -> tuple[list[Event], int]:
    tables, rejects = [], 0
    for chunk in PcapReader().read(Source(str(path), "s1")):
        tables.append(chunk.events)
        rejects += len(chunk.rejects)
    events = []
    for r in pa.concat_tables(tables).to_pylist():
        data = json.loads(r["data"])
        ts = r["ts"] - datetime(1970, 1, 1)
        events.append((data["frame"], ts.days * 86_400_000_000 + ts.seconds * 1_000_000 + ts.microseconds,
                       r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["proto"], r["outcome"],
                       data.get("icmp_type"), data.get("icmp_code")))
    return events, rejects


def compare(tshark: str, path: Path) -> list[str]:
    """Differences between tshark and the reader on one capture, as readable lines."""
    syns, want = expected(tshark, path)
    got, rejects = ours(path)
    problems = []
    got_syns = {(e[0], e[2], e[4], e[3], e[5]) for e in got if e[6] == "tcp" and e[0] in {s[0] for s in syns}}
    tcp_frames = {e[0] for e in got if e[6] == "tcp"}
    if got_syns != syns or tcp_frames != {s[0] for s in syns}:
        problems.append(f"{path.name}: SYN sets differ: tshark only {sorted(syns - got_syns)[:5]}, "
                        f"reader only {sorted(tcp_frames - {s[0] for s in syns})[:5]}")
    if got != want:
        diff = [(w, g) for w, g in zip(want, got, strict=False) if w != g][:3]
        problems.append(f"{path.name}: {len(want)} events from tshark, {len(got)} from the reader; "
                        f"first differences (tshark, reader): {diff}")
    if rejects:
        problems.append(f"{path.name}: {rejects} rejects on a capture tshark reads cleanly")
    return problems


def test_agrees_with_tshark_on_every_real_capture(tshark: str, shared_data: Path) -> None:
    captures = sorted(p for p in (shared_data / "pcap").rglob("*") if p.suffix in (".pcap", ".cap", ".pcapng"))
    assert len(captures) >= 20, f"expected the data set's captures under {shared_data / 'pcap'}"
    problems = [line for path in captures for line in compare(tshark, path)]
    assert problems == []


@pytest.mark.parametrize("name", sorted(ps.mixed_captures()))
def test_agrees_with_tshark_on_synthetic_captures(tshark: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(ps.mixed_captures()[name])
    assert compare(tshark, path) == []
    got, _ = ours(path)
    assert {e[7] for e in got} == {"answered", "reset", "unanswered", None}  # every outcome is exercised


def test_known_outcomes_of_the_ms04_011_attack(shared_data: Path) -> None:
    """Honeynet Forensic Challenge 2010 #1: the attacker's two SYNs to 445, the bind shell on 1957
    and the download channel on 1080 were all accepted, as was the honeypot's own connection back
    to the attacker's FTP-like server on 8884 (tshark shows a SYN-ACK after every SYN)."""
    got, rejects = ours(shared_data / "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap")
    attacker, honeypot = "98.114.205.102", "192.150.11.111"
    assert rejects == 0
    assert [(e[0], e[2], e[4], e[5], e[6], e[7]) for e in got] == [
        (1, attacker, honeypot, 445, "tcp", "answered"),
        (5, attacker, honeypot, 445, "tcp", "answered"),
        (36, attacker, honeypot, 1957, "tcp", "answered"),
        (50, honeypot, attacker, 8884, "tcp", "answered"),
        (68, attacker, honeypot, 1080, "tcp", "answered"),
    ]
