"""The threat level: 1 normal, 2 elevated, 3 high, 4 extreme (ISC Infocon colours green, yellow,
orange, red as aliases), from declarative rules over the early-warning signals, with its reasons
in words and numbers, a hold time before lowering, analyst overrides and a recorded history.

- :func:`gather_signals` collects the inputs (exploit activity, surges, outbreaks, scanners) as
  of a time; :func:`assess` applies the rules (:mod:`stormwatch.threat.rules`) to them: the level
  is the highest level of a rule that holds, 1 when none does. Both are pure given their inputs.
- :func:`step_level` is the hysteresis, a pure function: raise at once to what the rules give;
  lower one level at a time, and only once the rules have not supported the current level for
  the hold time (24 h by default, as the Infocon: "if we change the Infocon, we try to remain at
  the same level for at least 24 hrs", research notes 1.4). Persistence (a surge lasting 2 hours
  before it counts) is the rules' business (``min_active_hours``), so one noisy hour neither
  raises the level nor, once raised, drops it straight back.
- :func:`update_level` evaluates at a time, applies the hold and any analyst override, records
  the evaluation and, when the level in force changes, the change with its actor and reasons
  (:mod:`stormwatch.threat.state`); :func:`replay_level` steps through historic time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stormwatch.analytics.engine import Engine
from stormwatch.analytics.exploits import ExploitActivity, exploit_activity, exploit_history_start
from stormwatch.analytics.signals import Outbreak, Scanner, Surge
from stormwatch.errors import StormwatchError
from stormwatch.store import Store
from stormwatch.threat import state
from stormwatch.threat.kb import KnowledgeBase, load_kb
from stormwatch.threat.rules import ExploitCond, Match, RuleSet, Signals, evaluate_rule, load_rules

LEVELS: dict[int, tuple[str, str]] = {1: ("normal", "green"), 2: ("elevated", "yellow"),
                                      3: ("high", "orange"), 4: ("extreme", "red")}
SHOWN = 3  # signals quoted per condition in a reason; the rest are counted


class LevelError(StormwatchError):
    """A threat-level request that cannot be carried out (an unknown level, a replay over history)."""


def parse_level(text: str | int) -> int:
    """``2``, ``elevated`` or ``yellow`` -> 2."""
    v = str(text).strip().lower()
    for n, names in LEVELS.items():
        if v == str(n) or v in names:
            return n
    known = "; ".join(f"{n} {a}/{b}" for n, (a, b) in LEVELS.items())
    raise LevelError(f"{text!r} is not a threat level ({known})")


def level_label(n: int) -> str:
    name, colour = LEVELS[n]
    return f"{n} ({name}, {colour})"


def fmt_ts(ts: datetime) -> str:
    return f"{ts:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True, slots=True)
class Reason:
    """A rule that holds: its level, what it saw (``text``: words and numbers) and why it exists."""

    rule: str
    level: int
    text: str
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "level": self.level, "text": self.text, "why": self.why}


@dataclass(frozen=True, slots=True)
class Assessment:
    at: datetime
    level: int
    reasons: tuple[Reason, ...]
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "level": self.level, "reasons": [r.as_dict() for r in self.reasons],
                "notes": list(self.notes)}


# -- words and numbers ------------------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def describe_exploit(e: ExploitActivity, kb: KnowledgeBase, *, first_seen: bool = False) -> str:
    """``MS06-040 exploited by 112 sources seen by 1 sensor (critical, KB921883), 294 attempts``."""
    v = kb.find(e.vuln)
    known = f" ({v.severity.rating}, {v.patch})" if v else " (not in the knowledge base)"
    text = (f"{e.vuln} exploited by {_plural(e.sources, 'source')} seen by {_plural(e.sensors, 'sensor')}{known}, "
            f"{_plural(e.attempts, 'attempt')}")
    return text + (f", first seen {fmt_ts(e.first_seen_ever)}" if first_seen else "")


def _rate(x: float) -> str:
    """A per-hour mean with the digits that matter: 56.0, 1.9, 0.056."""
    return f"{x:.1f}" if x >= 1 or x == 0 else f"{x:.2g}"


def describe_surge(g: Surge) -> str:
    what = {"port": f"port {g.subject}", "exploit": f"{g.subject} exploit"}.get(g.kind, g.subject)
    by = (f"{g.ratio:.1f}x its baseline ({_rate(g.observed)}/h against {_rate(g.baseline)}/h)"
          if g.ratio is not None else f"up from nothing ({_rate(g.observed)}/h)")
    agree = (f"agreed by {g.sensors} of {g.sensors_total} sensors" if g.scope == "agreed"
             else f"local: {g.sensors} of {g.sensors_total} sensors")
    return f"{what} {g.metric} {by} since {fmt_ts(g.since)}, {agree}" + ("" if g.active else " (ended)")


def describe_outbreak(o: Outbreak) -> str:
    growth = ""
    if o.rate is not None:
        growth = f", growing {100 * o.rate:.1f}%/h"
        if o.doubling_hours is not None:
            growth += f" (doubling every {o.doubling_hours:.1f} h)"
    return (f"{o.subject} {o.decision}: {_plural(o.sources, 'source')} seen by {_plural(o.sensors, 'sensor')} "
            f"since {fmt_ts(o.first_seen)}{growth}")


def describe_scanners(xs: Sequence[Scanner]) -> str:
    ports = sorted({p for x in xs for p in x.ports})[:5]
    direction = xs[0].direction if len({x.direction for x in xs}) == 1 else "in and out"
    srcs = ", ".join(x.src for x in xs[:SHOWN]) + (f" and {len(xs) - SHOWN} more" if len(xs) > SHOWN else "")
    return f"{_plural(len(xs), 'host')} scanning {direction} on ports {', '.join(map(str, ports))}: {srcs}"


def describe_match(m: Match, kb: KnowledgeBase) -> str:
    items = list(m.items)
    if m.condition.signal == "scanner":
        return describe_scanners(items)
    if m.condition.signal == "campaigns":
        names = [str(getattr(c, "name", getattr(c, "id", ""))) for c in items[:SHOWN]]
        common = set.intersection(*(set(getattr(c, "exploits", ())) for c in items)) if items else set()
        flaw = f" exploiting {', '.join(sorted(common))}" if common else ""
        listed = f": {', '.join(n for n in names if n)}" if any(names) else ""
        more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
        return f"{_plural(len(items), 'distinct campaign')}{flaw}{listed}{more}"
    def phrase(x: Any) -> str:
        if isinstance(x, ExploitActivity):
            new = isinstance(m.condition, ExploitCond) and m.condition.new_within_hours is not None
            return describe_exploit(x, kb, first_seen=new)
        return describe_surge(x) if isinstance(x, Surge) else describe_outbreak(x)

    text = "; ".join(phrase(x) for x in items[:SHOWN])
    return text + (f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def assess(signals: Signals, rules: RuleSet, kb: KnowledgeBase) -> Assessment:
    """The level the rules give for ``signals``, with a reason per rule that holds (highest
    level first) and notes on rules that could not be evaluated."""
    reasons: list[Reason] = []
    unavailable: dict[str, list[str]] = {}
    for rule in rules.rules:
        result = evaluate_rule(rule, signals, kb)
        for kind in result.missing:
            unavailable.setdefault(kind, []).append(rule.name)
        if result.holds:
            text = "; ".join(describe_match(m, kb) for m in result.matches)
            reasons.append(Reason(rule.name, rule.level, text, rule.reason))
    reasons.sort(key=lambda r: -r.level)
    notes = [f"{kind} not available: rule{'s' if len(names) > 1 else ''} {', '.join(names)} cannot hold"
             for kind, names in sorted(unavailable.items())]
    level = max((r.level for r in reasons), default=1)
    return Assessment(signals.at, level, tuple(reasons), (*signals.notes, *notes))


# -- hysteresis -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HoldState:
    """The level the rules hold and when the rules last gave at least that level."""

    level: int
    supported_at: datetime


def step_level(prev: HoldState | None, candidate: int, at: datetime, hold: timedelta) -> HoldState:
    """Raise at once; lower one level, and only after ``hold`` without support (the lowering
    itself restarts the clock, so each further step down waits another ``hold``)."""
    if prev is None or candidate >= prev.level:
        return HoldState(max(candidate, prev.level if prev else 1), at)
    if at - prev.supported_at >= hold:
        return HoldState(prev.level - 1, at)
    return prev


# -- signals ----------------------------------------------------------------------------------

def _optional(module: str, name: str) -> Callable[..., Any] | None:
    """A detector written by another part of issue 4, or None while its module does not exist."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the module exists but something it imports does not: a real bug
            raise
        return None
    fn: Callable[..., Any] = getattr(mod, name)
    return fn


