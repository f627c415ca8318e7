"""MS17-010 family detectors over decoded SMB1 requests: the PeekNmPipe vulnerability check,
DoublePulsar's TRANSACTION2 channel, EternalBlue, EternalChampion and EternalRomance/Synergy.

Every decision is a pure function of one decoded request and :class:`Ms17010State`, the little a
connection must remember: the transactions in progress and the ones recently completed, each
keyed by (PID, MID, TID, UID) as [MS-CIFS] 3.3.5.2 keys them ("all messages that are part of the
same transaction MUST have the same UID, TID, PID, and MID"). The keys are taken from the headers
as sent, whatever the sensor answered, so the same findings come out of a live session and out of
a replayed capture (whose UIDs and TIDs are some other server's).

What is recognised, and why it is the exploit (the invariants follow Zeek's EternalSafety package,
whose notices are this module's oracle on the real captures):

* ``ms17_010.peeknmpipe_fid0`` (probe, [MS-CIFS] 2.2.5.5): TRANSACTION ``\\PIPE\\`` with Setup
  PeekNmPipe (0x23) on FID 0, a handle no server ever hands out. An unpatched server answers
  STATUS_INSUFF_SERVER_RESOURCES, a patched one STATUS_ACCESS_DENIED / INVALID_HANDLE: nmap's
  smb-vuln-ms17-010, Metasploit's scanner and WannaCry send exactly this (ET 2025649).
* ``doublepulsar.*`` (TRANSACTION2 subcommand SESSION_SETUP 0x0E, reserved and unimplemented by
  Windows, [MS-CIFS] 2.2.6): the implant's control channel. Its opcode is hidden in Timeout: the
  low byte of ``t + (t >> 8) + (t >> 16) + (t >> 24)``: 0x23 ping (probe), 0xC8 exec (the data is
  the XOR-encrypted payload: an exploit, kept), 0x77 kill.
* ``eternalblue.nt_trans2_confusion`` (exploit): a TRANSACTION2_SECONDARY continuing an
  NT_TRANSACT. srv.sys finds the transaction by its key alone and treats the 32-bit-sized
  NT_TRANSACT as a TRANSACTION2, so the FEA list of more than 64 KiB that EternalBlue declares in
  the NT_TRANSACT's TotalDataCount overflows the 16-bit size computation (CVE-2017-0144).
* ``eternalchampion.completed_trans_race`` (exploit): an NT_TRANSACT_SECONDARY for an NT_TRANSACT
  that its primary already completed (EternalChampion sends NT_TRANSACT RENAME with every byte, and
  the secondary in the same segment, racing the transaction's execution; CVE-2017-0146). This is
  EternalSafety's signature for it, decoded instead of pattern-matched.
* ``eternalromance.writex_interleave`` (exploit): a WRITE_ANDX inside a transaction in progress
  (same key), EternalRomance/EternalSynergy's type confusion (CVE-2017-0143/0145).
* ``eternalromance.displacement_overflow`` (exploit): a secondary whose displacement plus count
  runs past the totals of its primary: a write outside the transaction buffer.
* ``smb1.trans_type_confusion`` (exploit): any other secondary of another type than its primary.

Each detector reports once per connection (as EternalSafety raises each notice once per
connection); the evidence says which message and which values decided.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from stormwatch.detect.finding import Finding, Kind
from stormwatch.protocols.smb1 import (
    Command,
    Header,
    NtTransactFunction,
    NtTransactRequest,
    Smb1Body,
    Trans2Subcommand,
    Transaction2Request,
    TransactionRequest,
    TransactionSecondaryRequest,
    TransSubcommand,
    WriteAndXRequest,
)

VULN = "MS17-010"
CVE_GENERIC = "CVE-2017-0143"  # what nmap's smb-vuln-ms17-010 names for the bulletin as a whole
CVE_ETERNALBLUE = "CVE-2017-0144"
CVE_ETERNALROMANCE = "CVE-2017-0145"
CVE_ETERNALCHAMPION = "CVE-2017-0146"

#: EternalBlue declares an FEA list larger than the 16-bit size srv.sys computes it into.
LARGE_TOTAL_DATA = 0x10000
#: DoublePulsar opcodes (the low byte of the Timeout byte sum).
DOUBLEPULSAR_OPCODES = {0x23: "ping", 0xC8: "exec", 0x77: "kill"}
#: Completed transaction keys remembered for the race test (EternalChampion races within a
#: segment; 64 covers its grooming rounds with room to spare).
MAX_COMPLETED = 64
#: Transactions in progress tracked; the oldest is forgotten beyond this (a client that leaves
#: hundreds open, as EternalChampion's grooming does, must not grow the state without bound).
MAX_IN_PROGRESS = 256
#: The primary's data kept for EternalBlue's payload (its FEA list starts there).
MAX_KEPT_DATA = 64 * 1024

_SECONDARY_OF = {
    Command.TRANSACTION_SECONDARY: Command.TRANSACTION,
    Command.TRANSACTION2_SECONDARY: Command.TRANSACTION2,
    Command.NT_TRANSACT_SECONDARY: Command.NT_TRANSACT,
}

TransKey = tuple[int, int, int, int]


@dataclass
class _Trans:
    """What the detectors remember of one transaction: its type, totals and progress."""

    command: int
    detail: int | None  # TRANSACTION/TRANSACTION2 subcommand or NT_TRANSACT function
    total_parameter_count: int
    total_data_count: int
    parameter_received: int
    data_received: int
    data: bytes

    @property
    def complete(self) -> bool:
        return (self.parameter_received >= self.total_parameter_count
                and self.data_received >= self.total_data_count)


@dataclass
class Ms17010State:
    """Per-connection memory of the MS17-010 detectors (bounded, see the module constants)."""

    in_progress: OrderedDict[TransKey, _Trans] = field(default_factory=OrderedDict)
    completed: OrderedDict[TransKey, _Trans] = field(default_factory=OrderedDict)
    reported: set[str] = field(default_factory=set)


def key_of(header: Header) -> TransKey:
    """The transaction key of [MS-CIFS] 3.3.5.2: (PID, MID, TID, UID)."""
    return header.pid, header.mid, header.tid, header.uid


def doublepulsar_opcode(timeout: int) -> int:
    """DoublePulsar's opcode: the low byte of the sum of Timeout's four bytes."""
    return (timeout + (timeout >> 8) + (timeout >> 16) + (timeout >> 24)) & 0xFF


def inspect(state: Ms17010State, header: Header, body: Smb1Body) -> list[Finding]:
    """Findings for one decoded request command (call it for every command of every request,
    before the server acts on it); updates ``state``."""
    if header.is_reply:
        return []
    if isinstance(body, TransactionRequest):
        return _transaction(state, header, body)
    if isinstance(body, Transaction2Request):
        return _transaction2(state, header, body)
    if isinstance(body, NtTransactRequest):
        _primary(state, header, Command.NT_TRANSACT, body.function, body.total_parameter_count,
                 body.total_data_count, body.parameter_count, body.data_count, body.data)
        return []
    if isinstance(body, TransactionSecondaryRequest):
        return _secondary(state, header, body)
    if isinstance(body, WriteAndXRequest):
        return _write_andx(state, header, body)
    return []


def _report(state: Ms17010State, finding: Finding) -> list[Finding]:
    if finding.detector in state.reported:
        return []
    state.reported.add(finding.detector)
    return [finding]


def _primary(state: Ms17010State, header: Header, command: int, detail: int | None, tpc: int, tdc: int,
             pc: int, dc: int, data: bytes) -> None:
    key = key_of(header)
    trans = _Trans(command, detail, tpc, tdc, pc, dc, data[:MAX_KEPT_DATA])
    state.in_progress.pop(key, None)
    state.completed.pop(key, None)
    table = state.completed if trans.complete else state.in_progress
    table[key] = trans
    limit = MAX_COMPLETED if trans.complete else MAX_IN_PROGRESS
    while len(table) > limit:
        table.popitem(last=False)


def _transaction(state: Ms17010State, header: Header, body: TransactionRequest) -> list[Finding]:
    _primary(state, header, Command.TRANSACTION, body.subcommand, body.total_parameter_count,
             body.total_data_count, body.parameter_count, body.data_count, body.data)
    if body.subcommand == TransSubcommand.PEEK_NMPIPE and body.fid in (0, None):
        evidence = {"command": "SMB_COM_TRANSACTION", "name": body.name, "setup": list(body.setup),
                    "fid": body.fid, "mid": header.mid}
        return _report(state, Finding(VULN, CVE_GENERIC, "probe", "ms17_010.peeknmpipe_fid0", 0.9, evidence))
    return []


def _transaction2(state: Ms17010State, header: Header, body: Transaction2Request) -> list[Finding]:
    _primary(state, header, Command.TRANSACTION2, body.subcommand, body.total_parameter_count,
             body.total_data_count, body.parameter_count, body.data_count, body.data)
    if body.subcommand != Trans2Subcommand.SESSION_SETUP:
        return []
    opcode = doublepulsar_opcode(body.timeout)
    name = DOUBLEPULSAR_OPCODES.get(opcode, "unknown")
    evidence: dict[str, Any] = {"command": "SMB_COM_TRANSACTION2", "subcommand": 0x0E, "timeout": body.timeout,
                                "opcode": opcode, "operation": name, "mid": header.mid,
                                "data_count": body.data_count, "total_data_count": body.total_data_count}
    kind: Kind = "exploit" if name == "exec" else "probe"
    payload = body.data if name == "exec" and body.data else None
    confidence = 0.95 if name != "unknown" else 0.7
    return _report(state, Finding(VULN, CVE_ETERNALBLUE, kind, f"doublepulsar.{name}", confidence, evidence,
                                  payload))


def _secondary(state: Ms17010State, header: Header, body: TransactionSecondaryRequest) -> list[Finding]:
    key = key_of(header)
    primary_of_secondary = _SECONDARY_OF.get(Command(body.command))
    trans = state.in_progress.get(key)
    if trans is None:
        done = state.completed.get(key)
        if done is None or done.command != Command.NT_TRANSACT or body.command != Command.NT_TRANSACT_SECONDARY:
            # Nothing known under this key (a capture cut before its primary), or a secondary
            # after some other complete transaction: a protocol violation (Zeek's own test traces
            # smb1_transaction*_secondary_request.pcap are built that way) but not the race.
            return []
        evidence = {"secondary": Command(body.command).name, "primary": Command(done.command).name,
                    "function": done.detail, "mid": header.mid, "data_displacement": body.data_displacement,
                    "data_count": body.data_count, "primary_total_data_count": done.total_data_count}
        confidence = 0.95 if done.detail == NtTransactFunction.RENAME else 0.8
        return _report(state, Finding(VULN, CVE_ETERNALCHAMPION, "exploit", "eternalchampion.completed_trans_race",
                                      confidence, evidence, body.data or None))
    findings: list[Finding] = []
    evidence = {"secondary": Command(body.command).name, "primary": Command(trans.command).name,
                "function_or_subcommand": trans.detail, "mid": header.mid,
                "primary_total_data_count": trans.total_data_count, "data_displacement": body.data_displacement,
                "data_count": body.data_count}
    if trans.command == Command.NT_TRANSACT and body.command == Command.TRANSACTION2_SECONDARY:
        large = trans.total_data_count > LARGE_TOTAL_DATA
        evidence["large_total_data"] = large
        findings += _report(state, Finding(VULN, CVE_ETERNALBLUE, "exploit", "eternalblue.nt_trans2_confusion",
                                           0.95 if large else 0.85, evidence, (trans.data + body.data) or None))
    elif primary_of_secondary != trans.command:
        findings += _report(state, Finding(VULN, CVE_ETERNALROMANCE, "exploit", "smb1.trans_type_confusion", 0.8,
                                           evidence, body.data or None))
    over_data = body.data_displacement + body.data_count > trans.total_data_count
    over_params = body.parameter_displacement + body.parameter_count > trans.total_parameter_count
    if (over_data or over_params) and trans.command == primary_of_secondary:
        ev = dict(evidence, parameter_displacement=body.parameter_displacement,
                  parameter_count=body.parameter_count, primary_total_parameter_count=trans.total_parameter_count)
        findings += _report(state, Finding(VULN, CVE_ETERNALROMANCE, "exploit",
                                           "eternalromance.displacement_overflow", 0.85, ev, body.data or None))
    trans.parameter_received += body.parameter_count
    trans.data_received += body.data_count
    if trans.complete:
        del state.in_progress[key]
        state.completed[key] = trans
        while len(state.completed) > MAX_COMPLETED:
            state.completed.popitem(last=False)
    return findings


def _write_andx(state: Ms17010State, header: Header, body: WriteAndXRequest) -> list[Finding]:
    trans = state.in_progress.get(key_of(header))
    if trans is None:
        return []
    evidence = {"command": "SMB_COM_WRITE_ANDX", "transaction": Command(trans.command).name, "mid": header.mid,
                "fid": body.fid, "data_length": body.data_length, "offset": body.offset}
    return _report(state, Finding(VULN, CVE_ETERNALROMANCE, "exploit", "eternalromance.writex_interleave", 0.85,
                                  evidence, body.data or None))
