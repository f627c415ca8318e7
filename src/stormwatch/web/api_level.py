"""``/api/v1/level``: the threat level in force with its reasons and history; an analyst's
override (set and clear, token required).

Reading is side-effect free: the answer is the *recorded* level in force at ``at`` (the last
change at or before it, :mod:`stormwatch.threat.state`), as ``stormwatch level --history`` shows
it; ``evaluate=true`` adds what the rules give at ``at`` without recording anything. Evaluating
and recording on a schedule stays the job of ``stormwatch level`` (or the notify runner), so a
reader can never move the level. Setting an override records it and the change it makes, as
``stormwatch level --set``; clearing it hands the level back to the rules by evaluating and
recording at once, as ``stormwatch level --clear``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from stormwatch.errors import StoreError
from stormwatch.threat import state
from stormwatch.threat.level import LEVELS, LevelError, assess, gather_signals, parse_level, set_level, update_level
from stormwatch.threat.rules import load_rules
from stormwatch.web.api_common import NOT_FOUND, READ_ERRORS, WRITE_ERRORS, ApiRoute, as_of, bad, not_found
from stormwatch.web.api_kb import current_kb
from stormwatch.web.api_models import (
    AssessmentOut,
    ChangeOut,
    ClearResult,
    LevelOut,
    OverrideIn,
    OverrideOut,
    OverrideResult,
)
from stormwatch.web.deps import get_engine, get_settings, get_store, read_guard, require_token, require_writable

router = APIRouter(route_class=ApiRoute, tags=["threat level"])


def _change(c: state.Change | None) -> ChangeOut | None:
    return ChangeOut(**c.as_dict()) if c else None


def _override(o: state.Override | None) -> OverrideOut | None:
    return OverrideOut(**o.as_dict()) if o else None


def store_failed(exc: StoreError) -> HTTPException:
    return HTTPException(503, f"the store could not be changed: {exc}")


@router.get("/level", response_model=LevelOut, responses=READ_ERRORS, dependencies=[Depends(read_guard)])
def get_level(request: Request,
              at: Annotated[datetime | None, Query(description="as of this time (UTC) [default: the end "
                                                   "of the hour of the latest event]")] = None,
              history: Annotated[int, Query(ge=0, le=1000, description="changes to list")] = 50,
              evaluate: Annotated[bool, Query(description="also evaluate the rules at `at` (slower; "
                                              "records nothing)")] = False) -> LevelOut:
    """The threat level in force, why (the reasons recorded with the change that set it), the
    analyst's override in force, and the recorded history."""
    store, engine = get_store(request), get_engine(request)
    t = as_of(engine, at)
    change = state.last_change(store, t)
    level = change.level if change else 1
    assessment = None
    if evaluate:
        rules = load_rules(get_settings(request).rules_path)
        a = assess(gather_signals(engine, t, window=rules.window), rules, current_kb(request))
        assessment = AssessmentOut.model_validate(a.as_dict())
    name, colour = LEVELS[level]
    return LevelOut(
        at=t, level=level, name=name, colour=colour, since=change.ts if change else None,
        actor=change.actor if change else "rules", reasons=list(change.reasons) if change else [],
        override=_override(state.active_override(store, t)),
        history=[ChangeOut(**c.as_dict()) for c in (state.changes(store, until=t, limit=history) if history else [])],
        overrides=[OverrideOut(**o.as_dict()) for o in state.overrides(store)], assessment=assessment)


@router.post("/level/override", response_model=OverrideResult, status_code=201, responses=WRITE_ERRORS,
             dependencies=[Depends(require_token), Depends(require_writable)])
def set_override(request: Request, body: OverrideIn) -> OverrideResult:
    """Set the level as an analyst, with a reason and a name, for ``for_hours`` or until cleared.
    The level in force changes at once (and is recorded with the reason)."""
    try:
        level = parse_level(body.level)
    except LevelError as exc:
        raise bad(str(exc)) from None
    if not body.reason.strip() or not body.by.strip():
        raise bad("an override needs a reason and a name (reason, by) that are not blank")
    t = as_of(get_engine(request), body.at)
    try:
        change = set_level(get_store(request), level, body.reason, body.by, t, body.for_hours)
    except LevelError as exc:
        raise bad(str(exc)) from None
    except StoreError as exc:
        raise store_failed(exc) from None
    ovr = state.active_override(get_store(request), t)
    return OverrideResult(level=level, who=body.by.strip(), reason=body.reason.strip(), set_at=t,
                          expires_at=ovr.expires_at if ovr else None, change=_change(change))


@router.delete("/level/override", response_model=ClearResult, responses={**WRITE_ERRORS, **NOT_FOUND},
               dependencies=[Depends(require_token), Depends(require_writable)])
def clear_override(request: Request,
                   by: Annotated[str, Query(min_length=1, max_length=200, description="the analyst's name")],
                   at: Annotated[datetime | None, Query(description="when [default: the level's clock]")] = None
                   ) -> ClearResult:
    """End the analyst's override; the rules take over at once (evaluated and recorded at ``at``)."""
    store, engine = get_store(request), get_engine(request)
    if not by.strip():
        raise bad("by (the analyst's name) must not be blank")
    t = as_of(engine, at)
    try:
        ended = state.clear_override(store, by.strip(), t)
        if ended is None:
            raise not_found("no analyst override is in force; nothing to clear")
        settings = get_settings(request)
        status = update_level(store, engine, t, rules=load_rules(settings.rules_path), kb=current_kb(request))
    except StoreError as exc:
        raise store_failed(exc) from None
    return ClearResult(cleared=_override(ended), level=status.level, change=_change(status.change),
                       notes=list(status.notes))
