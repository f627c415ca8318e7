"""Subscriptions, kept in the store (``notify_subscriptions``): add, list, get, remove.

:func:`add` checks a subscription before keeping it (channel, target, filters, options) and
raises :class:`~stormwatch.notify.model.NotifyError` with what is wrong. A webhook without a
secret gets a random 256-bit one (read it back with :func:`get`). Options may name the
environment variable that holds an SMTP password (``smtp_password_env``) but never hold a
password: keys that would are refused, so the store never contains one.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from stormwatch.notify import tables
from stormwatch.notify.model import CHANNELS, FACT_KINDS, NotifyError, Subscription
from stormwatch.store import Store

OPTION_KEYS: Final[dict[str, frozenset[str]]] = {
    "webhook": frozenset({"timeout", "cafile"}),
    "email": frozenset({"smtp_host", "smtp_port", "smtp_user", "smtp_from", "smtp_password_env", "smtp_tls",
                        "smtp_cafile", "timeout"}),
    "syslog": frozenset({"facility", "app_name", "hostname", "timeout"}),
}
SMTP_TLS: Final = ("starttls", "ssl", "none")
SYSLOG_FACILITIES: Final = {"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
                            **{f"local{i}": 16 + i for i in range(8)}}
_EMAIL = re.compile(r"[^@\s,<>]+@[^@\s,<>]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def syslog_address(target: str) -> tuple[str, str, int]:
    """``udp://host:port`` or ``tcp://host:port`` (``[v6]:port`` for IPv6) -> (proto, host, port)."""
    parts = urlsplit(target)
    if parts.scheme not in ("udp", "tcp") or not parts.hostname:
        raise NotifyError(f"syslog target {target!r} is not udp://HOST:PORT or tcp://HOST:PORT")
    try:
        port = parts.port or 514
    except ValueError:
        raise NotifyError(f"syslog target {target!r} has a bad port") from None
    return parts.scheme, parts.hostname, port


def email_recipients(target: str) -> list[str]:
    out = [a.strip() for a in target.split(",") if a.strip()]
    bad = [a for a in out if not _EMAIL.fullmatch(a)]
    if not out or bad:
        raise NotifyError(f"e-mail target {target!r} is not a comma-separated list of addresses")
    return out


def check(sub: Subscription) -> Subscription:
    """``sub`` checked and normalised (sorted, de-duplicated filters); raises NotifyError."""
    if sub.channel not in CHANNELS:
        raise NotifyError(f"unknown channel {sub.channel!r}; choose from {', '.join(CHANNELS)}")
    target = sub.target.strip()
    if sub.channel == "webhook":
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotifyError(f"webhook target {target!r} is not an http:// or https:// URL")
    elif sub.channel == "email":
        target = ", ".join(email_recipients(target))
    else:
        syslog_address(target)
    if not 1 <= sub.min_level <= 4:
        raise NotifyError(f"min level {sub.min_level} is not a threat level (1-4)")
    if sub.rate_limit < 1:
        raise NotifyError(f"rate limit {sub.rate_limit} must be at least 1 message per hour")
    bad_kinds = [k for k in sub.kinds if k not in FACT_KINDS]
    if bad_kinds:
        raise NotifyError(f"unknown kind {bad_kinds[0]!r}; choose from {', '.join(FACT_KINDS)}")
    bad_ports = [p for p in sub.ports if not 0 <= p <= 65535]
    if bad_ports:
        raise NotifyError(f"port {bad_ports[0]} is out of range (0-65535)")
    _check_options(sub.channel, sub.options)
    if sub.secret is not None and sub.channel != "webhook":
        raise NotifyError("a secret is only used by webhooks (their HMAC key)")
    secret = sub.secret
    if sub.channel == "webhook":
        if secret is None:
            secret = secrets.token_hex(32)
        elif len(secret) < 16:
            raise NotifyError("a webhook secret must be at least 16 characters")
    return replace(sub, target=target, secret=secret, kinds=tuple(sorted(set(sub.kinds))),
                   ports=tuple(sorted(set(sub.ports))), vulns=tuple(sorted({v.strip().upper() for v in sub.vulns})),
                   campaigns=tuple(sorted({c.strip() for c in sub.campaigns})),
                   sensors=tuple(sorted({s.strip() for s in sub.sensors})), options=dict(sub.options))


