"""Linux netfilter LOG lines (iptables/ufw) and their journald form.

The packet parts follow the kernel's ``nf_log_syslog.c`` (``dump_ipv4_packet``: ``SRC= DST= LEN=
TOS=0x%02X PREC=0x%02X TTL= ID=`` then ``CE DF MF``, ``PROTO=``, TCP ``SPT= DPT= [SEQ= ACK=]
WINDOW= RES=0x%02x <flag words> URGP=``, UDP ``SPT= DPT= LEN=``, ICMP ``TYPE= CODE=`` and the quoted
packet in ``[...]``; ``dump_ipv6_packet``: ``%pI6`` full addresses, ``TC= HOPLIMIT= FLOWLBL=``).
The DShield pi sensor's line (``<epoch> host kernel:[uptime] DSHIELDINPUT IN=...``) is the one its
``fwlogparser.py`` matches; ufw's prefixes are ``[UFW BLOCK]``/``[UFW ALLOW]``; the journal entry
follows systemd's Journal Export Format. Addresses are documentation prefixes (RFC 5737, 3849).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import random
import shutil
import struct
import subprocess
import sysconfig
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from stormwatch.collector.ingest import ingest_paths
from stormwatch.errors import InputError, TruncatedInput
from stormwatch.events import EventBatchBuilder, Reject, arrow_schema
from stormwatch.events.ids import event_id, schema_with_ids
from stormwatch.ingest import detect, netfilter_fast, source_for
from stormwatch.ingest.base import RecordError, Source
from stormwatch.ingest.iptables import (
    IptablesJournalReader,
    IptablesReader,
    build_query,
    is_blank,
    parse_syslog_line,
)
from stormwatch.ingest.syslog import Clock, Occurrences
from stormwatch.store import Store

J = IptablesJournalReader()


def _reader(compiled: bool) -> IptablesReader:
    r = IptablesReader()
    r.use_compiled = compiled
    return r


R = _reader(True)  # the reader as stormwatch ingest runs it


@pytest.fixture(params=["compiled", "sql"])
def reader(request: pytest.FixtureRequest) -> IptablesReader:
    """Each test of the iptables reader runs on both of its paths: the compiled scanner and the
    DuckDB SQL one (each with the reference parser behind it)."""
    if request.param == "compiled":
        assert netfilter_fast.available(), "the compiled scanner was not built: install gcc and python3-dev"
    return _reader(request.param == "compiled")
MAC = "MAC=00:16:3e:5e:6c:00:00:16:3e:0c:01:02:08:00"
MAC6 = "MAC=00:16:3e:5e:6c:00:00:16:3e:0c:01:02:86:dd"
TCP4 = (f"IN=eth0 OUT= {MAC} SRC=198.51.100.7 DST=192.0.2.10 LEN=40 TOS=0x00 PREC=0x00 TTL=240 ID=54321 "
        "PROTO=TCP SPT=12345 DPT=445 WINDOW=1024 RES=0x00 SYN URGP=0 ")


def _write(path: Path, lines: list[str] | str, compress: bool = False) -> Path:
    text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
    data = text.encode("utf-8", "surrogateescape")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _with_ids(table: pa.Table) -> list[dict[str, Any]]:
    """The rows with their event id as ``id`` in place of ``key``/``id_lo``/``id_hi``: the id the
    reader handed over, else the one the store computes from the key (the same number)."""
    rows = table.to_pylist()
    for row in rows:
        lo, hi, key = row.pop("id_lo", None), row.pop("id_hi", None), row.pop("key")
        row["id"] = event_id(row["event"], row["sensor"], key) if lo is None else hi << 64 | lo
    return rows


def _read(reader: Any, src: Source) -> tuple[list[dict[str, Any]], list[Reject], int, int]:
    chunks = list(reader.read(src))
    table = pa.concat_tables([c.events for c in chunks], promote_options="default")
    assert table.schema.equals(arrow_schema()) or table.schema.equals(schema_with_ids())
    rows = _with_ids(table)
    for row in rows:  # `data` is JSON as EventBatchBuilder writes it: sorted keys, no nulls
        data = json.loads(row["data"])
        assert row["data"] == json.dumps(data, separators=(",", ":"), sort_keys=True)
        row.update(data)
    return rows, [r for c in chunks for r in c.rejects], sum(c.read for c in chunks), sum(c.skipped for c in chunks)


def _one(reader: IptablesReader, tmp_path: Path, line: str, year: int = 2026) -> dict[str, Any]:
    """The event of a one-line file, checked against the reference parser's."""
    src = Source(str(_write(tmp_path / "one.log", [line])), "s1", None, year)
    rows, rejects, read, skipped = _read(reader, src)
    assert (len(rows), rejects, read, skipped) == (1, [], 1, 0)
    got = parse_syslog_line(line, Clock.for_source(src))
    assert got is not None
    ref = EventBatchBuilder("s1")
    ref.add("fw.connection", got[0], line, **got[1])
    assert _with_ids(ref.take())[0].items() <= rows[0].items()
    return rows[0]


