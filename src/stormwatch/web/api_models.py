"""Response and request models of the JSON API (``/api/v1``) and the ISC-compatible subset
(``/api``), so that the OpenAPI document states every field and its type.

The models mirror the library's records (``as_dict`` of :mod:`stormwatch.threat.level`,
:mod:`stormwatch.analytics.signals`, :mod:`stormwatch.analytics.campaigns` ...) field for field;
times are UTC in RFC 3339 (``2006-08-14T21:00:00Z``), days ``YYYY-MM-DD``. The ISC models use the field
names of the SANS ISC / DShield API (https://isc.sans.edu/api/, research notes
``early-warning-anchors.md`` section 1.3); docs/api.md has the table of them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema


def _rfc3339(ts: datetime) -> str:
    """A store time (naive UTC) as RFC 3339 with its zone, ``2006-08-14T21:00:00Z``."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat() + "Z"


# Times go out as RFC 3339 with "Z" (OpenAPI's date-time); naive times in are taken as UTC.
Utc = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str, when_used="json"),
                WithJsonSchema({"type": "string", "format": "date-time"})]


class ErrorOut(BaseModel):
    """Every 4xx/5xx body of ``/api/v1``: a sentence, or FastAPI's list of validation errors."""

    detail: str | list[dict[str, Any]]


# -- threat level --------------------------------------------------------------------------------

class ChangeOut(BaseModel):
    ts: Utc
    level: int
    previous: int
    actor: str = Field(description="`rules` or `analyst:NAME`")
    reasons: list[str]


class OverrideOut(BaseModel):
    level: int
    reason: str
    who: str
    set_at: Utc
    expires_at: Utc | None
    cleared_at: Utc | None
    cleared_by: str | None


class ReasonOut(BaseModel):
    rule: str
    level: int
    text: str
    why: str


class AssessmentOut(BaseModel):
    at: Utc
    level: int
    reasons: list[ReasonOut]
    notes: list[str]


class LevelOut(BaseModel):
    """The level in force at ``at``: 1 normal/green, 2 elevated/yellow, 3 high/orange, 4 extreme/red."""

    at: Utc
    level: int = Field(ge=1, le=4)
    name: str
    colour: str
    since: Utc | None = Field(description="when the level in force was set (None: never changed)")
    actor: str
    reasons: list[str] = Field(description="the reasons recorded with the change that set the level")
    override: OverrideOut | None
    history: list[ChangeOut] = Field(description="recorded changes, oldest first (the last `history` of them)")
    overrides: list[OverrideOut]
    assessment: AssessmentOut | None = Field(
        default=None, description="what the rules give at `at` (only with evaluate=true; nothing is recorded)")


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: int | str = Field(description="1-4, normal/elevated/high/extreme or green/yellow/orange/red",
                             examples=[3, "orange"])
    reason: str = Field(min_length=1, max_length=2000)
    by: str = Field(min_length=1, max_length=200, description="the analyst's name")
    for_hours: float | None = Field(default=None, gt=0, le=24 * 366,
                                    description="hours the override lasts (default: until cleared)")
    at: Utc | None = Field(default=None, description="when it starts (default: the level's clock, "
                                "the end of the hour of the latest event)")


class OverrideResult(BaseModel):
    level: int
    who: str
    reason: str
    set_at: Utc
    expires_at: Utc | None
    change: ChangeOut | None = Field(description="the change of the level in force it made, if any")


class ClearResult(BaseModel):
    cleared: OverrideOut | None = Field(description="the override that was in force (None: there was none)")
    level: int
    change: ChangeOut | None = Field(description="the change the rules made when they took over, if any")
    notes: list[str]


# -- signals -------------------------------------------------------------------------------------

class SurgeOut(BaseModel):
    kind: Literal["port", "exploit", "srcnet"]
    subject: str
    metric: str
    since: Utc
    detected_at: Utc
    baseline: float
    observed: float
    ratio: float | None
    strength: float
    threshold: float
    sensors: int
    sensors_total: int
    scope: Literal["local", "agreed"]
    active: bool
    method: str
    note: str | None = None


class SurgesOut(BaseModel):
    surges: list[SurgeOut]
    notes: list[str]
    start: Utc | None
    until: Utc | None
    sensors: int


