"""Zeek conn.log reader: TSV and JSON, labelled CTU files, header blocks, outcomes, bad records.

Real inputs (../shared/data/logs, see SOURCES.md): the Stratosphere Slips test files
``slips_ctu-sme-11-win_zeek_conn.log.labeled`` (TSV with label columns, CTU-SME-11),
``slips_portscan_horizontal_zeek_conn.log`` (TSV) and ``slips_portscan_vertical_zeek_conn.log``
(JSON lines, nmap vertical scan of scanme.nmap.org, mostly REJ).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from reader_helpers import event_rows, read_table
from stormwatch.ingest.base import Source
from stormwatch.ingest.zeek import ZeekConnReader

READER = ZeekConnReader()

HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
    "#open\t2024-01-01-00-00-00\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tconn_state\thistory\t"
    "orig_pkts\tresp_pkts\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tstring\tcount\tcount\n"
)


def read(path: Path) -> tuple[list[dict[str, Any]], list[Any], int, int]:
    events, rejects, n_read, skipped = read_table(READER, path)
    return event_rows(events), rejects, n_read, skipped


def write(tmp_path: Path, text: str, name: str = "conn.log") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def tsv_records(path: Path) -> list[dict[str, str]]:
    """The data lines of a Zeek TSV file as dicts, by the test's own reading of #fields."""
    fields: list[str] = []
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            out.append(dict(zip(fields, line.split("\t"), strict=True)))
    return out


def test_labelled_ctu_file(shared_data: Path) -> None:
    path = shared_data / "logs" / "slips_ctu-sme-11-win_zeek_conn.log.labeled"
    records = tsv_records(path)
    rows, rejects, n_read, skipped = read(path)
    assert rejects == []
    assert len(rows) == len(records) == 766
    assert skipped == sum(1 for ln in path.read_text().splitlines() if ln.startswith("#"))
    assert n_read == len(rows) + skipped
    first = rows[0]
    assert first["ts"] == datetime(2023, 2, 22, 0, 0, 3, 714845)
    assert (first["session"], first["src_ip"], first["src_port"], first["dst_ip"], first["dst_port"]) == (
        "C6SgKom3WB2KEL2ae", "192.168.1.107", 65164, "66.63.168.35", 5888)
    assert (first["proto"], first["conn_state"], first["outcome"], first["tcp_flags"], first["action"]) == (
        "tcp", "REJ", "reset", "S", "log")
    assert (first["packets"], first["bytes"], first["duration"]) == (4, 104 + 80, 0.037629)
    assert first["label"] == "Malicious (From_malicious-To_malicious-Malware_data_exfiltration-RemcosRAT)"
    assert first["format"] == "zeek-conn"
    # ICMP: Zeek puts type and code in the port columns.
    icmp = next(r for r in rows if r["session"] == "CI4fft1NQK3lx0uCGk")
    assert (icmp["proto"], icmp["icmp_type"], icmp["icmp_code"], icmp["src_port"], icmp["dst_port"]) == (
        "icmp", 3, 3, None, None)
    assert icmp["label"] == "Benign (From_benign-To_benign)"
    # A label whose detailed label is (empty): the label alone.
    unknown = [r for r in rows if r["label"] == "Unknown"]
    assert len(unknown) == sum(1 for r in records if r["label"] == "Unknown") == 3
    # Outcomes follow the states counted from the file itself.
    states = Counter(r["conn_state"] for r in records)
    outcomes = Counter(r["outcome"] for r in rows)
    assert outcomes["reset"] == states["REJ"] == 718
    assert outcomes["unanswered"] == states["S0"]
    assert outcomes["answered"] == states["SF"] + sum(
        1 for r in records if r["conn_state"] == "OTH" and r["resp_pkts"] != "0")


def test_horizontal_scan_tsv(shared_data: Path) -> None:
    path = shared_data / "logs" / "slips_portscan_horizontal_zeek_conn.log"
    records = tsv_records(path)
    rows, rejects, _, _ = read(path)
    assert rejects == []
    assert len(rows) == len(records) == 41
    last = rows[-1]
    assert last["ts"] == datetime(1970, 1, 1, 0, 15, 58, 869115)  # this capture's clock was at 1970
    assert (last["session"], last["dst_ip"], last["dst_port"], last["outcome"], last["tcp_flags"]) == (
        "CeSj4A1BN9nBei0fe9", "188.252.30.130", 80, "unanswered", "S")
    assert "label" not in last
    assert Counter(r["outcome"] for r in rows)["unanswered"] == Counter(
        r["conn_state"] for r in records)["S0"]


