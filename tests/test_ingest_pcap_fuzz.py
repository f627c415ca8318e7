"""The pcap reader under hostile input (hypothesis): random and mutated bytes only ever give
events, rejects or an InputError; and the exactness of the column-wise shortcuts it takes
(fingerprint matching of flows, IPv6 text through inet_ntop)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcap_synth as ps
from pcap_synth import A6, B6, A, B, C, at, eth4, read, rows
from stormwatch.errors import InputError
from stormwatch.events import arrow_schema
from stormwatch.ingest import pcap_events

_HEADER = ps.pcap([])
_NG_HEADER = ps.ng_shb() + ps.ng_idb(1) + ps.ng_idb(0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=600), link=st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276]),
       ng=st.booleans())
def test_random_bytes_never_raise_anything_else(tmp_path: Path, body: bytes, link: int, ng: bool) -> None:
    head = _NG_HEADER if ng else _HEADER[:20] + struct.pack("<I", link)
    table, rejects, error, _ = read(tmp_path, head + body, "f.pcapng" if ng else "f.pcap")
    assert error is None or isinstance(error, InputError)
    assert table.schema.equals(arrow_schema())
    assert all(r.line >= 1 and r.reason for r in rejects)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_packets_never_raise_anything_else(tmp_path: Path, data: st.DataObject) -> None:
    """Valid-looking packets with random bytes changed or cut reach the deeper decoders."""
    pkts = [eth4(A, B, 6, ps.tcp(1, 2, ps.SYN)), ps.eth(ps.ipv6(A6, B6, 17, ps.udp(1, 2), ext=[ps.hop_by_hop()]),
            0x86DD), eth4(C, A, 1, ps.unreachable(ps.ipv4(A, C, 17, ps.udp(5, 6))))]
    out = []
    for p in pkts:
        b = bytearray(p)
        for _ in range(data.draw(st.integers(0, 4))):
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
        out.append(bytes(b[:data.draw(st.integers(0, len(b)))]))
    table, rejects, error, total = read(tmp_path, ps.pcap(at(out)))
    assert error is None and total == 3
    assert len(table) + len(rejects) <= 3


def test_fingerprint_collisions_are_settled_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flows are matched through 64-bit fingerprints; with every fingerprint made equal (the worst
    collision possible) the exact fallback must give the same events and outcomes."""
    interleaved = ps.pcap(at([
        eth4(A, B, 6, ps.tcp(1, 80, ps.SYN)), eth4(A, B, 6, ps.tcp(2, 80, ps.SYN)),           # 1, 2
        eth4(B, A, 6, ps.tcp(80, 2, ps.SYN | ps.ACK)), eth4(B, A, 6, ps.tcp(80, 1, ps.RST)),  # 3, 4
        eth4(A, C, 17, ps.udp(5, 53)), eth4(A, C, 17, ps.udp(6, 53)),                         # 5, 6
        eth4(C, A, 17, ps.udp(53, 6)), eth4(C, A, 17, ps.udp(53, 5)),                         # 7, 8
        eth4(A, C, 17, ps.udp(7, 161)),                                                       # 9
        eth4(C, A, 1, ps.unreachable(ps.ipv4(A, C, 17, ps.udp(7, 161)))),                     # 10
        eth4(A, B, 6, ps.tcp(3, 80, ps.SYN)), eth4(A, C, 17, ps.udp(5, 53)),                  # 11, 12
    ]))
    expected = [(1, "reset"), (2, "answered"), (5, "answered"), (6, "answered"), (9, "reset"), (10, None),
                (11, "unanswered")]
    normal, _, _, _ = read(tmp_path, interleaved)
    mixed, _, _, _ = read(tmp_path, ps.mixed_captures()["ether-vlan.pcap"])
    assert [(r["frame"], r["outcome"]) for r in rows(normal)] == expected
    monkeypatch.setattr(pcap_events._Flows, "fingerprint", lambda self: np.zeros(len(self.cols[0]), np.uint64))
    assert read(tmp_path, interleaved)[0].equals(normal)
    assert read(tmp_path, ps.mixed_captures()["ether-vlan.pcap"])[0].equals(mixed)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(min_size=16, max_size=16),
                     st.binary(min_size=4, max_size=4).map(lambda b: bytes(10) + b"\xff\xff" + b),
                     st.binary(min_size=4, max_size=4).map(lambda b: bytes(12) + b),
                     st.lists(st.sampled_from([b"\0\0", b"\0\1", b"\xab\xcd"]), min_size=8, max_size=8).map(b"".join)))
def test_ipv6_text_is_canonical(raw: bytes) -> None:
    hi, lo = struct.unpack(">QQ", raw)
    got = pcap_events._ip6_text(np.array([hi], np.uint64), np.array([lo], np.uint64))
    assert got == [ipaddress.IPv6Address(raw).compressed]
