"""What a sans-I/O :class:`~stormwatch.sensor.session.Session` asks its transport to do.

In the style of mitmproxy's layer commands: the session never touches a socket; every call to
``receive_data`` returns a list of outputs that the transport (the asyncio server, or a pcap
replay, or a test) carries out in order:

* :class:`Send` — write these bytes to the client;
* :class:`Emit` — record an event of the catalogue (``stormwatch.events.CATALOGUE``) with only the
  event type's own fields; the transport adds the identity fields (sensor, session id, addresses,
  timestamp, proto) and, for ``exploit.attempt``, stores ``payload`` by SHA-256 and adds
  ``payload_sha256`` / ``payload_size``;
* :class:`Close` — close the connection after sending what precedes, giving the reason that the
  transport reports in ``session.closed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Send:
    """Bytes to write to the client."""

    data: bytes


@dataclass(frozen=True)
class Emit:
    """An event of the catalogue, WITHOUT identity fields (only the type's own fields)."""

    event: str  # e.g. "smb.negotiate"
    fields: dict[str, Any]
    payload: bytes | None = None  # exploit.attempt: the exploit argument to keep


@dataclass(frozen=True)
class Close:
    """Close the connection after sending what precedes."""

    reason: str  # "anomaly", "limit", "client", ...


Output = Send | Emit | Close
