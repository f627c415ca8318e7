"""The threat level's recorded state in the store (migration 5, ``create_threat_level``).

Three tables:

- ``threat_level_changes``: every change of the level: when, to what, from what, who or what
  made it (``rules`` or ``analyst:NAME``) and the reasons (a JSON list of strings);
- ``threat_level_overrides``: an analyst's level with a reason, in force from ``set_at`` until
  ``expires_at`` (or indefinitely when absent) unless cleared first (``cleared_at``,
  ``cleared_by``); setting a new override ends the one in force;
- ``threat_level_checks``: after each evaluation, the level in force, the level the rules hold
  (their own hysteresis state, kept apart from any override so that an override ending hands
  back to the rules as if it had never been), what the rules gave at that moment (the
  candidate), and when the rules last supported the level they hold (the hold time before
  lowering runs from there).

Read functions answer sensibly on a store opened read-only before migration 5 ran: no tables
means no history.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from stormwatch.errors import StoreError
from stormwatch.store import Store

TABLES = ("threat_level_changes", "threat_level_overrides", "threat_level_checks")


@dataclass(frozen=True, slots=True)
class Change:
    ts: datetime
    level: int
    previous: int
    actor: str
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "level": self.level, "previous": self.previous, "actor": self.actor,
                "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class Override:
    level: int
    reason: str
    who: str
    set_at: datetime
    expires_at: datetime | None = None
    cleared_at: datetime | None = None
    cleared_by: str | None = None
    override_id: int | None = None

    def active_at(self, at: datetime) -> bool:
        return (self.set_at <= at and (self.expires_at is None or at < self.expires_at)
                and (self.cleared_at is None or at < self.cleared_at))

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "reason": self.reason, "who": self.who, "set_at": self.set_at,
                "expires_at": self.expires_at, "cleared_at": self.cleared_at, "cleared_by": self.cleared_by}


@dataclass(frozen=True, slots=True)
class Check:
    ts: datetime
    level: int
    rule_level: int
    candidate: int
    supported_at: datetime


def has_tables(store: Store) -> bool:
    rows = store.query("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name IN "
                       "('threat_level_changes', 'threat_level_overrides', 'threat_level_checks')").to_pylist()
    return int(rows[0]["n"]) == len(TABLES)


def _rows(store: Store, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    if not has_tables(store):
        return []
    rows: list[dict[str, Any]] = store.query(sql, params or []).to_pylist()
    return rows


def _write(store: Store, statements: list[tuple[str, list[Any]]]) -> None:
    cur = store.con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        for sql, params in statements:
            cur.execute(sql, params)
        cur.execute("COMMIT")
    except duckdb.Error as exc:
        with contextlib.suppress(duckdb.Error):  # no transaction left open: nothing to undo
            cur.execute("ROLLBACK")
        raise StoreError(f"writing the threat level to {store.path} failed: {exc}") from exc
    finally:
        cur.close()


# -- changes ------------------------------------------------------------------------------------

def _change(r: dict[str, Any]) -> Change:
    return Change(r["ts"], int(r["level"]), int(r["previous"]), str(r["actor"]), tuple(json.loads(r["reasons"])))


def record_change(store: Store, change: Change) -> None:
    _write(store, [("INSERT INTO threat_level_changes (ts, level, previous, actor, reasons) VALUES (?, ?, ?, ?, ?)",
                    [change.ts, change.level, change.previous, change.actor, json.dumps(list(change.reasons))])])


def changes(store: Store, *, since: datetime | None = None, until: datetime | None = None,
            limit: int | None = None) -> list[Change]:
    """Recorded changes with ``since <= ts <= until``, oldest first (the last ``limit`` of them)."""
    sql = "SELECT * FROM threat_level_changes WHERE ts >= ? AND ts <= ? ORDER BY ts DESC, change_id DESC"
    params: list[Any] = [since or datetime.min, until or datetime.max]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [_change(r) for r in reversed(_rows(store, sql, params))]


def last_change(store: Store, at: datetime | None = None) -> Change | None:
    """The change in force at ``at`` (the latest at or before it; default: the latest)."""
    rows = _rows(store, "SELECT * FROM threat_level_changes WHERE ts <= ? ORDER BY ts DESC, change_id DESC LIMIT 1",
                 [at or datetime.max])
    return _change(rows[0]) if rows else None


# -- overrides ----------------------------------------------------------------------------------

def _override(r: dict[str, Any]) -> Override:
    return Override(int(r["level"]), str(r["reason"]), str(r["who"]), r["set_at"], r["expires_at"],
                    r["cleared_at"], r["cleared_by"], int(r["override_id"]))


def overrides(store: Store) -> list[Override]:
    return [_override(r) for r in _rows(store, "SELECT * FROM threat_level_overrides ORDER BY set_at, override_id")]


def active_override(store: Store, at: datetime) -> Override | None:
    """The override in force at ``at``: the latest one set at or before it that has not expired
    or been cleared by then."""
    live = [o for o in overrides(store) if o.active_at(at)]
    return live[-1] if live else None


def set_override(store: Store, override: Override) -> None:
    """Put ``override`` in force from its ``set_at``; an override in force then ends at that moment."""
    _write(store, [
        ("UPDATE threat_level_overrides SET cleared_at = ?, cleared_by = ? WHERE cleared_at IS NULL "
         "AND set_at <= ? AND (expires_at IS NULL OR expires_at > ?)",
         [override.set_at, override.who, override.set_at, override.set_at]),
        ("INSERT INTO threat_level_overrides (level, reason, who, set_at, expires_at) VALUES (?, ?, ?, ?, ?)",
         [override.level, override.reason, override.who, override.set_at, override.expires_at]),
    ])


def clear_override(store: Store, who: str, at: datetime) -> Override | None:
    """End the override in force at ``at``; returns it (as it was), or None if there was none."""
    current = active_override(store, at)
    if current is None:
        return None
    _write(store, [("UPDATE threat_level_overrides SET cleared_at = ?, cleared_by = ? WHERE override_id = ?",
                    [at, who, current.override_id])])
    return current


# -- checks -------------------------------------------------------------------------------------

def last_check(store: Store, at: datetime | None = None) -> Check | None:
    """The latest evaluation at or before ``at`` (default: the latest)."""
    rows = _rows(store, "SELECT * FROM threat_level_checks WHERE ts <= ? ORDER BY ts DESC, rowid DESC LIMIT 1",
                 [at or datetime.max])
    if not rows:
        return None
    r = rows[0]
    return Check(r["ts"], int(r["level"]), int(r["rule_level"]), int(r["candidate"]), r["supported_at"])


def record_check(store: Store, check: Check, change: Change | None = None) -> None:
    """Record an evaluation and, in the same transaction, the change it made (if any)."""
    statements: list[tuple[str, list[Any]]] = [
        ("INSERT INTO threat_level_checks VALUES (?, ?, ?, ?, ?)",
         [check.ts, check.level, check.rule_level, check.candidate, check.supported_at])]
    if change is not None:
        statements.append(("INSERT INTO threat_level_changes (ts, level, previous, actor, reasons) "
                           "VALUES (?, ?, ?, ?, ?)", [change.ts, change.level, change.previous, change.actor,
                                                      json.dumps(list(change.reasons))]))
    _write(store, statements)


def forget_from(store: Store, since: datetime) -> None:
    """Delete the checks and the rules' changes at or after ``since`` (before a replay over that
    time); analysts' changes and overrides are kept."""
    _write(store, [("DELETE FROM threat_level_checks WHERE ts >= ?", [since]),
                   ("DELETE FROM threat_level_changes WHERE ts >= ? AND actor = 'rules'", [since])])