def test_vertical_scan_json(shared_data: Path) -> None:
    path = shared_data / "logs" / "slips_portscan_vertical_zeek_conn.log"
    objs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    rows, rejects, n_read, skipped = read(path)
    assert rejects == [] and skipped == 0
    assert len(rows) == n_read == len(objs) == 50
    first = rows[0]
    assert first["ts"] == datetime(2023, 11, 24, 12, 16, 57, 314165)
    assert (first["session"], first["src_ip"], first["dst_ip"], first["dst_port"]) == (
        "CfykLO1IT1nVRJhLA3", "192.168.1.9", "45.33.32.156", 443)
    assert (first["conn_state"], first["outcome"], first["packets"], first["bytes"]) == ("REJ", "reset", 2, 100)
    rsto = rows[1]
    assert (rsto["conn_state"], rsto["outcome"], rsto["tcp_flags"]) == ("RSTO", "answered", "S")
    outcomes = Counter(r["outcome"] for r in rows)
    assert outcomes["reset"] == sum(1 for o in objs if o["conn_state"] == "REJ")
    assert outcomes["reset"] > len(rows) / 2  # a vertical scan mostly hits closed ports


def test_header_repeated_mid_file_with_other_columns(tmp_path: Path) -> None:
    other = HEADER.replace("\tconn_state\thistory", "\thistory\tconn_state").replace(
        "\tstring\tstring\tcount", "\tstring\tstring\tcount")
    text = (HEADER
            + "1.5\tCa\t10.0.0.1\t1000\t10.0.0.2\t445\ttcp\tS0\tS\t1\t0\n"
            + "#close\t2024-01-01-01-00-00\n"
            + other  # a rotated file appended: same names, another column order
            + "2.5\tCb\t10.0.0.1\t1001\t10.0.0.2\t139\ttcp\tShR\tREJ\t1\t1\n")
    rows, rejects, n_read, skipped = read(write(tmp_path, text))
    assert rejects == []
    assert [(r["session"], r["conn_state"], r["outcome"], r["dst_port"]) for r in rows] == [
        ("Ca", "S0", "unanswered", 445), ("Cb", "REJ", "reset", 139)]
    assert skipped == n_read - 2


def test_iot23_combined_label_column(tmp_path: Path) -> None:
    text = HEADER.replace("\tresp_pkts\n", "\tresp_pkts\ttunnel_parents   label   detailed-label\n", 1)
    text += "3.0\tCc\t192.168.1.5\t5555\t8.8.8.8\t23\ttcp\tS0\tS\t2\t0\t-   Malicious   PartOfAHorizontalPortScan\n"
    rows, rejects, _, _ = read(write(tmp_path, text))
    assert rejects == []
    assert rows[0]["label"] == "Malicious (PartOfAHorizontalPortScan)"
    assert rows[0]["packets"] == 2


def test_unset_and_empty_markers(tmp_path: Path) -> None:
    text = HEADER + "4.0\tCd\t2001:db8::1\t-\t2001:db8::2\t-\ticmp\tOTH\t-\t-\t-\n"
    rows, rejects, _, _ = read(write(tmp_path, text))
    assert rejects == []
    r = rows[0]
    assert (r["proto"], r.get("icmp_type"), r.get("icmp_code"), r["outcome"]) == ("icmp6", None, None, None)
    assert "packets" not in r and r["tcp_flags"] is None


def test_tsv_and_json_of_one_connection_have_one_key(shared_data: Path, tmp_path: Path) -> None:
    """Zeek can write the same log as TSV or JSON: both spell one connection, one identity."""
    path = shared_data / "logs" / "slips_ctu-sme-11-win_zeek_conn.log.labeled"
    rec = tsv_records(path)[0]
    obj = {"ts": float(rec["ts"]), "uid": rec["uid"], "id.orig_h": rec["id.orig_h"],
           "id.orig_p": int(rec["id.orig_p"]), "id.resp_h": rec["id.resp_h"],
           "id.resp_p": int(rec["id.resp_p"]), "proto": rec["proto"], "conn_state": rec["conn_state"],
           "history": rec["history"]}
    tsv_rows = pa.concat_tables(c.events for c in READER.read(Source(str(path), "t"))).to_pylist()
    json_rows = read(write(tmp_path, json.dumps(obj) + "\n"))[0]
    assert tsv_rows[0]["key"] == json_rows[0]["key"]
    assert json_rows[0]["outcome"] == "reset"


