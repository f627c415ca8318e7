"""Syslog delivery: one CEF record (:mod:`stormwatch.notify.cef`) in an RFC 5424 message, over
TCP (RFC 6587 octet counting; a refused or broken connection is a failed attempt) or UDP (RFC
5426; one datagram, fire-and-forget: a receiver that is down cannot be noticed, so UDP delivery is
at most once — use TCP where a lost notification matters).

The CEF extensions: ``rt`` (when the fact happened, ms since the epoch), ``cat`` (the kind),
``msg`` (the fact in words), ``externalId`` (the outbox message id), ``cn1`` threatLevel,
``cs1`` factKey, ``cs2`` vulns, ``cs3`` campaigns, ``cs4`` sensors, and ``dpt`` when the fact is
about one port.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from stormwatch import __version__
from stormwatch.notify.cef import MSG_MAX, SYSLOG_SEVERITY, UDP_MAX, cef_line, octet_counted, rfc5424
from stormwatch.notify.model import DeliveryError, Message, Subscription
from stormwatch.notify.subscriptions import SYSLOG_FACILITIES, syslog_address

DEFAULT_TIMEOUT = 10.0


def _ms(ts: datetime) -> str:
    return str(int(ts.replace(tzinfo=UTC).timestamp() * 1000))


def extensions(msg: Message, text_limit: int | None = None) -> list[tuple[str, str]]:
    body = msg.body
    facts = body.get("facts", []) if msg.kind == "digest" else [body]
    text = "\n".join(str(f.get("title", "")) + ": " + str(f.get("text", "")) for f in facts) \
        if msg.kind == "digest" else str(body.get("text", msg.title))
    if text_limit is not None and len(text) > text_limit:
        text = text[:text_limit] + "..."
    occurred = body.get("occurred_at")
    when = datetime.fromisoformat(occurred) if isinstance(occurred, str) else msg.created_at

    def joined(name: str) -> str:
        return ",".join(sorted({str(x) for f in facts for x in f.get(name, [])}))

    ports = {int(p) for f in facts for p in f.get("ports", [])}
    ext = [("rt", _ms(when)), ("cat", str(body.get("kind", msg.kind))), ("msg", text),
           ("externalId", str(msg.msg_id)), ("cn1Label", "threatLevel"), ("cn1", str(msg.level)),
           ("cs1Label", "factKey"), ("cs1", str(msg.fact_key or f"digest:{msg.msg_id}")),
           ("cs2Label", "vulns"), ("cs2", joined("vulns")), ("cs3Label", "campaigns"), ("cs3", joined("campaigns")),
           ("cs4Label", "sensors"), ("cs4", joined("sensors"))]
    if len(ports) == 1:
        ext.append(("dpt", str(next(iter(ports)))))
    return ext


def frame(sub: Subscription, msg: Message, now: datetime, text_limit: int | None = None) -> bytes:
    """The RFC 5424 message carrying ``msg`` as CEF."""
    kind = str(msg.body.get("kind", msg.kind))
    line = cef_line(kind, msg.title, msg.level, extensions(msg, text_limit), version=__version__)
    return rfc5424(line, ts=now, hostname=str(sub.options.get("hostname") or socket.gethostname()),
                   app_name=str(sub.options.get("app_name", "stormwatch")), msgid=kind,
                   facility=SYSLOG_FACILITIES[str(sub.options.get("facility", "local0"))],
                   severity=SYSLOG_SEVERITY.get(msg.level, 5))


def send_syslog(sub: Subscription, msg: Message, now: datetime) -> None:
    proto, host, port = syslog_address(sub.target)
    timeout = float(sub.options.get("timeout", DEFAULT_TIMEOUT))
    try:
        if proto == "tcp":
            with socket.create_connection((host, port), timeout=timeout) as conn:
                conn.sendall(octet_counted(frame(sub, msg, now)))
            return
        data = frame(sub, msg, now, MSG_MAX)
        limit = MSG_MAX
        while len(data) > UDP_MAX and limit > 64:  # long campaign lists: shorten msg further
            limit //= 2
            data = frame(sub, msg, now, limit)
        family, kind, proto_no, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto_no) as sock:
            sock.settimeout(timeout)
            sock.sendto(data, addr)
    except OSError as exc:
        raise DeliveryError(f"syslog {sub.target}: {exc}") from exc
