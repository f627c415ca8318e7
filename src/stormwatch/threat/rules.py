"""Threat-level rules: data (``threat/data/level_rules.toml``), checked here, matched by pure functions.

A rule says: *at level N, because REASON, when all of these conditions hold*. A condition is one
of a small fixed vocabulary over the early-warning signals (:class:`Signals`); nothing in a rules
file is ever evaluated as code. Each condition holds when at least ``min_count`` signals of its
kind pass every test it names. The rules of a level are alternatives (any one raises to it); the
conditions of a rule must all hold. The vocabulary, field by field, is in ``docs/threat-level.md``:

- ``signal = "exploit"`` over :class:`~stormwatch.analytics.exploits.ExploitActivity`: ``vuln``,
  ``severity`` (knowledge-base ratings), ``min_attempts``, ``min_sources``, ``min_sensors``,
  ``new_within_hours`` with ``min_history_hours`` (first seen recently, after the sensors had
  watched that long without seeing it: Infocon's "concept of change");
- ``signal = "surge"`` over :class:`~stormwatch.analytics.signals.Surge`: ``kind``, ``metric``,
  ``scope``, ``min_ratio``, ``min_sensors``, ``ports`` (numbers, or ``"exploited"``: the ports of
  the bulletins the rule's exploit conditions matched), ``subjects``, ``min_active_hours``
  (persistence: one noisy hour cannot satisfy a 2-hour rule), ``active``;
- ``signal = "outbreak"`` over :class:`~stormwatch.analytics.signals.Outbreak`: ``decision``,
  ``max_doubling_hours``, ``min_sources``, ``min_sensors``, ``subjects``, ``severity``;
- ``signal = "scanner"`` over :class:`~stormwatch.analytics.signals.Scanner`: ``direction``,
  ``pattern``, ``ports``, ``min_targets``;
- ``signal = "campaigns"``: campaigns (issue 5) are optional: when the bundle has none the
  condition does not hold and the assessment notes why.

Every error is a :class:`RulesError` naming the file, the rule and the field, like
:class:`~stormwatch.threat.kb.KBError`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from stormwatch.analytics.exploits import ExploitActivity
from stormwatch.analytics.signals import Outbreak, Scanner, Surge
from stormwatch.errors import DataFileError
from stormwatch.threat.kb import SEVERITIES, KnowledgeBase, parse_entries

BUILTIN = "stormwatch:threat/data/level_rules.toml"
RULES_ENV = "STORMWATCH_RULES"
SIGNAL_KINDS = ("exploit", "surge", "outbreak", "scanner", "campaigns")
DEFAULT_HOLD_HOURS = 24.0  # ISC: "we try to remain at the same level for at least 24 hrs"
DEFAULT_WINDOW_HOURS = 24.0  # ThreatCon: "observed and gathered in the previous 24-hour period"


class RulesError(DataFileError):
    """A rules file that cannot be read, or a rule that breaks the schema."""

    kind = "rule"


@dataclass(frozen=True, slots=True)
class Signals:
    """Everything the rules look at, as of ``at``. ``missing`` names the signal kinds that could
    not be computed (a module not installed yet, say): their conditions cannot hold, and the
    assessment says so. ``campaigns`` is None until campaign detection exists (issue 5)."""

    at: datetime
    exploits: tuple[ExploitActivity, ...] = ()
    surges: tuple[Surge, ...] = ()
    outbreaks: tuple[Outbreak, ...] = ()
    scanners: tuple[Scanner, ...] = ()
    campaigns: tuple[Any, ...] | None = None
    exploit_history_since: datetime | None = None  # first session or exploit ever stored
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExploitCond:
    vuln: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    min_attempts: int = 1
    min_sources: int = 1
    min_sensors: int = 1
    new_within_hours: float | None = None
    min_history_hours: float = 72.0
    min_count: int = 1
    signal: Literal["exploit"] = "exploit"


@dataclass(frozen=True, slots=True)
class SurgeCond:
    kind: tuple[str, ...] = ()
    metric: tuple[str, ...] = ()
    scope: Literal["agreed", "local", "any"] = "any"
    min_ratio: float | None = None
    min_sensors: int = 1
    ports: tuple[int, ...] | Literal["exploited"] | None = None
    subjects: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    min_active_hours: float = 0.0
    active: bool = True
    min_count: int = 1
    signal: Literal["surge"] = "surge"


@dataclass(frozen=True, slots=True)
class OutbreakCond:
    decision: tuple[str, ...] = ("outbreak",)
    max_doubling_hours: float | None = None
    min_sources: int = 1
    min_sensors: int = 1
    subjects: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    min_count: int = 1
    signal: Literal["outbreak"] = "outbreak"


@dataclass(frozen=True, slots=True)
class ScannerCond:
    direction: Literal["inbound", "outbound", "any"] = "any"
    pattern: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    min_targets: int = 1
    min_count: int = 1
    signal: Literal["scanner"] = "scanner"


@dataclass(frozen=True, slots=True)
class CampaignCond:
    min_count: int = 1
    signal: Literal["campaigns"] = "campaigns"


Condition = ExploitCond | SurgeCond | OutbreakCond | ScannerCond | CampaignCond


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    level: int
    reason: str
    when: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules and the settings of the level: ``hold_hours`` before lowering one level,
    ``window_hours`` of exploit and scanner activity the rules look at."""

    rules: tuple[Rule, ...]
    hold_hours: float = DEFAULT_HOLD_HOURS
    window_hours: float = DEFAULT_WINDOW_HOURS
    source: str = BUILTIN

    @property
    def hold(self) -> timedelta:
        return timedelta(hours=self.hold_hours)

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.window_hours)