# --- one vector per framing ----------------------------------------------------------------------


def test_bsd_syslog_tcp_syn(reader: IptablesReader, tmp_path: Path) -> None:
    line = f"Nov 26 10:00:01 sensor kernel: [12345.678901] DSHIELDINPUT {TCP4}"
    e = _one(reader, tmp_path, line)
    assert e["ts"] == datetime(2026, 11, 26, 10, 0, 1)
    assert (e["src_ip"], e["src_port"], e["dst_ip"], e["dst_port"]) == ("198.51.100.7", 12345, "192.0.2.10", 445)
    assert (e["proto"], e["tcp_flags"], e["action"], e["rule"]) == ("tcp", "S", "log", "DSHIELDINPUT")
    assert (e["in_iface"], "out_iface" in e, e["length"], e["ttl"]) == ("eth0", False, 40, 240)
    assert (e["event"], e["sensor"], e["format"], e["count"]) == ("fw.connection", "s1", "iptables", 1)
    assert e["id"] == event_id("fw.connection", "s1", line)


def test_rfc5424_ufw_block_syn_ack(reader: IptablesReader, tmp_path: Path) -> None:
    line = (f"<4>1 2026-11-26T10:00:02.123456+00:00 sensor kernel - - - [12346.000001] [UFW BLOCK] IN=eth0 OUT= "
            f"{MAC} SRC=198.51.100.8 DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=51 ID=0 DF PROTO=TCP SPT=40000 "
            "DPT=139 WINDOW=64240 RES=0x00 ACK SYN URGP=0")
    e = _one(reader, tmp_path, line)
    assert e["ts"] == datetime(2026, 11, 26, 10, 0, 2, 123456)
    assert (e["rule"], e["action"], e["tcp_flags"], e["dst_port"], e["ttl"]) == ("[UFW BLOCK]", "drop", "AS", 139, 51)


def test_iso_timestamp_is_converted_to_utc(reader: IptablesReader, tmp_path: Path) -> None:
    line = ("2026-11-26T11:00:03.5+01:00 sensor kernel: [UFW ALLOW] IN=eth0 OUT= SRC=198.51.100.9 "
            "DST=192.0.2.10 LEN=78 TOS=0x00 PREC=0x00 TTL=110 ID=4711 PROTO=UDP SPT=137 DPT=137 LEN=58")
    e = _one(reader, tmp_path, line)
    assert e["ts"] == datetime(2026, 11, 26, 10, 0, 3, 500000)
    assert (e["proto"], e["src_port"], e["dst_port"], e["tcp_flags"]) == ("udp", 137, 137, None)
    assert (e["action"], e["length"]) == ("accept", 78)  # the IP length, not UDP's LEN=58


def test_journalctl_short_iso(reader: IptablesReader, tmp_path: Path) -> None:
    # `journalctl -o short-iso` writes the offset without a colon on older systemd.
    line = f"2026-11-26T05:00:06-0500 sensor kernel: DSHIELDINPUT {TCP4}"
    assert _one(reader, tmp_path, line)["ts"] == datetime(2026, 11, 26, 10, 0, 6)


def test_journalctl_short_precise(reader: IptablesReader, tmp_path: Path) -> None:
    line = f"Nov 26 10:00:06.250000 sensor kernel: DSHIELDINPUT {TCP4}"
    assert _one(reader, tmp_path, line)["ts"] == datetime(2026, 11, 26, 10, 0, 6, 250000)


def test_dshield_pi_epoch_icmp(reader: IptablesReader, tmp_path: Path) -> None:
    line = (f"1764151204 pi kernel:[  987.654321] DSHIELDINPUT IN=eth0 OUT= {MAC} SRC=198.51.100.10 "
            "DST=192.0.2.10 LEN=84 TOS=0x00 PREC=0x00 TTL=52 ID=0 DF PROTO=ICMP TYPE=8 CODE=0 ID=1234 SEQ=1")
    e = _one(reader, tmp_path, line)
    assert e["ts"] == datetime.fromtimestamp(1764151204, UTC).replace(tzinfo=None)
    assert (e["proto"], e["icmp_type"], e["icmp_code"], e["src_port"], e["dst_port"]) == ("icmp", 8, 0, None, None)
    assert e["rule"] == "DSHIELDINPUT"


