"""What the three flow/IDS readers (zeek-conn, suricata-eve, binetflow) share: sniffers that claim
their own inputs and nothing else's, gzip input, and idempotent ingestion into a real store.

Real inputs: ../shared/data/logs (Slips test files and a Windows Firewall log, see SOURCES.md).
"""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormwatch.events import EventBatchBuilder, arrow_schema
from stormwatch.ingest.base import LineReader, RecordError, Source, source_for
from stormwatch.ingest.binetflow import BinetflowReader
from stormwatch.ingest.suricata import SuricataEveReader
from stormwatch.ingest.zeek import ZeekConnReader
from stormwatch.store import Store

ZEEK, EVE, ARGUS = ZeekConnReader(), SuricataEveReader(), BinetflowReader()
READERS: tuple[LineReader, ...] = (ZEEK, EVE, ARGUS)

REAL = {  # file in ../shared/data/logs -> the reader that owns it
    "slips_ctu-sme-11-win_zeek_conn.log.labeled": ZEEK,
    "slips_portscan_horizontal_zeek_conn.log": ZEEK,
    "slips_portscan_vertical_zeek_conn.log": ZEEK,
    "slips_test6-malicious.suricata.eve.json": EVE,
    "slips_test11-portscan.binetflow": ARGUS,
    "slips_test3-mixed_ctu.binetflow": ARGUS,
    "windows_pfirewall_home_2021-06_BetaHydri.log": None,
}

# Other formats' inputs none of the three may claim.
FOREIGN = {
    "dshield-json": b'{"type":"firewall","logs":[{"date":"2006-08-12 14:00:00 +0000","source_ip":"192.0.2.1",'
                    b'"source_port":1234,"target_ip":"198.51.100.2","target_port":445,"protocol":6,'
                    b'"flags":"S"}]}\n',
    "pfirewall": b"#Version: 1.5\r\n#Software: Microsoft Windows Firewall\r\n#Time Format: Local\r\n"
                 b"#Fields: date time action protocol src-ip dst-ip src-port dst-port size tcpflags tcpsyn "
                 b"tcpack tcpwin icmptype icmpcode info path\r\n"
                 b"2021-06-22 10:00:01 DROP TCP 192.0.2.1 192.168.1.10 50000 445 52 S 1 0 8192 - - - RECEIVE\r\n",
    "iptables": b"Aug 12 14:00:01 fw kernel: [1234.5] DSHIELDINPUT IN=eth0 OUT= SRC=192.0.2.1 "
                b"DST=198.51.100.2 LEN=48 TOS=0x00 PREC=0x00 TTL=113 ID=1 DF PROTO=TCP SPT=1234 DPT=445 "
                b"WINDOW=65535 RES=0x00 SYN URGP=0\n"
                b"Aug 12 14:00:02 fw sshd[99]: Connection closed by 192.0.2.9\n",
    "journal-json": b'{"__REALTIME_TIMESTAMP":"1155391201000000","_TRANSPORT":"kernel","MESSAGE":"DSHIELDINPUT '
                    b'IN=eth0 SRC=192.0.2.1 DST=198.51.100.2 PROTO=TCP SPT=1234 DPT=445 SYN"}\n',
    "zeek-dns-json": b'{"ts":1700828217.3,"uid":"Cx","id.orig_h":"10.0.0.1","id.orig_p":5353,'
                     b'"id.resp_h":"10.0.0.53","id.resp_p":53,"proto":"udp","trans_id":1,"query":"a.example"}\n',
    "zeek-dns-tsv": b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
                    b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\tquery\n",
    "csv": b"date,source,destination,port\n2006-08-12,192.0.2.1,198.51.100.2,445\n",
    "binary": b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(24),
}


def events(src: Source, reader: LineReader) -> pa.Table:
    return pa.concat_tables(c.events for c in reader.read(src))


@pytest.mark.parametrize("name", sorted(REAL))
def test_sniffers_on_real_files(shared_data: Path, name: str) -> None:
    head = (shared_data / "logs" / name).read_bytes()[:64 * 1024]
    claims = {r.name for r in READERS if r.sniff(head)}
    owner = REAL[name]
    assert claims == ({owner.name} if owner else set())


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_sniffers_leave_other_formats_alone(name: str) -> None:
    assert [r.name for r in READERS if r.sniff(FOREIGN[name])] == []


