"""Turning what is new into messages, and delivering them: :func:`notify_changes` and
:func:`deliver_pending`.

:func:`notify_changes` gathers the facts (:mod:`stormwatch.notify.facts`), keeps the new ones,
and gives each subscription the matching facts it has not had yet (``notify_sent``: each fact once
per subscription, by its stable key). Rate limit: a subscription receives at most
``rate_limit`` messages in any hour (counted from the outbox's creation times); facts over the
limit are ``held``, and at the first run (of either function) at which the hour has room again,
everything held is **folded into one digest message**, which counts as one. So nothing is dropped:
a flood becomes the first ``rate_limit`` - 1 facts one by one (the most severe first) and a digest
of the rest. Delivery is separate, so a receiver that is down never stops new facts being queued.

:func:`deliver_pending` sends the messages that are due. A failed attempt is logged and the
message stays ``pending``; its next attempt waits an exponential back-off with "equal jitter"
(half the step fixed, half random: retries of many notifiers do not land together, and never come
sooner than half the step); after ``max_attempts`` it is ``failed`` and kept with its error until
``stormwatch notify outbox --retry``. Once a receiver fails, its other messages wait for the next
round instead of each waiting out a timeout. Clocks and randomness are injected (``now``, ``rng``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from stormwatch.analytics.engine import Engine
from stormwatch.notify import facts as facts_mod
from stormwatch.notify import outbox, subscriptions
from stormwatch.notify.config import NotifyConfig
from stormwatch.notify.mail import send_email
from stormwatch.notify.model import FACT_KINDS, DeliveryError, Fact, Message, Subscription
from stormwatch.notify.syslog import send_syslog
from stormwatch.notify.webhook import send_webhook
from stormwatch.store import Store
from stormwatch.threat.kb import KnowledgeBase

Sender = Callable[[Subscription, Message, datetime], None]
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt n (1-based) failed: wait ``min(cap, base * factor ** (n - 1))`` seconds, of which a
    random half (equal jitter); after ``max_attempts`` failures give up. Defaults: 30 s doubling
    to an hour, 12 attempts (2.5 to 5 hours of trying)."""

    base: float = 30.0
    factor: float = 2.0
    cap: float = 3600.0
    max_attempts: int = 12

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        step = min(self.cap, self.base * self.factor ** (attempt - 1))
        return timedelta(seconds=step / 2 + rng.uniform(0, step / 2))


@dataclass
class DispatchReport:
    """What :func:`notify_changes` did: facts found (``facts``), never seen before (``new_facts``),
    messages queued, facts held by rate limits, digests made, matches already notified
    (``duplicates``), per subscription what was queued or held."""

    at: datetime
    data_at: datetime | None
    facts: int = 0
    new_facts: int = 0
    enqueued: int = 0
    held: int = 0
    digests: int = 0
    duplicates: int = 0
    per_subscription: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return facts_mod.jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass
class DeliveryReport:
    """What :func:`deliver_pending` did with the messages due."""

    at: datetime
    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    gave_up: int = 0
    deferred: int = 0  # not tried: their receiver had just failed in this round
    cancelled: int = 0
    digests: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return facts_mod.jsonable(asdict(self))  # type: ignore[no-any-return]


def default_senders(config: NotifyConfig | None = None) -> dict[str, Sender]:
    return {"webhook": send_webhook, "email": partial(send_email, config=config), "syslog": send_syslog}


def _order(f: Fact) -> tuple[int, int, datetime, str]:
    # the most severe first (so the rate limit lets them through one by one), then in time order
    return (-f.level, FACT_KINDS.index(f.kind) if f.kind in FACT_KINDS else 9, f.occurred_at or datetime.min, f.key)


def _fold(store: Store, sub: Subscription, now: datetime, room: int) -> int:
    """Fold the subscription's held messages into a digest when the hour has room; 1 if it did."""
    if room <= 0 or sub.id is None:
        return 0
    waiting = outbox.held(store, sub.id)
    if not waiting:
        return 0
    outbox.add_digest(store, sub.id, waiting, sub.rate_limit, now)
    return 1


