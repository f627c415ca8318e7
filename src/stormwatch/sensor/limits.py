"""Named limits of the sensor, in the spirit of Zeek's SMB analyzer ``max_*`` options: every
buffer and every loop that attacker input can grow has one, and hitting it is a named
``session.anomaly`` (kind = the limit's name) followed by closing the connection.

:class:`SessionLimits` bounds one connection's :class:`~stormwatch.sensor.session.Session`
(sans-I/O, so it can only count bytes and messages, never time). :class:`ServerLimits` bounds what
only the transport can see: how many connections, from whom, for how long.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SessionLimits:
    """Per-connection limits; each field's name is the anomaly kind reported when it is hit."""

    #: Largest transport frame (NBSS / direct TCP payload). 128 KiB is what an SMB1 server accepts;
    #: EternalBlue's grooming frames are 64 KiB, so they fit and are recorded.
    max_frame: int = 131072
    #: AndX links followed in one SMB1 message (Zeek's default; clients chain two or three).
    max_andx_depth: int = 8
    #: Files and pipes open at once in one session (SMB1 FIDs and SMB2 FileIds together).
    max_open_files: int = 32
    #: Fragments of one DCE/RPC call (Metasploit's fragment evasion cuts a stub into many).
    max_dcerpc_fragments: int = 1024
    #: A reassembled DCE/RPC stub, or the data of the SMB1 transactions in progress together.
    max_stub_bytes: int = 1 << 20
    #: Exploit payload bytes kept (Emit.payload) per session; further findings are still emitted,
    #: without payload, once the budget is spent.
    max_bytes_kept: int = 4 << 20
    #: SMB / DCE-RPC requests answered in one session.
    max_requests: int = 10000
    #: SMB1 transactions (primary + secondaries) in progress at once; their bytes together are
    #: bounded by max_stub_bytes. EternalChampion's grooming leaves 122 open on a real Windows.
    max_transactions: int = 256
    #: Trees connected at once, and sessions set up at once.
    max_trees: int = 16
    max_logons: int = 16


@dataclass(frozen=True)
class ServerLimits:
    """Connection-level limits, enforced by the asyncio server."""

    max_sessions: int = 20000
    max_sessions_per_source: int = 64
    idle_timeout: float = 120.0  # seconds without a byte from the client
    max_session_time: float = 600.0  # seconds from connect, whatever the traffic
