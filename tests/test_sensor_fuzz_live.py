"""Fuzz whole sessions against the live sensor: whatever bytes arrive, on either framing, the
sensor ends that session cleanly (session.closed last, never an internal error) and keeps serving
real clients."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from impacket.smbconnection import SMBConnection

from stormwatch.sensor.persona import generate
from test_sensor_clients import LiveSensor


def _smb1_negotiate(dialects: tuple[bytes, ...] = (b"NT LM 0.12",)) -> bytes:
    """SMB_COM_NEGOTIATE ([MS-CIFS] 2.2.4.52.1): header, WordCount 0, the dialect strings."""
    header = (b"\xffSMB" + bytes([0x72])  # protocol, command NEGOTIATE
              + struct.pack("<I", 0)  # status
              + bytes([0x18]) + struct.pack("<H", 0xC853)  # flags, flags2 (unicode, NT status, ext sec)
              + b"\x00" * 12  # pid high, signature, reserved
              + struct.pack("<HHHH", 0, 0xFEFF, 0, 1))  # tid, pid, uid, mid
    body = b"".join(b"\x02" + d + b"\x00" for d in dialects)
    return header + b"\x00" + struct.pack("<H", len(body)) + body


def _direct(msg: bytes) -> bytes:
    return struct.pack(">I", len(msg)) + msg  # 445: zero byte + 24-bit length


def _nbss(msg: bytes) -> bytes:
    return struct.pack(">BBH", 0, 0, len(msg)) + msg


NBSS_REQUEST = bytes.fromhex("81000044") + b" " + b"CKFDENECFDEFFCFGEFFCCACACACACACA" + b"\x00" + b" " + \
    b"EMEJENFEEFFDEFFCFGEFFCCACACACAAA" + b"\x00"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSensor]:
    s = LiveSensor(tmp_path_factory.mktemp("fuzz"), generate("win2000"))
    yield s
    s.stop()


def _exchange(port: int, data: bytes, chunks: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.settimeout(0.5)
        pos = 0
        for n in [*chunks, len(data)]:
            piece = data[pos:pos + max(n, 1)]
            if not piece:
                break
            try:
                sock.sendall(piece)
            except OSError:  # the sensor closed on us: that is an allowed ending
                return
            pos += len(piece)
        try:
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:  # closed by the sensor, or no answer within the timeout
            return


def _mutate(raw: bytes, at: int, value: int) -> bytes:
    at %= len(raw)
    return raw[:at] + bytes([value]) + raw[at + 1:]


# a session is a list of SMB messages (framed correctly for the port) or raw bytes after the first
messages = st.one_of(
    st.binary(max_size=300),
    st.builds(_mutate, st.just(_smb1_negotiate()), st.integers(0, 200), st.integers(0, 255)),
    st.builds(lambda tail: _smb1_negotiate() + tail, st.binary(max_size=120)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgs=st.lists(messages, min_size=1, max_size=4), garbage=st.binary(max_size=64),
       chunks=st.lists(st.integers(1, 64), max_size=6), netbios=st.booleans())
def test_random_sessions_end_cleanly(live: LiveSensor, msgs: list[bytes], garbage: bytes, chunks: list[int],
                                     netbios: bool) -> None:
    frame = _nbss if netbios else _direct
    data = (NBSS_REQUEST if netbios else b"") + frame(_smb1_negotiate()) + b"".join(frame(m) for m in msgs) + garbage
    _exchange(live.port["netbios-ssn" if netbios else "smb"], data, chunks)


def test_sensor_still_serves_and_every_session_ended_well(live: LiveSensor, tmp_path: Path) -> None:
    conn = SMBConnection("*SMBSERVER", "127.0.0.1", sess_port=live.port["smb"])
    conn.login("", "")
    assert any(s["shi1_netname"][:-1] == "IPC$" for s in conn.listShares())
    conn.close()
    live.wait_closed(len(live.events("session.connect")))
    by_session: dict[str, list[str]] = {}
    for r in live.records:
        by_session.setdefault(r["session"], []).append(r["event"])
    assert by_session, "no session recorded"
    for events in by_session.values():
        assert events[0] == "session.connect" and events[-1] == "session.closed"
    kinds = {r.get("kind") for r in live.events("session.anomaly")}
    assert "internal_error" not in kinds
