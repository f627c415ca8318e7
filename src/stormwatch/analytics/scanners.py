"""Which sources are scanning: TRW where outcomes exist, a distinct-targets threshold where only
attempts do.

``detect_scanners(engine)`` answers "which of my hosts is infected and scanning out on 445?"
(``direction="outbound", port=445``) as well as "who is scanning us?". The database reduces the
events to each source's first contacts (:mod:`stormwatch.analytics.scanner_queries`: one row per
source and service tried, with the outcome of the first try, sources that cannot be decided
dropped); this module streams them one source at a time through the tests of
:mod:`stormwatch.analytics.trw`.

Which test sees which contact (``method``):

- ``"trw"``: TCP and ICMP-echo contacts with an outcome (Zeek conn states, Argus flows, pcaps,
  Suricata flows, ASA teardowns, honeypot sessions). ``answered`` is a success; ``reset``,
  ``unanswered`` and ``honeypot`` are failures;
- ``"threshold"``: every contact that was not answered (Zeek's detector counts failed attempts);
- ``"auto"`` (default): TRW on the contacts that have an outcome, the threshold on those that do
  not (firewall and DShield logs: iptables, pf, Windows firewall, ASA denies); a source is a
  scanner when either test says so, and the earlier decision is reported.

A honeypot contact counts as a failure. A honeypot's address offers nothing a legitimate client
knows about, so a source reaching it is probing, the same evidence as a connection to an unused
address (TRW's failures and Zeek's "darknet" hits); that the honeypot then answers is its purpose,
not the target's. One honeypot address is only one or two contacts per source, so it alone never
decides a source; it adds to the evidence of other sensors.

Direction: a source inside ``local_nets`` is ``outbound`` (one of the operator's hosts scanning
out). Default :data:`DEFAULT_LOCAL_NETS`: RFC 1918, RFC 6598 shared address space is *not* in it
(an ISP's), RFC 4193 unique local and the link-local ranges. Loopback is left out on purpose: the
demo and capture replays stand Internet attackers in as 127.x addresses, which are inbound, and no
real host scans a network from loopback. Pass ``local_nets`` (``--local-net``) for anything else,
e.g. the public prefixes of a university.

Pattern, from the distinct hosts and ports of all the source's contacts (Zeek's
``analyze_unique_hostports``): one port, or up to 5 ports → ``horizontal``; one host, or up to 5
hosts → ``vertical``; otherwise ``both``.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Literal

from stormwatch.analytics.engine import Engine, Row
from stormwatch.analytics.scanner_queries import first_contacts
from stormwatch.analytics.signals import Scanner
from stormwatch.analytics.trw import Decision, ThresholdParams, ThresholdWindow, TrwParams, TrwWalk

Method = Literal["auto", "trw", "threshold"]
Direction = Literal["inbound", "outbound"]
Pattern = Literal["horizontal", "vertical", "both"]
METHODS: tuple[str, ...] = ("auto", "trw", "threshold")
DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")

DEFAULT_LOCAL_NETS: tuple[str, ...] = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "169.254.0.0/16",  # RFC 3927 link-local
    "fc00::/7",  # RFC 4193 unique local
    "fe80::/10",  # RFC 4291 link-local
)
TOP_PORTS = 10
FAILED = frozenset({"reset", "unanswered", "honeypot"})
_TRW_PROTOS = frozenset({"tcp", "icmp", "icmp6"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_local_nets(nets: Sequence[str] | None) -> tuple[Network, ...]:
    """The networks of ``nets`` (CIDR text; a bare address is a /32 or /128); ValueError names a
    bad one. None → :data:`DEFAULT_LOCAL_NETS`."""
    out = []
    for text in DEFAULT_LOCAL_NETS if nets is None else nets:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not a network (CIDR such as 10.0.0.0/8 or 2001:db8::/32)") from None
    return tuple(out)


def is_local(address: str, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in nets)


def scan_pattern(hosts: int, ports: int) -> Pattern:
    """Zeek's classification of a scanner's attempts by distinct hosts and ports."""
    if ports <= 1:
        return "horizontal"
    if hosts <= 1:
        return "vertical"
    if ports <= 5:
        return "horizontal"
    if hosts <= 5:
        return "vertical"
    return "both"


@dataclass(frozen=True, slots=True)
class Assessment:
    """The verdict on one source: ``decision`` (scanner, or TRW's final state: benign / pending;
    pending also when only the threshold ran and did not fire), with the decision's figures when
    it is a scanner, and counts over all the source's contacts otherwise."""

    src: str
    direction: Direction
    decision: Decision
    method: Literal["trw", "threshold"]
    pattern: Pattern
    first_seen: datetime
    decided_at: datetime | None
    attempts_to_decision: int
    targets: int
    ports: tuple[int, ...]
    failures: int
    successes: int
    sensors: int
    score: float
    trw_contacts: int
    threshold_contacts: int

    def scanner(self) -> Scanner | None:
        if self.decision != "scanner" or self.decided_at is None:
            return None
        return Scanner(src=self.src, direction=self.direction, pattern=self.pattern, method=self.method,
                       first_seen=self.first_seen, decided_at=self.decided_at,
                       attempts_to_decision=self.attempts_to_decision, targets=self.targets, ports=self.ports,
                       failures=self.failures, successes=self.successes, sensors=self.sensors, score=self.score)


def min_failures(method: str, trw: TrwParams, threshold: ThresholdParams) -> int:
    """The fewest unanswered contacts with which ``method`` can decide a source a scanner."""
    need_trw = math.ceil(math.log(trw.eta1) / trw.failure_step - 1e-9)
    if method == "trw":
        return need_trw
    if method == "threshold":
        return threshold.smallest()
    return min(need_trw, threshold.smallest())


