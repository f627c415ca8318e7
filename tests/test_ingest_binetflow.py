"""Argus binetflow reader: real CTU/Slips files, state → outcome, ICMP ports, bad records.

Real inputs (../shared/data/logs, see SOURCES.md): ``slips_test3-mixed_ctu.binetflow`` (CTU,
2018-12-18, inbound scanning of 147.32.81.x, mostly ``S_``/``S_RA``) and
``slips_test11-portscan.binetflow`` (2019-04-04, TCP scan plus ICMP echo with hex ports).
"""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reader_helpers import event_rows, read_table
from stormwatch.ingest.binetflow import BinetflowReader, outcome

READER = BinetflowReader()
TITLE = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label\n"

# The documented state rules, spelled out per state seen in the real files.
STATE_OUTCOME = {"S_": "unanswered", "S_RA": "reset", "S_R": "reset", "SRPA_": "unanswered",
                 "FSA_": "unanswered", "SRPA_SRPA": "answered", "SPA_SPA": "answered",
                 "PA_PA": "answered", "CON": "answered"}


def read(path: Path) -> tuple[list[dict[str, Any]], list[Any], int, int]:
    events, rejects, n_read, skipped = read_table(READER, path)
    return event_rows(events), rejects, n_read, skipped


def read_text(tmp_path: Path, text: str) -> tuple[list[dict[str, Any]], list[Any], int, int]:
    p = tmp_path / "flows.binetflow"
    p.write_text(text)
    return read(p)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_ctu_mixed_file(shared_data: Path) -> None:
    path = shared_data / "logs" / "slips_test3-mixed_ctu.binetflow"
    records = csv_rows(path)
    rows, rejects, n_read, skipped = read(path)
    assert rejects == []
    assert len(rows) == len(records) == 89
    assert (n_read, skipped) == (90, 1)  # the title line
    first = rows[0]
    assert first["ts"] == datetime(2018, 12, 18, 14, 0, 0, 75359)  # taken as UTC
    assert (first["src_ip"], first["src_port"], first["dst_ip"], first["dst_port"], first["proto"]) == (
        "216.73.23.146", 52691, "147.32.81.57", 445, "tcp")
    assert (first["conn_state"], first["outcome"], first["tcp_flags"], first["action"]) == (
        "S_", "unanswered", "S", "log")
    assert (first["packets"], first["bytes"], first["duration"], first["format"]) == (1, 70, 0.0, "binetflow")
    assert "label" not in first  # the Label column is empty in this file
    second = rows[1]
    assert (second["conn_state"], second["outcome"], second["packets"]) == ("S_RA", "reset", 2)
    v6 = rows[2]
    assert (v6["src_ip"], v6["dst_ip"], v6["tcp_flags"]) == (
        "2001:718:2:1634:96de:80ff:fe7a:bdf0", "2a00:1450:400c:c00::bd", "APS")
    for r in rows:
        if r["conn_state"] in STATE_OUTCOME:
            assert r["outcome"] == STATE_OUTCOME[r["conn_state"]], r["conn_state"]
    assert Counter(r["dst_port"] for r in rows)[445] == sum(1 for r in records if r["Dport"] == "445")
    icmp = next(r for r in rows if r["proto"] == "icmp")
    assert (icmp["icmp_type"], icmp["icmp_code"], icmp["src_port"], icmp["outcome"]) == (8, 0, None, "answered")
    assert Counter(r["proto"] for r in rows)["icmp6"] == sum(1 for r in records if r["Proto"] == "ipv6-icmp")


def test_portscan_file_with_hex_icmp_ports(shared_data: Path) -> None:
    path = shared_data / "logs" / "slips_test11-portscan.binetflow"
    records = csv_rows(path)
    rows, rejects, _, _ = read(path)
    assert rejects == []
    assert len(rows) == len(records) == 66
    icmp = [r for r in rows if r["proto"] == "icmp"]
    assert len(icmp) == sum(1 for r in records if r["Proto"] == "icmp") == 46
    e = icmp[0]  # Sport 0x0008 (echo request), Dport 0x7208 (the echo identifier)
    assert (e["icmp_type"], e["icmp_code"], e["src_port"], e["dst_port"]) == (8, 0, None, None)
    assert e["outcome"] == "unanswered"  # TotPkts == SrcPkts: nothing came back
    tcp = rows[0]
    assert (tcp["dst_port"], tcp["conn_state"], tcp["tcp_flags"]) == (999, "S0", None)  # not an Argus flag state
    assert tcp["outcome"] == "answered"  # decided by packets: 31 total, 15 from the source


@pytest.mark.parametrize(("proto", "state", "dst_pkts", "expected"), [
    ("tcp", "S_", None, "unanswered"), ("tcp", "S_SA", None, "answered"), ("tcp", "S_RA", None, "reset"),
    ("tcp", "S_R", None, "reset"), ("tcp", "SR_SAR", None, "answered"), ("tcp", "S_A", None, "answered"),
    ("tcp", "PA_PA", None, "answered"), ("tcp", "PA_", None, None), ("tcp", "FSPA_FSPA", None, "answered"),
    ("udp", "CON", None, "answered"), ("udp", "INT", None, "unanswered"), ("udp", "REQ", None, "unanswered"),
    ("tcp", "RST", None, "reset"), ("icmp", "ECO", 1, "answered"), ("icmp", "URP", 0, "unanswered"),
    ("icmp", "ECO", None, None),
])
def test_state_outcomes(proto: str, state: str, dst_pkts: int | None, expected: str | None) -> None:
    assert outcome(proto, state, dst_pkts) == expected


