"""Test helper: the per-direction TCP payloads of a capture, read with dpkt (independent of our
own pcap code), for the codec and sensor tests that need the bytes of real conversations."""

from __future__ import annotations

import socket
from collections import defaultdict
from pathlib import Path

import dpkt


def tcp_payloads(path: Path) -> dict[tuple[str, int, str, int], bytes]:
    """Per-direction TCP payload of a capture (Ethernet, Linux SLL or raw IP), reassembled by
    sequence number up to the first gap (test-only: dpkt as an independent reader)."""
    segments: dict[tuple[str, int, str, int], dict[int, bytes]] = defaultdict(dict)
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        link = reader.datalink()
        for _, buf in reader:
            ip = (dpkt.ethernet.Ethernet(buf).data if link == dpkt.pcap.DLT_EN10MB
                  else dpkt.sll.SLL(buf).data if link == 113 else dpkt.ip.IP(buf))
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.data:
                key = (socket.inet_ntoa(ip.src), ip.data.sport, socket.inet_ntoa(ip.dst), ip.data.dport)
                segments[key].setdefault(ip.data.seq, bytes(ip.data.data))
    streams = {}
    for key, by_seq in segments.items():
        out, expect = bytearray(), min(by_seq)
        for seq in sorted(by_seq):
            if seq > expect:
                break
            out += by_seq[seq][expect - seq:]
            expect = max(expect, seq + len(by_seq[seq]))
        streams[key] = bytes(out)
    return streams
