"""Response models of the ISC/DShield-compatible API (:mod:`stormwatch.web.isc_api`): ISC's own
field names, so that scripts written for isc.sans.edu/api read them unchanged."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class IscError(BaseModel):
    """ISC's error body, e.g. ``{"error": "bad port number"}``."""

    error: str


class IscInfocon(BaseModel):
    status: Literal["green", "yellow", "orange", "red"]


class IscPortData(BaseModel):
    date: str
    records: int
    targets: int
    sources: int
    tcp: int = Field(description="percent of the records that are TCP")
    udp: int
    datein: str
    portin: int


class IscService(BaseModel):
    service: str | None
    name: str | None


class IscServices(BaseModel):
    udp: IscService
    tcp: IscService


class IscPort(BaseModel):
    number: int
    data: IscPortData
    services: IscServices


class IscPortDate(BaseModel):
    number: int
    data: IscPortData


class IscHistoryDay(BaseModel):
    date: str
    records: int
    targets: int
    sources: int
    tcp: int
    udp: int


class IscTopPort(BaseModel):
    rank: int
    targetport: int
    records: int
    targets: int
    sources: int


class IscTopIp(BaseModel):
    rank: int
    source: str
    reports: int
    targets: int


class IscNumbered(RootModel[dict[str, IscHistoryDay | IscTopPort | str | int]]):
    """ISC's list shape: rows under the keys ``"0"``, ``"1"`` ... beside scalar keys
    (``date``/``limit`` for topports, ``startdate``/``enddate``/``port`` for porthistory)."""


class IscIp(BaseModel):
    number: str
    count: int | None = Field(description="reports (records) from the address")
    attacks: int | None = Field(description="distinct targets")
    maxdate: str | None
    mindate: str | None
    updated: str | None
    comment: str | None = None
    maxrisk: int | None = None
    asabusecontact: str | None = None
    as_: int | None = Field(default=None, alias="as", serialization_alias="as")
    asname: str | None = None
    ascountry: str | None = None
    assize: int | None = None
    network: str | None = None

    model_config = ConfigDict(populate_by_name=True)


class IscIpOut(BaseModel):
    ip: IscIp