def detect_scanners(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
                    local_nets: Sequence[str] | None = None, method: str = "auto",
                    direction: str | None = None, port: int | None = None,
                    trw: TrwParams | None = None, threshold: ThresholdParams | None = None) -> list[Scanner]:
    """Sources decided to be scanning from their first contacts with ``since <= ts < until``,
    ordered by decision time then address. ``direction`` keeps only inbound or outbound ones;
    ``port`` judges sources by their contacts to that destination port only. See the module
    docstring for the method and the defaults. An empty store gives an empty list."""
    out = []
    for a in assess_sources(engine, since=since, until=until, local_nets=local_nets, method=method,
                            direction=direction, port=port, trw=trw, threshold=threshold):
        s = a.scanner()
        if s is not None:
            out.append(s)
    out.sort(key=lambda s: (s.decided_at, s.src))
    return out


def assess_sources(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
                   local_nets: Sequence[str] | None = None, method: str = "auto", direction: str | None = None,
                   port: int | None = None, trw: TrwParams | None = None,
                   threshold: ThresholdParams | None = None) -> Iterator[Assessment]:
    """:func:`detect_scanners` with every candidate source's verdict (scanners, benign, pending);
    sources with too few unanswered contacts to be decided are not candidates."""
    _check(method, direction)
    if since is not None and until is not None and until <= since:
        return iter(())
    trw = trw or TrwParams()
    threshold = threshold or ThresholdParams()
    sql, params = first_contacts(since=since, until=until, port=port,
                                 min_failures=min_failures(method, trw, threshold))
    return assess_contacts(engine.run(sql, params), local_nets=local_nets, method=method, direction=direction,
                           trw=trw, threshold=threshold)


def _check(method: str, direction: str | None) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose inbound or outbound")


def assess_contacts(rows: Iterable[Row], *, local_nets: Sequence[str] | None = None, method: str = "auto",
                    direction: str | None = None, trw: TrwParams | None = None,
                    threshold: ThresholdParams | None = None) -> Iterator[Assessment]:
    """Verdicts over first-contact rows (the columns of
    :func:`~stormwatch.analytics.scanner_queries.first_contacts`, grouped by source, in time order
    within a source). Pure: no database; the evaluation feeds it simulated contacts."""
    _check(method, direction)
    nets = parse_local_nets(local_nets)
    trw = trw or TrwParams()
    threshold = threshold or ThresholdParams()
    for src, group in groupby(rows, key=itemgetter("src_ip")):
        local = is_local(src, nets)
        if direction is not None and (direction == "outbound") != local:
            continue
        yield _assess(str(src), local, group, method, trw, threshold)


def _assess(src: str, local: bool, contacts: Iterable[Row], method: str, trw: TrwParams,
            threshold: ThresholdParams) -> Assessment:
    walk = TrwWalk(trw)
    window = ThresholdWindow(threshold, local)
    hosts: set[str] = set()
    per_port: Counter[int] = Counter()
    failures = successes = n_trw = n_thr = sensors = 0
    first: datetime | None = None
    trw_at: tuple[datetime, int, float] | None = None
    thr_at: tuple[datetime, int, float] | None = None
    for c in contacts:
        ts, dst, dport, proto, outcome = c["ts"], c["dst_ip"], int(c["dst_port"]), c["proto"], c["outcome"]
        sensors = int(c["sensors"])
        if first is None:
            first = ts
        hosts.add(dst)
        per_port[dport] += 1
        if outcome == "answered":
            successes += 1
        elif outcome in FAILED:
            failures += 1
        to_trw = proto in _TRW_PROTOS and outcome is not None
        if method == "threshold":
            to_trw, to_thr = False, outcome != "answered"
        else:
            to_thr = method == "auto" and not to_trw
            to_trw = to_trw and method in ("auto", "trw")
        if to_trw:
            n_trw += 1
            if trw_at is None and walk.observe(outcome != "answered") == "scanner":
                trw_at = (ts, walk.attempts, walk.llr)
        elif to_thr:
            n_thr += 1
            if thr_at is None and window.observe(ts, dst, dport, proto):
                thr_at = (ts, window.size, float(window.size))
    assert first is not None  # groupby never yields an empty group
    ports = tuple(p for p, _ in sorted(per_port.items(), key=lambda kv: (-kv[1], kv[0])) if p >= 0)[:TOP_PORTS]
    decided, used = _earlier(trw_at, thr_at)
    if decided is not None:
        decision: Decision = "scanner"
        decided_at, attempts, score = decided
    else:
        decision = walk.decision if n_trw else "pending"
        decided_at, attempts, score = None, walk.attempts if n_trw else 0, walk.llr if n_trw else 0.0
        used = "trw" if n_trw or method == "trw" else "threshold"
    return Assessment(
        src=src, direction="outbound" if local else "inbound", decision=decision, method=used,
        pattern=scan_pattern(len(hosts), len(per_port)), first_seen=first, decided_at=decided_at,
        attempts_to_decision=attempts, targets=sum(per_port.values()), ports=ports, failures=failures,
        successes=successes, sensors=sensors, score=round(score, 6), trw_contacts=n_trw, threshold_contacts=n_thr)


Decided = tuple[datetime, int, float]


def _earlier(trw_at: Decided | None, thr_at: Decided | None
             ) -> tuple[Decided | None, Literal["trw", "threshold"]]:
    if trw_at is not None and (thr_at is None or trw_at[0] <= thr_at[0]):
        return trw_at, "trw"
    if thr_at is not None:
        return thr_at, "threshold"
    return None, "trw"