CAMPAIGN_WINDOW = timedelta(days=7)


def gather_signals(engine: Engine, at: datetime, *, window: timedelta = timedelta(hours=24),
                   local_nets: Sequence[str] | None = None) -> Signals:
    """Everything the rules look at, computed from the data before ``at``: exploit activity and
    scanners over ``window``, surges and outbreaks as their detectors see them at ``at``."""
    missing: list[str] = []

    def call(kind: str, module: str, name: str, **kwargs: Any) -> tuple[Any, ...]:
        fn = _optional(module, name)
        if fn is None:
            missing.append(kind)
            return ()
        return tuple(fn(engine, **kwargs))

    surges = call("surge", "stormwatch.analytics.surges", "detect_surges", until=at)
    outbreaks = call("outbreak", "stormwatch.analytics.outbreak", "estimate_outbreaks", until=at)
    scanners = call("scanner", "stormwatch.analytics.scanners", "detect_scanners", since=at - window, until=at,
                    local_nets=local_nets)
    # bot families active over the last week (ThreatCon's "six bots" were counted over days)
    campaigns = call("campaigns", "stormwatch.analytics.campaigns", "campaigns", since=at - CAMPAIGN_WINDOW,
                     until=at)
    return Signals(at=at, exploits=tuple(exploit_activity(engine, since=at - window, until=at)),
                   surges=surges, outbreaks=outbreaks, scanners=scanners,
                   campaigns=None if "campaigns" in missing else campaigns,
                   exploit_history_since=exploit_history_start(engine), missing=tuple(missing))


