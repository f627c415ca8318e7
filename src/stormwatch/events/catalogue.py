"""Event types, their fields and schema versions.

Every event has the common fields (``event``, ``ts``, ``sensor``, ``session``, ``src_ip``,
``src_port``, ``dst_ip``, ``dst_port``, ``proto``) and the fields of its own type. A field is
either a *column* (typed, stored in its own column of the ``events`` table because analytics
group or filter on it) or a *data* field (kept in the event's JSON ``data`` column).

Rules:
- adding a field to a type is backwards compatible and keeps the version; renaming, retyping or
  removing one bumps the type's ``version`` (stored with every event as ``schema_version``);
- identity fields (``sensor``, ``session``, addresses and ports) are bound by the producer, never
  taken from attacker-supplied content;
- ``docs/events.md`` documents every type and field; ``tests/test_events_docs.py`` fails when the
  two disagree.
"""

from __future__ import annotations

import pyarrow as pa

from stormwatch.events.fields import ARROW_TYPES, EventType, Field, FieldType
from stormwatch.events.payload_types import PAYLOAD_TYPES
from stormwatch.events.sensor_types import SENSOR_TYPES

COMMON_FIELDS: tuple[Field, ...] = (
    Field("event", FieldType.STRING, "Dotted event type name, e.g. `fw.connection`.", column=True),
    Field("ts", FieldType.TIMESTAMP, "When it happened, UTC, microsecond resolution.", column=True),
    Field("sensor", FieldType.STRING, "Name of the sensor or log source that saw it.", column=True),
    Field("session", FieldType.STRING, "Session or flow identifier, when the source has one.", column=True),
    Field("src_ip", FieldType.IP, "Source address (IPv4 or IPv6, canonical text).", column=True),
    Field("src_port", FieldType.PORT, "Source port; empty for ICMP and other port-less protocols.", column=True),
    Field("dst_ip", FieldType.IP, "Destination address (IPv4 or IPv6, canonical text).", column=True),
    Field("dst_port", FieldType.PORT, "Destination port; empty for ICMP and port-less protocols.", column=True),
    Field("proto", FieldType.STRING, "Transport protocol in lower case: `tcp`, `udp`, `icmp`, `icmp6`, "
          "or the IANA number as text for others.", column=True),
)

FW_CONNECTION = EventType(
    name="fw.connection",
    version=1,
    doc="One connection attempt seen by a firewall, a flow meter, an IDS or a packet capture. "
    "The unit of the port report (one *record* in DShield's terms, weighted by `count`).",
    fields=(
        Field("tcp_flags", FieldType.STRING, "TCP flags of the logged packet as letters in the order "
              "`CEUAPRSF` (e.g. `S` for a SYN); empty for other protocols or when unknown.", column=True),
        Field("action", FieldType.STRING, "What the device did: `accept`, `drop`, `reject`, `alert` or "
              "`log` (logged without a verdict).", column=True),
        Field("outcome", FieldType.STRING, "How the attempt ended when the source shows it: `answered` "
              "(the target replied), `reset` (refused with RST or ICMP unreachable), `unanswered`; empty "
              "when unknown.", column=True),
        Field("count", FieldType.INT, "How many identical attempts this record stands for (DShield "
              "collapses repeats into a count); 1 otherwise.", column=True),
        Field("format", FieldType.STRING, "Name of the reader that produced the event, e.g. `iptables`."),
        Field("rule", FieldType.STRING, "Rule, log prefix or access list that matched, e.g. `DSHIELDINPUT`."),
        Field("in_iface", FieldType.STRING, "Input interface."),
        Field("out_iface", FieldType.STRING, "Output interface."),
        Field("icmp_type", FieldType.INT, "ICMP type, for ICMP records."),
        Field("icmp_code", FieldType.INT, "ICMP code, for ICMP records."),
        Field("length", FieldType.INT, "IP length of the logged packet in bytes."),
        Field("ttl", FieldType.INT, "IP time to live (hop limit) of the logged packet."),
        Field("duration", FieldType.FLOAT, "Flow duration in seconds (flow sources)."),
        Field("packets", FieldType.INT, "Packets in the flow, both directions (flow sources)."),
        Field("bytes", FieldType.INT, "Bytes in the flow, both directions (flow sources)."),
        Field("conn_state", FieldType.STRING, "The source's own connection state, e.g. Zeek's `S0`, "
              "Argus' `S_RA`, Suricata's `new`/`closed`."),
        Field("label", FieldType.STRING, "Ground-truth label carried by labelled data sets (CTU, Slips)."),
        Field("frame", FieldType.INT, "Packet number in the capture (1-based), for pcap sources."),
    ),
)

IDS_ALERT = EventType(
    name="ids.alert",
    version=1,
    doc="A signature alert raised by an IDS (Suricata EVE `alert`).",
    fields=(
        Field("action", FieldType.STRING, "What the IDS did: `alert` (allowed) or `drop`/`reject`.", column=True),
        Field("count", FieldType.INT, "Always 1.", column=True),
        Field("format", FieldType.STRING, "Name of the reader that produced the event."),
        Field("signature", FieldType.STRING, "Signature message."),
        Field("signature_id", FieldType.INT, "Signature id (sid)."),
        Field("category", FieldType.STRING, "Signature classification."),
        Field("severity", FieldType.INT, "Signature severity (1 highest)."),
    ),
)

CATALOGUE: dict[str, EventType] = {t.name: t for t in (FW_CONNECTION, IDS_ALERT, *SENSOR_TYPES, *PAYLOAD_TYPES)}

# Columns of the `events` table, in order. `event_id` (the de-duplication hash) and
# `schema_version` are added by the store; `data` holds the non-column fields as JSON.
STORE_COLUMNS: tuple[Field, ...] = (
    *COMMON_FIELDS,
    FW_CONNECTION.fields[0],  # tcp_flags
    FW_CONNECTION.fields[1],  # action
    FW_CONNECTION.fields[2],  # outcome
    FW_CONNECTION.fields[3],  # count
)


def event_type(name: str) -> EventType:
    """The catalogue entry for ``name``; KeyError names the known types."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown event type {name!r}; known: {', '.join(sorted(CATALOGUE))}") from None


def arrow_schema() -> pa.Schema:
    """Schema of an event batch handed to the store: the store columns, the JSON ``data``, the
    ``schema_version`` and the reader's de-duplication ``key``."""
    cols = [pa.field(f.name, ARROW_TYPES[f.type]) for f in STORE_COLUMNS]
    cols += [
        pa.field("schema_version", pa.int16()),
        pa.field("data", pa.string()),
        pa.field("key", pa.string()),
    ]
    return pa.schema(cols)
