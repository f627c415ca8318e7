"""``stormwatch export stix|misp|blocklist|firewall`` (stormwatch.cli.export_cmd), driven through
click's CliRunner on a store built by test_export.build."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stormwatch.cli.export_cmd import EXPORT_COMMANDS, blocklist_cmd, firewall_cmd, misp_cmd, stix_cmd
from stormwatch.store import Store
from test_export import build


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "cli.duckdb"
    with Store(path) as st:
        build(st)
    return str(path)


def test_stix(db: str) -> None:
    r = CliRunner().invoke(stix_cmd, ["--db", db])
    assert r.exit_code == 0, r.output
    bundle = json.loads(r.output)
    assert bundle["type"] == "bundle"
    assert any(o.get("pattern") == "[ipv4-addr:value = '198.51.100.1']" for o in bundle["objects"])


def test_stix_since_and_out(db: str, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    r = CliRunner().invoke(stix_cmd, ["--db", db, "--since", "2006-08-12T15:00:00", "--out", str(out)])
    assert r.exit_code == 0, r.output
    patterns = {o.get("pattern") for o in json.loads(out.read_text())["objects"]}
    assert "[ipv4-addr:value = '198.51.100.9']" not in patterns  # before --since
    assert "[ipv4-addr:value = '198.51.100.1']" in patterns  # its second attempt is after it


def test_misp(db: str) -> None:
    r = CliRunner().invoke(misp_cmd, ["--db", db, "--tlp", "green", "--distribution", "1"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)["Event"]
    assert ev["distribution"] == "1" and "tlp:green" in {t["name"] for t in ev["Tag"]}


def test_blocklist_csv(db: str) -> None:
    r = CliRunner().invoke(blocklist_cmd, ["--db", db, "--format", "csv", "--min-events", "3"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert {row["address"] for row in rows} == {"198.51.100.1", "203.0.113.7"}


def test_blocklist_local_net(db: str) -> None:
    r = CliRunner().invoke(blocklist_cmd, ["--db", db, "--local-net", "203.0.113.0/24"])
    assert r.exit_code == 0, r.output
    assert "203.0.113.7" not in r.output and "198.51.100.1" in r.output
    bad = CliRunner().invoke(blocklist_cmd, ["--db", db, "--local-net", "not-a-net"])
    assert bad.exit_code == 1 and "not a network" in bad.output


@pytest.mark.parametrize("target", ["nftables", "iptables", "ip6tables", "pf", "ios"])
def test_firewall(db: str, target: str) -> None:
    r = CliRunner().invoke(firewall_cmd, ["--db", db, "--target", target])
    assert r.exit_code == 0, r.output
    assert "MS06-040" in r.output


def test_firewall_refuses_bad_input(db: str) -> None:
    r = CliRunner().invoke(firewall_cmd, ["--db", db, "--target", "windows"])
    assert r.exit_code == 2 and "windows" in r.output
    r = CliRunner().invoke(firewall_cmd, ["--db", db, "--wan-iface", "eth0; reboot"])
    assert r.exit_code == 1 and "not an interface name" in r.output
    r = CliRunner().invoke(firewall_cmd, ["--db", db, "--since", "2006-08-13", "--until", "2006-08-12"])
    assert r.exit_code == 2 and "--until must be after --since" in r.output


def test_command_names() -> None:
    assert [c.name for c in EXPORT_COMMANDS] == ["stix", "misp", "blocklist", "firewall"]