def test_sniffers_on_a_head_cut_mid_line(shared_data: Path) -> None:
    """The registry hands sniffers the first 64 KiB: a cut last line must not spoil the verdict."""
    for name, owner in REAL.items():
        if owner is None:
            continue
        data = (shared_data / "logs" / name).read_bytes()
        cut = data[: data.index(b"\n", 300) + 40]  # a few lines and a piece of the next
        assert owner.sniff(cut), name


@pytest.mark.parametrize("name", [n for n, r in REAL.items() if r is not None])
def test_gzip_input_gives_the_same_events(shared_data: Path, tmp_path: Path, name: str) -> None:
    reader = REAL[name]
    assert reader is not None
    plain = shared_data / "logs" / name
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    src = source_for(str(gz), "t")
    assert src.compression == "gzip"
    assert reader.sniff(src.head())
    got = events(src, reader)
    want = events(Source(str(plain), "t"), reader)
    assert got.num_rows == want.num_rows > 0
    assert got.equals(want)


@pytest.mark.parametrize("name", [n for n, r in REAL.items() if r is not None])
def test_ingesting_twice_adds_nothing(shared_data: Path, tmp_path: Path, name: str) -> None:
    reader = REAL[name]
    assert reader is not None
    path = shared_data / "logs" / name
    with Store(tmp_path / "t.duckdb") as store:
        first = [store.write_events(c.events) for c in reader.read(Source(str(path), "t"))]
        second = [store.write_events(c.events) for c in reader.read(Source(str(path), "t"))]
        n = store.query("SELECT count(*) AS n FROM events").column("n")[0].as_py()
    assert sum(w.inserted for w in first) == sum(w.offered for w in first) == n > 0
    assert sum(w.inserted for w in second) == 0
    assert sum(w.offered for w in second) == n


@pytest.mark.parametrize("name", [n for n, r in REAL.items() if r is not None])
def test_growing_log_adds_only_new_records(shared_data: Path, tmp_path: Path, name: str) -> None:
    """A log read, then read again after it grew: only the appended records are new."""
    reader = REAL[name]
    assert reader is not None
    lines = (shared_data / "logs" / name).read_bytes().splitlines(keepends=True)
    copy = tmp_path / name
    copy.write_bytes(b"".join(lines[: len(lines) // 2]))
    with Store(tmp_path / "t.duckdb") as store:
        early = sum(store.write_events(c.events).inserted for c in reader.read(Source(str(copy), "t")))
        copy.write_bytes(b"".join(lines))
        later = sum(store.write_events(c.events).inserted for c in reader.read(Source(str(copy), "t")))
    total = events(Source(str(copy), "t"), reader).num_rows
    assert 0 < early < total
    assert early + later == total


# Lines each reader must survive when mangled: only RecordError may escape parse_line, and the
# batch must still build (a value that would overflow a column must be rejected, not stored).
SEEDS: dict[str, list[str]] = {
    "zeek-conn": [
        "#separator \\x09", "#unset_field\t-", "#empty_field\t(empty)",
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tduration\tconn_state\t"
        "history\torig_pkts\tresp_pkts\ttunnel_parents   label   detailed-label",
        "1677024003.714845\tC6Sg\t192.168.1.107\t65164\t66.63.168.35\t5888\ttcp\t0.03\tREJ\tSr\t2\t2\t"
        "-   Malicious   C&C",
        '{"ts":1700828217.314165,"uid":"Cf","id.orig_h":"192.168.1.9","id.orig_p":50820,'
        '"id.resp_h":"45.33.32.156","id.resp_p":443,"proto":"icmp","duration":0.2,"conn_state":"OTH",'
        '"history":"Sr","orig_pkts":1,"resp_pkts":1}',
    ],
    "suricata-eve": [
        '{"timestamp":"2021-06-06T15:57:37.272281+0200","flow_id":22,"event_type":"flow","src_ip":"91.2.3.4",'
        '"src_port":48938,"dest_ip":"192.168.1.129","dest_port":445,"proto":"TCP","flow":{"pkts_toserver":2,'
        '"pkts_toclient":2,"bytes_toserver":120,"bytes_toclient":120,"start":"2021-06-06T17:34:31.140759+0200",'
        '"end":"2021-06-06T17:34:31.141012+0200","state":"closed"},"tcp":{"tcp_flags_ts":"02","tcp_flags_tc":"14"}}',
        '{"timestamp":"2021-06-06T15:59:46.457984+0200","flow_id":13,"event_type":"alert","src_ip":"78.3.1.2",'
        '"src_port":51698,"dest_ip":"192.168.1.129","dest_port":445,"proto":"ICMP","icmp_type":8,'
        '"alert":{"action":"allowed","signature_id":2403388,"signature":"ET CINS","category":"Misc","severity":2}}',
    ],
    "binetflow": [
        "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,SrcPkts,Label",
        "2018/12/18 14:00:00.527012,0.699716,tcp,216.73.23.146,52798,   ->,147.32.81.58,445,S_RA,0,0,2,134,70,1,",
        "2019/04/04 16:30:10.234728,1.262451,icmp,10.8.0.69,0x0008,   ->,110.128.128.128,0x7208,ECO,0,,2,144,144,2,x",
    ],
}
NASTY = ["", "-", "nan", "inf", "-1", "1e400", "99999999999999999999999", "0x", "0xffffffff", "\t", ",",
         "{", "}", '"', "\\x2d", 'x\\ud800"', '"C\\ud800', "\xff", "(empty)", "::", "300.1.1.1", "_",
         "null", "[]", "\x00", "\udcff", "\\ud800", "\\u0000"]


@st.composite
def mangled(draw: st.DrawFn, seeds: list[str]) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        line = draw(st.sampled_from(seeds))
        at = draw(st.integers(0, len(line)))
        cut = draw(st.integers(0, 12))
        ins = draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=6)))
        lines.append(line[:at] + ins + line[at + cut:])
    return lines


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)
@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_mangled_lines_only_raise_record_errors(reader: LineReader, data: st.DataObject) -> None:
    seeds = SEEDS[reader.name]
    lines = seeds + data.draw(mangled(seeds))
    out = EventBatchBuilder("fuzz")
    state = reader.start(Source("fuzz", "fuzz"))
    for line in lines:
        with contextlib.suppress(RecordError):
            reader.parse_line(line, state, out)
    assert out.take().schema == arrow_schema()