class OutbreakOut(BaseModel):
    subject: str
    first_seen: Utc
    as_of: Utc
    sources: int
    sensors: int
    rate: float | None
    rate_stderr: float | None
    doubling_hours: float | None
    population: float | None
    population_low: float | None
    population_high: float | None
    decision: str
    decided_at: Utc | None
    note: str | None = None


class ScannerOut(BaseModel):
    src: str
    direction: str
    pattern: str
    method: str
    first_seen: Utc
    decided_at: Utc
    attempts_to_decision: int
    targets: int
    ports: list[int]
    failures: int
    successes: int
    sensors: int
    score: float


# -- ports and sources ---------------------------------------------------------------------------

class PortDayOut(BaseModel):
    day: date
    port: int
    records: int
    targets: int
    sources: int
    tcp: float | None = Field(description="percent of the records that are TCP")
    udp: float | None
    survival: float | None = Field(description="ISC's survival time in seconds: 86400 * targets / records")
    first_seen: Utc
    last_seen: Utc


class RankedPortOut(PortDayOut):
    rank: int


class TopPortsOut(BaseModel):
    day: date | None
    by: Literal["records", "sources", "targets"]
    ports: list[RankedPortOut]


class PortHistoryOut(BaseModel):
    port: int
    since: date | None
    until: date | None
    days: list[PortDayOut]


class SourcePortOut(BaseModel):
    port: int
    records: int


class SourceSummaryOut(BaseModel):
    rank: int
    src_ip: str
    records: int
    ports: int
    top_ports: list[SourcePortOut]
    targets: int
    first_seen: Utc
    last_seen: Utc


class TopSourcesOut(BaseModel):
    sources: list[SourceSummaryOut]


class SourceSensorOut(BaseModel):
    sensor: str
    events: int
    first_seen: Utc
    last_seen: Utc


class SourceTargetPortOut(BaseModel):
    port: int | None
    proto: str | None
    records: int
    targets: int
    first_seen: Utc
    last_seen: Utc


class EventCountOut(BaseModel):
    event: str
    events: int


class SourceExploitOut(BaseModel):
    vuln: str | None
    kind: str | None
    attempts: int
    first_seen: Utc
    last_seen: Utc


class SourceDayOut(BaseModel):
    day: date
    events: int
    records: int


class SourceDetailOut(BaseModel):
    """What one address did: every event with it as the source."""

    address: str
    events: int
    records: int = Field(description="fw.connection records, weighted by count")
    targets: int
    first_seen: Utc
    last_seen: Utc
    sensors: list[SourceSensorOut]
    ports: list[SourceTargetPortOut] = Field(description="destination ports, most records first (up to 100)")
    event_types: list[EventCountOut]
    exploits: list[SourceExploitOut]
    sessions: list[str] = Field(description="sensor sessions it opened, newest first (up to 100)")
    days: list[SourceDayOut]


# -- exploits, campaigns, advisories -------------------------------------------------------------

class ActivityOut(BaseModel):
    vuln: str
    cve: str | None
    attempts: int
    probes: int
    sources: int
    sensors: int
    sessions: int
    first_seen: Utc
    last_seen: Utc
    first_seen_ever: Utc
    probe_sources: int


class ExploitOut(ActivityOut):
    name: str | None = Field(description="the knowledge base's name (None: not in the knowledge base)")
    severity: str | None


class ExploitsOut(BaseModel):
    since: Utc
    until: Utc
    exploits: list[ExploitOut]


class CampaignOut(BaseModel):
    name: str
    id: str
    family: str | None
    aka: list[str]
    reason: str
    attacks: int
    sources: int
    sensors: list[str]
    first_seen: Utc
    last_seen: Utc
    exploits: list[str]
    variants: list[str]
    offers: list[str]
    daily: dict[str, int]
    week_attacks: int
    previous_week_attacks: int
    growth: float | None
    week_sources: int
    previous_week_sources: int
    sources_growth: float | None
    consensus: dict[str, str]


class CampaignSourceOut(BaseModel):
    src_ip: str
    attacks: int


class CampaignPayloadOut(BaseModel):
    sha256: str
    attacks: int