def default_at(engine: Engine) -> datetime | None:
    """The end of the hour of the latest stored event (so hourly evaluations line up), or None."""
    rows = engine.run("SELECT max(ts) AS ts FROM events")
    ts = rows[0]["ts"] if rows else None
    if not isinstance(ts, datetime):
        return None
    return ts.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


# -- the level in force -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LevelStatus:
    """One evaluation: the level in force at ``at``, since when and set by whom, what the rules
    give now (``assessment``) and hold (``rule_level``), the override in force, the change this
    evaluation made, and when the level will lower if nothing changes (``lowers_at``)."""

    at: datetime
    level: int
    since: datetime | None
    actor: str
    rule_level: int
    assessment: Assessment
    override: state.Override | None = None
    change: state.Change | None = None
    lowers_at: datetime | None = None
    recorded: bool = False
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "level": self.level, "name": LEVELS[self.level][0], "colour": LEVELS[self.level][1],
                "since": self.since, "actor": self.actor, "rule_level": self.rule_level,
                "assessment": self.assessment.as_dict(),
                "override": self.override.as_dict() if self.override else None,
                "change": self.change.as_dict() if self.change else None, "lowers_at": self.lowers_at,
                "recorded": self.recorded, "notes": list(self.notes)}


def _change_reasons(level: int, previous: int, assessment: Assessment, hold: HoldState,
                    prev_hold: HoldState | None, override: state.Override | None,
                    before: state.Change | None) -> list[str]:
    if override is not None:
        until = f" until {fmt_ts(override.expires_at)}" if override.expires_at else " until cleared"
        return [f"set to {level} by analyst {override.who}{until}: {override.reason}"]
    out = []
    if before is not None and before.actor.startswith("analyst:"):
        out.append(f"the override by {before.actor[8:]} ended; the rules hold level {level}")
    if level > previous:
        out += [f"raised to {level}: {r.text} [rule {r.rule}]" for r in assessment.reasons if r.level >= level]
    elif prev_hold is not None and hold.level < prev_hold.level:
        hours = (assessment.at - prev_hold.supported_at).total_seconds() / 3600
        out.append(f"lowered to {level}: no rule has given level {prev_hold.level} since "
                   f"{fmt_ts(prev_hold.supported_at)} ({hours:.0f} h, at least the hold time)")
        out += [f"still {level}: {r.text} [rule {r.rule}]" for r in assessment.reasons if r.level >= level]
    else:
        out += [f"{'raised' if level > previous else 'lowered'} to {level}: {r.text} [rule {r.rule}]"
                for r in assessment.reasons if r.level >= level]
    return out or [f"level {level}: no rule holds"]


