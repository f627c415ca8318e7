"""Suricata EVE reader: flows and alerts from a real eve.json, outcome rules, bad records.

Real input (../shared/data/logs, see SOURCES.md): ``slips_test6-malicious.suricata.eve.json`` from
the Stratosphere Slips tests, an Internet-exposed host 2021-06-06/07 (flow 3512, alert 745,
dns 680, http 56 and a few others).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reader_helpers import event_rows, read_table
from stormwatch.ingest.suricata import SuricataEveReader, flag_letters

READER = SuricataEveReader()
EVE = "slips_test6-malicious.suricata.eve.json"


def read(path: Path) -> tuple[list[dict[str, Any]], list[Any], int, int]:
    events, rejects, n_read, skipped = read_table(READER, path)
    return event_rows(events), rejects, n_read, skipped


def read_lines(tmp_path: Path, *objs: dict[str, Any] | str) -> tuple[list[dict[str, Any]], list[Any], int, int]:
    p = tmp_path / "eve.json"
    p.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return read(p)


def flow(tcp: dict[str, Any] | None = None, proto: str = "TCP", to_client: int = 1,
         **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "timestamp": "2023-11-24T12:20:00.000000+0000", "flow_id": 77, "event_type": "flow",
        "src_ip": "198.51.100.7", "src_port": 51000, "dest_ip": "192.0.2.10", "dest_port": 445,
        "proto": proto,
        "flow": {"pkts_toserver": 1, "pkts_toclient": to_client, "bytes_toserver": 60,
                 "bytes_toclient": 54 * to_client, "start": "2023-11-24T12:17:01.123456+0000",
                 "end": "2023-11-24T12:17:01.623456+0000", "state": "closed", "alerted": False},
    }
    if tcp is not None:
        rec["tcp"] = tcp
    rec.update(extra)
    return rec


def test_real_eve_counts_per_event_type(shared_data: Path) -> None:
    path = shared_data / "logs" / EVE
    types = Counter(json.loads(ln)["event_type"] for ln in path.read_text().splitlines() if ln.strip())
    rows, rejects, n_read, skipped = read(path)
    assert rejects == []
    events = Counter(r["event"] for r in rows)
    assert events["fw.connection"] == types["flow"] + types["netflow"] == 3512
    assert events["ids.alert"] == types["alert"] == 745
    assert n_read == sum(types.values()) == 5000
    assert skipped == n_read - types["flow"] - types["netflow"] - types["alert"]
    assert {r["format"] for r in rows} == {"suricata-eve"}


def test_real_eve_values(shared_data: Path) -> None:
    rows, _, _, _ = read(shared_data / "logs" / EVE)
    alert = rows[0]  # the file's first line
    assert alert["event"] == "ids.alert"
    assert alert["ts"] == datetime(2021, 6, 6, 13, 59, 46, 457984)  # 15:59:46.457984+0200
    assert (alert["session"], alert["src_ip"], alert["src_port"], alert["dst_ip"], alert["dst_port"]) == (
        "1374195536821504", "78.36.196.213", 51698, "192.168.1.129", 445)
    assert (alert["proto"], alert["action"], alert["signature_id"], alert["severity"]) == ("tcp", "alert", 2403388, 2)
    assert alert["signature"] == "ET CINS Active Threat Intelligence Poor Reputation IP group 89"
    assert alert["category"] == "Misc Attack"
    # A SYN to 445 answered by RST-ACK: tcp_flags_ts 02, tcp_flags_tc 14.
    f = next(r for r in rows if r["session"] == "2232403389523415")
    assert f["event"] == "fw.connection"
    assert f["ts"] == datetime(2021, 6, 6, 15, 34, 31, 140759)  # flow.start, not the logging time
    assert (f["src_ip"], f["dst_port"], f["tcp_flags"], f["outcome"], f["action"]) == (
        "91.238.203.56", 445, "S", "reset", "log")
    assert (f["packets"], f["bytes"], f["conn_state"]) == (4, 240, "closed")
    assert f["duration"] == pytest.approx(0.000253)
    # UDP without reply.
    u = next(r for r in rows if r["session"] == "445348883402532")
    assert (u["proto"], u["outcome"], u["packets"], u["conn_state"], u["tcp_flags"]) == (
        "udp", "unanswered", 12, "new", None)


def test_real_eve_tcp_outcomes_follow_server_flags(shared_data: Path) -> None:
    path = shared_data / "logs" / EVE
    by_id = {}
    for ln in path.read_text().splitlines():
        o = json.loads(ln)
        if o["event_type"] == "flow" and o["proto"] == "TCP":
            by_id[str(o["flow_id"])] = int(o["tcp"]["tcp_flags_tc"], 16)
    rows, _, _, _ = read(path)
    tcp = [r for r in rows if r["event"] == "fw.connection" and r["proto"] == "tcp"]
    assert len(tcp) == len(by_id)
    for r in tcp:
        tc = by_id[r["session"]]
        if tc & 0x12 == 0x12:
            assert r["outcome"] == "answered"
        elif tc & 0x04:
            assert r["outcome"] == "reset"
    assert Counter(r["outcome"] for r in tcp)["reset"] == sum(
        1 for tc in by_id.values() if tc & 0x04 and tc & 0x12 != 0x12)


@pytest.mark.parametrize(("mask", "letters"), [
    (0x02, "S"), (0x12, "AS"), (0x1B, "APSF"), (0x14, "AR"), (0xC2, "CES"), (0xFF, "CEUAPRSF"), (0, ""),
])
def test_flag_bitmask(mask: int, letters: str) -> None:
    assert flag_letters(mask) == letters


@pytest.mark.parametrize(("tcp", "to_client", "expected"), [
    ({"tcp_flags_ts": "02", "tcp_flags_tc": "12"}, 1, "answered"),  # SYN-ACK
    ({"tcp_flags_ts": "06", "tcp_flags_tc": "16"}, 2, "answered"),  # SYN-ACK then RST
    ({"tcp_flags_ts": "02", "tcp_flags_tc": "14"}, 1, "reset"),  # RST-ACK: closed port
    ({"tcp_flags_ts": "02", "tcp_flags_tc": "00"}, 0, "unanswered"),  # nothing back
    ({"tcp_flags_ts": "18", "tcp_flags_tc": "18"}, 3, "answered"),  # mid-stream data both ways
    ({"syn": True, "ack": True}, 1, "answered"),  # no per-direction flags: reply packets
    ({"syn": True, "rst": True, "ack": True}, 1, None),  # whose RST? unknown
    ({"syn": True}, 0, "unanswered"),
])
def test_tcp_outcome_rules(tmp_path: Path, tcp: dict[str, Any], to_client: int, expected: str | None) -> None:
    rows, rejects, _, _ = read_lines(tmp_path, flow(tcp, to_client=to_client))
    assert rejects == []
    assert rows[0]["outcome"] == expected


def test_offset_without_colon_and_flow_fields(tmp_path: Path) -> None:
    rows, rejects, _, _ = read_lines(tmp_path, flow({"tcp_flags_ts": "1b", "tcp_flags_tc": "1b"}))
    assert rejects == []
    r = rows[0]
    assert r["ts"] == datetime(2023, 11, 24, 12, 17, 1, 123456)
    assert (r["tcp_flags"], r["duration"], r["packets"], r["bytes"], r["session"]) == ("APSF", 0.5, 2, 114, "77")


def test_udp_and_icmp_flows(tmp_path: Path) -> None:
    icmp = flow(None, proto="ICMP", to_client=1, icmp_type=8, icmp_code=0)
    del icmp["src_port"], icmp["dest_port"]
    rows, rejects, _, _ = read_lines(tmp_path, flow(None, proto="UDP", to_client=0), icmp,
                                     flow(None, proto="IPv6-ICMP", to_client=0, src_ip="2001:db8::1",
                                          dest_ip="2001:0db8:0:0::2", icmp_type=128, icmp_code=0))
    assert rejects == []
    assert [(r["proto"], r["outcome"]) for r in rows] == [
        ("udp", "unanswered"), ("icmp", "answered"), ("icmp6", "unanswered")]
    assert (rows[1]["icmp_type"], rows[1]["icmp_code"], rows[1]["src_port"]) == (8, 0, None)
    assert rows[2]["dst_ip"] == "2001:db8::2"


def test_netflow_is_one_direction(tmp_path: Path) -> None:
    nf = {"timestamp": "2023-11-24T12:20:00.000000+0000", "flow_id": 5, "event_type": "netflow",
          "src_ip": "192.0.2.10", "src_port": 445, "dest_ip": "198.51.100.7", "dest_port": 51000,
          "proto": "TCP", "netflow": {"pkts": 3, "bytes": 180, "start": "2023-11-24T12:17:00.000000+0000",
                                      "end": "2023-11-24T12:17:02.000000+0000"},
          "tcp": {"tcp_flags": "12", "syn": True, "ack": True}}
    rows, rejects, _, _ = read_lines(tmp_path, nf)
    assert rejects == []
    r = rows[0]
    assert (r["event"], r["packets"], r["bytes"], r["tcp_flags"], r["outcome"], r["duration"]) == (
        "fw.connection", 3, 180, "AS", None, 2.0)


def test_alert_actions_and_skipped_types(tmp_path: Path) -> None:
    alert = {"timestamp": "2023-11-24T12:17:01.5+00:00", "flow_id": 9, "event_type": "alert",
             "src_ip": "198.51.100.7", "src_port": 4444, "dest_ip": "192.0.2.10", "dest_port": 445,
             "proto": "TCP", "alert": {"action": "blocked", "signature_id": 2024218, "severity": 1,
                                       "signature": "ET EXPLOIT Possible ETERNALBLUE MS17-010", "category": ""}}
    dns = {"timestamp": "2023-11-24T12:17:01+0000", "event_type": "dns", "src_ip": "192.0.2.10",
           "dest_ip": "192.0.2.53", "proto": "UDP", "dns": {"type": "query"}}
    stats = {"timestamp": "2023-11-24T12:17:01+0000", "event_type": "stats", "stats": {"uptime": 5}}
    rows, rejects, n_read, skipped = read_lines(tmp_path, alert, dns, stats)
    assert rejects == [] and (n_read, skipped) == (3, 2)
    (r,) = rows
    assert (r["event"], r["action"], r["signature_id"], r["severity"]) == ("ids.alert", "drop", 2024218, 1)
    assert "category" not in r  # empty classification is absent, not ""
    assert r["ts"] == datetime(2023, 11, 24, 12, 17, 1, 500000)


def test_bad_records_are_rejected_with_line_numbers(tmp_path: Path) -> None:
    no_flow = flow(None)
    del no_flow["flow"]
    rows, rejects, _, _ = read_lines(
        tmp_path,
        flow(None),
        '{"timestamp": "2023-11-24T12:17:01+0000", "event_type": "flow", ',  # 2: broken JSON
        flow(None, src_ip="198.51.100.300"),  # 3: bad address
        no_flow,  # 4: flow record without its flow object
        {"timestamp": "2023-11-24T12:17:01+0000"},  # 5: no event_type
        flow({"tcp_flags_ts": "zz"}),  # 6: flags not hex
        flow(None, timestamp="yesterday", flow={"pkts_toserver": 1}),  # 7: bad timestamp
        "[1, 2]",  # 8: not an object
        flow(None),
    )
    assert len(rows) == 2
    assert [r.line for r in rejects] == [2, 3, 4, 5, 6, 7, 8]
    reasons = [r.reason for r in rejects]
    assert "JSON" in reasons[0]
    assert "not an IP address" in reasons[1]
    assert "'flow' object" in reasons[2]
    assert "event_type" in reasons[3]
    assert "hex" in reasons[4]
    assert "timestamp" in reasons[5]
    assert "not an object" in reasons[6]