class CampaignAttackOut(BaseModel):
    ts: Utc
    sensor: str
    session: str | None
    src_ip: str
    variant: str
    payload_sha256: str | None


class CampaignDetailOut(CampaignOut):
    sources_list: list[CampaignSourceOut]
    payloads: list[CampaignPayloadOut]
    attacks_list: list[CampaignAttackOut]


class CampaignsOut(BaseModel):
    campaigns: list[CampaignOut]


class SeverityModel(BaseModel):
    rating: Literal["critical", "important", "moderate", "low"]
    cvss: float | None = Field(default=None, ge=0, le=10)


class MitigationModel(BaseModel):
    action: str
    reason: str


class KbEntryIn(BaseModel):
    """One knowledge-base entry, the fields of docs/kb.md (checked by ``threat.kb.parse_entry``)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(examples=["MS06-040"], description="bulletin id, MSyy-nnn")
    cves: list[str]
    name: str
    published: date
    ports: list[str] = Field(examples=[["139/tcp", "445/tcp"]])
    services: list[str]
    affected: list[str]
    patch: str = Field(examples=["KB921883"])
    severity: SeverityModel
    mitigations: list[MitigationModel]
    references: list[str]
    exploits: list[str] = []
    malware: list[str] = []
    detectors: list[str] = []


class KbEntryOut(KbEntryIn):
    source: str = Field(description="the file the entry came from (`stormwatch:...` is built in)")


class AdvisoryItemOut(ExploitOut):
    """A vulnerability under active exploitation."""


class AdvisoriesOut(BaseModel):
    at: Utc
    days: int
    advisories: list[AdvisoryItemOut]


class ExploitDayOut(BaseModel):
    day: date
    attempts: int
    probes: int
    sources: int
    sensors: int


class AdvisoryCampaignOut(BaseModel):
    name: str
    id: str
    family: str | None
    attacks: int
    sources: int
    first_seen: Utc
    last_seen: Utc
    growth: float | None
    offers: list[str]


class AdvisoryOut(BaseModel):
    vuln: KbEntryOut
    at: Utc
    since: Utc
    activity: ActivityOut | None
    daily: list[ExploitDayOut]
    surges: list[SurgeOut]
    outbreak: OutbreakOut | None
    infected_local: list[ScannerOut]
    actions: list[MitigationModel]
    level: int
    level_reasons: list[str]
    level_source: str
    notes: list[str]
    campaigns: list[AdvisoryCampaignOut]


# -- sessions and events -------------------------------------------------------------------------

class EventOut(BaseModel):
    ts: Utc
    event: str
    sensor: str
    session: str | None
    src_ip: str | None
    src_port: int | None
    dst_ip: str | None
    dst_port: int | None
    proto: str | None
    tcp_flags: str | None
    action: str | None
    outcome: str | None
    count: int
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    limit: int = Field(description="the page size used (requests above the server's maximum are capped)")
    offset: int | None
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; None on the last page")


class SessionOut(BaseModel):
    session: str
    started: Utc
    sensor: str | None
    src_ip: str | None
    dst_port: int | None
    service: str | None
    native_os: str | None
    pipes: list[str] | None
    operations: list[str] | None
    vulns: list[str] | None
    events: int
    bytes_in: int | None
    reason: str | None


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class SessionEventsOut(BaseModel):
    session: str
    sensor: str
    src_ip: str | None
    started: Utc
    ended: Utc
    events: list[EventOut]


# -- knowledge base and subscriptions ------------------------------------------------------------

class KbListOut(BaseModel):
    entries: list[KbEntryOut]
    operator_file: str | None = Field(description="where entries added through the API are kept")


class SubscriptionIn(BaseModel):
    """A subscription (``stormwatch.notify.subscriptions``); its fields are passed on as given."""

    model_config = ConfigDict(extra="allow")

    channel: Literal["webhook", "email", "syslog"]
    target: str = Field(min_length=1, max_length=2000,
                        description="URL (webhook), address (email) or host:port (syslog)")


class SubscriptionCreated(BaseModel):
    id: str


class SubscriptionsOut(BaseModel):
    subscriptions: list[dict[str, Any]] = Field(description="secrets are never returned")


class DeletedOut(BaseModel):
    deleted: bool