def test_icmp_error_quoting_a_packet_keeps_the_outer_fields(reader: IptablesReader, tmp_path: Path) -> None:
    line = ("Nov 26 10:00:07 sensor kernel: [12.5] fw-out IN= OUT=eth0 SRC=192.0.2.10 DST=198.51.100.7 LEN=96 "
            "TOS=0x00 PREC=0xC0 TTL=64 ID=7 PROTO=ICMP TYPE=3 CODE=3 [SRC=198.51.100.7 DST=192.0.2.10 LEN=68 "
            "TOS=0x00 PREC=0x00 TTL=50 ID=1 PROTO=UDP SPT=53 DPT=33434 LEN=48 ] ")
    e = _one(reader, tmp_path, line)
    assert (e["src_ip"], e["dst_ip"], e["ttl"], e["length"]) == ("192.0.2.10", "198.51.100.7", 64, 96)
    assert (e["icmp_type"], e["icmp_code"], e["src_port"]) == (3, 3, None)
    assert (e["out_iface"], "in_iface" in e) == ("eth0", False)


def test_ipv6_addresses_in_canonical_form(reader: IptablesReader, tmp_path: Path) -> None:
    line = (f"Nov 26 10:00:05 sensor kernel: [12347.5] DROP-IN IN=eth0 OUT= {MAC6} "
            "SRC=2001:0db8:0000:0000:0000:0000:0000:0007 DST=2001:0db8:0001:0000:0000:0000:0000:0010 LEN=80 TC=0 "
            "HOPLIMIT=57 FLOWLBL=0 PROTO=TCP SPT=51234 DPT=445 WINDOW=28800 RES=0x00 SYN URGP=0")
    e = _one(reader, tmp_path, line)
    assert (e["src_ip"], e["dst_ip"], e["ttl"], e["action"]) == ("2001:db8::7", "2001:db8:1::10", 57, "drop")
    icmp6 = ("Nov 26 10:00:05 sensor kernel: IN=eth0 OUT= SRC=fe80:0000:0000:0000:0000:0000:0000:0000 "
             "DST=ff02:0000:0000:0000:0000:0000:0000:0001 LEN=72 TC=0 HOPLIMIT=255 FLOWLBL=0 PROTO=ICMPv6 "
             "TYPE=135 CODE=0")
    e = _one(reader, tmp_path, icmp6)
    assert (e["src_ip"], e["dst_ip"], e["proto"], e["icmp_type"]) == ("fe80::", "ff02::1", "icmp6", 135)
    assert "rule" not in e


def test_gzip_file(reader: IptablesReader, tmp_path: Path) -> None:
    lines = [f"Nov 26 10:00:{i:02} sensor kernel: [{i}.5] DSHIELDINPUT {TCP4}" for i in range(50)]
    plain = _read(reader, source_for(str(_write(tmp_path / "a.log", lines)), "s1"))
    src = source_for(str(_write(tmp_path / "a.log.gz", lines, compress=True)), "s1")
    assert src.compression == "gzip"
    assert _read(reader, src) == plain
    assert len(plain[0]) == 50


