"""Webhook delivery: a JSON document POSTed to the subscriber's URL, signed with HMAC-SHA256.

Signing (the scheme of Stripe's and Slack's webhooks, so receivers know it): the sender puts the
Unix time in ``X-Stormwatch-Timestamp`` and
``X-Stormwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``. The receiver
recomputes the HMAC over the timestamp header, a dot and the raw body bytes, compares it in
constant time, and refuses a timestamp more than five minutes from its clock: a captured request
replayed later fails, because the timestamp is under the signature. ``X-Stormwatch-Delivery``
carries the outbox message id: deliveries are at least once (an answer lost after the receiver
acted means a retry), so a receiver drops a delivery id it has already handled.
:func:`verify` is that check, for receivers written in Python.

Redirects are not followed (a signed POST is meant for the URL the subscriber gave), proxies are
not used (the environment's ``http_proxy`` would otherwise see every notification), and any
answer other than 2xx is a failed attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from stormwatch import __version__
from stormwatch.notify.model import DeliveryError, Message, Subscription

SIGNATURE_HEADER = "X-Stormwatch-Signature"
TIMESTAMP_HEADER = "X-Stormwatch-Timestamp"
DELIVERY_HEADER = "X-Stormwatch-Delivery"
TOLERANCE_SECONDS = 300
DEFAULT_TIMEOUT = 10.0


def unix_time(now: datetime) -> int:
    return int(now.replace(tzinfo=UTC).timestamp())


def document(sub: Subscription, msg: Message, now: datetime) -> dict[str, Any]:
    """The JSON document a webhook receives."""
    return {"stormwatch": __version__, "delivery": msg.msg_id, "subscription": sub.id, "kind": msg.kind,
            "level": msg.level, "title": msg.title, "created_at": msg.created_at.isoformat(),
            "sent_at": now.isoformat(), "notification": msg.body}


def body_bytes(doc: Mapping[str, Any]) -> bytes:
    # ASCII-only JSON: attacker-controlled text arrives \u-escaped, never as raw control bytes
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, body: bytes, signature: str | None, timestamp: str | None, *, now: datetime,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """The receiver's check: a well-formed timestamp within ``tolerance`` seconds of ``now`` and a
    signature that matches (compared in constant time)."""
    if not signature or not timestamp or not timestamp.isdigit():
        return False
    if abs(unix_time(now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        return None  # the 3xx then surfaces as an HTTPError: a failed attempt


@lru_cache(maxsize=16)
def tls_context(cafile: str | None) -> ssl.SSLContext:
    """A verifying TLS client context (loading the CA store takes tens of milliseconds: made once)."""
    return ssl.create_default_context(cafile=cafile)


def send_webhook(sub: Subscription, msg: Message, now: datetime) -> None:
    """POST ``msg`` to ``sub.target``; raises DeliveryError unless the answer is 2xx."""
    if not sub.secret:
        raise DeliveryError("webhook subscription has no secret to sign with")
    body = body_bytes(document(sub, msg, now))
    ts = unix_time(now)
    req = urllib.request.Request(sub.target, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"stormwatch/{__version__}",
        TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(sub.secret, ts, body), DELIVERY_HEADER: str(msg.msg_id)})
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _NoRedirect()]
    if sub.target.lower().startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=tls_context(sub.options.get("cafile"))))
    opener = urllib.request.build_opener(*handlers)
    timeout = float(sub.options.get("timeout", DEFAULT_TIMEOUT))
    try:
        with opener.open(req, timeout=timeout) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DeliveryError(f"webhook unreachable: {reason}") from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook answered HTTP {status}")