# -- schema -------------------------------------------------------------------------------------

_FIELDS: dict[str, dict[str, str]] = {  # field -> type: int, number, bool, strs, ints, ports, choice:a|b
    "exploit": {"vuln": "strs", "severity": "severity", "min_attempts": "int", "min_sources": "int",
                "min_sensors": "int", "new_within_hours": "number", "min_history_hours": "number",
                "min_count": "int"},
    "surge": {"kind": "strs:port|exploit|srcnet", "metric": "strs", "scope": "choice:agreed|local|any",
              "min_ratio": "number", "min_sensors": "int", "ports": "ports", "subjects": "strs",
              "severity": "severity", "min_active_hours": "number", "active": "bool", "min_count": "int"},
    "outbreak": {"decision": "strs:outbreak|growing|no-growth|insufficient-data", "max_doubling_hours": "number",
                 "min_sources": "int", "min_sensors": "int", "subjects": "strs", "severity": "severity",
                 "min_count": "int"},
    "scanner": {"direction": "choice:inbound|outbound|any", "pattern": "strs:horizontal|vertical|both",
                "ports": "ints", "min_targets": "int", "min_count": "int"},
    "campaigns": {"min_count": "int"},
}
_CLASSES: dict[str, type[Any]] = {"exploit": ExploitCond, "surge": SurgeCond, "outbreak": OutbreakCond,
                                  "scanner": ScannerCond, "campaigns": CampaignCond}


def _show(v: Any) -> str:
    return "nothing" if v is None else f"{type(v).__name__} {v!r}"


