"""The JSON API of stormwatch's own resources, under ``/api/v1`` (docs/api.md).

``router`` (prefix ``/api/v1``) gathers the resource routers:

- :mod:`stormwatch.web.api_level` — the threat level, its reasons and history; analyst overrides;
- :mod:`stormwatch.web.api_read` — surges, ports, sources, exploits, campaigns;
- :mod:`stormwatch.web.api_events` — sessions and events (filters, cursor or offset paging);
- :mod:`stormwatch.web.api_kb` — the knowledge base (operator entries) and advisories;
- :mod:`stormwatch.web.api_outputs` — notification subscriptions and exports.

The ISC/DShield-compatible subset lives apart, under ``/api`` (:mod:`stormwatch.web.isc_api`),
because it keeps ISC's paths, field names and formats. Versioning: a change that removes or
renames a field gets ``/api/v2``; fields are only ever added under ``/api/v1``.

Access: reads go through ``deps.read_guard`` (open unless the server is configured otherwise);
changes need ``Authorization: Bearer TOKEN`` (``deps.require_token``) and a writable store
(``deps.require_writable``). Every route is a plain ``def``: FastAPI runs it in its thread pool,
so a slow query never stalls the event loop, and the store gives each query its own cursor, so
reads go on while an ingest writes (DuckDB MVCC: a reader sees the last committed batch).
"""

from __future__ import annotations

from fastapi import APIRouter

from stormwatch.web import api_events, api_kb, api_level, api_outputs, api_read
from stormwatch.web.api_common import ApiRoute

PREFIX = "/api/v1"

router = APIRouter(route_class=ApiRoute, prefix=PREFIX)
for _sub in (api_level.router, api_read.router, api_events.router, api_kb.router, api_outputs.router):
    router.include_router(_sub)