def test_icmp_port_layouts(tmp_path: Path) -> None:
    text = (TITLE
            + "2011/08/10 09:46:53.047277,0.1,icmp,10.0.0.1,0x0303,   ->,10.0.0.2,0x7d27,URP,0,,1,70,70,\n"
            + "2011/08/10 09:46:54,0.1,icmp,10.0.0.1,0x0003,   ->,10.0.0.2,0x0001,URH,0,,1,70,70,\n"
            + "2011/08/10 09:46:55,0.1,ipv6-icmp,fe80::1,135,   ->,ff02::1,0,UNK,0,,1,70,70,\n")
    rows, rejects, _, _ = read_text(tmp_path, text)
    assert rejects == []
    assert [(r["proto"], r["icmp_type"], r["icmp_code"]) for r in rows] == [
        ("icmp", 3, 3), ("icmp", 3, 1), ("icmp6", 135, 0)]
    assert rows[1]["ts"] == datetime(2011, 8, 10, 9, 46, 54)


def test_label_arp_and_title_variants(tmp_path: Path) -> None:
    text = ("\ufeffStartTime\tDur\tProto\tSrcAddr\tSport\tDir\tDstAddr\tDport\tState\tTotPkts\tTotBytes\tLabel\n"
            "2011-08-10 09:46:53.5\t1.0\ttcp\t147.32.84.165\t1027\t  ->\t74.125.232.195\t0x0050\tS_SA\t3\t180\t"
            "flow=From-Botnet-V42-TCP-Established\n"
            "2011-08-10 09:46:54\t0\tarp\t147.32.84.1\t\t <->\t147.32.84.165\t\tCON\t2\t120\t"
            "flow=Background\n")
    rows, rejects, n_read, skipped = read_text(tmp_path, text)
    assert rejects == [] and (n_read, skipped) == (3, 2)  # title + arp skipped
    (r,) = rows
    assert (r["dst_port"], r["label"], r["outcome"], r["tcp_flags"]) == (
        80, "flow=From-Botnet-V42-TCP-Established", "answered", "S")
    assert r["ts"] == datetime(2011, 8, 10, 9, 46, 53, 500000)


def test_title_repeated_with_other_columns(tmp_path: Path) -> None:
    text = (TITLE + "2011/08/10 09:46:53,0.1,tcp,10.0.0.1,1025,   ->,10.0.0.2,445,S_,0,,1,60,60,\n"
            + "StartTime,Proto,SrcAddr,Sport,DstAddr,Dport,State\n"
            + "2011/08/10 09:47:00,udp,10.0.0.1,53,10.0.0.3,53,INT\n")
    rows, rejects, _, _ = read_text(tmp_path, text)
    assert rejects == []
    assert [(r["proto"], r["dst_port"], r["outcome"]) for r in rows] == [
        ("tcp", 445, "unanswered"), ("udp", 53, "unanswered")]


def test_identical_lines_are_two_records(tmp_path: Path) -> None:
    line = "2011/08/10 09:46:53,0.1,tcp,10.0.0.1,1025,   ->,10.0.0.2,445,S_,0,,1,60,60,\n"
    rows, _, _, _ = read_text(tmp_path, TITLE + line + line)
    assert len(rows) == 2 and rows[0]["key"] != rows[1]["key"]


def test_bad_records_are_rejected_with_line_numbers(tmp_path: Path) -> None:
    good = "2011/08/10 09:46:53,0.1,tcp,10.0.0.1,1025,   ->,10.0.0.2,445,S_,0,,1,60,60,\n"
    text = (TITLE + good
            + "2011/08/10 09:46:53,0.1,tcp,10.0.0.1,1025,   ->,10.0.0.2,445,S_\n"  # 3: too few columns
            + "2011/08/10 09:46:53,0.1,tcp,10.0.0.1,1025,   ->,10.0.0.256,445,S_,0,,1,60,60,\n"  # 4: address
            + "10 Aug 2011,0.1,tcp,10.0.0.1,1025,   ->,10.0.0.2,445,S_,0,,1,60,60,\n"  # 5: time
            + "2011/08/10 09:46:53,0.1,tcp,10.0.0.1,99999,   ->,10.0.0.2,445,S_,0,,1,60,60,\n"  # 6: port
            + "2011/08/10 09:46:53,0.1,tcp,10.0.0.1,1025,   ->,10.0.0.2,445,S_,0,,many,60,60,\n"  # 7: TotPkts
            + good.replace("1025", "1026"))
    rows, rejects, _, _ = read_text(tmp_path, text)
    assert len(rows) == 2
    assert [r.line for r in rejects] == [3, 4, 5, 6, 7]
    reasons = [r.reason for r in rejects]
    assert "columns" in reasons[0]
    assert "not an IP address" in reasons[1]
    assert "StartTime" in reasons[2]
    assert "port" in reasons[3]
    assert "TotPkts" in reasons[4]


def test_data_before_title_is_rejected(tmp_path: Path) -> None:
    rows, rejects, _, _ = read_text(tmp_path, "2011/08/10 09:46:53,0.1,tcp,10.0.0.1,1025,->,10.0.0.2,445,S_\n")
    assert rows == [] and rejects[0].line == 1 and "title" in rejects[0].reason
