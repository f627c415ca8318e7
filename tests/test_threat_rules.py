"""Threat-level rules (stormwatch.threat.rules): the shipped file, the schema check's messages, and
each condition of the vocabulary matched against signals built directly."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from stormwatch.threat.kb import load_kb
from stormwatch.threat.level import assess
from stormwatch.threat.rules import (
    ExploitCond,
    RulesError,
    SurgeCond,
    evaluate_rule,
    load_rules,
    parse_text,
)
from threat_helpers import AT, HISTORY, exploit, outbreak, scanner, signals, surge

KB = load_kb()


def one_rule(when: str, level: int = 2) -> str:
    return f"""
[[rule]]
name = "r"
level = {level}
reason = "a reason long enough to say why"
{when}
"""


def holds(when: str, **sig: object) -> bool:
    rs = parse_text(one_rule(when), "t.toml")
    return evaluate_rule(rs.rules[0], signals(**sig), KB).holds  # type: ignore[arg-type]


# -- the shipped rules ----------------------------------------------------------------------------

def test_builtin_rules_load_with_reasons_citing_the_anchors() -> None:
    rs = load_rules()
    assert rs.hold_hours == 24 and rs.window_hours == 24
    assert {r.level for r in rs.rules} == {2, 3, 4}
    for r in rs.rules:
        assert "notes" in r.reason and len(r.reason) > 80, r.name
    assert any("ThreatCon" in r.reason for r in rs.rules) and any("Infocon" in r.reason for r in rs.rules)
    # every surge rule that could fire on one noisy hour asks for persistence
    for r in rs.rules:
        for c in r.when:
            if isinstance(c, SurgeCond):
                assert c.min_active_hours >= 1, r.name


def test_operator_file_replaces_builtin(tmp_path: Path) -> None:
    p = tmp_path / "site.toml"
    p.write_text("[level]\nhold_hours = 6\n" + one_rule('[[rule.when]]\nsignal = "scanner"\ndirection = "outbound"'))
    rs = load_rules(p)
    assert rs.hold_hours == 6 and [r.name for r in rs.rules] == ["r"] and rs.source == str(p)


# -- schema errors name the file, the rule and the field -------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("not toml [", "t.toml: not valid TOML"),
    ("[[vuln]]\nid = 1", "t.toml: field 'vuln': unknown top-level key"),
    ("[level]\nhold_hours = -1\n" + one_rule('[[rule.when]]\nsignal = "campaigns"'),
     "t.toml: field 'level.hold_hours': must be a number >= 0"),
    ("[level]\nhold = 1\n", "t.toml: field 'level.hold': is not a known setting"),
    ("", "t.toml: field 'rule': no [[rule]] entries"),
    (one_rule('[[rule.when]]\nsignal = "exploit"', level=5), "t.toml: rule r (#1): field 'level': must be 2, 3 or 4"),
    (one_rule('[[rule.when]]\nsignal = "exploit"', level=1), "field 'level': must be 2, 3 or 4"),
    ('[[rule]]\nname = "r"\nlevel = 2\nreason = "short"\n[[rule.when]]\nsignal = "exploit"',
     "rule r (#1): field 'reason': must say why"),
    ('[[rule]]\nname = "r"\nlevel = 2\n[[rule.when]]\nsignal = "exploit"', "rule r (#1): field 'reason': is required"),
    (one_rule(""), "rule r (#1): field 'when': is required"),
    (one_rule('[[rule.when]]\nsignal = "weather"'), "field 'when[0].signal': must be one of exploit, surge"),
    (one_rule('[[rule.when]]\nsignal = "exploit"\nmin_sorces = 3'),
     "rule r (#1): field 'when[0].min_sorces': is not a field of a exploit condition"),
    (one_rule('[[rule.when]]\nsignal = "exploit"\nmin_sources = "3"'),
     "field 'when[0].min_sources': must be a whole number >= 0, got str '3'"),
    (one_rule('[[rule.when]]\nsignal = "exploit"\nseverity = ["severe"]'),
     "field 'when[0].severity': 'severe' is not one of critical, important, moderate, low"),
    (one_rule('[[rule.when]]\nsignal = "surge"\nports = [139, 70000]'),
     "field 'when[0].ports': must be a non-empty list of port numbers 1-65535 or \"exploited\""),
    (one_rule('[[rule.when]]\nsignal = "surge"\nscope = "global"'), "field 'when[0].scope': must be one of agreed"),
    (one_rule('[[rule.when]]\nsignal = "surge"\nkind = ["port", "dns"]'), "'dns' is not one of port, exploit, srcnet"),
    (one_rule('[[rule.when]]\nsignal = "scanner"\nmin_count = 0'), "field 'when[0].min_count': must be at least 1"),
    (one_rule('[[rule.when]]\nsignal = "surge"\nactive = "yes"'), "field 'when[0].active': must be true or false"),
    (one_rule('[[rule.when]]\nsignal = "exploit"') + one_rule('[[rule.when]]\nsignal = "exploit"'),
     "rule r: field 'name': appears twice"),
    (one_rule('[[rule.when]]\nsignal = "exploit"\n[[rule.when]]\nsignal = "outbreak"\nmax_doubling_hours = true'),
     "field 'when[1].max_doubling_hours': must be a number >= 0, got bool True"),
])
def test_schema_errors(text: str, message: str) -> None:
    with pytest.raises(RulesError) as err:
        parse_text(text, "t.toml")
    assert message in str(err.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.toml")


def test_no_string_is_evaluated() -> None:
    # a condition value that looks like code is just a wrong type
    with pytest.raises(RulesError, match="must be a number"):
        parse_text(one_rule('[[rule.when]]\nsignal = "surge"\nmin_ratio = "__import__(\'os\').system(\'x\')"'), "t")


# -- the vocabulary -------------------------------------------------------------------------------

EXPLOIT = '[[rule.when]]\nsignal = "exploit"\n'


def test_exploit_thresholds_and_kb_severity() -> None:
    assert holds(EXPLOIT + "min_sources = 112", exploits=[exploit()])
    assert not holds(EXPLOIT + "min_sources = 113", exploits=[exploit()])
    assert not holds(EXPLOIT + "min_sensors = 2", exploits=[exploit()])
    assert not holds(EXPLOIT + "min_attempts = 151", exploits=[exploit()])
    assert holds(EXPLOIT + 'severity = ["critical"]', exploits=[exploit()])
    assert not holds(EXPLOIT + 'severity = ["moderate"]', exploits=[exploit()])
    assert not holds(EXPLOIT + 'severity = ["critical"]', exploits=[exploit("MS99-001")])  # not in the KB
    assert holds(EXPLOIT + 'vuln = ["ms06-040"]', exploits=[exploit()])
    assert not holds(EXPLOIT + 'vuln = ["MS08-067"]', exploits=[exploit()])
    assert not holds(EXPLOIT, exploits=[exploit(attempts=0, sources=0)])  # probes only
    assert not holds(EXPLOIT, exploits=[])
    assert holds(EXPLOIT + "min_count = 2", exploits=[exploit(), exploit("MS08-067")])
    assert not holds(EXPLOIT + "min_count = 2", exploits=[exploit()])


def test_exploit_new_needs_history() -> None:
    new = EXPLOIT + "new_within_hours = 72\nmin_history_hours = 72"
    assert holds(new, exploits=[exploit()])  # first seen 30 h ago, watched for ~12 days before
    assert not holds(new, exploits=[exploit(first_seen_ever=AT - timedelta(hours=73))])  # old news
    # first seen the day the sensors started: not "new", only new to us
    assert not holds(new, exploits=[exploit(first_seen_ever=HISTORY + timedelta(hours=5))])
    assert not holds(new, exploits=[exploit()], exploit_history_since=None)


SURGE = '[[rule.when]]\nsignal = "surge"\n'


def test_surge_conditions() -> None:
    assert holds(SURGE + "min_ratio = 4.0", surges=[surge()])
    assert not holds(SURGE + "min_ratio = 4.2", surges=[surge()])
    assert holds(SURGE + "min_ratio = 100.0", surges=[surge(ratio=None, baseline=0.0)])  # up from nothing
    assert holds(SURGE + 'scope = "agreed"', surges=[surge()])
    assert not holds(SURGE + 'scope = "agreed"', surges=[surge(scope="local", sensors=1)])
    assert not holds(SURGE + "min_sensors = 4", surges=[surge()])
    assert not holds(SURGE, surges=[surge(active=False)])
    assert holds(SURGE + "active = false", surges=[surge(active=False)])
    assert holds(SURGE + "ports = [445, 139]", surges=[surge()])
    assert not holds(SURGE + "ports = [445]", surges=[surge()])
    assert not holds(SURGE + "ports = [139]", surges=[surge("203.0.113.0/24", kind="srcnet")])
    assert holds(SURGE + 'kind = ["exploit"]\nseverity = ["critical"]', surges=[surge("MS06-040", kind="exploit")])
    assert not holds(SURGE + 'severity = ["critical"]', surges=[surge()])  # a port has no severity
    assert holds(SURGE + 'subjects = ["139"]\nmetric = ["sources"]', surges=[surge()])
    assert not holds(SURGE + 'metric = ["records"]', surges=[surge()])


def test_surge_persistence() -> None:
    two_hours = SURGE + "min_active_hours = 2"
    assert holds(two_hours, surges=[surge(since=AT - timedelta(hours=2))])
    assert not holds(two_hours, surges=[surge(since=AT - timedelta(hours=1))])


def test_exploited_ports_follow_the_rules_own_exploits() -> None:
    rule = EXPLOIT + 'vuln = ["MS03-026"]\n' + SURGE + 'ports = "exploited"'
    # MS03-026 reaches 135, 139, 445 and 593
    assert holds(rule, exploits=[exploit("MS03-026")], surges=[surge("593")])
    assert not holds(rule, exploits=[exploit("MS03-026")], surges=[surge("1434")])
    # MS06-040 is exploited too, but the rule is about MS03-026 only
    assert not holds(rule, exploits=[exploit(), exploit("MS03-026", sources=0, attempts=0)], surges=[surge("139")])
    # without an exploit or outbreak condition: the ports of every exploited bulletin
    only_surge = SURGE + 'ports = "exploited"'
    assert holds(only_surge, exploits=[exploit()], surges=[surge("445")])
    assert not holds(only_surge, exploits=[], surges=[surge("445")])
    # an outbreak condition scopes it too
    ob = '[[rule.when]]\nsignal = "outbreak"\n' + SURGE + 'ports = "exploited"'
    assert holds(ob, outbreaks=[outbreak()], surges=[surge("445")])
    assert not holds(ob, outbreaks=[outbreak("MS17-010")], surges=[surge("135")])


def test_outbreak_conditions() -> None:
    ob = '[[rule.when]]\nsignal = "outbreak"\n'
    assert holds(ob + "max_doubling_hours = 11", outbreaks=[outbreak()])
    assert not holds(ob + "max_doubling_hours = 10", outbreaks=[outbreak()])
    assert not holds(ob + "max_doubling_hours = 10", outbreaks=[outbreak(doubling_hours=None, rate=None)])
    assert not holds(ob, outbreaks=[outbreak(decision="growing")])
    assert holds(ob + 'decision = ["growing", "outbreak"]', outbreaks=[outbreak(decision="growing")])
    assert holds(ob + 'severity = ["critical"]\nmin_sources = 100', outbreaks=[outbreak()])
    assert not holds(ob + "min_sensors = 2", outbreaks=[outbreak()])
    assert not holds(ob + 'subjects = ["MS08-067"]', outbreaks=[outbreak()])


def test_scanner_conditions() -> None:
    sc = '[[rule.when]]\nsignal = "scanner"\ndirection = "outbound"\nports = [135, 139, 445]\n'
    assert holds(sc, scanners=[scanner()])
    assert not holds(sc, scanners=[scanner(direction="inbound")])
    assert not holds(sc, scanners=[scanner(ports=(22,))])
    assert not holds(sc + "min_count = 2", scanners=[scanner()])
    assert holds(sc + "min_count = 2\nmin_targets = 100", scanners=[scanner(), scanner("10.1.2.4")])
    assert not holds(sc + 'pattern = ["vertical"]', scanners=[scanner()])


def test_missing_signals_and_absent_campaigns_cannot_hold() -> None:
    rs = parse_text(one_rule('[[rule.when]]\nsignal = "campaigns"\nmin_count = 3'), "t")
    res = evaluate_rule(rs.rules[0], signals(), KB)
    assert not res.holds and res.missing == ("campaigns",)
    three = tuple(SimpleNamespace(name=n, exploits=("MS06-040",)) for n in ("a", "b", "c"))
    assert evaluate_rule(rs.rules[0], signals(campaigns=three), KB).holds
    # campaigns count per flaw: three campaigns on three different flaws are not "3 exploiting one"
    spread = tuple(SimpleNamespace(name=n, exploits=(v,)) for n, v in zip("abc", ("MS06-040", "MS04-011", "MS08-067"),
                                                                            strict=True))
    assert not evaluate_rule(rs.rules[0], signals(campaigns=spread), KB).holds
    surge_rule = parse_text(one_rule(SURGE), "t").rules[0]
    res = evaluate_rule(surge_rule, signals(surges=[surge()], missing=("surge",)), KB)
    assert not res.holds and res.missing == ("surge",)


def test_ms06_040_story_with_the_shipped_rules() -> None:
    """August 2006: MS06-040 exploited on the honeypot, port 139 up 4.1x on 3 sensors for 4 hours."""
    a = assess(signals(exploits=[exploit()], surges=[surge()]), load_rules(), KB)
    assert a.level == 2
    names = {r.rule for r in a.reasons}
    assert names == {"new-critical-exploit", "exploited-flaw-ports-surging"}
    text = next(r.text for r in a.reasons if r.rule == "exploited-flaw-ports-surging")
    assert "MS06-040 exploited by 112 sources seen by 1 sensor (critical, KB921883)" in text
    assert "port 139 sources 4.1x its baseline (82.0/h against 20.0/h) since 2006-08-14 12:00 UTC, " \
           "agreed by 3 of 3 sensors" in text
    assert any("campaigns not available" in n for n in a.notes)
    # and with the outbreak estimate growing steadily: level 3
    a3 = assess(signals(exploits=[exploit()], surges=[surge()], outbreaks=[outbreak()]), load_rules(), KB)
    assert a3.level == 3 and a3.reasons[0].rule == "critical-outbreak"
    assert "doubling every 10.8 h" in a3.reasons[0].text
    # nothing at all: level 1, no reasons
    assert assess(signals(), load_rules(), KB).level == 1


def test_condition_types_are_frozen() -> None:
    c = ExploitCond()
    with pytest.raises(AttributeError):
        c.min_sources = 3  # type: ignore[misc]