BAD_TEXT = {  # invalid UTF-8 bytes and JSON-escaped lone surrogates in values that become columns
    "zeek-conn": b'{"ts":1.0,"uid":"C\\ud800","id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","proto":"tcp",'
                 b'"conn_state":"S0"}\n'
                 b'{"ts":2.0,"uid":"C\xff\xfe","id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","proto":"tcp",'
                 b'"conn_state":"S0","label":"\xffbad"}\n',
    "suricata-eve": b'{"timestamp":"2023-11-24T12:17:01+0000","flow_id":"\\udcff","event_type":"alert",'
                    b'"src_ip":"10.0.0.1","dest_ip":"10.0.0.2","proto":"TCP","alert":{"signature":"\\ud800"}}\n'
                    b'{"timestamp":"2023-11-24T12:17:02+0000","flow_id":7,"event_type":"alert",'
                    b'"src_ip":"10.0.0.1","dest_ip":"10.0.0.2","proto":"TCP","alert":{"signature":"\xff"}}\n',
    "binetflow": b"StartTime,Proto,SrcAddr,Sport,DstAddr,Dport,State,Label\n"
                 b"2011/08/10 09:46:53,tcp,10.0.0.1,1025,10.0.0.2,445,S_,flow=\xff\xfeBotnet\n",
}


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)
def test_undecodable_text_does_not_sink_the_chunk(tmp_path: Path, reader: LineReader) -> None:
    path = tmp_path / "bad.log"
    path.write_bytes(BAD_TEXT[reader.name])
    chunks = list(reader.read(Source(str(path), "t")))
    table = pa.concat_tables(c.events for c in chunks)
    rejects = [r for c in chunks for r in c.rejects]
    # Every record is accounted for: stored with escaped text, or rejected with a reason.
    assert table.num_rows + len(rejects) == sum(c.read - c.skipped for c in chunks)
    assert table.num_rows >= 1
    for col in ("session", "key", "proto"):
        for v in table.column(col).to_pylist():
            assert v is None or v.encode("utf-8")
