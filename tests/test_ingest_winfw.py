"""Windows Firewall pfirewall.log: the real home-LAN log in ../shared/data (BetaHydri/ParseFirewallLog,
MIT; see SOURCES.md) and small logs in the documented W3C layout."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from reader_helpers import event_rows, read_table
from stormwatch.events import Reject
from stormwatch.ingest.base import Source
from stormwatch.ingest.winfw import WindowsFirewallReader
from stormwatch.store import Store

R = WindowsFirewallReader()
REAL = "logs/windows_pfirewall_home_2021-06_BetaHydri.log"

HEADER = ("#Version: 1.5\n#Software: Microsoft Windows Firewall\n#Time Format: Local\n"
          "#Fields: date time action protocol src-ip dst-ip src-port dst-port size tcpflags tcpsyn tcpack "
          "tcpwin icmptype icmpcode info path\n\n")


def _read(path: Path, **kw: Any) -> tuple[pa.Table, list[Reject], int, int]:
    return read_table(R, path, **kw)


_rows = event_rows


def test_real_log_every_data_line_is_an_event(shared_data: Path) -> None:
    path = shared_data / REAL
    assert R.sniff(path.read_bytes()[:65536])
    lines = path.read_text().splitlines()
    data = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    not_connections = [ln for ln in data if ln.split()[2] == "INFO-EVENTS-LOST"]
    headers = [ln for ln in lines if ln.startswith("#")]
    events, rejects, read, skipped = _read(path)
    assert rejects == []
    assert len(not_connections) == 2  # SOURCES.md: "2x INFO-EVENTS-LOST"
    assert events.num_rows == len(data) - len(not_connections) == 16_807
    assert skipped == len(headers) + len(not_connections)
    assert read == len(data) + len(headers)
    # Repeated identical lines are distinct packets: every copy is an event (the builder numbers
    # the repeats in the key).
    copies = Counter(data)
    keys = Counter(k.split("\x00")[0] for k in events.column("key").to_pylist())
    assert keys == Counter({ln: n for ln, n in copies.items() if ln.split()[2] != "INFO-EVENTS-LOST"})
    assert max(copies.values()) >= 2
    # Counts by protocol and verdict agree with a plain count of the columns.
    by = Counter(zip(events.column("action").to_pylist(), events.column("proto").to_pylist(), strict=True))
    raw = Counter((ln.split()[2], ln.split()[3]) for ln in data)
    assert by[("drop", "udp")] == raw[("DROP", "UDP")] == 11_688
    assert by[("accept", "tcp")] == raw[("ALLOW", "TCP")] == 1_366
    assert by[("accept", "igmp")] == raw[("ALLOW", "2")] == 32
    assert by[("accept", "icmp")] + by[("accept", "icmp6")] == raw[("ALLOW", "ICMP")] == 49


def test_real_log_values(shared_data: Path) -> None:
    rows = _rows(_read(shared_data / REAL)[0])
    first = rows[0]
    # 2021-06-22 12:19:41 DROP UDP 192.168.178.25 224.0.0.251 5353 5353 73 - - - - - - - RECEIVE
    assert first["ts"] == datetime(2021, 6, 22, 12, 19, 41)  # local time, stored as if UTC
    assert (first["src_ip"], first["src_port"], first["dst_ip"], first["dst_port"]) == (
        "192.168.178.25", 5353, "224.0.0.251", 5353)
    assert (first["proto"], first["action"], first["length"], first["format"]) == ("udp", "drop", 73, "pfirewall")
    assert rows[1]["key"] == first["key"] + "\x001"  # the next line is the same text
    # 2021-06-22 12:25:27 ALLOW ICMP fe80::464e:6dff:fea9:dfca ff02::1 - - 0 - - - - 134 0 - RECEIVE
    ra = next(r for r in rows if r["src_ip"] == "fe80::464e:6dff:fea9:dfca" and r["proto"] == "icmp6")
    assert (ra["icmp_type"], ra["icmp_code"], ra["src_port"], ra["action"]) == (134, 0, None, "accept")
    assert "length" not in ra  # size 0: not logged
    # 2021-06-22 12:19:44 ALLOW TCP 192.168.178.51 64.39.104.113 52978 443 0 - 0 0 0 - - - SEND
    tcp = next(r for r in rows if r["dst_ip"] == "64.39.104.113" and r["src_port"] == 52978)
    assert (tcp["ts"], tcp["proto"], tcp["dst_port"], tcp["tcp_flags"]) == (
        datetime(2021, 6, 22, 12, 19, 44), "tcp", 443, None)


def _halves(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    text = (shared_data / REAL).read_text()
    half = tmp_path / "half.log"
    half.write_text(text[: text.index("\n", len(text) // 2) + 1])
    full = tmp_path / "full.log"
    full.write_text(text)
    return half, full


def test_growing_copy_keeps_its_keys(shared_data: Path, tmp_path: Path) -> None:
    half, full = _halves(shared_data, tmp_path)
    kh = _read(half)[0].column("key").to_pylist()
    kf = _read(full)[0].column("key").to_pylist()
    assert len(set(kf)) == len(kf) == 16_807  # every event its own identity
    assert set(kh) < set(kf) and 0 < len(kh) < len(kf)  # re-reading the grown file re-offers the old keys


# Two lines of this log (12:34:39 ... 392 ... and 12:44:39 ... 388 ..., both 192.168.178.5 to
# 239.255.255.250:1900) collided under DuckDB's 64-bit hash(); the store's MD5 event id keeps both.
def test_growing_copy_adds_only_new_lines(shared_data: Path, tmp_path: Path) -> None:
    half, full = _halves(shared_data, tmp_path)
    with Store(tmp_path / "t.duckdb") as st:
        a = st.write_events(_read(half)[0]).inserted
        b = st.write_events(_read(full)[0]).inserted
        c = st.write_events(_read(full)[0]).inserted
    assert c == 0
    assert a + b == 16_807


def test_fields_header_order_is_honoured(tmp_path: Path) -> None:
    text = (
        "2021-06-22 12:00:00 DROP TCP 203.0.113.5 192.0.2.1 40000 445 52 S - - - - - - RECEIVE\n"  # default order
        "#Software: Microsoft Windows Firewall\n"
        "#Fields: date time action protocol dst-ip src-ip dst-port src-port size tcpflags path pid\n"
        "2021-06-22 12:00:01 DROP TCP 192.0.2.1 203.0.113.6 139 40001 48 AS RECEIVE 4\n"
        "2021-06-22 12:00:02 ALLOW UDP 192.0.2.1 203.0.113.7 53 40002 0 - SEND 1234\n"
    )
    path = tmp_path / "pfirewall.log"
    path.write_text(text)
    rows = _rows(_read(path)[0])
    assert [(r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"]) for r in rows] == [
        ("203.0.113.5", 40000, "192.0.2.1", 445),
        ("203.0.113.6", 40001, "192.0.2.1", 139),
        ("203.0.113.7", 40002, "192.0.2.1", 53)]
    assert [r.get("tcp_flags") for r in rows] == ["S", "AS", None]
    assert [r.get("length") for r in rows] == [52, 48, None]


def test_malformed_lines_are_rejected_with_line_numbers(tmp_path: Path) -> None:
    body = "\n".join([
        "2021-06-22 12:00:00 DROP TCP 203.0.113.5 192.0.2.1 40000 445 52 S - - - - - - RECEIVE",  # 6
        "2021-06-22 12:00:00 DROP TCP 203.0.113.5 192.0.2.1 40000 445 52 S - - - - - -",  # 7: 16 values
        "2021-06-22 12:00:00 REJECT TCP 203.0.113.5 192.0.2.1 40000 445 52 S - - - - - - RECEIVE",  # 8
        "2021-06-22 12:00:00 DROP TCP 203.0.113.500 192.0.2.1 40000 445 52 S - - - - - - RECEIVE",  # 9
        "2021-06-31 12:00:00 DROP TCP 203.0.113.5 192.0.2.1 40000 445 52 S - - - - - - RECEIVE",  # 10
        "2021-06-22 12:00:00 DROP TCP 203.0.113.5 192.0.2.1 99999 445 52 S - - - - - - RECEIVE",  # 11
        "2021-06-22 12:00:00 DROP ICMP 203.0.113.5 192.0.2.1 - - 52 - - - - 300 0 - RECEIVE",  # 12
        "2021-06-22 12:00:00 INFO-EVENTS-LOST - - - - - - - - - - - - 7 -",  # 13: skipped
    ]) + "\n"
    path = tmp_path / "pfirewall.log"
    path.write_text(HEADER + body)
    events, rejects, read, skipped = _read(path)
    assert events.num_rows == 1 and skipped == 4 + 1 and read == 4 + 8  # 4 directives, 8 lines
    got = {r.line: r.reason for r in rejects}
    assert sorted(got) == [7, 8, 9, 10, 11, 12]
    assert "16 values" in got[7] and "REJECT" in got[8] and "address" in got[9]
    assert "date" in got[10] and "99999" in got[11] and "ICMP type" in got[12]


def test_gzip_and_store_twice(tmp_path: Path) -> None:
    text = HEADER + "".join(
        f"2021-06-22 12:00:{s:02d} DROP TCP 203.0.113.{s} 192.0.2.1 4{s:04d} 445 52 S - - - - - - RECEIVE\n"
        for s in range(50)) * 2  # every line twice: 100 events
    path = tmp_path / "pfirewall.log.gz"
    with gzip.open(path, "wt") as f:
        f.write(text)
    src = Source(str(path), "t", compression="gzip")
    assert R.sniff(src.head())
    with Store(tmp_path / "t.duckdb") as st:
        first = sum(st.write_events(c.events).inserted for c in R.read(src))
        second = sum(st.write_events(c.events).inserted for c in R.read(src))
    assert (first, second) == (100, 0)


@pytest.mark.parametrize("head", [
    HEADER.encode(),
    b"#Fields: date time action protocol src-ip dst-ip src-port dst-port size tcpflags\n",
])
def test_sniff(head: bytes) -> None:
    assert R.sniff(head)