def test_truncated_gzip_yields_what_was_readable(reader: IptablesReader, tmp_path: Path) -> None:
    lines = [f"Nov 26 10:{i // 60:02}:{i % 60:02} sensor kernel: [{i}.5] DSHIELDINPUT {TCP4}" for i in range(3000)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.log.gz"
    path.write_bytes(whole[: len(whole) // 2])
    got = 0
    with pytest.raises(InputError, match="unreadable"):
        for chunk in reader.read(source_for(str(path), "s1")):
            got += chunk.events.num_rows
    assert 0 < got < 3000


# --- what is skipped, what is rejected -----------------------------------------------------------


def test_other_programs_are_skipped_and_malformed_log_lines_rejected(reader: IptablesReader, tmp_path: Path) -> None:
    good = f"Nov 26 10:00:01 sensor kernel: [1.5] DSHIELDINPUT {TCP4}"
    lines = [
        "Nov 26 10:00:00 sensor sshd[812]: Failed password for root from 198.51.100.7 port 50000 ssh2",  # 1
        good,  # 2
        "",  # 3: blank, not counted
        good.replace("SRC=198.51.100.7", "SRC=198.51.100.300"),  # 4: bad address
        "Nov 26 10:00:02 sensor CRON[9]: (root) CMD (run-parts /etc/cron.hourly)",  # 5
        good.replace("SRC=198.51.100.7 ", ""),  # 6: no SRC
        good.replace("SPT=12345", "SPT=70000"),  # 7: bad port
        good.replace("Nov 26", "Nov 27"),  # 8
        good.replace("SRC=198.51.100.7", "SRC=198.51.100.300"),  # 9: the same bad line again
    ]
    rows, rejects, read, skipped = _read(reader, Source(str(_write(tmp_path / "m.log", lines)), "s1", None, 2026))
    assert (len(rows), read, skipped) == (2, 8, 2)
    assert [(r.line, r.reason) for r in rejects] == [
        (4, "not an IP address: '198.51.100.300'"),
        (6, "no SRC=/DST= in the LOG line (not an IP packet)"),
        (7, "port out of range: 70000"),
        (9, "not an IP address: '198.51.100.300'"),
    ]
    assert rejects[0].raw == lines[3] and {r.format for r in rejects} == {"iptables"}


def test_lines_duckdb_refuses_are_parsed_in_python(reader: IptablesReader, tmp_path: Path) -> None:
    """Invalid UTF-8 and a 0x01 byte make DuckDB's line reader refuse a line; the reference
    parser takes it, and later line numbers stay right."""
    good = f"Nov 26 10:00:01 sensor kernel: [1.5] DSHIELDINPUT {TCP4}"
    text = "\n".join([
        "Nov 26 10:00:00 sensor app: caf\udce9",  # 1: Latin-1 byte, another program
        good.replace("DSHIELDINPUT", "DROP\udcff"),  # 2: a LOG line with a bad byte in its prefix
        good.replace("DSHIELDINPUT", "a\x01b"),  # 3
        good.replace("SPT=12345", "SPT=x"),  # 4: rejected
        good,  # 5
    ]) + "\n"
    rows, rejects, read, skipped = _read(reader, Source(str(_write(tmp_path / "b.log", text)), "s1", None, 2026))
    assert (read, skipped, [(r.line, r.reason) for r in rejects]) == (5, 1, [(4, "not a port: 'x'")])
    assert sorted(r["rule"] for r in rows) == ["DROP\\xff", "DSHIELDINPUT", "a\x01b"]


def test_crlf_line_ends(reader: IptablesReader, tmp_path: Path) -> None:
    lines = [f"Nov 26 10:00:0{i} sensor kernel: [1.5] DSHIELDINPUT {TCP4.strip()}" for i in range(3)]
    path = _write(tmp_path / "c.log", "\r\n".join(lines) + "\r\n")
    rows, _, read, _ = _read(reader, Source(str(path), "s1", None, 2026))
    assert read == 3 and [r["id"] for r in rows] == [event_id("fw.connection", "s1", line) for line in lines]


# --- the year of a BSD timestamp -----------------------------------------------------------------


def test_year_rolls_back_for_dates_after_the_file_mtime(reader: IptablesReader, tmp_path: Path) -> None:
    lines = [f"{d} sensor kernel: [1.5] DSHIELDINPUT {TCP4}" for d in ("Dec 31 23:59:59", "Jan  1 00:10:00",
                                                                     "Jan  2 10:00:00", "Jan  1 23:00:00")]
    src = Source(str(_write(tmp_path / "y.log", lines)), "s1", None, 2027, datetime(2027, 1, 1, 0, 30))
    rows, rejects, _, _ = _read(reader, src)
    assert rejects == []
    # Jan 2 lies more than a day after the mtime: last year's. Jan 1 23:00 is within the day.
    assert [r["ts"] for r in rows] == [datetime(2026, 12, 31, 23, 59, 59), datetime(2027, 1, 1, 0, 10),
                                      datetime(2026, 1, 2, 10, 0), datetime(2027, 1, 1, 23, 0)]


def test_29_february_of_a_common_year_is_the_leap_year_before(reader: IptablesReader, tmp_path: Path) -> None:
    e = _one(reader, tmp_path, f"Feb 29 12:00:00 sensor kernel: DSHIELDINPUT {TCP4}", year=2025)
    assert e["ts"] == datetime(2024, 2, 29, 12, 0)


# --- the vectorised path equals the reference parser ---------------------------------------------


def _random_line(r: random.Random) -> str:
    """A LOG line in one of many shapes, mostly well-formed, some subtly not (each oddity a few
    per cent of lines), or another program's line."""
    def odd(usual: str, *others: str) -> str:
        return r.choice(others) if r.random() < 0.04 else usual

    if r.random() < 0.04:
        return r.choice(["Nov 26 10:00:01 h sshd[1]: Accepted publickey", "", "  ", "x IN=y", "OUT= IN="])
    six = r.random() < 0.25

    def addr() -> str:
        if six:
            return ":".join(f"{r.choice([0, 0, r.randint(0, 0xffff)]):04x}" for _ in range(8))
        return ".".join(str(r.randint(0, 255)) for _ in range(4))

    month, day, hour = r.choice(["Jan", "Feb", "Nov", "Dec"]), r.randint(1, 29), r.randint(0, 23)
    frac, zone = r.choice(["", ".25", ".123456"]), r.choice(["", "Z", "+01:00", "-0530"])
    head = r.choice([
        f"{month} {day:2d} {hour:02}:{r.randint(0, 59):02}:07 h kernel: ",
        f"2026-11-{r.randint(1, 28):02}T10:00:01{frac}{zone} h kernel: ",
        f"{r.randint(1_600_000_000, 1_800_000_000)}{r.choice(['', '.5'])} pi kernel:",
        f"<4>1 2026-11-26T10:00:{r.randint(0, 59):02}.5Z h kernel - - - ",
    ])
    head = odd(head, '<4>1 2026-11-26T10:00:01Z h kernel - - [m@1 a="]"] ', "<4>Nov 26 10:00:01 h kernel: ",
               "Nov 26 10:00:01 h  kernel: ", "Nov  6 1:00:01 h kernel: ", "Nov 26 10:00:01 h ulogd: ")
    kts = r.choice(["", f"[{r.randint(0, 99999):5d}.{r.randint(0, 999999):06d}] ", "[12.5]"])
    prefix = odd(r.choice(["DSHIELDINPUT ", "[UFW BLOCK] ", "[UFW ALLOW] ", "fw-REJECT ", "", "DROP"]),
                 'q"t ', "dr\u00f6p ", "LOGIN=1 ", "  two  spaces ", "[x] ")
    body = f"IN={r.choice(['eth0', '', 'br-1'])} OUT={r.choice(['', 'eth1'])} {r.choice([MAC + ' ', '', 'MAC= '])}"
    body += odd(f"SRC={odd(addr(), '1.2.3.256', '01.2.3.4', '2001:db8::1', '2001:DB8:0:0:0:0:0:1', 'x')} ", "")
    body += f"DST={addr()} LEN={odd(str(r.randint(20, 1500)), '040', 'x', '')} "
    if six:
        body += f"TC=0 HOPLIMIT={r.randint(1, 255)} FLOWLBL={r.randint(0, 9999)} {odd('', 'TTL=3 ')}"
    else:
        flags4 = r.choice(["", "DF ", "CE DF ", "MF "])
        body += f"{odd('TOS=0x10', 'TTL=9', 'X=1')} PREC=0x00 TTL={r.randint(1, 255)} ID={r.randint(0, 65535)} {flags4}"
    proto = odd(r.choice(["TCP", "TCP", "UDP", "ICMPv6" if six else "ICMP"]), "47", "SCTP", "UDPLITE")
    port = odd(str(r.randint(0, 65535)), "65536", "x", "007", "")
    if proto == "TCP":
        flags = " ".join(w for w in ("CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN") if r.random() < 0.25)
        body += (f"PROTO=TCP SPT={port} DPT={r.randint(0, 65535)} {r.choice(['', 'SEQ=1 ACK=2 '])}WINDOW=512 "
                 f"RES=0x00 {flags + ' ' if flags else ''}URGP=0 {r.choice(['', 'OPT (020405B4) ', 'UID=0 GID=0 '])}")
        body = odd(body, body.replace("RES=0x00 ", ""), body.replace(" URGP=0", ""))
    elif proto in ("UDP", "SCTP", "UDPLITE"):
        body += f"PROTO={proto} SPT={port} DPT={r.randint(0, 65535)} LEN=20 "
    elif proto.startswith("ICMP"):
        body += (f"PROTO={proto} TYPE={r.randint(0, 255)} CODE={odd(str(r.randint(0, 15)), 'x', '')} "
                 f"{r.choice(['', 'ID=1 SEQ=2 ', '[SRC=1.2.3.4 PROTO=TCP SPT=1 ] '])}")
    else:
        body += f"PROTO={proto} "
    return head + kts + prefix + (body if r.random() < 0.7 else body.rstrip())


def _reference(path: Path, clock: Clock) -> tuple[list[dict[str, Any]], list[tuple[int, str]], int, int]:
    """The per-line reference parse of a file, as a LineReader would run it."""
    out = EventBatchBuilder("s1")
    rejects, read, skipped = [], 0, 0
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if is_blank(line):
                continue
            read += 1
            try:
                got = parse_syslog_line(line, clock)
            except RecordError as exc:
                rejects.append((n, str(exc)))
                continue
            if got is None:
                skipped += 1
            else:
                out.add("fw.connection", got[0], line, **got[1])
    return _with_ids(out.take()), rejects, read, skipped


def _equals_reference(reader: IptablesReader, path: Path) -> list[Any]:
    """Assert that ``reader`` gives the reference parser's events, rejects and counts on
    ``path``; returns its chunks."""
    src = Source(str(path), "s1", None, 2026, datetime(2026, 12, 1))
    chunks = list(reader.read(src))
    got = _with_ids(pa.concat_tables([c.events for c in chunks], promote_options="default"))
    want, want_rejects, read, skipped = _reference(path, Clock.for_source(src))
    assert sorted(got, key=lambda e: e["id"]) == sorted(want, key=lambda e: e["id"])
    assert [(x.line, x.reason) for c in chunks for x in c.rejects] == want_rejects
    assert (sum(c.read for c in chunks), sum(c.skipped for c in chunks)) == (read, skipped)
    return chunks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_output_equals_the_reference_parser(reader: IptablesReader, tmp_path: Path, seed: int) -> None:
    r = random.Random(seed)
    lines = [_random_line(r) for _ in range(4000)]
    lines += lines[100:110]  # repeated lines: occurrence suffixes
    path = _write(tmp_path / "r.log", lines)
    chunks = _equals_reference(reader, path)
    # The comparison means something only if the fast path decided most lines itself.
    src = Source(str(path), "s1", None, 2026, datetime(2026, 12, 1))
    if reader.use_compiled:
        decided = sum(c.events.num_rows - c.events.column("id_lo").null_count for c in chunks)
    else:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        decided = con.sql(f"SELECT count(*) FILTER (st = 0) FROM ({build_query(src, Clock.for_source(src))})"
                          ).fetchall()[0][0]
    assert decided > sum(c.events.num_rows for c in chunks) // 2


@pytest.mark.parametrize("seed", [4, 5])
def test_compiled_path_across_blocks_and_full_buffers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      seed: int) -> None:
    """Blocks of 4 KiB and room for 64 events or 16 slow lines per scan: lines cut at block ends
    (also between \\r and \\n), longer than a block, repeated across calls, and line numbers of
    rejects that count from the start of the file."""
    monkeypatch.setattr(netfilter_fast, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(netfilter_fast, "PIECE_BYTES", 1000)
    monkeypatch.setattr(netfilter_fast, "ROWS", 64)
    monkeypatch.setattr(netfilter_fast, "SLOW_ROWS", 16)
    r = random.Random(seed)
    lines: list[str] = []
    for _ in range(3000):
        line = _random_line(r)
        lines += [line, line] if r.random() < 0.02 else [line]  # adjacent repeats
    lines.insert(1500, "Nov 26 10:00:01 h kernel: " + "x" * 9000 + " IN=eth0 OUT= SRC=1.2.3.4")  # > a block
    text = "".join(line + r.choice(["\n", "\r\n", "\r"]) for line in lines)
    for compress in (False, True):
        _equals_reference(_reader(True), _write(tmp_path / f"b{compress}.log", text, compress=compress))


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_compiled_path_on_mutated_lines(tmp_path: Path, seed: int) -> None:
    """Well-formed lines of every framing with one to three random edits each (a byte replaced,
    dropped, doubled or a space inserted, anywhere): the scanner must accept exactly what the
    reference parser makes of each, or hand the line over."""
    r = random.Random(seed)
    alphabet = " =:.[]<>-0123456789abcdefABCDEFINOUTSRCDSTPROLENTTLSYNACK\x00\x7f\xe9\t\""
    good = [line for line in (_random_line(r) for _ in range(3000)) if "IN=" in line]
    lines = []
    for line in good:
        for _ in range(r.randint(1, 3)):
            at = r.randrange(len(line) + 1)
            op = r.randrange(4)
            if op == 0 and at < len(line):
                line = line[:at] + r.choice(alphabet) + line[at + 1:]
            elif op == 1:
                line = line[:at] + line[at + 1:]
            elif op == 2 and at < len(line):
                line = line[:at] + line[at] + line[at:]
            else:
                line = line[:at] + " " + line[at:]
        lines.append(line)
    chunks = _equals_reference(_reader(True), _write(tmp_path / "m.log", lines + good))
    assert sum(c.events.num_rows - c.events.column("id_lo").null_count for c in chunks) > len(good) // 3


def test_compiled_ids_are_the_stores_md5(tmp_path: Path) -> None:
    """The same file through the compiled path and then the SQL path (whose ids the store
    hashes with md5_number) adds nothing the second time, and the reverse."""
    path = _write(tmp_path / "s.log", _lines(0, 500) + [_lines(0, 1)[0]] * 3)
    src = Source(str(path), "s1", None, 2026)
    for first, second in ((True, False), (False, True)):
        with Store(tmp_path / f"{first}.duckdb") as store:
            added = [sum(store.write_events(c.events).inserted for c in _reader(p).read(src)) for p in (first, second)]
            assert added == [503, 0]


def test_multi_lane_md5_equals_hashlib() -> None:
    r = random.Random(9)
    messages = [bytes(r.randrange(256) for _ in range(n)) for n in [0, 1, 55, 56, 63, 64, 119, 120, 440, 480, 600]
                + [r.randrange(700) for _ in range(200)]]
    prefix = b"fw.connection\0s1\0"
    want = [(int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little"))
            for d in (hashlib.md5(prefix + m).digest() for m in messages)]
    lanes = [1] + [n for n in (8, 16) if _cpu_has(n)]
    assert netfilter_fast.md5_lanes() in lanes
    for n in lanes:
        assert netfilter_fast.md5_list(prefix, messages, n) == want, n


def test_generic_build_without_simd(tmp_path: Path) -> None:
    """Built as for a CPU other than x86 (-DMD5X_NO_SIMD), the scanner hashes one line at a time
    and gives the same ids."""
    gcc = shutil.which("gcc")
    assert gcc is not None, "gcc is needed for the tests (it builds the compiled scanner too): see .ci/run"
    src = Path(netfilter_fast.__file__).with_name("_netfilter.c")
    out = tmp_path / f"_netfilter{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = f"-I{sysconfig.get_paths()['include']}"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-std=c11", "-DMD5X_NO_SIMD", include, str(src), "-o", str(out)],
                   check=True)
    spec = importlib.util.spec_from_file_location("_netfilter", out)
    assert spec is not None and spec.loader is not None
    generic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generic)
    assert generic.md5_lanes() == 1
    r = random.Random(3)
    messages = [bytes(r.randrange(256) for _ in range(r.randrange(700))) for _ in range(100)]
    prefix = b"fw.connection\0s1\0"
    fast = netfilter_fast.md5_list(prefix, messages, netfilter_fast.md5_lanes())
    assert generic.md5_list(prefix, messages, 1) == fast


def _cpu_has(lanes: int) -> bool:
    flags = Path("/proc/cpuinfo").read_text().split()
    return ("avx512f" if lanes == 16 else "avx2") in flags


def test_occurrences_are_numbered_across_adjacent_batches() -> None:
    def batch(*keys: str) -> tuple[pa.Table, Any]:
        hashes = duckdb.sql(f"SELECT hash(k) AS h FROM (VALUES {', '.join(f'({k!r})' for k in keys)}) t(k)")
        return pa.table({"key": list(keys)}), hashes.to_arrow_table().column("h").to_numpy()

    occ = Occurrences()
    keys = [occ.apply(*batch(*b)).column("key").to_pylist() for b in (("a", "b", "a"), ("a", "c"), ("c", "d"), ("a",))]
    # "a" is numbered on into the next batch; "a" two batches later is left to the store.
    assert keys == [["a", "b", "a\x001"], ["a\x002", "c"], ["c\x001", "d"], ["a"]]


# --- journald export -----------------------------------------------------------------------------


def _entry(fields: list[tuple[str, str | bytes]]) -> bytes:
    out = b""
    for k, v in fields:
        if isinstance(v, bytes):  # binary-safe form: name, newline, le64 length, data, newline
            out += k.encode() + b"\n" + struct.pack("<Q", len(v)) + v + b"\n"
        else:
            out += f"{k}={v}\n".encode()
    return out + b"\n"


def _journal() -> bytes:
    msg = f"DSHIELDINPUT {TCP4}".strip()
    return b"".join([
        _entry([("__CURSOR", "s=1;i=1"), ("__REALTIME_TIMESTAMP", "1764151207123456"),
                ("__MONOTONIC_TIMESTAMP", "12348123456"), ("_TRANSPORT", "kernel"), ("PRIORITY", "4"),
                ("SYSLOG_IDENTIFIER", "kernel"), ("MESSAGE", msg), ("_HOSTNAME", "sensor")]),  # lines 1-9
        _entry([("__CURSOR", "s=1;i=2"), ("__REALTIME_TIMESTAMP", "1764151208000000"),
                ("SYSLOG_IDENTIFIER", "sshd"), ("MESSAGE", "Accepted publickey for root")]),  # 10-14
        _entry([("__CURSOR", "s=1;i=3"), ("__REALTIME_TIMESTAMP", "1764151209000000"),
                ("MESSAGE", f"[UFW BLOCK] {TCP4}\nsecond line".encode())]),  # 15-20, binary MESSAGE
        _entry([("__CURSOR", "s=1;i=4"), ("__REALTIME_TIMESTAMP", "1764151210000000"),
                ("MESSAGE", msg.replace("SRC=198.51.100.7 ", ""))]),  # 21-24: no SRC
    ])


def test_journal_export(tmp_path: Path) -> None:
    path = tmp_path / "j.export"
    path.write_bytes(_journal())
    src = Source(str(path), "s1")
    assert J.sniff(src.head()) and not R.sniff(src.head())
    rows, rejects, read, skipped = _read(J, src)
    assert (read, skipped) == (4, 1)
    assert [(r.line, r.reason, r.format) for r in rejects] == [
        (21, "no SRC=/DST= in the LOG line (not an IP packet)", "iptables-journal")]
    first, second = rows
    assert first["ts"] == datetime(2025, 11, 26, 10, 0, 7, 123456)
    assert (first["rule"], first["src_ip"], first["dst_port"]) == ("DSHIELDINPUT", "198.51.100.7", 445)
    assert (first["tcp_flags"], first["format"]) == ("S", "iptables-journal")
    assert first["id"] == event_id("fw.connection", "s1", "1764151207123456 " + f"DSHIELDINPUT {TCP4}".strip())
    assert (second["rule"], second["action"]) == ("[UFW BLOCK]", "drop")


def test_journal_cut_in_a_binary_field(tmp_path: Path) -> None:
    data = _journal()
    cut = data.index(b"second line")
    path = tmp_path / "j.export"
    path.write_bytes(data[:cut])
    got = []
    with pytest.raises(TruncatedInput, match="MESSAGE"):
        for chunk in J.read(Source(str(path), "s1")):
            got += chunk.events.column("src_ip").to_pylist()
    assert got == ["198.51.100.7"]


# --- format detection and the store --------------------------------------------------------------


def test_detect(tmp_path: Path) -> None:
    log = _write(tmp_path / "kern.log", [f"Nov 26 10:00:01 sensor kernel: [1.5] DSHIELDINPUT {TCP4}"])
    journal = tmp_path / "j.export"
    journal.write_bytes(_journal())
    assert detect(source_for(str(log), "s1")).name == "iptables"
    assert detect(source_for(str(journal), "s1")).name == "iptables-journal"


def _lines(start: int, n: int) -> list[str]:
    return [f"Nov 26 10:{i // 60 % 60:02}:{i % 60:02} sensor kernel: [{i}.25] DSHIELDINPUT "
            f"{TCP4.replace('ID=54321', f'ID={i % 65536}')}" for i in range(start, start + n)]


def test_store_twice_adds_nothing_and_repeats_are_kept(reader: IptablesReader, tmp_path: Path) -> None:
    lines = _lines(0, 300)
    lines += lines[-2:] * 2  # the last two lines three times each
    src = Source(str(_write(tmp_path / "s.log", lines)), "s1", None, 2026)
    with Store(tmp_path / "x.duckdb") as store:
        first = sum(store.write_events(c.events).inserted for c in reader.read(src))
        second = sum(store.write_events(c.events).inserted for c in reader.read(src))
        assert (first, second) == (304, 0)
        assert store.query("SELECT count(DISTINCT event_id) AS n FROM events").column("n")[0].as_py() == 304


def test_growing_file_adds_only_the_new_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "grow.log", _lines(0, 1000))
    with Store(tmp_path / "x.duckdb") as store:
        (first,) = ingest_paths(store, [str(path)], fmt="iptables", sensor="s1")
        with open(path, "a") as f:
            f.write("\n".join(_lines(1000, 250)) + "\n")
        (second,) = ingest_paths(store, [str(path)], fmt="iptables", sensor="s1")
        assert (first.accepted, first.read, first.error) == (1000, 1000, None)
        assert (second.accepted, second.duplicates, second.read) == (250, 1000, 1250)
