"""The MS17-010 detectors (stormwatch.detect.smb1) and the session's answers to the MS17-010
family, against real captures with an independent oracle:

* the client side of every SMB connection of metasploit-ms017-010-win7x64, wannacry-eternalsafety
  and eternalchampion (all from 0xl3x1/zeek-EternalSafety, BSD-3-Clause) goes through a Session;
  the exploit families found must be, connection by connection, the ones the EternalSafety Zeek
  package names in its expected notice.log for the same trace (copied beside the captures);
* the PeekNmPipe probes, which EternalSafety does not report, must be found exactly where the
  client sends the bytes of ET Open rule 2025649 ("ETERNALBLUE Probe MS17-010");
* the session's answers must be, message by message, those the real unpatched Windows 7 sent in
  the same captures (command, status, MID, UID, TID);
* nothing is found in the benign reference traces; suricata-verify's smb-filename trace turns out
  to carry EternalChampion and EternalBlue itself, and is checked as such.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path

import pytest

from capture_helpers import tcp_payloads
from stormwatch.detect import smb1 as ms17
from stormwatch.protocols.errors import ProtocolError
from stormwatch.protocols.netbios import DirectTcpFramer, NbssFramer
from stormwatch.protocols.smb1 import (
    Command,
    Header,
    NtTransactRequest,
    Transaction2Request,
    TransactionRequest,
    TransactionSecondaryRequest,
    WriteAndXRequest,
    decode_smb1,
)
from stormwatch.sensor.limits import SessionLimits
from stormwatch.sensor.outputs import Emit, Send
from stormwatch.sensor.persona import generate
from stormwatch.sensor.session import Session

Conn = tuple[str, int, str, int]

#: EternalSafety notice → our detector family. ViolationNtRename and Sensitive_Signature match
#: bytes of NT_TRANSACT (its regex also takes function 0, EternalBlue's) and come with EternalBlue
#: or EternalChampion; DoublePulsar is the *server's* MID+16 answer, which a capture of an
#: infected host has and the sensor, an uninfected host, never gives.
FAMILY_OF_NOTICE = {"EternalSafety::EternalBlue": "eternalblue", "EternalSafety::EternalChampion": "eternalchampion",
                    "EternalSafety::EternalSynergy": "eternalromance", "EternalSafety::ViolationTx2Cmd": "doublepulsar"}
TRACES = {"metasploit-ms017-010-win7x64.pcap": "metasploit-ms017-010.notice.log",
          "wannacry-eternalsafety.pcap": "wannacry.notice.log", "eternalchampion.pcap": "eternalchampion.notice.log"}
#: ET Open 2025649: Setup PeekNmPipe (0x23), FID 0, ByteCount 7, "\PIPE\".
ET_2025649 = bytes.fromhex("23000000" "0700" "5c504950455c00")


def notices(path: Path) -> dict[Conn, set[str]]:
    out: dict[Conn, set[str]] = defaultdict(set)
    with path.open(encoding="utf-8") as f:
        for row in csv.reader((line for line in f if not line.startswith("#")), delimiter="\t"):
            out[(row[0], int(row[1]), row[2], int(row[3]))].add(row[5])
    return out


def run(stream: bytes, template: str = "win7", service: str = "smb") -> list[Emit]:
    s = Session(service, generate(template, random.Random(5)), SessionLimits(), random.Random(5), lambda: 1.5e9)
    return [o for o in s.receive_data(stream) if isinstance(o, Emit)]


def detectors(events: list[Emit]) -> list[str]:
    return [e.fields["detector"] for e in events if e.event == "exploit.attempt" and e.fields["vuln"] == "MS17-010"]


def client_streams(path: Path, port: int = 445) -> dict[Conn, bytes]:
    return {k: v for k, v in tcp_payloads(path).items() if k[3] == port}


@pytest.mark.parametrize("trace", sorted(TRACES))
@pytest.mark.parametrize("template", ["win7", "win2000"])
def test_families_match_eternalsafety_per_connection(shared_data: Path, trace: str, template: str) -> None:
    expected = notices(shared_data / "expected/eternalsafety" / TRACES[trace])
    streams = client_streams(shared_data / "pcap/exploits" / trace)
    assert set(expected) <= set(streams), "every noticed connection is in the capture"
    found_any = 0
    for conn, stream in streams.items():
        found = detectors(run(stream, template))
        families = {d.split(".")[0] for d in found} - {"ms17_010", "smb1"}
        want = {FAMILY_OF_NOTICE[n] for n in expected.get(conn, ()) if n in FAMILY_OF_NOTICE}
        assert families == want, (conn, found, expected.get(conn))
        if "EternalSafety::DoublePulsar" in expected.get(conn, ()):
            assert "doublepulsar.ping" in found
        if "smb1.trans_type_confusion" in found:
            assert want & {"eternalblue", "eternalchampion", "eternalromance"}
        found_any += bool(found)
    assert found_any


@pytest.mark.parametrize("trace", sorted(TRACES))
def test_peeknmpipe_probe_exactly_where_et_2025649_matches(shared_data: Path, trace: str) -> None:
    streams = client_streams(shared_data / "pcap/exploits" / trace)
    probed = {c for c, s in streams.items() if "ms17_010.peeknmpipe_fid0" in detectors(run(s))}
    assert probed == {c for c, s in streams.items() if ET_2025649 in s}
    if trace.startswith("wannacry"):
        assert len(probed) == 6  # each infected host checks each of its three neighbours once


def test_evidence_and_payload_of_eternalblue(shared_data: Path) -> None:
    streams = client_streams(shared_data / "pcap/exploits/metasploit-ms017-010-win7x64.pcap")
    [attempt] = [e for e in run(streams[("192.168.198.224", 37063, "192.168.198.225", 445)])
                 if e.event == "exploit.attempt"]
    f = attempt.fields
    assert (f["vuln"], f["cve"], f["kind"], f["detector"]) == (
        "MS17-010", "CVE-2017-0144", "exploit", "eternalblue.nt_trans2_confusion")
    assert f["evidence"]["primary_total_data_count"] == 66512 and f["evidence"]["large_total_data"] is True
    assert f["confidence"] == 0.95
    assert attempt.payload is not None and len(attempt.payload) == 976 + 4096  # the FEA list's first pieces


def _replies(data: bytes) -> list[tuple[int, int, int, int, int]]:
    out = []
    for frame in DirectTcpFramer(1 << 24).feed(data):
        h = decode_smb1(frame.payload).header
        out.append((h.command, h.status, h.mid, h.uid, h.tid))
    return out


@pytest.mark.parametrize(("trace", "conn"), [
    ("metasploit-ms017-010-win7x64.pcap", ("192.168.198.224", 37063, "192.168.198.225", 445)),  # EternalBlue
    ("wannacry-eternalsafety.pcap", ("192.168.116.149", 49377, "192.168.116.143", 445)),  # PeekNmPipe probe
    ("wannacry-eternalsafety.pcap", ("192.168.116.149", 49427, "192.168.116.143", 445)),  # DoublePulsar ping
])
@pytest.mark.parametrize("template", ["win7", "win2000"])
def test_answers_are_those_of_the_unpatched_windows_7(shared_data: Path, trace: str, conn: Conn,
                                                       template: str) -> None:
    streams = tcp_payloads(shared_data / "pcap/exploits" / trace)
    s = Session("smb", generate(template, random.Random(5)), SessionLimits(), random.Random(5), lambda: 1.5e9)
    ours = b"".join(o.data for o in s.receive_data(streams[conn]) if isinstance(o, Send))
    real = streams[(conn[2], conn[3], conn[0], conn[1])]
    assert _replies(ours) == _replies(real)


def test_smb_filename_reference_trace_carries_ms17_010(shared_data: Path) -> None:
    """suricata-verify's smb-filename input (a 2018 capture filed as a PsExec-like session) holds
    EternalChampion's NT_RENAME race on three connections and EternalBlue after a PeekNmPipe probe
    on a fourth, byte for byte the patterns of the EternalSafety traces."""
    streams = client_streams(shared_data / "pcap/smb-reference/suricata-verify-smb-filename/input.pcap")
    found = {c[1]: sorted(set(detectors(run(s)))) for c, s in streams.items() if detectors(run(s))}
    assert found == {
        49193: ["eternalchampion.completed_trans_race"],
        49452: ["eternalchampion.completed_trans_race"],
        49453: ["eternalchampion.completed_trans_race", "smb1.trans_type_confusion"],
        49455: ["eternalblue.nt_trans2_confusion", "ms17_010.peeknmpipe_fid0"],
    }


BENIGN = ["mapi.pcap", "smb1.pcap", "raw_ntlm_in_smb.pcap", "smb1-logoff-andx-advance.pcap",
          "cifs_negotiate_lanman.pcap", "dssetup_DsRoleGetPrimaryDomainInformation_standalone_workstation.cap",
          "smb1_transaction_request.pcap", "smb1_transaction_response.pcap", "smb1_transaction2_request.pcap",
          "smb1_transaction_secondary_request.pcap", "smb1_transaction2_secondary_request.pcap",
          "suricata-verify-output-eve-smb-01/input.pcap", "suricata-verify-smb-named-pipe-ascii/input.pcap",
          "suricata-verify-smb1-02/smb1_osx.pcap"]


@pytest.mark.parametrize("trace", BENIGN)
def test_no_ms17_010_in_benign_traces(shared_data: Path, trace: str) -> None:
    """The detectors alone, over every SMB1 message of both directions (a server's answers must
    not trigger anything either), and the whole session over the client side."""
    served = 0
    for (_, sport, _, dport), data in tcp_payloads(shared_data / "pcap/smb-reference" / trace).items():
        if {sport, dport} & {445, 139}:
            framer = DirectTcpFramer(1 << 24) if 445 in (sport, dport) else NbssFramer(1 << 24)
            state = ms17.Ms17010State()
            try:
                frames = framer.feed(data)
            except ProtocolError:
                frames = []  # a capture that starts mid-stream; the session test covers refusals
            for frame in frames:
                try:
                    msg = decode_smb1(frame.payload)
                except ProtocolError:
                    continue  # SMB2, or what the codec refuses
                for body in msg.commands:
                    assert ms17.inspect(state, msg.header, body) == []
        if dport in (445, 139):
            assert not detectors(run(data, "winxp", "smb" if dport == 445 else "netbios-ssn"))
            served += 1
    assert served


# -- the detectors on their own ----------------------------------------------------------------

def _h(command: int, mid: int = 64) -> Header:
    return Header(command, tid=2048, uid=2048, mid=mid, pid_low=0xFEFF)


def _trans(total_data: int, data: bytes = b"", *, subcommand: int = 0x26, fid: int = 0x4001) -> TransactionRequest:
    return TransactionRequest(0, total_data, 0, 1024, 0, 0, 0, 0, 0, len(data), 84, (subcommand, fid), "\\PIPE\\", b"",
                              data)


def _secondary(command: int, displacement: int, data: bytes, total: int, fid: int | None = None
               ) -> TransactionSecondaryRequest:
    return TransactionSecondaryRequest(command, 0, total, 0, 0, 0, len(data), 70, displacement, fid, b"", data)


def test_eternalromance_write_andx_inside_a_transaction() -> None:
    state = ms17.Ms17010State()
    assert ms17.inspect(state, _h(Command.TRANSACTION), _trans(4096, b"x" * 100)) == []
    write = WriteAndXRequest(0x4001, 0, 0, 0, 0, 16, 64, None, 17, b"\x41" * 16)
    [f] = ms17.inspect(state, _h(Command.WRITE_ANDX), write)
    assert (f.detector, f.kind, f.cve) == ("eternalromance.writex_interleave", "exploit", "CVE-2017-0145")
    assert f.payload == b"\x41" * 16
    # another MID: an ordinary write beside a transaction in progress
    assert ms17.inspect(ms17.Ms17010State(), _h(Command.WRITE_ANDX, mid=9), write) == []


def test_displacement_beyond_the_totals() -> None:
    state = ms17.Ms17010State()
    ms17.inspect(state, _h(Command.TRANSACTION), _trans(100, b"a" * 10))
    assert ms17.inspect(state, _h(Command.TRANSACTION_SECONDARY),
                        _secondary(Command.TRANSACTION_SECONDARY, 10, b"b" * 50, 100)) == []
    [f] = ms17.inspect(state, _h(Command.TRANSACTION_SECONDARY),
                       _secondary(Command.TRANSACTION_SECONDARY, 0x2000, b"c" * 8, 100))
    assert f.detector == "eternalromance.displacement_overflow" and f.evidence["data_displacement"] == 0x2000


def test_type_confusion_other_than_eternalblue() -> None:
    state = ms17.Ms17010State()
    ms17.inspect(state, _h(Command.TRANSACTION), _trans(100, b"a" * 10))
    [f] = ms17.inspect(state, _h(Command.NT_TRANSACT_SECONDARY),
                       _secondary(Command.NT_TRANSACT_SECONDARY, 10, b"b" * 8, 100))
    assert f.detector == "smb1.trans_type_confusion" and f.evidence["primary"] == "TRANSACTION"


def test_legitimate_secondaries_are_silent() -> None:
    state = ms17.Ms17010State()
    primary = Transaction2Request(10, 300, 10, 1024, 0, 0, 0, 10, 68, 100, 80, (0x01,), b"p" * 10, b"d" * 100)
    assert ms17.inspect(state, _h(Command.TRANSACTION2), primary) == []
    for displacement in (100, 200):
        assert ms17.inspect(state, _h(Command.TRANSACTION2_SECONDARY),
                            _secondary(Command.TRANSACTION2_SECONDARY, displacement, b"d" * 100, 300, 0xFFFF)) == []
    assert not state.in_progress and list(state.completed) == [ms17.key_of(_h(0))]


@pytest.mark.parametrize(("timeout", "detector", "kind"), [
    (0x0134EE00, "doublepulsar.ping", "probe"),   # 0x00 + 0xee + 0x34 + 0x01 = 0x123
    (0x000000C8, "doublepulsar.exec", "exploit"),
    (0x00000077, "doublepulsar.kill", "probe"),
    (0x00000001, "doublepulsar.unknown", "probe"),
])
def test_doublepulsar_opcodes(timeout: int, detector: str, kind: str) -> None:
    body = Transaction2Request(12, 4096, 1, 0, 0, 0, timeout, 12, 66, 4096, 78, (0x0E,), bytes(12), b"\x5a" * 4096)
    state = ms17.Ms17010State()
    [f] = ms17.inspect(state, _h(Command.TRANSACTION2, 65), body)
    assert (f.detector, f.kind) == (detector, kind)
    assert (f.payload is not None) == (kind == "exploit")
    assert ms17.inspect(state, _h(Command.TRANSACTION2, 66), body) == []  # once per connection


def test_nt_transact_rename_race_needs_a_completed_nt_transact() -> None:
    state = ms17.Ms17010State()
    rename = NtTransactRequest(0, 0, 16, 0, 0, 0, 0, 16, 84, 5, (), b"", b"r" * 16)
    assert ms17.inspect(state, _h(Command.NT_TRANSACT), rename) == []
    [f] = ms17.inspect(state, _h(Command.NT_TRANSACT_SECONDARY),
                       _secondary(Command.NT_TRANSACT_SECONDARY, 0, b"s" * 4, 4))
    assert (f.detector, f.cve, f.confidence) == ("eternalchampion.completed_trans_race", "CVE-2017-0146", 0.95)
    # a TRANSACTION_SECONDARY after a complete TRANSACTION (Zeek's synthetic traces) is not the race
    other = ms17.Ms17010State()
    ms17.inspect(other, _h(Command.TRANSACTION), _trans(4, b"full"))
    assert ms17.inspect(other, _h(Command.TRANSACTION_SECONDARY),
                        _secondary(Command.TRANSACTION_SECONDARY, 0, b"late", 4)) == []


def test_state_stays_bounded() -> None:
    state = ms17.Ms17010State()
    for mid in range(5000):
        incomplete = NtTransactRequest(0, 0, 4304, 0, 0, 0, 0, 0, 0, 5, (), b"", b"")
        ms17.inspect(state, _h(Command.NT_TRANSACT, mid), incomplete)
        ms17.inspect(state, _h(Command.TRANSACTION, mid + 10000), _trans(1, b"x"))
    assert len(state.in_progress) == ms17.MAX_IN_PROGRESS and len(state.completed) == ms17.MAX_COMPLETED


def test_responses_are_never_judged() -> None:
    reply = Header(Command.TRANSACTION, flags=0x80, mid=64)
    assert ms17.inspect(ms17.Ms17010State(), reply, _trans(0, subcommand=0x23, fid=0)) == []
    assert ms17.doublepulsar_opcode(0x0134EE00) == 0x23
