"""E-mail delivery: a plain-text message over SMTP (RFC 5321) with STARTTLS (RFC 3207) and AUTH
(RFC 4954), through :mod:`smtplib`.

TLS: ``starttls`` (the default, submission port 587) upgrades the connection before anything else
is sent and refuses a server that does not offer STARTTLS; ``ssl`` is implicit TLS (port 465);
``none`` is plain text and is refused together with a user name (credentials never travel in the
clear). Certificates are verified against the system's CAs or ``smtp_cafile``, host name included.

The message: ``Subject: [stormwatch] level N: <title>``, a text body with the fact's words and
numbers and its record as JSON. Attacker-controlled text can reach subject and body (campaign
traits, download URLs): control characters become ``\\xNN``-style escapes, so no header can be
injected through a line break and no terminal escape reaches a mail reader; the JSON is
ASCII-only. Non-ASCII text is encoded by :mod:`email` (RFC 2047 words in the subject,
quoted-printable in the body).
"""

from __future__ import annotations

import json
import os
import smtplib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from stormwatch.notify.config import PASSWORD_ENV, NotifyConfig
from stormwatch.notify.model import DeliveryError, Message, Subscription
from stormwatch.notify.subscriptions import email_recipients
from stormwatch.notify.webhook import tls_context
from stormwatch.threat.level import LEVELS

DEFAULT_TIMEOUT = 30.0
SUBJECT_MAX = 200


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    tls: str = "starttls"
    user: str | None = None
    sender: str = "stormwatch@localhost"
    cafile: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    password: str | None = field(default=None, repr=False)


def smtp_settings(sub: Subscription, config: NotifyConfig | None = None) -> SmtpSettings:
    """The SMTP settings for ``sub``: its options, then the config file, then the defaults; the
    password from the environment variable the options or the file name, the file, or
    ``$STORMWATCH_SMTP_PASSWORD`` (see :mod:`stormwatch.notify.config`)."""
    o, c = sub.options, (config.smtp if config else {})
    tls = str(o.get("smtp_tls", c.get("tls", "starttls")))
    port = int(o.get("smtp_port", c.get("port", 465 if tls == "ssl" else 587)))
    env_name = o.get("smtp_password_env") or c.get("password_env")
    password = os.environ.get(str(env_name)) if env_name else None
    if password is None:
        password = c.get("password") or os.environ.get(PASSWORD_ENV)
    user = o.get("smtp_user", c.get("user"))
    return SmtpSettings(host=str(o.get("smtp_host", c.get("host", "localhost"))), port=port, tls=tls,
                        user=str(user) if user else None,
                        sender=str(o.get("smtp_from", c.get("from", "stormwatch@localhost"))),
                        cafile=o.get("smtp_cafile", c.get("cafile")),
                        timeout=float(o.get("timeout", c.get("timeout", DEFAULT_TIMEOUT))), password=password)


def printable(text: str) -> str:
    """``text`` with every non-printable character (line breaks included) escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def subject(msg: Message) -> str:
    name = LEVELS.get(msg.level, ("?", "?"))[0]
    text = printable(f"[stormwatch] level {msg.level} ({name}): {msg.title}")
    return text if len(text) <= SUBJECT_MAX else text[:SUBJECT_MAX - 3] + "..."


def body_text(sub: Subscription, msg: Message) -> str:
    lines = [printable(msg.title), ""]
    facts = msg.body.get("facts") if msg.kind == "digest" else [msg.body]
    for fact in facts or []:
        if msg.kind == "digest":
            lines.append(f"* {printable(str(fact.get('title', '')))}")
        lines += [printable(line) for line in str(fact.get("text", "")).splitlines()]
        lines += [f"key: {printable(str(fact.get('key', '')))}", ""]
    lines += ["record:", json.dumps(msg.body, indent=1, sort_keys=True, ensure_ascii=True), "",
              f"-- stormwatch notification {msg.msg_id} for subscription {sub.id}"]
    return "\n".join(lines) + "\n"


def build_email(sub: Subscription, msg: Message, settings: SmtpSettings, now: datetime) -> EmailMessage:
    em = EmailMessage(policy=SMTP)
    em["From"] = settings.sender
    em["To"] = ", ".join(email_recipients(sub.target))
    em["Subject"] = subject(msg)
    em["Date"] = format_datetime(now.replace(tzinfo=UTC))
    em["Message-ID"] = make_msgid(idstring=f"n{msg.msg_id}", domain="stormwatch.invalid")
    em["X-Stormwatch-Delivery"] = str(msg.msg_id)
    em.set_content(body_text(sub, msg))
    return em


def send_email(sub: Subscription, msg: Message, now: datetime, *, config: NotifyConfig | None = None) -> None:
    """Send ``msg`` to the subscription's addresses; raises DeliveryError on any failure."""
    s = smtp_settings(sub, config)
    if s.tls not in ("starttls", "ssl", "none"):
        raise DeliveryError(f"unknown smtp tls mode {s.tls!r}")
    if s.tls == "none" and s.user:
        raise DeliveryError("refusing SMTP authentication without TLS (set smtp_tls to starttls or ssl)")
    if s.user and s.password is None:
        raise DeliveryError(f"SMTP user {s.user!r} has no password: set the variable named by smtp_password_env, "
                            f"password_env in the notify config file, or ${PASSWORD_ENV}")
    em = build_email(sub, msg, s, now)
    context = tls_context(s.cafile)
    try:
        if s.tls == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with client:
            client.ehlo()
            if s.tls == "starttls":
                if not client.has_extn("starttls"):
                    raise DeliveryError(f"SMTP server {s.host}:{s.port} does not offer STARTTLS")
                client.starttls(context=context)
                client.ehlo()
            if s.user:
                client.login(s.user, s.password or "")
            refused = client.send_message(em)
    except smtplib.SMTPException as exc:
        raise DeliveryError(f"SMTP {s.host}:{s.port}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:  # refused, unreachable, timed out, TLS failures (ssl.SSLError)
        raise DeliveryError(f"SMTP {s.host}:{s.port} unreachable: {exc}") from exc
    if refused:
        raise DeliveryError(f"SMTP server refused recipients: {', '.join(sorted(refused))}")
