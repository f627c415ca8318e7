"""``/api/v1/subscriptions`` (notifications; token for every call, since a subscription's
targets are the operator's addresses) and ``/api/v1/export/...`` (STIX 2.1, MISP, blocklists,
firewall rules; reads).

Both call the library of another part of stormwatch (:mod:`stormwatch.notify.subscriptions`,
:mod:`stormwatch.export`) by the entry points agreed for issue 6, imported on first use: while a
module is not installed the endpoint answers 503 with a sentence naming it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from stormwatch.errors import StoreError, StormwatchError
from stormwatch.threat.level import LevelError, parse_level
from stormwatch.web.api_common import (
    NOT_FOUND,
    READ_ERRORS,
    UNAVAILABLE,
    WRITE_ERRORS,
    ApiRoute,
    bad,
    not_found,
    optional_module,
    utc,
)
from stormwatch.web.api_kb import current_kb
from stormwatch.web.api_models import DeletedOut, SubscriptionCreated, SubscriptionIn, SubscriptionsOut
from stormwatch.web.deps import get_engine, get_store, read_guard, require_token, require_writable

router = APIRouter(route_class=ApiRoute)

SUBSCRIPTIONS = "stormwatch.notify.subscriptions"


def _subscriptions() -> Any:
    return optional_module(SUBSCRIPTIONS, "notifications")


def _public(sub: Any) -> dict[str, Any]:
    if hasattr(sub, "public_dict"):
        out: dict[str, Any] = sub.public_dict()
        return out
    raise HTTPException(503, "notifications: this version of stormwatch.notify cannot list subscriptions safely")


@router.get("/subscriptions", response_model=SubscriptionsOut, responses={**WRITE_ERRORS, **UNAVAILABLE},
            dependencies=[Depends(require_token)], tags=["notifications"])
def subscriptions_list(request: Request) -> SubscriptionsOut:
    """Every subscription (webhook secrets masked)."""
    subs = _subscriptions().list_all(get_store(request))
    return SubscriptionsOut(subscriptions=[_public(s) for s in subs])


@router.post("/subscriptions", response_model=SubscriptionCreated, status_code=201,
             responses={**WRITE_ERRORS, **UNAVAILABLE},
             dependencies=[Depends(require_token), Depends(require_writable)], tags=["notifications"])
def subscriptions_add(request: Request, body: SubscriptionIn) -> SubscriptionCreated:
    """Subscribe a webhook, e-mail address or syslog receiver to notifications, filtered by
    level, kind, port, vulnerability, campaign or sensor."""
    mod = _subscriptions()
    model = optional_module("stormwatch.notify.model", "notifications")
    fields = body.model_dump(exclude_unset=True)
    if "min_level" in fields:
        try:
            fields["min_level"] = parse_level(fields["min_level"])
        except LevelError as exc:
            raise bad(str(exc)) from None
    for key in ("kinds", "ports", "vulns", "campaigns", "sensors"):
        if key in fields:
            fields[key] = tuple(fields[key])
    try:
        sub_id = mod.add(get_store(request), model.Subscription(**fields))
    except TypeError as exc:  # a field this version of notify does not know
        raise bad(f"not a subscription: {exc}") from None
    except StoreError as exc:
        raise HTTPException(503, f"the store could not be changed: {exc}") from None
    except StormwatchError as exc:  # NotifyError: what is wrong with it
        raise bad(str(exc)) from None
    return SubscriptionCreated(id=str(sub_id))


@router.delete("/subscriptions/{sub_id}", response_model=DeletedOut,
               responses={**WRITE_ERRORS, **NOT_FOUND, **UNAVAILABLE},
               dependencies=[Depends(require_token), Depends(require_writable)], tags=["notifications"])
def subscriptions_remove(request: Request, sub_id: Annotated[str, Path(max_length=64)]) -> DeletedOut:
    """Remove a subscription (its undelivered messages are cancelled)."""
    try:
        removed = _subscriptions().remove(get_store(request), sub_id)
    except StoreError as exc:
        raise HTTPException(503, f"the store could not be changed: {exc}") from None
    if not removed:
        raise not_found(f"no subscription {sub_id!r}")
    return DeletedOut(deleted=True)


# -- exports -------------------------------------------------------------------------------------

Since = Annotated[datetime | None, Query(description="only activity from this time (UTC) [default: all]")]
EXPORT_READ: dict[int | str, dict[str, Any]] = {**READ_ERRORS, **UNAVAILABLE}


def _export(module: str, what: str) -> Any:
    return optional_module(f"stormwatch.export.{module}", f"the {what} export")


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise bad(str(exc)) from None


def _json(doc: Any, filename: str) -> Response:
    return Response(json.dumps(doc, indent=1, default=str), media_type="application/json",
                    headers={"Content-Disposition": f'inline; filename="{filename}"'})


JSON_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {"schema": {"type": "object"}}}}}
TEXT_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}


@router.get("/export/stix", response_class=Response, responses={**EXPORT_READ, **JSON_DOC},
            dependencies=[Depends(read_guard)], tags=["exports"])
def export_stix(request: Request, since: Since = None) -> Response:
    """A STIX 2.1 bundle: indicators for attacking addresses and payload hashes, sightings with
    counts and first/last seen, vulnerabilities and courses of action from the knowledge base."""
    mod = _export("stix", "STIX")
    return _json(_run(mod.stix_bundle, get_engine(request), since=utc(since), kb=current_kb(request)),
                 "stormwatch-stix.json")


@router.get("/export/misp", response_class=Response, responses={**EXPORT_READ, **JSON_DOC},
            dependencies=[Depends(read_guard)], tags=["exports"])
def export_misp(request: Request, since: Since = None) -> Response:
    """A MISP event (JSON) of the attacking addresses, payload hashes and exploited vulnerabilities."""
    mod = _export("misp", "MISP")
    return _json(_run(mod.misp_event, get_engine(request), since=utc(since), kb=current_kb(request)),
                 "stormwatch-misp.json")


@router.get("/export/blocklist", response_class=Response,
            responses={**EXPORT_READ, 200: {"content": {"text/plain": {"schema": {"type": "string"}},
                                                        "text/csv": {"schema": {"type": "string"}}}}},
            dependencies=[Depends(read_guard)], tags=["exports"])
def export_blocklist(request: Request, since: Since = None,
                     fmt: Annotated[Literal["plain", "csv"], Query(alias="format")] = "plain",
                     expire_days: Annotated[int, Query(ge=1, le=365, description="days an entry stays listed")] = 7
                     ) -> Response:
    """The attacking addresses as a blocklist (one address a line, or CSV with first/last seen and
    expiry)."""
    mod = _export("blocklist", "blocklist")
    text = _run(mod.blocklist, get_engine(request), since=utc(since), fmt=fmt, expire_days=expire_days)
    return Response(str(text), media_type="text/csv; charset=utf-8" if fmt == "csv" else "text/plain; charset=utf-8")


@router.get("/export/firewall", response_class=Response, responses={**EXPORT_READ, **TEXT_DOC},
            dependencies=[Depends(read_guard)], tags=["exports"])
def export_firewall(request: Request, since: Since = None,
                    target: Annotated[Literal["nftables", "iptables", "pf", "ios"], Query()] = "nftables"
                    ) -> Response:
    """Perimeter rules that block TCP 135, 139, 445 and UDP 137-138, and the attacking addresses,
    for nftables, iptables, pf or a Cisco IOS ACL."""
    mod = _export("firewall", "firewall")
    text = _run(mod.firewall_rules, get_engine(request), target=target, since=utc(since))
    return Response(str(text), media_type="text/plain; charset=utf-8")
