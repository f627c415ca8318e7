"""`stormwatch demo` end to end: the surge on 139/445 must be visible in the port report."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from stormwatch.analytics import DuckDBEngine, port_history, top_ports
from stormwatch.cli.main import cli
from stormwatch.store import Store, count_rejects


def test_demo_runs_and_shows_the_surge(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    res = CliRunner().invoke(cli, ["demo", "--db", str(db), "--workdir", str(tmp_path / "logs")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "port 139, last 10 days" in res.output
    assert "ERROR" not in res.output
    with Store(db, read_only=True) as store:
        assert count_rejects(store) == 0
        eng = DuckDBEngine(store)
        hist = {r["day"].isoformat(): r for r in port_history(eng, 139)}
        baseline = sum(hist[f"2006-08-0{d}"]["sources"] for d in range(1, 8)) / 7
        # ISC-style: sources on 139 on the last day are several times the week before
        assert hist["2006-08-14"]["sources"] > 4 * baseline
        top = top_ports(eng, hist["2006-08-14"]["day"], by="sources", limit=2)
        assert {r["port"] for r in top} == {139, 445}
        before = top_ports(eng, hist["2006-08-05"]["day"], by="sources", limit=1)
        assert before[0]["port"] != 139
