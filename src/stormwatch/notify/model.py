"""What the notifier works with: subscriptions, facts, messages, and how a fact matches a filter.

A **fact** is one thing worth telling an operator, with a stable key (the de-duplication
identity, ``docs/notifications.md``): a change of the threat level, a surge, a bulletin newly
exploited, a new campaign. A **subscription** says which facts someone wants (filters) and where
they go (a channel and a target). A **message** is one row of the outbox: a fact, or a digest of
facts the rate limit held back, on its way to one subscription.

Matching: a subscription's filters are ANDed across dimensions (``min_level``, ``kinds``,
``ports``, ``vulns``, ``campaigns``, ``sensors``) and ORed within one: ``--port 139 --port 445
--vuln MS06-040`` wants facts about port 139 or 445 that also concern MS06-040. An empty
dimension does not filter. A fact that says nothing about a filtered dimension does not match
(a surge of a source network has no port, so ``--port 139`` does not receive it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from stormwatch.errors import StormwatchError

Channel = Literal["webhook", "email", "syslog"]
CHANNELS: Final = ("webhook", "email", "syslog")
FactKind = Literal["level", "surge", "exploit", "campaign"]
FACT_KINDS: Final = ("level", "surge", "exploit", "campaign")
DEFAULT_RATE_LIMIT: Final = 20  # messages per subscription per hour (a digest counts as one)


class NotifyError(StormwatchError):
    """A subscription or notification request that cannot be carried out."""


class DeliveryError(NotifyError):
    """One delivery attempt failed (receiver down, refused, bad answer); the message stays in the
    outbox and is retried."""


@dataclass(frozen=True)
class Subscription:
    """Who wants which facts, and where they go.

    ``target``: a URL for ``webhook``; one or more comma-separated addresses for ``email``;
    ``udp://host:port`` or ``tcp://host:port`` for ``syslog``. ``secret``: the webhook's HMAC key.
    ``options``: channel settings (SMTP server, user, the *name* of the environment variable that
    holds the password — never the password itself; syslog facility; webhook timeout).
    ``rate_limit``: messages per hour at most; the excess is folded into one digest.
    ``kinds``: which kinds of fact (empty: all)."""

    channel: str
    target: str
    min_level: int = 1
    kinds: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    vulns: tuple[str, ...] = ()
    campaigns: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    secret: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    rate_limit: int = DEFAULT_RATE_LIMIT
    label: str | None = None
    id: str | None = None
    created_at: datetime | None = None

    def matches(self, fact: Fact) -> bool:
        """True when ``fact`` passes every filter (see the module docstring)."""
        if fact.level < self.min_level:
            return False
        if self.kinds and fact.kind not in self.kinds:
            return False
        if self.ports and not set(self.ports) & set(fact.ports):
            return False
        if self.vulns and not {v.upper() for v in self.vulns} & {v.upper() for v in fact.vulns}:
            return False
        if self.campaigns and not {c.lower() for c in self.campaigns} & {c.lower() for c in fact.campaigns}:
            return False
        return not (self.sensors and not set(self.sensors) & set(fact.sensors))

    def public_dict(self) -> dict[str, Any]:
        """The subscription as JSON-able data for listings and the API: the webhook secret is
        masked, and options only ever hold the name of a password's environment variable."""
        return {"id": self.id, "channel": self.channel, "target": self.target, "min_level": self.min_level,
                "kinds": list(self.kinds), "ports": list(self.ports), "vulns": list(self.vulns),
                "campaigns": list(self.campaigns), "sensors": list(self.sensors),
                "secret": "(set)" if self.secret else None, "options": dict(self.options),
                "rate_limit": self.rate_limit, "label": self.label,
                "created_at": self.created_at.isoformat() if self.created_at else None}


@dataclass(frozen=True)
class Fact:
    """One thing to notify. ``key`` is stable across runs (the de-duplication identity);
    ``level`` the threat level it is filed under (a level change: the higher of the two levels;
    anything else: the level in force when it was found); ``title`` one line, ``text`` a few
    lines in words and numbers; ``details`` the analytics' own record. ``ports``, ``vulns``,
    ``campaigns`` and ``sensors`` are what the filters look at."""

    key: str
    kind: str
    level: int
    title: str
    text: str
    occurred_at: datetime | None
    ports: tuple[int, ...] = ()
    vulns: tuple[str, ...] = ()
    campaigns: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "level": self.level, "title": self.title, "text": self.text,
                "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
                "ports": list(self.ports), "vulns": list(self.vulns), "campaigns": list(self.campaigns),
                "sensors": list(self.sensors), "details": self.details}


@dataclass(frozen=True)
class Message:
    """One outbox row on its way to a subscription. ``kind`` is ``fact`` or ``digest``; ``body``
    the JSON document (a fact's :meth:`Fact.as_dict`, or a digest with its ``facts``)."""

    msg_id: int
    sub_id: str
    kind: str
    fact_key: str | None
    level: int
    title: str
    body: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"msg_id": self.msg_id, "sub_id": self.sub_id, "kind": self.kind, "fact_key": self.fact_key,
                "level": self.level, "title": self.title, "status": self.status, "attempts": self.attempts,
                "created_at": self.created_at, "next_attempt_at": self.next_attempt_at,
                "delivered_at": self.delivered_at, "last_error": self.last_error}
