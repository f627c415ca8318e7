"""DShield readers: the tab-separated report (DShield.py v4.0 ``report()``) and the JSON firewall
submission (DShield sensor ``fwlogparser.py``). Vectors follow the formats those two programs write
(see the module docstring of ``stormwatch.ingest.dshield``)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reader_helpers import event_rows, read_table
from stormwatch.errors import InputError, TruncatedInput
from stormwatch.ingest.base import Source
from stormwatch.ingest.dshield import DshieldJsonReader, DshieldTsvReader
from stormwatch.store import Store

TSV = DshieldTsvReader()
JSN = DshieldJsonReader()

# DShield.py: "%s-%s-%s %s %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\r\n" % (year, month, day, ltime, timez,
# userid, count, SRC, SPT, DST, DPT, PROTO, FLAGS); timez is "+HH:00"/"-HH:00".
REPORT = (
    "2006-08-13 10:00:01 -05:00\t12345\t1\t198.51.100.7\t3821\t192.0.2.10\t445\tTCP\tS\r\n"
    "2006-08-13 10:00:01 -05:00\t12345\t1\t198.51.100.7\t3821\t192.0.2.10\t445\tTCP\tS\r\n"
    "2006-08-13 10:00:02 +00:00\t12345\t3\t198.51.100.8\t8\t192.0.2.10\t0\tICMP\t\r\n"
    "2006-08-13 16:00:03 +02:00\t12345\t1\t198.51.100.9\t1026\t192.0.2.11\t137\tUDP\t\r\n"
    "2006-08-13 10:00:04 -0500\t12345\t2\t198.51.100.10\t???\t192.0.2.12\t???\t47\t\r\n"
    "2006-08-13 10:00:05 -05:00\t12345\t1\t2001:db8::7\t4444\t2001:db8::10\t139\t6\tSA\r\n"
    "2006-08-13 10:00:01 -05:00\t12345\t4\t198.51.100.7\t3821\t192.0.2.10\t445\tTCP\tS\r\n"
    "2006-08-13 10:00:01 -05:00\t12345\t1\t198.51.100.7\t3821\t192.0.2.10\t445\tTCP\tS\r\n"
)


_read = read_table
_rows = event_rows


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


# -- tab-separated report ----------------------------------------------------------------------


def test_report_vectors(tmp_path: Path) -> None:
    events, rejects, read, skipped = _read(TSV, _write(tmp_path, "r.txt", REPORT))
    assert rejects == [] and read == 8 and skipped == 0
    rows = _rows(events)
    assert len(rows) == 6  # 8 lines, three of them identical to the first
    first = rows[0]
    assert first["ts"] == datetime(2006, 8, 13, 15, 0, 1)  # 10:00:01 at -05:00 is 15:00:01 UTC
    assert (first["src_ip"], first["src_port"], first["dst_ip"], first["dst_port"]) == (
        "198.51.100.7", 3821, "192.0.2.10", 445)
    assert (first["proto"], first["tcp_flags"], first["action"], first["format"]) == ("tcp", "S", "drop", "dshield")
    assert first["count"] == 3  # lines 1, 2 and 8 added up (1 + 1 + 1)
    icmp = rows[1]
    assert (icmp["proto"], icmp["icmp_type"], icmp["icmp_code"], icmp["count"]) == ("icmp", 8, 0, 3)
    assert icmp["src_port"] is None and icmp["dst_port"] is None and icmp["tcp_flags"] is None
    assert rows[2]["ts"] == datetime(2006, 8, 13, 14, 0, 3)  # +02:00
    assert (rows[2]["proto"], rows[2]["dst_port"]) == ("udp", 137)
    gre = rows[3]
    assert (gre["proto"], gre["src_port"], gre["dst_port"], gre["count"]) == ("gre", None, None, 2)
    assert gre["ts"] == datetime(2006, 8, 13, 15, 0, 4)  # -0500 written without a colon
    v6 = rows[4]
    assert (v6["src_ip"], v6["proto"], v6["tcp_flags"]) == ("2001:db8::7", "tcp", "AS")  # CEUAPRSF order
    # A line with another count is another line: not added to the first.
    assert rows[5]["count"] == 4 and rows[5]["key"].split("\t")[2] == "4"


def test_identical_lines_are_one_event_keyed_by_the_line(tmp_path: Path, store: Store) -> None:
    line = "2006-08-13 10:00:01 -05:00\t12345\t2\t198.51.100.7\t3821\t192.0.2.10\t445\tTCP\tS"
    path = _write(tmp_path, "r.txt", "\n".join([line] * 5) + "\n")
    events, _, read, _ = _read(TSV, path)
    assert read == 5
    assert events.num_rows == 1
    assert events.column("count").to_pylist() == [10]
    assert events.column("key").to_pylist() == [line]  # no occurrence suffix: one record
    assert store.write_events(events).inserted == 1
    assert store.write_events(_read(TSV, path)[0]).inserted == 0


def test_report_rejects_malformed_lines_with_line_numbers(tmp_path: Path) -> None:
    good = "2006-08-13 10:00:01 -05:00\t1\t1\t198.51.100.7\t3821\t192.0.2.10\t445\tTCP\tS"
    text = "\n".join([
        "# DShield report, FORMAT DSHIELD USERID 1 TZ -05:00",  # 1: comment, skipped
        good,  # 2
        good.replace("\t1\t198", "\tmany\t198"),  # 3: count not a number
        good.replace("2006-08-13", "2006-13-45"),  # 4: no such date
        "2006-08-13 10:00:01 -05:00\t1\t1\t198.51.100.7",  # 5: too few fields
        good.replace("198.51.100.7", "198.51.100.777"),  # 6: not an address
        good.replace("\t445\t", "\t70000\t"),  # 7: port out of range
        good.replace("\tS", "\tSX"),  # 8: not flag letters
        good.replace("\t1\t198", "\t0\t198"),  # 9: a count of nothing
    ]) + "\n"
    events, rejects, read, skipped = _read(TSV, _write(tmp_path, "r.txt", text))
    assert events.num_rows == 1 and read == 9 and skipped == 1
    got = {r.line: r.reason for r in rejects}
    assert sorted(got) == [3, 4, 5, 6, 7, 8, 9]
    assert "count" in got[3] and "date" in got[4] and "9" in got[5] and "address" in got[6]
    assert "70000" in got[7] and "flag" in got[8] and "count" in got[9]
    assert all(r.format == "dshield" and r.source.endswith("r.txt") for r in rejects)


def test_report_gzip_and_store_twice(tmp_path: Path) -> None:
    path = tmp_path / "r.txt.gz"
    with gzip.open(path, "wb") as f:
        f.write(REPORT.encode())
    chunks = list(TSV.read(Source(str(path), "t", compression="gzip")))
    assert sum(c.events.num_rows for c in chunks) == 6
    with Store(tmp_path / "t.duckdb") as st:
        first = sum(st.write_events(c.events).inserted for c in chunks)
        second = sum(st.write_events(c.events).inserted for c in TSV.read(Source(str(path), "t", compression="gzip")))
        assert (first, second) == (6, 0)
        total = st.query("SELECT sum(count) AS n FROM events").column("n")[0].as_py()
        assert total == 1 + 1 + 3 + 1 + 2 + 1 + 4 + 1  # every count of every line, once


def test_report_cut_mid_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    data = gzip.compress((REPORT * 200).encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    got: list[int] = []
    with pytest.raises(InputError, match="unreadable"):
        for c in TSV.read(Source(str(path), "t", compression="gzip")):
            got.append(c.events.num_rows)
    assert sum(got) >= 1  # the lines before the damage were added up and handed over


def test_report_sniff() -> None:
    assert TSV.sniff(REPORT.encode())
    assert TSV.sniff(b"# comment\n" + REPORT.encode())
    assert not TSV.sniff(b"2006-08-13 10:00:01 -05:00 12345 1 198.51.100.7 3821 192.0.2.10 445 TCP S\n")
    assert not TSV.sniff(b"")


# -- JSON submission ---------------------------------------------------------------------------

# fwlogparser.py record: time epoch int, sip/dip text, proto int, sport/dport text (ICMP type/code),
# flags "1" (CWR) "2" (ECE) then UAPRSF, version 4/6.
LOGS: list[dict[str, Any]] = [
    {"time": 1155481201, "sip": "198.51.100.7", "dip": "192.0.2.10", "proto": 6, "sport": "3821",
     "dport": "445", "flags": "12S", "version": 4},
    {"time": 1155481202, "sip": "198.51.100.8", "dip": "192.0.2.10", "proto": 1, "sport": "8", "dport": "0",
     "flags": "", "version": 4},
    {"time": 1155481203, "dip": "192.0.2.10", "proto": 17, "sport": "1026", "dport": "137", "flags": "",
     "version": 4},  # lacks sip
    {"time": 1155481204, "sip": "2001:db8::7", "dip": "2001:db8::10", "proto": 6, "sport": "4444",
     "dport": "139", "flags": "AP", "version": 6},
    {"time": 1155481205, "sip": "198.51.100.9", "dip": "192.0.2.11", "proto": 6, "dport": "445",
     "flags": "S", "version": 4},  # TCP without sport
    {"time": 1155481206, "sip": "198.51.100.10", "dip": "192.0.2.12", "proto": 50, "flags": "", "version": 4},
]
SUBMISSION = {"type": "firewall", "logs": LOGS}


def test_json_document_over_several_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.json", json.dumps(SUBMISSION, indent=2))
    assert JSN.sniff(path.read_bytes())
    events, rejects, read, _ = _read(JSN, path)
    assert read == 6
    rows = _rows(events)
    assert len(rows) == 4
    syn = rows[0]
    assert syn["ts"] == datetime(2006, 8, 13, 15, 0, 1)
    assert (syn["src_ip"], syn["src_port"], syn["dst_ip"], syn["dst_port"], syn["proto"]) == (
        "198.51.100.7", 3821, "192.0.2.10", 445, "tcp")
    assert syn["tcp_flags"] == "CES"  # '1' CWR and '2' ECE, in CEUAPRSF order
    assert (syn["action"], syn["format"]) == ("log", "dshield-json")
    assert syn["key"] == json.dumps(LOGS[0], sort_keys=True, separators=(",", ":"))
    assert (rows[1]["proto"], rows[1]["icmp_type"], rows[1]["icmp_code"], rows[1]["src_port"]) == ("icmp", 8, 0, None)
    assert (rows[2]["src_ip"], rows[2]["tcp_flags"]) == ("2001:db8::7", "AP")
    assert (rows[3]["proto"], rows[3]["src_port"]) == ("esp", None)
    # Single document: a bad record is rejected alone, numbered by its 1-based place in "logs".
    assert [(r.line, r.reason) for r in rejects] == [(3, "record lacks 'sip'"), (5, "record lacks 'sport'")]
    assert json.loads(rejects[0].raw) == LOGS[2]


def test_json_one_value_per_line(tmp_path: Path) -> None:
    text = "\n".join([
        json.dumps(SUBMISSION),  # 1: a whole submission, two bad records
        json.dumps(LOGS[0]),  # 2: one record, the same as the first of line 1
        "{broken",  # 3
        json.dumps({"type": "webhoneypot", "logs": []}),  # 4: another DShield log type
        json.dumps(LOGS[1:2]),  # 5: an array of records
    ]) + "\n"
    path = _write(tmp_path, "s.jsonl", text)
    events, rejects, read, _ = _read(JSN, path)
    assert read == 5
    assert events.num_rows == 4 + 1 + 1
    got = {r.line: r.reason for r in rejects}
    assert sorted(got) == [1, 3, 4]
    assert got[1].startswith("2 of 6 records rejected: record 3: record lacks 'sip'; record 5:")
    assert "JSON" in got[3] and "webhoneypot" in got[4]
    # The record of line 2 is the first record of line 1 again: same key, kept as a repeat here,
    # and stored once with the document form of the same submission.
    keys = events.column("key").to_pylist()
    assert keys[4] == keys[0] + "\x001"
    with Store(tmp_path / "t.duckdb") as st:
        doc = _write(tmp_path, "s.json", json.dumps(SUBMISSION, indent=1))
        assert st.write_events(_read(JSN, doc)[0]).inserted == 4
        assert st.write_events(events).inserted == 2  # the repeats on lines 2 and 5 are new


def test_json_cut_document_keeps_whole_records_then_raises(tmp_path: Path) -> None:
    text = json.dumps(SUBMISSION, indent=2)
    cut = text[: text.index('"2001:db8::7"')]  # inside the fourth record
    path = _write(tmp_path, "cut.json", cut)
    got = []
    with pytest.raises(TruncatedInput, match="after 3 records") as exc:
        for c in JSN.read(Source(str(path), "t")):
            got.append(c)
    assert sum(c.events.num_rows for c in got) == 2  # records 1 and 2; record 3 lacks sip
    assert [r.line for c in got for r in c.rejects] == [3]
    assert 0 < exc.value.offset < len(cut)


def test_json_not_a_firewall_submission_is_an_input_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "w.json", json.dumps({"type": "webhoneypot", "logs": [{"a": 1}]}, indent=2))
    with pytest.raises(InputError, match="webhoneypot"):
        list(JSN.read(Source(str(path), "t")))


def test_json_gzip_and_store_twice(tmp_path: Path) -> None:
    path = tmp_path / "s.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(SUBMISSION, f, indent=2)
    src = Source(str(path), "t", compression="gzip")
    assert JSN.sniff(src.head())
    with Store(tmp_path / "t.duckdb") as st:
        first = sum(st.write_events(c.events).inserted for c in JSN.read(src))
        second = sum(st.write_events(c.events).inserted for c in JSN.read(src))
    assert (first, second) == (4, 0)


def test_json_sniff() -> None:
    assert JSN.sniff(json.dumps(SUBMISSION).encode())
    assert JSN.sniff(json.dumps(SUBMISSION, indent=2).encode())
    assert JSN.sniff((json.dumps(LOGS[0]) + "\n").encode())
    assert not JSN.sniff(b'{"type": "webhoneypot", "logs": []}\n')
    assert not JSN.sniff(b"[1, 2, 3]\n")


def test_json_document_cut_anywhere_raises_only_input_error(tmp_path: Path) -> None:
    text = json.dumps(SUBMISSION, indent=2)
    path = tmp_path / "cut.json"
    outcomes = set()
    for end in range(1, len(text), 7):
        path.write_text(text[:end])
        events = 0
        try:
            for c in JSN.read(Source(str(path), "t")):
                events += c.events.num_rows
            outcomes.add("complete")
        except InputError:  # TruncatedInput included
            outcomes.add("damaged")
        assert events <= 4
    assert outcomes == {"damaged"}  # no prefix of the document is a whole document
