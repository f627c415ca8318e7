"""The NetBIOS name service on UDP 137 (RFC 1002 4.2), as the persona's Windows answers it.

* NAME QUERY for one of the persona's names (its host name as workstation <00> or server <20>,
  or its workgroup <00>, a group name): POSITIVE NAME QUERY RESPONSE with the sensor's address;
  for any other name a NEGATIVE response if the query was unicast, silence if broadcast (a
  Windows host only answers broadcasts for names it owns).
* NODE STATUS (NBSTAT) for ``*`` or the host name: the names table of a Windows host with file
  sharing (host<00>, workgroup<00> group, host<20>) and the persona's MAC as the unit id, which
  ``nbtstat -A`` and nmap's nbstat print.

Every query is an ``nbns.query`` event; a datagram that does not parse is a ``session.anomaly``
and gets no answer; responses and other opcodes are ignored.
"""

from __future__ import annotations

import ipaddress

from stormwatch.protocols.errors import ProtocolError
from stormwatch.protocols.netbios import (
    FLAG_B,
    NamePacket,
    decode_name_packet,
    encode_name_query_response,
    encode_negative_name_query_response,
    encode_node_status_response,
    standard_node_names,
)
from stormwatch.sensor.context import anomaly_for
from stormwatch.sensor.outputs import Emit, Output
from stormwatch.sensor.persona import Persona


def nbns_answer(packet: bytes, persona: Persona, addr: str) -> tuple[list[Output], bytes | None]:
    """Events for one UDP 137 datagram and the reply datagram (None: stay silent). ``addr`` is
    the sensor's own IPv4 address, announced in positive name query responses (when it is not an
    announceable IPv4 address, a query for the persona's names gets no answer)."""
    try:
        request = decode_name_packet(packet)
    except ProtocolError as exc:
        a = anomaly_for(exc, "nbns")
        return [Emit("session.anomaly", {"kind": a.kind, "detail": a.detail, "field": a.field,
                                         "offset": a.offset})], None
    if not request.is_query:
        return [], None
    q = request.questions[0]
    name = q.name.name.upper()
    outputs: list[Output] = [Emit("nbns.query", {"name": f"{q.name.name}<{q.name.suffix:02X}>",
                                                 "qtype": "NBSTAT" if q.is_node_status else "NB"})]
    host, group = persona.host_name.upper(), persona.domain.upper()
    if q.is_node_status:
        if name in ("*", host):
            names = standard_node_names(host, group)
            return outputs, encode_node_status_response(request, names, persona.mac_bytes)
        return outputs, None
    ours = (name == host and q.name.suffix in (0x00, 0x20)) or (name == group and q.name.suffix == 0x00)
    if ours:
        if not _ipv4(addr):
            return outputs, None
        return outputs, encode_name_query_response(request, [addr], group=name == group and name != host,
                                                   node_type=0)
    return outputs, _negative(request)


def _ipv4(addr: str) -> bool:
    """Whether ``addr`` is an IPv4 address that can be announced (not 0.0.0.0, a wildcard bind)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.version == 4 and not ip.is_unspecified


def _negative(request: NamePacket) -> bytes | None:
    return None if request.flags & FLAG_B else encode_negative_name_query_response(request)