def _outcome(tmp_path: Path, state: str, history: str = "S", proto: str = "tcp", orig_p: int = 40000,
             resp_pkts: int = 0) -> str | None:
    obj = {"ts": 1.0, "uid": "Cx", "id.orig_h": "10.0.0.1", "id.orig_p": orig_p, "id.resp_h": "10.0.0.2",
           "id.resp_p": 0 if proto == "icmp" else 445, "proto": proto, "conn_state": state,
           "history": history, "orig_pkts": 1, "resp_pkts": resp_pkts}
    return read(write(tmp_path, json.dumps(obj) + "\n"))[0][0]["outcome"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("state", "history", "expected"), [
    ("S0", "S", "unanswered"), ("SH", "SF", "unanswered"), ("RSTOS0", "SR", "unanswered"),
    ("REJ", "Sr", "reset"), ("S1", "ShA", "answered"), ("SF", "ShAFf", "answered"),
    ("S2", "ShAF", "answered"), ("S3", "ShAf", "answered"), ("RSTO", "ShAR", "answered"),
    ("RSTR", "ShAr", "answered"), ("SHR", "hf", "answered"), ("RSTRH", "hr", "answered"),
    ("RSTRH", "r", "reset"), ("XYZ", "S", None),
])
def test_every_conn_state(tmp_path: Path, state: str, history: str, expected: str | None) -> None:
    assert _outcome(tmp_path, state, history) == expected


def test_oth_decided_by_reply_packets(tmp_path: Path) -> None:
    assert _outcome(tmp_path, "OTH", "Da", resp_pkts=3) == "answered"
    assert _outcome(tmp_path, "OTH", "D", resp_pkts=0) is None  # mid-stream: nothing proven
    assert _outcome(tmp_path, "OTH", "", proto="icmp", orig_p=8, resp_pkts=0) == "unanswered"  # echo
    assert _outcome(tmp_path, "OTH", "", proto="icmp", orig_p=3, resp_pkts=0) is None  # unreachable


def test_nested_id_and_iso_timestamps(tmp_path: Path) -> None:
    obj = {"ts": "2023-11-24T12:16:57.314165Z", "uid": "Cn",
           "id": {"orig_h": "10.0.0.1", "orig_p": 1, "resp_h": "10.0.0.2", "resp_p": 22},
           "proto": "tcp", "conn_state": "S0", "history": "S"}
    rows, rejects, _, _ = read(write(tmp_path, json.dumps(obj) + "\n"))
    assert rejects == []
    assert (rows[0]["ts"], rows[0]["dst_port"]) == (datetime(2023, 11, 24, 12, 16, 57, 314165), 22)


def test_bad_records_are_rejected_with_line_numbers(tmp_path: Path) -> None:
    good = "1.5\tCa\t10.0.0.1\t1000\t10.0.0.2\t445\ttcp\tS0\tS\t1\t0"
    text = (HEADER + good + "\n"
            + "1.6\tCb\t10.0.0.999\t1000\t10.0.0.2\t445\ttcp\tS0\tS\t1\t0\n"  # line 10: bad address
            + "1.7\tCc\t10.0.0.1\t1000\n"  # line 11: too few columns
            + '{"ts": 1.8, "uid": "Cd", "id.orig_h": \n'  # line 12: broken JSON
            + "1.9\tCe\t10.0.0.1\t70000\t10.0.0.2\t445\ttcp\tS0\tS\t1\t0\n"  # line 13: port out of range
            + good.replace("Ca", "Cf") + "\n")
    rows, rejects, _, _ = read(write(tmp_path, text))
    assert [r["session"] for r in rows] == ["Ca", "Cf"]
    assert [r.line for r in rejects] == [10, 11, 12, 13]  # the header is lines 1-8
    assert "not an IP address" in rejects[0].reason
    assert "4 columns" in rejects[1].reason and "11" in rejects[1].reason
    assert "JSON" in rejects[2].reason
    assert "port" in rejects[3].reason
    assert all(r.format == "zeek-conn" for r in rejects)


def test_data_before_header_is_rejected(tmp_path: Path) -> None:
    rows, rejects, _, _ = read(write(tmp_path, "1.5\tCa\t10.0.0.1\t1000\t10.0.0.2\t445\ttcp\n"))
    assert rows == [] and rejects[0].line == 1 and "#fields" in rejects[0].reason