def notify_changes(store: Store, engine: Engine, *, now: datetime, lookback: timedelta = facts_mod.LOOKBACK,
                   at: datetime | None = None, kb: KnowledgeBase | None = None,
                   payloads: str | Path | None = None) -> DispatchReport:
    """Detect what is new and queue it for every matching subscription (see the module docstring).
    ``now`` (naive UTC) stamps the outbox and measures the rate limit; ``at`` is the data time
    the analytics run at (default: the data's own, :func:`stormwatch.notify.facts.gather`)."""
    gathered = facts_mod.gather(store, engine, at=at, lookback=lookback, kb=kb, payloads=payloads)
    report = DispatchReport(now, gathered.at, facts=len(gathered.facts), notes=list(gathered.notes))
    report.new_facts = outbox.record_facts(store, gathered.facts, now)
    sent = outbox.sent_pairs(store)
    for sub in subscriptions.list_all(store):
        assert sub.id is not None
        matching = sorted((f for f in gathered.facts if sub.matches(f)), key=_order)
        fresh = [f for f in matching if (sub.id, f.key) not in sent]
        report.duplicates += len(matching) - len(fresh)
        room = sub.rate_limit - outbox.used_in_window(store, sub.id, now - HOUR)
        folded = _fold(store, sub, now, room)
        room -= folded
        items: list[tuple[Fact, str]] = []
        for f in fresh:
            items.append((f, "pending" if room > 0 else "held"))
            room -= 1
        outbox.enqueue(store, sub.id, items, now)
        queued = sum(1 for _, s in items if s == "pending")
        report.enqueued += queued
        report.held += len(items) - queued
        report.digests += folded
        if items or folded:
            report.per_subscription[sub.id] = {"enqueued": queued, "held": len(items) - queued, "digests": folded}
    outbox.record_run(store, now, gathered.at, [report.facts, report.new_facts, report.enqueued, report.held,
                                                report.digests])
    return report


def deliver_pending(store: Store, *, now: datetime, senders: Mapping[str, Sender] | None = None,
                    policy: RetryPolicy | None = None, rng: random.Random | None = None,
                    config: NotifyConfig | None = None, limit: int = 500) -> DeliveryReport:
    """Send the messages due at ``now`` (at most ``limit``), with retries as in the module docstring.
    ``senders``: channel -> sender (default: the real webhook, e-mail and syslog senders, e-mail
    with ``config``)."""
    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    senders = senders if senders is not None else default_senders(config)
    report = DeliveryReport(now)
    subs = {s.id: s for s in subscriptions.list_all(store)}
    for sub_id, one in subs.items():
        assert sub_id is not None
        report.digests += _fold(store, one, now, one.rate_limit - outbox.used_in_window(store, sub_id, now - HOUR))
    down: set[str] = set()
    for msg in outbox.due(store, now, limit):
        sub = subs.get(msg.sub_id)
        if sub is None:
            outbox.cancel(store, msg.msg_id, "subscription no longer exists")
            report.cancelled += 1
            continue
        if msg.sub_id in down:
            report.deferred += 1
            continue
        send = senders.get(sub.channel)
        attempt = msg.attempts + 1
        report.attempted += 1
        try:
            if send is None:
                raise DeliveryError(f"no sender for channel {sub.channel!r}")
            send(sub, msg, now)
        except DeliveryError as exc:
            down.add(msg.sub_id)
            error = str(exc)
            next_at = now + policy.delay(attempt, rng) if attempt < policy.max_attempts else None
            status = outbox.record_attempt(store, msg, attempt, now, error=error, next_at=next_at)
            report.errors.append(f"message {msg.msg_id} ({sub.channel} {sub.target}) attempt {attempt}: {error}")
            if status == "failed":
                report.gave_up += 1
            else:
                report.retrying += 1
            continue
        outbox.record_attempt(store, msg, attempt, now, error=None, next_at=None)
        report.delivered += 1
    return report


def retry(store: Store, msg_id: int | None = None, *, now: datetime) -> int:
    """Give failed messages (one, or all) a new round of attempts, due at ``now``."""
    return outbox.retry(store, msg_id, now)
