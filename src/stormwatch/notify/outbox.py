"""The persisted outbox and what has been notified (``notify_facts``, ``notify_sent``,
``notify_outbox``, ``notify_deliveries``, ``notify_runs``).

A message's ``status``:

- ``pending``: waiting for delivery (``next_attempt_at``: not before then);
- ``held``: the subscription's rate limit was reached; it will be folded into a digest;
- ``folded``: went out inside the digest ``digest_id``;
- ``delivered``: the receiver took it (``delivered_at``);
- ``failed``: gave up after the last attempt; kept, with ``last_error``, until retried
  (:func:`retry`);
- ``cancelled``: its subscription was removed before it went out.

Every attempt is a row of ``notify_deliveries`` (when, which attempt, ok or the error).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from stormwatch.notify import tables
from stormwatch.notify.model import Fact, Message
from stormwatch.store import Store

STATUSES: Final = ("pending", "held", "folded", "delivered", "failed", "cancelled")
# messages that count against a subscription's hourly rate limit (held ones have not gone out)
_COUNTED = "('pending', 'delivered', 'failed')"


def _message(r: dict[str, Any]) -> Message:
    return Message(msg_id=int(r["msg_id"]), sub_id=str(r["sub_id"]), kind=str(r["kind"]), fact_key=r["fact_key"],
                   level=int(r["level"]), title=str(r["title"]), body=json.loads(r["body"]), status=str(r["status"]),
                   attempts=int(r["attempts"]), created_at=r["created_at"], next_attempt_at=r["next_attempt_at"],
                   delivered_at=r["delivered_at"], last_error=r["last_error"])


def record_facts(store: Store, facts: Sequence[Fact], now: datetime) -> int:
    """Keep the facts not seen before; returns how many were new."""
    if not facts:
        return 0
    keys = [f.key for f in facts]
    known = {r["fact_key"] for r in tables.rows(
        store, f"SELECT fact_key FROM notify_facts WHERE fact_key IN ({', '.join('?' for _ in keys)})", keys)}
    new = [f for f in {f.key: f for f in facts}.values() if f.key not in known]
    if new:
        tables.write(store, [(
            "INSERT INTO notify_facts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [f.key, f.kind, f.occurred_at, now, f.level, f.title, json.dumps(f.as_dict(), sort_keys=True)])
            for f in new])
    return len(new)


def sent_pairs(store: Store) -> set[tuple[str, str]]:
    rows = tables.rows(store, "SELECT sub_id, fact_key FROM notify_sent")
    return {(str(r["sub_id"]), str(r["fact_key"])) for r in rows}


def used_in_window(store: Store, sub_id: str, since: datetime) -> int:
    """Messages (facts and digests) made for ``sub_id`` since ``since`` that count against its limit."""
    rows = tables.rows(store, f"SELECT count(*) AS n FROM notify_outbox WHERE sub_id = ? AND created_at >= ? "
                              f"AND status IN {_COUNTED}", [sub_id, since])
    return int(rows[0]["n"]) if rows else 0


def enqueue(store: Store, sub_id: str, items: Iterable[tuple[Fact, str]], now: datetime) -> None:
    """Put each (fact, status) in the outbox for ``sub_id`` and mark it notified, in one transaction."""
    statements: list[tables.Statement] = []
    for fact, status in items:
        statements.append((
            "INSERT INTO notify_outbox (sub_id, kind, fact_key, level, title, body, status, created_at, "
            "next_attempt_at) VALUES (?, 'fact', ?, ?, ?, ?, ?, ?, ?)",
            [sub_id, fact.key, fact.level, fact.title, json.dumps(fact.as_dict(), sort_keys=True), status, now,
             now if status == "pending" else None]))
        statements.append(("INSERT INTO notify_sent VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [sub_id, fact.key, now]))
    if statements:
        tables.write(store, statements)


def held(store: Store, sub_id: str) -> list[Message]:
    return [_message(r) for r in tables.rows(
        store, "SELECT * FROM notify_outbox WHERE sub_id = ? AND status = 'held' ORDER BY created_at, msg_id",
        [sub_id])]


def add_digest(store: Store, sub_id: str, folded: Sequence[Message], limit: int, now: datetime) -> int:
    """One digest message holding ``folded`` (held messages), which become ``folded``; its id."""
    facts = [m.body for m in folded]
    first, last = min(m.created_at for m in folded), max(m.created_at for m in folded)
    body = {"kind": "digest", "title": f"digest of {len(folded)} notifications held by the rate limit",
            "text": f"{len(folded)} notifications found between {first.isoformat(sep=' ', timespec='seconds')} and "
                    f"{last.isoformat(sep=' ', timespec='seconds')} UTC went over the limit of {limit} per hour",
            "facts": facts}
    level = max(m.level for m in folded)
    # the id first, so that the digest and the folding of what it holds are one transaction
    digest_id = int(store.query("SELECT nextval('notify_outbox_seq') AS id").to_pylist()[0]["id"])
    ids = [m.msg_id for m in folded]
    tables.write(store, [
        ("INSERT INTO notify_outbox (msg_id, sub_id, kind, level, title, body, status, created_at, next_attempt_at) "
         "VALUES (?, ?, 'digest', ?, ?, ?, 'pending', ?, ?)",
         [digest_id, sub_id, level, body["title"], json.dumps(body, sort_keys=True), now, now]),
        (f"UPDATE notify_outbox SET status = 'folded', digest_id = ? WHERE status = 'held' "
         f"AND msg_id IN ({', '.join('?' for _ in ids)})", [digest_id, *ids]),
    ])
    return digest_id


def due(store: Store, now: datetime, limit: int) -> list[Message]:
    """Pending messages whose next attempt is due, oldest first."""
    return [_message(r) for r in tables.rows(
        store, "SELECT * FROM notify_outbox WHERE status = 'pending' AND next_attempt_at <= ? "
               "ORDER BY created_at, msg_id LIMIT ?", [now, limit])]


def record_attempt(store: Store, msg: Message, attempt: int, now: datetime, *, error: str | None,
                   next_at: datetime | None) -> str:
    """The outcome of one attempt; returns the message's new status (``delivered``, ``pending``
    with ``next_at``, or ``failed`` when ``next_at`` is None after an error)."""
    status = "delivered" if error is None else ("pending" if next_at is not None else "failed")
    tables.write(store, [
        ("INSERT INTO notify_deliveries VALUES (?, ?, ?, ?, ?)", [msg.msg_id, attempt, now, error is None, error]),
        ("UPDATE notify_outbox SET status = ?, attempts = ?, next_attempt_at = ?, delivered_at = ?, "
         "last_error = coalesce(?, last_error) WHERE msg_id = ?",
         [status, attempt, next_at, now if error is None else None, error, msg.msg_id]),
    ])
    return status


def cancel(store: Store, msg_id: int, reason: str) -> None:
    tables.write(store, [("UPDATE notify_outbox SET status = 'cancelled', next_attempt_at = NULL, last_error = ? "
                          "WHERE msg_id = ?", [reason, msg_id])])


def retry(store: Store, msg_id: int | None, now: datetime) -> int:
    """Put failed messages (one, or all when ``msg_id`` is None) back as pending for a new round of
    attempts; returns how many."""
    where, params = ("AND msg_id = ?", [msg_id]) if msg_id is not None else ("", [])
    (ret,) = tables.write(store, [(f"UPDATE notify_outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                                   f"WHERE status = 'failed' {where} RETURNING msg_id", [now, *params])])
    return len(ret)


def messages(store: Store, *, status: str | None = None, sub_id: str | None = None, limit: int = 100) -> list[Message]:
    """Outbox rows, newest first."""
    sql, params = "SELECT * FROM notify_outbox WHERE 1 = 1", []
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    if sub_id is not None:
        sql += " AND sub_id = ?"
        params.append(sub_id)
    return [_message(r) for r in tables.rows(store, sql + " ORDER BY msg_id DESC LIMIT ?", [*params, limit])]


def deliveries(store: Store, msg_id: int) -> list[dict[str, Any]]:
    return tables.rows(store, "SELECT * FROM notify_deliveries WHERE msg_id = ? ORDER BY attempt, tried_at", [msg_id])


def counts(store: Store) -> dict[str, int]:
    """Messages per status."""
    return {str(r["status"]): int(r["n"]) for r in tables.rows(
        store, "SELECT status, count(*) AS n FROM notify_outbox GROUP BY status")}


def record_run(store: Store, now: datetime, data_at: datetime | None, figures: Sequence[int]) -> None:
    tables.write(store, [("INSERT INTO notify_runs (ran_at, data_at, facts, new_facts, enqueued, held, digests) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", [now, data_at, *figures])])