def _value(kind: str, v: Any, fail: Any) -> Any:
    """One field's value checked against its type in :data:`_FIELDS`; ``fail(detail)`` raises."""
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise fail(f"must be a whole number >= 0, got {_show(v)}")
        return v
    if kind == "number":
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise fail(f"must be a number >= 0, got {_show(v)}")
        return float(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise fail(f"must be true or false, got {_show(v)}")
        return v
    if kind.startswith("choice:"):
        options = kind[7:].split("|")
        if v not in options:
            raise fail(f"must be one of {', '.join(options)}, got {_show(v)}")
        return v
    if kind == "ports" and v == "exploited":
        return v
    if kind in ("ints", "ports"):
        if not isinstance(v, list) or not v or any(isinstance(p, bool) or not isinstance(p, int)
                                                   or not 0 < p <= 65535 for p in v):
            also = ' or "exploited"' if kind == "ports" else ""
            raise fail(f"must be a non-empty list of port numbers 1-65535{also}, got {_show(v)}")
        return tuple(v)
    choices: Sequence[str] | None = SEVERITIES if kind == "severity" else (kind[5:].split("|") if ":" in kind else None)
    if not isinstance(v, list) or not v or any(not isinstance(s, str) or not s.strip() for s in v):
        raise fail(f"must be a non-empty list of strings, got {_show(v)}")
    if choices is not None:
        bad = [s for s in v if s not in choices]
        if bad:
            raise fail(f"{bad[0]!r} is not one of {', '.join(choices)}")
    return tuple(s.strip() for s in v)


def parse_condition(raw: Any, source: str, rule: str, index: int) -> Condition:
    where = f"when[{index}]"
    if not isinstance(raw, dict):
        raise RulesError(source, rule, where, f"must be a table, got {_show(raw)}")
    signal = raw.get("signal")
    if signal not in _FIELDS:
        raise RulesError(source, rule, f"{where}.signal",
                         f"must be one of {', '.join(SIGNAL_KINDS)}, got {_show(signal)}")
    fields = _FIELDS[signal]
    values: dict[str, Any] = {}
    for name, v in raw.items():
        if name == "signal":
            continue
        if name not in fields:
            raise RulesError(source, rule, f"{where}.{name}",
                             f"is not a field of a {signal} condition (known: {', '.join(fields)})")

        def fail(detail: str, name: str = name) -> RulesError:
            return RulesError(source, rule, f"{where}.{name}", detail)

        values[name] = _value(fields[name], v, fail)
    if values.get("min_count") == 0:
        raise RulesError(source, rule, f"{where}.min_count", "must be at least 1 (0 would always hold)")
    cond: Condition = _CLASSES[signal](**values)
    return cond


def parse_rule(raw: Any, source: str, index: int) -> Rule:
    label = f"#{index + 1}"
    if not isinstance(raw, dict):
        raise RulesError(source, label, None, f"must be a table, got {_show(raw)}")
    if isinstance(raw.get("name"), str):
        label = f"{raw['name']} (#{index + 1})"
    known = ("name", "level", "reason", "when")
    for name in known:
        if name not in raw:
            raise RulesError(source, label, name, "is required")
    extra = sorted(set(raw) - set(known))
    if extra:
        raise RulesError(source, label, extra[0], f"is not a known field (known: {', '.join(known)})")
    name, level, reason, when = raw["name"], raw["level"], raw["reason"], raw["when"]
    if not isinstance(name, str) or not name.strip():
        raise RulesError(source, label, "name", f"must be a non-empty string, got {_show(name)}")
    if isinstance(level, bool) or not isinstance(level, int) or not 2 <= level <= 4:
        raise RulesError(source, label, "level", f"must be 2, 3 or 4 (1 is the level when no rule holds), "
                                                 f"got {_show(level)}")
    if not isinstance(reason, str) or len(reason.strip()) < 10:
        raise RulesError(source, label, "reason", "must say why the rule exists (a sentence, with its source)")
    if not isinstance(when, list) or not when:
        raise RulesError(source, label, "when", f"must be a non-empty list of [[rule.when]] tables, got {_show(when)}")
    return Rule(name.strip(), level, " ".join(reason.split()),
                tuple(parse_condition(c, source, label, i) for i, c in enumerate(when)))


def parse_document(doc: Mapping[str, Any], source: str) -> RuleSet:
    extra = sorted(set(doc) - {"level", "rule"})
    if extra:
        raise RulesError(source, None, extra[0], "unknown top-level key (known: [level] and [[rule]])")
    settings = doc.get("level", {})
    if not isinstance(settings, dict):
        raise RulesError(source, None, "level", f"must be a table, got {_show(settings)}")
    bad = sorted(set(settings) - {"hold_hours", "window_hours"})
    if bad:
        raise RulesError(source, None, f"level.{bad[0]}", "is not a known setting (known: hold_hours, window_hours)")
    hold = _value("number", settings.get("hold_hours", DEFAULT_HOLD_HOURS),
                  lambda d: RulesError(source, None, "level.hold_hours", d))
    window = _value("number", settings.get("window_hours", DEFAULT_WINDOW_HOURS),
                    lambda d: RulesError(source, None, "level.window_hours", d))
    if window <= 0:
        raise RulesError(source, None, "level.window_hours", "must be more than 0")
    rules = parse_entries(doc.get("rule"), "rule", source, parse_rule, lambda r: (r.name, "name"), RulesError)
    return RuleSet(tuple(rules), hold, window, source)


def parse_text(text: str, source: str) -> RuleSet:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(source, None, None, f"not valid TOML: {exc}") from exc
    return parse_document(doc, source)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """The operator's rules file if given (it is the whole rule set: rules interact, so a file
    replaces the built-in rules rather than merging with them), else the built-in rules."""
    if path is None:
        text = resources.files("stormwatch.threat").joinpath("data/level_rules.toml").read_text(encoding="utf-8")
        return parse_text(text, BUILTIN)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(str(path), None, None, f"cannot read: {exc}") from exc
    return parse_text(text, str(path))


# -- matching -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Match:
    """The signals that satisfied one condition of a rule."""

    condition: Condition
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: Rule
    holds: bool
    matches: tuple[Match, ...] = ()
    missing: tuple[str, ...] = field(default=())  # signal kinds the rule needs that were unavailable


def _rating(kb: KnowledgeBase, vuln: str) -> str | None:
    v = kb.find(vuln)
    return None if v is None else v.severity.rating


def kb_ports(kb: KnowledgeBase, vulns: Sequence[str]) -> set[int]:
    """The port numbers the knowledge base lists for these bulletins."""
    out: set[int] = set()
    for name in vulns:
        v = kb.find(name)
        if v is not None:
            out.update(int(p.split("/")[0]) for p in v.ports)
    return out


def match_exploit(c: ExploitCond, s: Signals, kb: KnowledgeBase) -> list[ExploitActivity]:
    out = []
    for e in s.exploits:
        if c.vuln and e.vuln.upper() not in {x.upper() for x in c.vuln}:
            continue
        if c.severity and _rating(kb, e.vuln) not in c.severity:
            continue
        if e.attempts < c.min_attempts or e.sources < c.min_sources or e.sensors < c.min_sensors:
            continue
        if c.new_within_hours is not None:
            if s.at - e.first_seen_ever > timedelta(hours=c.new_within_hours):
                continue
            # new only if the sensors had been watching long enough to have seen it before
            history = s.exploit_history_since
            if history is None or e.first_seen_ever - history < timedelta(hours=c.min_history_hours):
                continue
        out.append(e)
    return out


def match_surge(c: SurgeCond, s: Signals, kb: KnowledgeBase, ports: set[int]) -> list[Surge]:
    out = []
    for g in s.surges:
        if (c.kind and g.kind not in c.kind) or (c.metric and g.metric not in c.metric):
            continue
        if c.scope not in ("any", g.scope) or g.sensors < c.min_sensors:
            continue
        if c.active and not g.active:
            continue
        # a ratio of None means nothing at all in the baseline: above any minimum ratio
        if c.min_ratio is not None and g.ratio is not None and g.ratio < c.min_ratio:
            continue
        if c.subjects and g.subject.upper() not in {x.upper() for x in c.subjects}:
            continue
        # a severity applies to exploit surges (their subject is a bulletin) only
        if c.severity and (g.kind != "exploit" or _rating(kb, g.subject) not in c.severity):
            continue
        if c.ports is not None:
            allowed = ports if c.ports == "exploited" else set(c.ports)
            if g.kind != "port" or not g.subject.isdigit() or int(g.subject) not in allowed:
                continue
        if s.at - g.since < timedelta(hours=c.min_active_hours):
            continue
        out.append(g)
    return out


def match_outbreak(c: OutbreakCond, s: Signals, kb: KnowledgeBase) -> list[Outbreak]:
    out = []
    for o in s.outbreaks:
        if o.decision not in c.decision or o.sources < c.min_sources or o.sensors < c.min_sensors:
            continue
        if c.max_doubling_hours is not None and (o.doubling_hours is None or o.doubling_hours > c.max_doubling_hours):
            continue
        if c.subjects and o.subject.upper() not in {x.upper() for x in c.subjects}:
            continue
        if c.severity and _rating(kb, o.subject) not in c.severity:
            continue
        out.append(o)
    return out


def match_scanner(c: ScannerCond, s: Signals) -> list[Scanner]:
    return [x for x in s.scanners
            if c.direction in ("any", x.direction) and (not c.pattern or x.pattern in c.pattern)
            and (not c.ports or set(x.ports) & set(c.ports)) and x.targets >= c.min_targets]


def match_campaigns(s: Signals, vulns: Sequence[str] | None) -> list[Any]:
    """The campaigns exploiting one flaw: of ``vulns`` (those the rule's exploit or outbreak
    conditions matched; every exploited flaw when None), the one the most campaigns exploit
    ("6 distinct campaigns exploiting MS06-040"). Probes do not count as exploiting."""
    found = list(s.campaigns or ())
    candidates = set(vulns) if vulns is not None else {v for c in found for v in c.exploits}
    best: list[Any] = []
    for vuln in sorted(candidates):
        using = [c for c in found if vuln in c.exploits]
        if len(using) > len(best):
            best = using
    return best


def evaluate_rule(rule: Rule, s: Signals, kb: KnowledgeBase) -> RuleResult:
    """Whether every condition of ``rule`` holds. Exploit and outbreak conditions go first, so that
    a surge condition with ``ports = "exploited"`` knows which bulletins the rule is about: those
    they matched, or, in a rule with neither, every bulletin with exploit attempts."""
    needed = {c.signal for c in rule.when}
    missing = tuple(sorted(k for k in needed if k in s.missing or (k == "campaigns" and s.campaigns is None)))
    if missing:
        return RuleResult(rule, False, missing=missing)
    matches: dict[int, Match] = {}
    about: list[str] = []
    order = sorted(range(len(rule.when)), key=lambda i: rule.when[i].signal not in ("exploit", "outbreak"))
    scoped = any(c.signal in ("exploit", "outbreak") for c in rule.when)
    for i in order:
        c = rule.when[i]
        items: Sequence[Any]
        if isinstance(c, ExploitCond):
            items = match_exploit(c, s, kb)
            about += [e.vuln for e in items]
        elif isinstance(c, OutbreakCond):
            items = match_outbreak(c, s, kb)
            about += [o.subject for o in items]
        elif isinstance(c, SurgeCond):
            vulns = about if scoped else [e.vuln for e in s.exploits if e.attempts]
            items = match_surge(c, s, kb, kb_ports(kb, vulns))
        elif isinstance(c, ScannerCond):
            items = match_scanner(c, s)
        else:
            items = match_campaigns(s, about if scoped else None)
        if len(items) < c.min_count:
            return RuleResult(rule, False)
        matches[i] = Match(c, tuple(items))
    return RuleResult(rule, True, tuple(matches[i] for i in range(len(rule.when))))
