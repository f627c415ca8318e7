"""The threat level (stormwatch.threat.level): names and aliases, the hysteresis, one noisy hour,
recorded changes, analysts' overrides, replay over historic time, the CLI, and the demo store."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from stormwatch.analytics import DuckDBEngine
from stormwatch.cli.level_cmd import level_cmd
from stormwatch.store import Store
from stormwatch.threat import state
from stormwatch.threat.kb import load_kb
from stormwatch.threat.level import (
    HoldState,
    LevelError,
    level_label,
    parse_level,
    replay_level,
    set_level,
    step_level,
    update_level,
)
from stormwatch.threat.rules import RuleSet, Signals, load_rules, parse_text
from threat_helpers import AT, exploit, signals, surge

DEMO = Path("/work/demo/demo.duckdb")
KB = load_kb()
H = timedelta(hours=1)
HOLD = timedelta(hours=24)
T0 = datetime(2006, 8, 14, 0, 0)

# A rule with no persistence at all, so that one noisy hour does raise the level: the hold time
# alone must then keep it from swinging back down at once.
NO_PERSISTENCE = parse_text("""
[level]
hold_hours = 24
[[rule]]
name = "any-port-surge"
level = 2
reason = "test rule: any agreed port surge, however short"
[[rule.when]]
signal = "surge"
kind = ["port"]
scope = "agreed"
""", "test")


def test_names_and_aliases() -> None:
    assert [parse_level(x) for x in ("1", 2, "HIGH", "red", " yellow ", "extreme", "green")] == [1, 2, 3, 4, 2, 4, 1]
    assert level_label(3) == "3 (high, orange)"
    with pytest.raises(LevelError, match="not a threat level"):
        parse_level("purple")
    with pytest.raises(LevelError):
        parse_level(5)


def test_step_level_raises_at_once_and_lowers_one_step_per_hold() -> None:
    s = step_level(None, 1, T0, HOLD)
    assert s == HoldState(1, T0)
    s = step_level(s, 3, T0 + H, HOLD)  # straight to 3
    assert s == HoldState(3, T0 + H)
    s = step_level(s, 1, T0 + 2 * H, HOLD)  # rules say 1: held
    assert s == HoldState(3, T0 + H)
    s = step_level(s, 1, T0 + 24 * H, HOLD)  # 23 h without support: still held
    assert s.level == 3
    s = step_level(s, 1, T0 + 25 * H, HOLD)  # 24 h: one step down, and the clock restarts
    assert s == HoldState(2, T0 + 25 * H)
    s = step_level(s, 1, T0 + 30 * H, HOLD)
    assert s.level == 2
    s = step_level(s, 2, T0 + 40 * H, HOLD)  # support for 2 again refreshes the clock
    assert s == HoldState(2, T0 + 40 * H)
    s = step_level(s, 1, T0 + 64 * H, HOLD)
    assert s == HoldState(1, T0 + 64 * H)
    assert step_level(HoldState(1, T0), 1, T0 + 1000 * H, HOLD).level == 1  # never below 1


# MS06-040 exploited all along (known for weeks, so not "new"): with the shipped rules, only a
# surge on 139/445 lasting 2 hours can raise the level.
OLD_EXPLOIT = exploit(first_seen_ever=T0 - 20 * 24 * H)


def surge_for(t: datetime, hours: int) -> Signals:
    """An agreed port-139 surge from 10:00 on the first day lasting ``hours``; quiet otherwise."""
    start = T0 + 10 * H
    if start < t <= start + hours * H:
        return signals(at=t, exploits=[OLD_EXPLOIT], surges=[surge(since=start, ratio=6.0)])
    return signals(at=t, exploits=[OLD_EXPLOIT])


def noisy_hour(t: datetime) -> Signals:
    return surge_for(t, 1)


def run_hours(store: Store, rules: RuleSet, hours: int, surge_hours: int = 1) -> list[int]:
    levels = []
    for i in range(hours):
        t = T0 + i * H
        levels.append(update_level(store, None, t, rules=rules, kb=KB, signals=surge_for(t, surge_hours)).level)
    return levels


def test_one_noisy_hour_does_not_move_the_shipped_rules(store: Store) -> None:
    levels = run_hours(store, load_rules(), 60)
    assert levels == [1] * 60
    assert state.changes(store) == []


def test_a_surge_lasting_hours_raises_the_shipped_rules(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as st:  # the control for the test above: same data, 3 hours
        levels = run_hours(st, load_rules(), 60, surge_hours=3)
        assert levels[:12] == [1] * 12 and levels[12] == 2  # 12:00: the surge has lasted 2 hours
        assert levels[13:37] == [2] * 24 and levels[37:] == [1] * 23  # held 24 h after 13:00, then down
        reasons = state.changes(st)[0].reasons
        assert reasons[0].endswith("[rule exploited-flaw-ports-surging]")


def test_one_noisy_hour_cannot_swing_the_level_up_and_down(store: Store) -> None:
    levels = run_hours(store, NO_PERSISTENCE, 60)
    # up at 11:00 (the noisy hour), and held for the 24 h hold time after the last support
    assert levels[:11] == [1] * 11
    assert levels[11:35] == [2] * 24
    assert levels[35:] == [1] * 25
    changes = state.changes(store)
    assert [(c.ts, c.previous, c.level, c.actor) for c in changes] == [
        (T0 + 11 * H, 1, 2, "rules"), (T0 + 35 * H, 2, 1, "rules")]
    assert changes[0].reasons[0].startswith("raised to 2: port 139 sources 6.0x its baseline")
    assert "lowered to 1: no rule has given level 2 since 2006-08-14 11:00 UTC (24 h" in changes[1].reasons[0]


def test_hold_time_is_configurable(store: Store) -> None:
    rules = RuleSet(NO_PERSISTENCE.rules, hold_hours=3)
    levels = run_hours(store, rules, 20)
    assert levels[11:14] == [2, 2, 2] and levels[14] == 1


def test_update_records_once_and_reports_lowering_time(store: Store) -> None:
    rules = load_rules()
    sig = signals(exploits=[exploit()], surges=[surge()])
    s = update_level(store, None, AT, rules=rules, kb=KB, signals=sig)
    assert (s.level, s.actor, s.recorded, s.since) == (2, "rules", True, AT)
    assert s.change is not None and s.change.previous == 1
    assert any("MS06-040 exploited by 112 sources seen by 1 sensor (critical, KB921883)" in r
               for r in s.change.reasons)
    again = update_level(store, None, AT, rules=rules, kb=KB, signals=sig)  # idempotent
    assert again.change is None and again.level == 2 and again.since == AT
    quiet = update_level(store, None, AT + 5 * H, rules=rules, kb=KB, signals=signals(at=AT + 5 * H))
    assert quiet.level == 2 and quiet.assessment.level == 1 and quiet.lowers_at == AT + 24 * H
    assert len(state.changes(store)) == 1
    # evaluating before the recorded history is shown but not recorded
    past = update_level(store, None, AT - H, rules=rules, kb=KB, signals=signals(at=AT - H))
    assert not past.recorded and "not recorded" in past.notes[0]


def test_analyst_override_set_expire_and_clear(store: Store) -> None:
    rules = load_rules()
    quiet = lambda t: signals(at=t)  # noqa: E731
    change = set_level(store, 3, "Randex.GEL outbreak reported by a partner", "alice", AT, hours=4)
    assert change is not None and (change.level, change.previous, change.actor) == (3, 1, "analyst:alice")
    assert "set to 3 by analyst alice until 2006-08-14 20:00 UTC: Randex.GEL" in change.reasons[0]
    s = update_level(store, None, AT + H, rules=rules, kb=KB, signals=quiet(AT + H))
    assert s.level == 3 and s.override is not None and s.rule_level == 1 and s.change is None
    # the override expires: the rules (level 1) take over at once, the change says why
    s = update_level(store, None, AT + 4 * H, rules=rules, kb=KB, signals=quiet(AT + 4 * H))
    assert s.level == 1 and s.change is not None and s.change.actor == "rules"
    assert s.change.reasons[0] == "the override by alice ended; the rules hold level 1"
    # an indefinite override, cleared by someone else
    set_level(store, 4, "test of the alerting path", "bob", AT + 5 * H)
    assert state.active_override(store, AT + 100 * H) is not None
    cleared = state.clear_override(store, "carol", AT + 6 * H)
    assert cleared is not None and cleared.who == "bob"
    s = update_level(store, None, AT + 6 * H, rules=rules, kb=KB, signals=quiet(AT + 6 * H))
    assert s.level == 1 and s.override is None
    assert [(c.level, c.actor) for c in state.changes(store)] == [
        (3, "analyst:alice"), (1, "rules"), (4, "analyst:bob"), (1, "rules")]
    assert state.overrides(store)[-1].cleared_by == "carol"
    with pytest.raises(LevelError, match="reason"):
        set_level(store, 2, " ", "dave", AT)


def test_a_new_override_ends_the_one_in_force(store: Store) -> None:
    set_level(store, 3, "first", "alice", AT)
    set_level(store, 2, "second", "bob", AT + H)
    ovr = state.active_override(store, AT + 2 * H)
    assert ovr is not None and ovr.who == "bob"
    assert state.overrides(store)[0].cleared_at == AT + H


def test_replay_records_changes_as_they_would_have_happened(store: Store) -> None:
    changes = replay_level(store, DuckDBEngine(store), T0, T0 + 59 * H, rules=NO_PERSISTENCE, kb=KB,
                           signals_at=noisy_hour)
    assert [(c.ts, c.level) for c in changes] == [(T0 + 11 * H, 2), (T0 + 35 * H, 1)]
    with pytest.raises(LevelError, match="already reaches"):
        replay_level(store, DuckDBEngine(store), T0, T0 + 5 * H, rules=NO_PERSISTENCE, kb=KB, signals_at=noisy_hour)
    again = replay_level(store, DuckDBEngine(store), T0 + 20 * H, T0 + 59 * H, rules=NO_PERSISTENCE, kb=KB,
                         signals_at=noisy_hour, reset=True)
    assert [(c.ts, c.level) for c in again] == [(T0 + 35 * H, 1)]  # the state before T0+20h was kept
    assert [(c.ts, c.level) for c in state.changes(store)] == [(T0 + 11 * H, 2), (T0 + 35 * H, 1)]


def test_read_only_store_without_the_tables_has_no_history(tmp_path: Path) -> None:
    import duckdb
    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()
    with Store(path, read_only=True) as st:
        assert state.changes(st) == [] and state.last_check(st) is None and state.active_override(st, AT) is None


# -- CLI ------------------------------------------------------------------------------------------

def test_cli_set_history_clear_and_empty_store(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.duckdb")
    r = CliRunner()
    res = r.invoke(level_cmd, ["--db", db])
    assert res.exit_code == 0 and "no events stored yet" in res.output
    res = r.invoke(level_cmd, ["--db", db, "--set", "orange", "--reason", "partner report", "--by", "alice",
                               "--at", "2006-08-14T12:00", "--for", "6"])
    assert res.exit_code == 0, res.output
    assert "threat level set to 3 (high, orange) by alice at 2006-08-14 12:00 UTC, until 2006-08-14 18:00 UTC" \
        in res.output
    res = r.invoke(level_cmd, ["--db", db, "--history", "--format", "json"])
    hist = json.loads(res.output)
    assert [(c["level"], c["actor"]) for c in hist["changes"]] == [(3, "analyst:alice")]
    assert hist["overrides"][0]["reason"] == "partner report"
    assert r.invoke(level_cmd, ["--db", db, "--set", "3", "--by", "x"]).exit_code == 2  # no reason
    assert r.invoke(level_cmd, ["--db", db, "--clear"]).exit_code == 2  # no name
    assert "not a threat level" in r.invoke(level_cmd, ["--db", db, "--set", "9", "--reason", "r", "--by", "x"]).output
    res = r.invoke(level_cmd, ["--db", db, "--clear", "--by", "bob", "--at", "2006-08-14T13:00"])
    assert res.exit_code == 0, res.output
    assert state.overrides(Store(db, read_only=True))[0].cleared_by == "bob"


def test_cli_rules_file_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rule]]\nname = "x"\nlevel = 7\nreason = "why this rule exists"\n'
                   '[[rule.when]]\nsignal = "exploit"\n')
    res = CliRunner().invoke(level_cmd, ["--db", str(tmp_path / "x.duckdb"), "--rules", str(bad)])
    assert res.exit_code == 1 and f"{bad}: rule x (#1): field 'level': must be 2, 3 or 4" in res.output
    res = CliRunner().invoke(level_cmd, ["--db", str(tmp_path / "x.duckdb")], env={"STORMWATCH_RULES": str(bad)})
    assert res.exit_code == 1 and "field 'level'" in res.output


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    if not DEMO.exists():
        pytest.skip("demo store not built (/work/demo/demo.duckdb)")
    dst = tmp_path / "demo.duckdb"
    shutil.copy(DEMO, dst)
    return dst


def test_demo_level_rises_with_ms06_040(demo_copy: Path) -> None:
    r = CliRunner()
    res = r.invoke(level_cmd, ["--db", str(demo_copy), "--at", "2006-08-11T00:00", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["level"] == 1  # before the bots
    res = r.invoke(level_cmd, ["--db", str(demo_copy), "--format", "json"])  # at the end of the data
    out = json.loads(res.output)
    assert out["at"] == "2006-08-15T00:00:00" and out["level"] >= 2
    assert out["change"]["previous"] == 1
    assert any("MS06-040 exploited by" in r["text"] for r in out["assessment"]["reasons"])
    res = r.invoke(level_cmd, ["--db", str(demo_copy)])
    assert "threat level" in res.output and "why:" in res.output
