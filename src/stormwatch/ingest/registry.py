"""The known input formats, in the order their sniffers are tried, and format detection."""

from __future__ import annotations

from stormwatch.errors import UnknownFormat
from stormwatch.ingest.asa import AsaReader
from stormwatch.ingest.base import Reader, Source
from stormwatch.ingest.binetflow import BinetflowReader
from stormwatch.ingest.dshield import DshieldJsonReader, DshieldTsvReader
from stormwatch.ingest.iptables import IptablesJournalReader, IptablesReader
from stormwatch.ingest.pcap import PcapReader
from stormwatch.ingest.pf import PfReader
from stormwatch.ingest.spool import SensorSpoolReader
from stormwatch.ingest.suricata import SuricataEveReader
from stormwatch.ingest.winfw import WindowsFirewallReader
from stormwatch.ingest.zeek import ZeekConnReader

# Most specific first: binary magic, then self-describing headers, then line shapes.
READERS: tuple[Reader, ...] = (
    PcapReader(),
    ZeekConnReader(),
    WindowsFirewallReader(),
    BinetflowReader(),
    SensorSpoolReader(),
    SuricataEveReader(),
    DshieldJsonReader(),
    IptablesJournalReader(),
    AsaReader(),
    PfReader(),
    IptablesReader(),
    DshieldTsvReader(),
)

FORMATS: dict[str, Reader] = {r.name: r for r in READERS}


def reader_for(name: str) -> Reader:
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMATS)}") from None


def detect(src: Source) -> Reader:
    """The first reader whose sniffer accepts the input's head; UnknownFormat names all tried."""
    head = src.head()
    tried = [r.name for r in READERS]
    if not head.strip():
        raise UnknownFormat(src.path, tried, "the input is empty")
    for r in READERS:
        if r.sniff(head):
            return r
    raise UnknownFormat(src.path, tried)