def update_level(store: Store, engine: Engine | None, at: datetime, *, rules: RuleSet | None = None,
                 kb: KnowledgeBase | None = None, signals: Signals | None = None,
                 record: bool = True) -> LevelStatus:
    """Evaluate at ``at`` (with ``signals``, or those :func:`gather_signals` computes), apply the
    hold time and the override in force, and record the evaluation and any change of the level.
    Nothing is recorded when ``record`` is false, or when the store's history already goes past
    ``at`` (history is not rewritten; see :func:`replay_level`)."""
    rules = rules or load_rules()
    kb = kb or load_kb()
    if signals is None:
        if engine is None:
            raise LevelError("update_level needs an engine or the signals")
        signals = gather_signals(engine, at, window=rules.window)
    assessment = assess(signals, rules, kb)
    prev = state.last_check(store, at)
    prev_hold = HoldState(prev.rule_level, prev.supported_at) if prev else None
    hold = step_level(prev_hold, assessment.level, at, rules.hold)
    override = state.active_override(store, at)
    level = override.level if override else hold.level
    before = state.last_change(store, at)
    previous = before.level if before else 1
    change = None
    if level != previous:
        actor = f"analyst:{override.who}" if override else "rules"
        change = state.Change(at, level, previous, actor,
                              tuple(_change_reasons(level, previous, assessment, hold, prev_hold, override, before)))
    latest = state.last_check(store)
    notes: list[str] = []
    recorded = False
    if record and latest is not None and latest.ts > at:
        notes.append(f"not recorded: the level history already reaches {fmt_ts(latest.ts)}")
    elif record:
        state.record_check(store, state.Check(at, level, hold.level, assessment.level, hold.supported_at), change)
        recorded = True
    lowers_at = hold.supported_at + rules.hold if assessment.level < hold.level and not override else None
    since = at if change else (before.ts if before else None)
    actor = change.actor if change else (before.actor if before else "rules")
    return LevelStatus(at, level, since, actor, hold.level, assessment, override, change, lowers_at, recorded,
                       tuple(notes))


def set_level(store: Store, level: int, reason: str, who: str, at: datetime,
              hours: float | None = None) -> state.Change | None:
    """An analyst's override from ``at`` (for ``hours``, or until cleared), recorded; returns the
    change it makes to the level in force, if any."""
    if not reason.strip() or not who.strip():
        raise LevelError("an analyst's level needs a reason and a name (--reason, --by)")
    if level not in LEVELS:
        raise LevelError(f"{level} is not a threat level (1-4)")
    expires = at + timedelta(hours=hours) if hours is not None else None
    ovr = state.Override(level, reason.strip(), who.strip(), at, expires)
    state.set_override(store, ovr)
    before = state.last_change(store, at)
    previous = before.level if before else 1
    if level == previous:
        return None
    change = state.Change(at, level, previous, f"analyst:{ovr.who}",
                          tuple(_change_reasons(level, previous, Assessment(at, level, ()), HoldState(level, at),
                                                None, ovr, before)))
    state.record_change(store, change)
    return change


def replay_level(store: Store, engine: Engine, since: datetime, until: datetime,
                 step: timedelta = timedelta(hours=1), *, rules: RuleSet | None = None,
                 kb: KnowledgeBase | None = None, reset: bool = False,
                 signals_at: Callable[[datetime], Signals] | None = None) -> list[state.Change]:
    """Evaluate at ``since``, ``since + step``, ... up to ``until``, recording the changes as they
    would have happened. A store whose history already reaches past ``since`` is refused unless
    ``reset``, which forgets the rules' checks and changes from ``since`` on (analysts' overrides
    stay, and apply in the replay)."""
    if step <= timedelta(0):
        raise LevelError("the replay step must be positive")
    latest = state.last_check(store)
    if latest is not None and latest.ts >= since:
        if not reset:
            raise LevelError(f"the level history already reaches {fmt_ts(latest.ts)}; replaying from "
                             f"{fmt_ts(since)} would rewrite it (use --reset to forget it from there)")
        state.forget_from(store, since)
    rules = rules or load_rules()
    kb = kb or load_kb()
    out: list[state.Change] = []
    t = since
    while t <= until:
        sig = signals_at(t) if signals_at else gather_signals(engine, t, window=rules.window)
        status = update_level(store, engine, t, rules=rules, kb=kb, signals=sig)
        if status.change is not None:
            out.append(status.change)
        t += step
    return out


def level_in_force(store: Store, signals: Signals, rules: RuleSet,
                   kb: KnowledgeBase) -> tuple[int, list[str], str]:
    """The recorded level at ``signals.at`` with the reasons of its last change, or, when nothing
    is recorded, what the rules give now (without the hold time, which needs a history)."""
    change = state.last_change(store, signals.at)
    if change is not None:
        return change.level, list(change.reasons), f"recorded: set by {change.actor} at {fmt_ts(change.ts)}"
    a = assess(signals, rules, kb)
    return a.level, [f"[rule {r.rule}] {r.text}" for r in a.reasons], \
        "assessed from the rules now; no level history recorded (see `stormwatch level`)"
