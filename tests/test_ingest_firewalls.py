"""The firewall-log sniffers (DShield report and JSON, Windows Firewall, Cisco ASA, pf) claim their
own inputs and nothing else: not each other's, not iptables syslog, not Zeek or Suricata logs."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stormwatch.events import EventBatchBuilder
from stormwatch.ingest.asa import AsaReader
from stormwatch.ingest.base import HEAD_BYTES, LineReader, Reader, RecordError, Source
from stormwatch.ingest.dshield import DshieldJsonReader, DshieldTsvReader
from stormwatch.ingest.pf import PfReader
from stormwatch.ingest.winfw import WindowsFirewallReader

MINE: dict[str, Reader] = {r.name: r for r in (DshieldTsvReader(), DshieldJsonReader(), WindowsFirewallReader(),
                                               AsaReader(), PfReader())}

SAMPLES: dict[str, bytes] = {
    "dshield": (
        b"2006-08-13 10:00:01 -05:00\t12345\t1\t198.51.100.7\t3821\t192.0.2.10\t445\tTCP\tS\r\n"
        b"2006-08-13 10:00:02 -05:00\t12345\t3\t198.51.100.8\t8\t192.0.2.10\t0\tICMP\t\r\n"),
    "dshield-json": json.dumps({"type": "firewall", "logs": [
        {"time": 1155481201, "sip": "198.51.100.7", "dip": "192.0.2.10", "proto": 6, "sport": "3821",
         "dport": "445", "flags": "S", "version": 4}]}, indent=2).encode(),
    "pfirewall": (
        b"#Version: 1.5\r\n#Software: Microsoft Windows Firewall\r\n#Time Format: Local\r\n"
        b"#Fields: date time action protocol src-ip dst-ip src-port dst-port size tcpflags tcpsyn tcpack "
        b"tcpwin icmptype icmpcode info path\r\n\r\n"
        b"2021-06-22 12:19:41 DROP TCP 198.51.100.7 192.0.2.10 3821 445 52 S 1 0 8192 - - - RECEIVE\r\n"),
    "asa": (
        b"Nov 26 10:00:01 fw1 %ASA-4-106023: Deny tcp src outside:198.51.100.7/3821 dst inside:192.0.2.10/445 "
        b'by access-group "outside_in" [0x0, 0x0]\n'
        b"Nov 26 10:00:02 fw1 %ASA-6-302013: Built inbound TCP connection 8 for outside:198.51.100.7/3822 "
        b"(198.51.100.7/3822) to inside:192.0.2.10/80 (192.0.2.10/80)\n"),
    "pf": (
        b"Nov 26 10:00:01.123456 rule 2/(match) block in on em0: 198.51.100.7.3821 > 192.0.2.10.445: "
        b"S 1234:1234(0) win 65535 <mss 1460> (DF)\n"
        b"2026-11-26 10:00:02.000001 rule 0/0(match): block in on em0: 198.51.100.8.40001 > 192.0.2.11.137: "
        b"UDP, length 50\n"),
}

OTHERS: dict[str, bytes] = {
    # netfilter LOG target through syslog (the DShield sensor's /var/log/dshield.log shape)
    "iptables": (
        b"Nov 26 10:00:01 sensor kernel: [12345.678901] DSHIELDINPUT IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:"
        b"88:99:aa:bb:08:00 SRC=198.51.100.7 DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=5 DF PROTO=TCP "
        b"SPT=3821 DPT=445 WINDOW=65535 RES=0x00 SYN URGP=0\n"),
    "zeek-tsv": (
        b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
        b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tconn_state\n"
        b"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\n"
        b"1155481201.000000\tCHhAvVGS1DHFjwGM9\t198.51.100.7\t3821\t192.0.2.10\t445\ttcp\tS0\n"),
    "zeek-json": (
        b'{"ts":1155481201.0,"uid":"CHhAvVGS1DHFjwGM9","id.orig_h":"198.51.100.7","id.orig_p":3821,'
        b'"id.resp_h":"192.0.2.10","id.resp_p":445,"proto":"tcp","conn_state":"S0"}\n'),
    "suricata-eve": (
        b'{"timestamp":"2006-08-13T15:00:01.000000+0000","flow_id":1,"event_type":"alert","src_ip":"198.51.100.7",'
        b'"src_port":3821,"dest_ip":"192.0.2.10","dest_port":445,"proto":"TCP","alert":{"action":"allowed",'
        b'"signature_id":2000001,"signature":"ET EXPLOIT MS06-040","severity":1}}\n'
        b'{"timestamp":"2006-08-13T15:00:02.000000+0000","flow_id":2,"event_type":"flow","src_ip":"198.51.100.7",'
        b'"src_port":3822,"dest_ip":"192.0.2.10","dest_port":139,"proto":"TCP"}\n'),
    "binetflow": (
        b"StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label\n"
        b"2011/08/10 09:46:53.047277,3550.182373,udp,212.50.71.179,39678,  <->,147.32.84.229,13363,CON,0,0,12,"
        b"875,413,flow=Background-UDP-Established\n"),
    "syslog": b"Nov 26 10:00:01 host sshd[811]: Accepted publickey for root from 192.0.2.5 port 22 ssh2\n",
}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_each_sample_is_claimed_by_its_reader_only(fmt: str) -> None:
    claimed = [name for name, r in MINE.items() if r.sniff(SAMPLES[fmt])]
    assert claimed == [fmt]


@pytest.mark.parametrize("other", sorted(OTHERS))
def test_other_formats_are_not_claimed(other: str) -> None:
    assert [name for name, r in MINE.items() if r.sniff(OTHERS[other])] == []


def test_sniffers_work_on_a_cut_head() -> None:
    # The sniffers see at most HEAD_BYTES; the last line of a full head is usually cut short.
    for fmt, sample in SAMPLES.items():
        body = sample * (HEAD_BYTES // len(sample) + 2)
        assert MINE[fmt].sniff(body[:HEAD_BYTES]), fmt


@pytest.mark.parametrize("name, owner", [
    ("logs/windows_pfirewall_home_2021-06_BetaHydri.log", "pfirewall"),
    ("logs/slips_test6-malicious.suricata.eve.json", None),
    ("logs/slips_ctu-sme-11-win_zeek_conn.log.labeled", None),
    ("logs/slips_portscan_vertical_zeek_conn.log", None),
    ("logs/slips_test3-mixed_ctu.binetflow", None),
])
def test_real_logs(shared_data: Path, name: str, owner: str | None) -> None:
    with open(shared_data / name, "rb") as f:
        head = f.read(HEAD_BYTES)
    assert [n for n, r in MINE.items() if r.sniff(head)] == ([owner] if owner else [])


# -- only RecordError escapes a parser ---------------------------------------------------------

_LINES = [ln for s in SAMPLES.values() for ln in s.decode().splitlines() if ln.strip()] + [
    json.dumps({"time": 1155481201, "sip": "198.51.100.7", "dip": "192.0.2.10", "proto": 1, "sport": "8",
                "dport": "0"}),
    "Nov 26 10:00:33 fw1 %ASA-6-302014: Teardown TCP connection 9 for outside:10.1.2.1/22 to inside:"
    "10.1.1.2/53496 duration 0:00:30 bytes 0 SYN Timeout",
    "Nov 26 10:00:34 fw1 %ASA-7-106100: access-list acl permitted icmp outside/1.1.1.1(0) -> inside/2.2.2.2(8) "
    "hit-cnt 3 (first hit)",
    "1764151203.000250 rule 5/0(match): pass out on em0: 2001:db8::10.445 > 2001:db8::7.51234: Flags [S.], ack 1",
]


@st.composite
def _damaged(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(_LINES))
    i = draw(st.integers(0, len(line)))
    j = draw(st.integers(i, len(line)))
    junk = draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
                | st.sampled_from(["", "9" * 25, "-1", "²", "::", ".", ":", "\t", " ", "(", ")", "[", "]",
                                   "nan", "inf", "1e400", "[" * 2000, "0.0.0.0", "ffff::1.99999"]))
    return line[:i] + junk + line[j:]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.one_of(_damaged(), st.text(max_size=200)))
def test_parsers_raise_only_record_error(line: str) -> None:
    line = line.replace("\r", " ").replace("\n", " ")
    for reader in MINE.values():
        assert isinstance(reader, LineReader)
        state = reader.start(Source("fuzz", "t", year_hint=2026))
        out = EventBatchBuilder("t")
        with contextlib.suppress(RecordError):
            assert reader.parse_line(line, state, out) in (True, False)
        out.take()  # every value the parser produced fits the batch schema