def _check_options(channel: str, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - OPTION_KEYS[channel])
    if unknown:
        hint = (" (a password is never stored: put it in an environment variable and give its name as "
                "smtp_password_env, or in the notify config file)") if any("pass" in k for k in unknown) else ""
        raise NotifyError(f"unknown {channel} option {unknown[0]!r}; known: "
                          f"{', '.join(sorted(OPTION_KEYS[channel]))}{hint}")
    if "smtp_tls" in options and options["smtp_tls"] not in SMTP_TLS:
        raise NotifyError(f"smtp_tls must be one of {', '.join(SMTP_TLS)}")
    if "smtp_password_env" in options and not _ENV_NAME.fullmatch(str(options["smtp_password_env"])):
        raise NotifyError("smtp_password_env must be the NAME of an environment variable")
    if "facility" in options and options["facility"] not in SYSLOG_FACILITIES:
        raise NotifyError(f"unknown syslog facility {options['facility']!r}")
    for key in ("smtp_port", "timeout"):
        if key in options and not (isinstance(options[key], int | float) and options[key] > 0):
            raise NotifyError(f"{key} must be a positive number")


def add(store: Store, sub: Subscription, *, now: datetime | None = None) -> str:
    """Check and keep ``sub``; returns its new id (``sub-`` and 12 hex digits)."""
    sub = check(sub)
    sub_id = "sub-" + secrets.token_hex(6)
    tables.write(store, [(
        "INSERT INTO notify_subscriptions (sub_id, channel, target, min_level, kinds, ports, vulns, campaigns, "
        "sensors, secret, options, rate_limit, label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [sub_id, sub.channel, sub.target, sub.min_level, list(sub.kinds), list(sub.ports), list(sub.vulns),
         list(sub.campaigns), list(sub.sensors), sub.secret, json.dumps(sub.options, sort_keys=True),
         sub.rate_limit, sub.label, now or _now()])])
    return sub_id


def _sub(r: dict[str, Any]) -> Subscription:
    return Subscription(
        channel=str(r["channel"]), target=str(r["target"]), min_level=int(r["min_level"]),
        kinds=tuple(r["kinds"]), ports=tuple(int(p) for p in r["ports"]), vulns=tuple(r["vulns"]),
        campaigns=tuple(r["campaigns"]), sensors=tuple(r["sensors"]), secret=r["secret"],
        options=json.loads(r["options"]), rate_limit=int(r["rate_limit"]), label=r["label"], id=str(r["sub_id"]),
        created_at=r["created_at"])


def list_all(store: Store) -> list[Subscription]:
    """Every subscription, oldest first."""
    return [_sub(r) for r in tables.rows(store, "SELECT * FROM notify_subscriptions ORDER BY created_at, sub_id")]


def get(store: Store, sub_id: str) -> Subscription | None:
    found = tables.rows(store, "SELECT * FROM notify_subscriptions WHERE sub_id = ?", [sub_id])
    return _sub(found[0]) if found else None


def remove(store: Store, sub_id: str, *, now: datetime | None = None) -> bool:
    """Delete a subscription; its messages not yet delivered are cancelled (kept in the outbox
    with status ``cancelled``, so the record of what was due stays). False if there was none."""
    if get(store, sub_id) is None:
        return False
    tables.write(store, [
        ("UPDATE notify_outbox SET status = 'cancelled', next_attempt_at = NULL, last_error = ? "
         "WHERE sub_id = ? AND status IN ('pending', 'held')",
         [f"subscription removed at {(now or _now()).isoformat(sep=' ', timespec='seconds')}", sub_id]),
        ("DELETE FROM notify_sent WHERE sub_id = ?", [sub_id]),
        ("DELETE FROM notify_subscriptions WHERE sub_id = ?", [sub_id]),
    ])
    return True
