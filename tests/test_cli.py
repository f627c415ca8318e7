"""The command line as a user runs it: ingest, report, events, rejects, export, errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stormwatch.cli.main import cli

LINES = [
    "Aug 14 10:00:01 fw kernel: [100.000001] DSHIELDINPUT IN=eth0 OUT= SRC=198.51.100.7 DST=192.0.2.10 "
    "LEN=48 TOS=0x00 PREC=0x00 TTL=112 ID=1 DF PROTO=TCP SPT=3011 DPT=139 WINDOW=64240 RES=0x00 SYN URGP=0",
    "Aug 14 10:00:02 fw kernel: [101.000001] DSHIELDINPUT IN=eth0 OUT= SRC=198.51.100.7 DST=192.0.2.11 "
    "LEN=48 TOS=0x00 PREC=0x00 TTL=112 ID=2 DF PROTO=TCP SPT=3012 DPT=139 WINDOW=64240 RES=0x00 SYN URGP=0",
    "Aug 14 10:00:03 fw kernel: [102.000001] DSHIELDINPUT IN=eth0 OUT= SRC=203.0.113.9 DST=192.0.2.10 "
    "LEN=48 TOS=0x00 PREC=0x00 TTL=112 ID=3 DF PROTO=TCP SPT=4000 DPT=445 WINDOW=64240 RES=0x00 SYN URGP=0",
    "Aug 14 10:00:04 fw sshd[222]: Accepted publickey for root from 192.0.2.99 port 5555 ssh2",
    "Aug 14 10:00:05 fw kernel: [103.000001] DSHIELDINPUT IN=eth0 OUT= SRC=999.1.2.3 DST=192.0.2.10 "
    "LEN=48 TOS=0x00 PREC=0x00 TTL=112 ID=4 DF PROTO=TCP SPT=4000 DPT=445 WINDOW=64240 RES=0x00 SYN URGP=0",
]


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.output


@pytest.fixture
def log(tmp_path: Path) -> Path:
    p = tmp_path / "kern.log"
    p.write_text("\n".join(LINES) + "\n")
    return p


def test_ingest_summary_and_idempotence(tmp_path: Path, log: Path) -> None:
    db = str(tmp_path / "t.duckdb")
    code, out = _run("ingest", str(log), "--db", db, "--sensor", "fw1", "--output", "json")
    assert code == 0, out
    [s] = json.loads(out)
    assert (s["format"], s["read"], s["accepted"], s["rejected"], s["skipped"]) == ("iptables", 5, 3, 1, 1)
    _, out = _run("ingest", str(log), "--db", db, "--sensor", "fw1", "--output", "json")
    [s] = json.loads(out)
    assert (s["accepted"], s["duplicates"]) == (0, 3)


def test_rejects_listed_with_line_numbers(tmp_path: Path, log: Path) -> None:
    db = str(tmp_path / "t.duckdb")
    _run("ingest", str(log), "--db", db)
    code, out = _run("rejects", "--db", db, "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 1 and rows[0]["line"] == 5 and "999.1.2.3" in rows[0]["raw"]


def test_report_and_events(tmp_path: Path, log: Path) -> None:
    db = str(tmp_path / "t.duckdb")
    _run("ingest", str(log), "--db", db)
    year = json.loads(_run("events", "--db", db, "--format", "json", "--limit", "1")[1])[0]["ts"][:4]
    code, out = _run("report", "ports", "--db", db, "--day", f"{year}-08-14", "--format", "json")
    assert code == 0, out
    by_port = {r["port"]: r for r in json.loads(out)}
    assert by_port[139]["records"] == 2 and by_port[139]["targets"] == 2 and by_port[139]["sources"] == 1
    assert by_port[445]["records"] == 1
    code, out = _run("report", "port", "139", "--db", db, "--format", "csv")
    assert out.splitlines()[0].startswith("day,") and len(out.splitlines()) == 2
    code, out = _run("report", "sources", "--db", db, "--format", "json")
    assert json.loads(out)[0]["src_ip"] == "198.51.100.7"
    code, out = _run("events", "--db", db, "--src", "203.0.113.9", "--format", "json")
    [ev] = json.loads(out)
    assert ev["dst_port"] == 445 and ev["data"]["rule"] == "DSHIELDINPUT"
    code, out = _run("events", "--db", db, "--port", "139")
    assert code == 0 and out.count("198.51.100.7") == 2


def test_gzip_and_unknown_and_missing_inputs(tmp_path: Path) -> None:
    db = str(tmp_path / "t.duckdb")
    gz = tmp_path / "kern.log.gz"
    gz.write_bytes(gzip.compress(("\n".join(LINES[:3]) + "\n").encode()))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 4)
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    res = CliRunner().invoke(cli, ["ingest", str(gz), str(garbage), str(empty), str(tmp_path / "nope.log"),
                                   "--db", db])
    assert res.exit_code == 1
    assert "accepted=3" in res.output
    assert "garbage.bin: not in any known format (tried: pcap," in res.output
    assert "empty.log: not in any known format" in res.output and "empty" in res.output
    assert "nope.log: cannot read" in res.output


def test_lake_export_and_db_info(tmp_path: Path, log: Path) -> None:
    db = str(tmp_path / "t.duckdb")
    _run("ingest", str(log), "--db", db)
    code, out = _run("export", "lake", str(tmp_path / "lake"), "--db", db)
    assert code == 0 and "wrote 3 events" in out
    code, out = _run("db", "--db", db, "--format", "json")
    info = json.loads(out)
    assert info["rejects"] == 1 and info["events"][0]["n"] == 3


def test_read_commands_on_a_missing_store_fail_cleanly(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.duckdb")
    for args in (["report", "ports"], ["surges"], ["scanners"], ["outbreak"], ["campaigns"], ["advisory"]):
        res = CliRunner().invoke(cli, [*args, "--db", missing])
        assert res.exit_code == 1 and f"no store at {missing} yet" in res.output, args
        assert not (tmp_path / "none.duckdb").exists()  # a read-only command creates nothing


def test_bad_day_is_a_usage_error(tmp_path: Path, log: Path) -> None:
    db = str(tmp_path / "t.duckdb")
    _run("ingest", str(log), "--db", db)
    res = CliRunner().invoke(cli, ["report", "ports", "--db", db, "--day", "2006-13-45"])
    assert res.exit_code == 2 and "is not a date" in res.output
