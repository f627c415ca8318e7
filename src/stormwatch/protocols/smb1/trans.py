"""SMB1 transactions, requests and responses decoded: TRANSACTION ([MS-CIFS] 2.2.4.33),
TRANSACTION_SECONDARY (2.2.4.34), TRANSACTION2 (2.2.4.46), TRANSACTION2_SECONDARY (2.2.4.47),
NT_TRANSACT (2.2.4.62) and NT_TRANSACT_SECONDARY (2.2.4.63).

A transaction's parameters and data may span several messages: the first carries Total* counts
and this message's Count/Offset; secondaries add Displacement (where the piece goes). Every
count, offset and displacement is kept raw, because the MS17-010 exploits live in them:
EternalBlue's NT_TRANSACT declares a TotalDataCount beyond 64 KiB and continues it with
TRANSACTION2_SECONDARY pieces; EternalChampion races NT_TRANSACT RENAME with its secondary;
EternalRomance's TRANSACTION secondaries move data by displacement. Sections are located by
their Offset from the header start; a section running past the message is malformed, an empty
section's offset is not checked (clients leave it 0)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.smb1.constants import Command
from stormwatch.protocols.smb1.header import (
    CommandBlock,
    Header,
    Smb1Body,
    read_string,
    section,
)
from stormwatch.protocols.wire import Layout

#: [MS-CIFS] 2.2.4.33.1 / 2.2.4.46.1 TRANSACTION and TRANSACTION2 request words before Setup.
TRANS_WORDS = Layout("TRANSACTION request", "<", (
    ("total_parameter_count", "H"), ("total_data_count", "H"), ("max_parameter_count", "H"),
    ("max_data_count", "H"), ("max_setup_count", "B"), ("reserved1", "B"), ("flags", "H"), ("timeout", "I"),
    ("reserved2", "H"), ("parameter_count", "H"), ("parameter_offset", "H"), ("data_count", "H"),
    ("data_offset", "H"), ("setup_count", "B"), ("reserved3", "B")))
#: [MS-CIFS] 2.2.4.62.1 NT_TRANSACT request words before Setup (32-bit counts).
NT_TRANS_WORDS = Layout("NT_TRANSACT request", "<", (
    ("max_setup_count", "B"), ("reserved1", "H"), ("total_parameter_count", "I"), ("total_data_count", "I"),
    ("max_parameter_count", "I"), ("max_data_count", "I"), ("parameter_count", "I"), ("parameter_offset", "I"),
    ("data_count", "I"), ("data_offset", "I"), ("setup_count", "B"), ("function", "H")))
#: [MS-CIFS] 2.2.4.34.1 TRANSACTION_SECONDARY request words (WordCount 8).
TRANS_SECONDARY_WORDS = Layout("TRANSACTION_SECONDARY request", "<", (
    ("total_parameter_count", "H"), ("total_data_count", "H"), ("parameter_count", "H"),
    ("parameter_offset", "H"), ("parameter_displacement", "H"), ("data_count", "H"), ("data_offset", "H"),
    ("data_displacement", "H")))
#: [MS-CIFS] 2.2.4.47.1 TRANSACTION2_SECONDARY request words (WordCount 9, with FID).
TRANS2_SECONDARY_WORDS = Layout("TRANSACTION2_SECONDARY request", "<", (
    ("total_parameter_count", "H"), ("total_data_count", "H"), ("parameter_count", "H"),
    ("parameter_offset", "H"), ("parameter_displacement", "H"), ("data_count", "H"), ("data_offset", "H"),
    ("data_displacement", "H"), ("fid", "H")))
#: [MS-CIFS] 2.2.4.63.1 NT_TRANSACT_SECONDARY request words (WordCount 18).
NT_TRANS_SECONDARY_WORDS = Layout("NT_TRANSACT_SECONDARY request", "<", (
    ("reserved1", "3s"), ("total_parameter_count", "I"), ("total_data_count", "I"), ("parameter_count", "I"),
    ("parameter_offset", "I"), ("parameter_displacement", "I"), ("data_count", "I"), ("data_offset", "I"),
    ("data_displacement", "I"), ("reserved2", "B")))
#: [MS-CIFS] 2.2.4.33.2 / 2.2.4.46.2 response words before Setup (TRANSACTION and TRANSACTION2).
TRANS_RESPONSE_WORDS = Layout("TRANSACTION response", "<", (
    ("total_parameter_count", "H"), ("total_data_count", "H"), ("reserved1", "H"), ("parameter_count", "H"),
    ("parameter_offset", "H"), ("parameter_displacement", "H"), ("data_count", "H"), ("data_offset", "H"),
    ("data_displacement", "H"), ("setup_count", "B"), ("reserved2", "B")))
#: [MS-CIFS] 2.2.4.62.2 NT_TRANSACT response words before Setup.
NT_TRANS_RESPONSE_WORDS = Layout("NT_TRANSACT response", "<", (
    ("reserved1", "3s"), ("total_parameter_count", "I"), ("total_data_count", "I"), ("parameter_count", "I"),
    ("parameter_offset", "I"), ("parameter_displacement", "I"), ("data_count", "I"), ("data_offset", "I"),
    ("data_displacement", "I"), ("setup_count", "B")))


def _frame(block: CommandBlock, msg: bytes, fixed: Layout, setup_count_index: int | None,
           what: str) -> tuple[tuple[Any, ...], tuple[int, ...], bytes, int]:
    """(fixed fields, Setup words, byte block, byte block offset) of a transaction command.

    Laid out as Zeek reads it: the fixed words, SetupCount Setup words, then ByteCount, whatever
    WordCount says. The two agree in every well-formed message; Zeek's own test traces
    (smb1_transaction_request.pcap, smb1_transaction_response.pcap) do not, and Zeek decodes them.
    The raw WordCount stays in the message's ``blocks``; the sections are found by offset anyway,
    so a ByteCount beyond the message only shortens the byte block (the TRANSACTION name)."""
    start = block.offset + 1
    if len(msg) < start + fixed.size:
        raise MalformedMessage(what, "WordCount", block.offset,
                               f"{len(msg) - start} bytes of parameter words, {fixed.size} needed")
    fields = fixed.unpack(msg, start)
    count = 0 if setup_count_index is None else fields[setup_count_index]
    setup_at = start + fixed.size
    bc_at = setup_at + 2 * count
    if bc_at + 2 > len(msg):
        raise MalformedMessage(what, "SetupCount", setup_at - 2 if count else setup_at,
                               f"{count} setup words and ByteCount overrun the {len(msg)}-byte message")
    setup = struct.unpack_from(f"<{count}H", msg, setup_at)
    (byte_count,) = struct.unpack_from("<H", msg, bc_at)
    return fields, setup, bytes(msg[bc_at + 2:bc_at + 2 + byte_count]), bc_at + 2


@dataclass(frozen=True, slots=True)
class TransactionRequest(Smb1Body):
    """SMB_COM_TRANSACTION: ``name`` is ``\\PIPE\\`` (or ``\\PIPE\\LANMAN`` for RAP, or a mailslot);
    ``setup[0]`` the subcommand (TransactNmPipe 0x26, PeekNmPipe 0x23 ...), ``setup[1]`` the FID."""

    total_parameter_count: int
    total_data_count: int
    max_parameter_count: int
    max_data_count: int
    max_setup_count: int
    flags: int
    timeout: int
    parameter_count: int
    parameter_offset: int
    data_count: int
    data_offset: int
    setup: tuple[int, ...]
    name: str
    parameters: bytes
    data: bytes

    @property
    def subcommand(self) -> int | None:
        return self.setup[0] if self.setup else None

    @property
    def fid(self) -> int | None:
        return self.setup[1] if len(self.setup) > 1 else None

    @property
    def is_complete(self) -> bool:
        """No secondary requests follow: this message carries every parameter and data byte."""
        return self.parameter_count >= self.total_parameter_count and self.data_count >= self.total_data_count


@dataclass(frozen=True, slots=True)
class Transaction2Request(Smb1Body):
    """SMB_COM_TRANSACTION2: ``setup[0]`` is the subcommand (FIND_FIRST2 0x01 ...; SESSION_SETUP
    0x0E is DoublePulsar's channel, its opcode hidden in ``timeout``)."""

    total_parameter_count: int
    total_data_count: int
    max_parameter_count: int
    max_data_count: int
    max_setup_count: int
    flags: int
    timeout: int
    parameter_count: int
    parameter_offset: int
    data_count: int
    data_offset: int
    setup: tuple[int, ...]
    parameters: bytes
    data: bytes

    @property
    def subcommand(self) -> int | None:
        return self.setup[0] if self.setup else None

    @property
    def is_complete(self) -> bool:
        return self.parameter_count >= self.total_parameter_count and self.data_count >= self.total_data_count


def decode_trans_request(block: CommandBlock, header: Header, msg: bytes) -> Smb1Body:
    is_trans2 = block.command == Command.TRANSACTION2
    what = "TRANSACTION2 request" if is_trans2 else "TRANSACTION request"
    fields, setup, block_data, block_data_offset = _frame(block, msg, TRANS_WORDS, 13, what)
    (tpc, tdc, mpc, mdc, msc, _, flags, timeout, _, pc, po, dc, do, _, _) = fields
    params = section(msg, po, pc, what, "ParameterCount", block.offset + 19)
    data = section(msg, do, dc, what, "DataCount", block.offset + 23)
    if is_trans2:
        return Transaction2Request(tpc, tdc, mpc, mdc, msc, flags, timeout, pc, po, dc, do, setup, params, data)
    name, _ = read_string(block_data, 0, block_data_offset, header.unicode)
    return TransactionRequest(tpc, tdc, mpc, mdc, msc, flags, timeout, pc, po, dc, do, setup, name, params, data)


@dataclass(frozen=True, slots=True)
class NtTransactRequest(Smb1Body):
    """SMB_COM_NT_TRANSACT: 32-bit counts; ``function`` CREATE 1, IOCTL 2 ... RENAME 5."""

    max_setup_count: int
    total_parameter_count: int
    total_data_count: int
    max_parameter_count: int
    max_data_count: int
    parameter_count: int
    parameter_offset: int
    data_count: int
    data_offset: int
    function: int
    setup: tuple[int, ...]
    parameters: bytes
    data: bytes

    @property
    def is_complete(self) -> bool:
        return self.parameter_count >= self.total_parameter_count and self.data_count >= self.total_data_count


def decode_nt_trans_request(block: CommandBlock, header: Header, msg: bytes) -> NtTransactRequest:
    what = "NT_TRANSACT request"
    fields, setup, _, _ = _frame(block, msg, NT_TRANS_WORDS, 10, what)
    (msc, _, tpc, tdc, mpc, mdc, pc, po, dc, do, _, function) = fields
    params = section(msg, po, pc, what, "ParameterCount", block.offset + 20)
    data = section(msg, do, dc, what, "DataCount", block.offset + 28)
    return NtTransactRequest(msc, tpc, tdc, mpc, mdc, pc, po, dc, do, function, setup, params, data)


@dataclass(frozen=True, slots=True)
class TransactionSecondaryRequest(Smb1Body):
    """A continuation of TRANSACTION, TRANSACTION2 (``fid`` set) or NT_TRANSACT (``command``
    says which). Counts and displacements are raw: they are where the overflows live."""

    command: int
    total_parameter_count: int
    total_data_count: int
    parameter_count: int
    parameter_offset: int
    parameter_displacement: int
    data_count: int
    data_offset: int
    data_displacement: int
    fid: int | None
    parameters: bytes
    data: bytes


def decode_trans_secondary(block: CommandBlock, header: Header, msg: bytes) -> TransactionSecondaryRequest:
    what = f"{Command(block.command).name} request"
    fid: int | None = None
    if block.command == Command.NT_TRANSACT_SECONDARY:
        count_at = (11, 27)
        (_, tpc, tdc, pc, po, pd, dc, do, dd, _) = _frame(block, msg, NT_TRANS_SECONDARY_WORDS, None, what)[0]
    elif block.command == Command.TRANSACTION2_SECONDARY:
        count_at = (5, 11)
        (tpc, tdc, pc, po, pd, dc, do, dd, fid) = _frame(block, msg, TRANS2_SECONDARY_WORDS, None, what)[0]
    else:
        count_at = (5, 11)
        (tpc, tdc, pc, po, pd, dc, do, dd) = _frame(block, msg, TRANS_SECONDARY_WORDS, None, what)[0]
    params = section(msg, po, pc, what, "ParameterCount", block.offset + count_at[0])
    data = section(msg, do, dc, what, "DataCount", block.offset + count_at[1])
    return TransactionSecondaryRequest(block.command, tpc, tdc, pc, po, pd, dc, do, dd, fid, params, data)


@dataclass(frozen=True, slots=True)
class TransactionResponse(Smb1Body):
    """A TRANSACTION, TRANSACTION2 or NT_TRANSACT answer (``command`` says which). An interim
    response (WordCount 0: "send the secondaries") has every count 0 and ``interim`` True."""

    command: int
    total_parameter_count: int
    total_data_count: int
    parameter_count: int
    parameter_offset: int
    parameter_displacement: int
    data_count: int
    data_offset: int
    data_displacement: int
    setup: tuple[int, ...]
    parameters: bytes
    data: bytes
    interim: bool = False


def decode_trans_response(block: CommandBlock, header: Header, msg: bytes) -> TransactionResponse:
    what = f"{Command(block.command).name} response"
    if not block.words:
        return TransactionResponse(block.command, 0, 0, 0, 0, 0, 0, 0, 0, (), b"", b"", interim=True)
    if block.command == Command.NT_TRANSACT:
        fields, setup, _, _ = _frame(block, msg, NT_TRANS_RESPONSE_WORDS, 9, what)
        (_, tpc, tdc, pc, po, pd, dc, do, dd, _) = fields
        count_at = (11, 27)
    else:
        fields, setup, _, _ = _frame(block, msg, TRANS_RESPONSE_WORDS, 9, what)
        (tpc, tdc, _, pc, po, pd, dc, do, dd, _, _) = fields
        count_at = (7, 13)
    params = section(msg, po, pc, what, "ParameterCount", block.offset + count_at[0])
    data = section(msg, do, dc, what, "DataCount", block.offset + count_at[1])
    return TransactionResponse(block.command, tpc, tdc, pc, po, pd, dc, do, dd, setup, params, data)
