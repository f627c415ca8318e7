"""SMB1 transactions on the server side: TRANSACTION, TRANSACTION2 and NT_TRANSACT with their
secondaries ([MS-CIFS] 3.3.5.57-3.3.5.60), assembled and answered.

A primary that carries every byte is executed at once; one that does not gets the interim
response ([MS-CIFS] 3.3.5.57: "send the rest") and waits under its (PID, MID, TID, UID) key for
secondaries, whose pieces land at their displacement. Like the unpatched srv.sys, a secondary
continues whatever transaction has its key, whatever its type: EternalBlue's TRANSACTION2
secondaries complete its NT_TRANSACT, and the answer is then the one Windows 7 gave in the
Metasploit capture: a TRANSACTION2 reply with STATUS_INVALID_PARAMETER (what the exploit reads as
"the overflow happened"). The detectors (:mod:`stormwatch.detect.smb1`) have judged every message
before it gets here.

Answers, by subcommand, as an unpatched Windows gives them:

* TRANSACTION on ``\\PIPE\\``: TransactNmPipe (0x26) runs DCE/RPC through the pipe; PeekNmPipe
  (0x23) on FID 0 is the MS17-010 check and gets STATUS_INSUFF_SERVER_RESOURCES ("unpatched"), on a
  real pipe its state; Set/QueryNmPipeState and WaitNmPipe succeed; the rest (and RAP on
  ``\\PIPE\\LANMAN``, mailslots) STATUS_NOT_SUPPORTED;
* TRANSACTION2: SESSION_SETUP (0x0E, DoublePulsar's ping) STATUS_NOT_IMPLEMENTED with the MID
  unchanged: an uninfected host (the implant answers MID + 16); FIND_FIRST2 on the empty decoy share
  STATUS_NO_SUCH_FILE; the rest STATUS_NOT_SUPPORTED;
* NT_TRANSACT: function 0 (EternalBlue's) STATUS_INVALID_PARAMETER, RENAME STATUS_NOT_IMPLEMENTED,
  the rest STATUS_NOT_SUPPORTED.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stormwatch.detect.smb1 import TransKey, key_of
from stormwatch.protocols.smb1 import (
    Command,
    Header,
    NtStatus,
    NtTransactFunction,
    NtTransactRequest,
    Smb1Body,
    Trans2Subcommand,
    Transaction2Request,
    TransactionRequest,
    TransactionSecondaryRequest,
    TransSubcommand,
    build_error,
    build_reply,
    transaction_interim_response,
    transaction_response,
)
from stormwatch.sensor.context import Abort

if TYPE_CHECKING:
    from stormwatch.sensor.smb1_handler import Smb1Handler

Primary = TransactionRequest | Transaction2Request | NtTransactRequest

_PRIMARY_OF_SECONDARY = {
    Command.TRANSACTION_SECONDARY: Command.TRANSACTION,
    Command.TRANSACTION2_SECONDARY: Command.TRANSACTION2,
    Command.NT_TRANSACT_SECONDARY: Command.NT_TRANSACT,
}
STATUS_BUFFER_OVERFLOW = 0x80000005
NMPIPE_STATE = 0x05FF  # [MS-CIFS] 2.2.5.2: message-mode, server end, ICount 255
PIPE_CONNECTED = 3  # [MS-CIFS] 2.2.5.5.2 NamedPipeState


@dataclass
class _Pending:
    """A transaction waiting for secondaries: the primary and the pieces received so far."""

    command: int
    primary: Primary
    parameters: list[tuple[int, bytes]] = field(default_factory=list)
    data: list[tuple[int, bytes]] = field(default_factory=list)
    parameter_received: int = 0
    data_received: int = 0
    kept: int = 0

    @property
    def complete(self) -> bool:
        return (self.parameter_received >= self.primary.total_parameter_count
                and self.data_received >= self.primary.total_data_count)


def _assemble(pieces: list[tuple[int, bytes]], total: int) -> bytes:
    """The pieces laid at their displacements inside ``total`` bytes (anything outside dropped)."""
    size = min(total, max((d + len(b) for d, b in pieces), default=0))
    out = bytearray(size)
    for displacement, piece in pieces:
        chunk = piece[:max(0, size - displacement)]
        out[displacement:displacement + len(chunk)] = chunk
    return bytes(out)


class Transactions:
    """The transaction table of one SMB1 session."""

    def __init__(self, handler: Smb1Handler) -> None:
        self.h = handler
        self.ctx = handler.ctx
        self.pending: OrderedDict[TransKey, _Pending] = OrderedDict()
        self.kept = 0  # parameter and data bytes held by all pending transactions

    @staticmethod
    def handles(body: Smb1Body) -> bool:
        return isinstance(body, TransactionRequest | Transaction2Request | NtTransactRequest
                          | TransactionSecondaryRequest)

    def handle(self, header: Header, body: Smb1Body) -> None:
        if isinstance(body, TransactionSecondaryRequest):
            self._secondary(header, body)
            return
        if not isinstance(body, TransactionRequest | Transaction2Request | NtTransactRequest):
            return
        command = header.command
        if not self.h.logons.get(header.uid):
            self.ctx.reply(build_error(header, NtStatus.SMB_BAD_UID))
            return
        if header.tid not in self.h.trees:
            self.ctx.reply(build_error(header, NtStatus.SMB_BAD_TID))
            return
        if body.is_complete:
            self._execute(header, command, body, body.parameters, body.data)
            return
        if len(self.pending) >= self.ctx.limits.max_transactions:
            raise Abort("max_transactions", f"more than max_transactions={self.ctx.limits.max_transactions} "
                        "transactions in progress", reason="limit")
        pending = _Pending(command, body)
        replaced = self.pending.pop(key_of(header), None)
        if replaced is not None:  # a new primary under a pending key replaces it, as in srv.sys
            self.kept -= replaced.kept
        self._add(pending, 0, body.parameters, 0, body.data)
        self.pending[key_of(header)] = pending
        self.ctx.reply(build_reply(header, transaction_interim_response(command)))

    def _add(self, pending: _Pending, pd: int, params: bytes, dd: int, data: bytes) -> None:
        pending.kept += len(params) + len(data)
        self.kept += len(params) + len(data)
        if self.kept > self.ctx.limits.max_stub_bytes:
            raise Abort("max_stub_bytes", f"pending transactions hold more than max_stub_bytes="
                        f"{self.ctx.limits.max_stub_bytes} bytes", reason="limit")
        if params:
            pending.parameters.append((pd, params))
        if data:
            pending.data.append((dd, data))
        pending.parameter_received += len(params)
        pending.data_received += len(data)

    def _secondary(self, header: Header, body: TransactionSecondaryRequest) -> None:
        key = key_of(header)
        pending = self.pending.get(key)
        if pending is None:
            return  # no transaction under this key: Windows drops a stray secondary silently
        self._add(pending, body.parameter_displacement, body.parameters, body.data_displacement, body.data)
        if not pending.complete:
            return  # secondaries get no answer until the last
        del self.pending[key]
        self.kept -= pending.kept
        primary = pending.primary
        params = _assemble(pending.parameters, primary.total_parameter_count)
        data = _assemble(pending.data, primary.total_data_count)
        self._execute(header, _PRIMARY_OF_SECONDARY[Command(body.command)], primary, params, data,
                      executed_as=pending.command)

    # -- execution -----------------------------------------------------------------------------

    def _execute(self, header: Header, reply_command: int, primary: Primary, params: bytes, data: bytes,
                 executed_as: int | None = None) -> None:
        command = executed_as if executed_as is not None else reply_command
        if command == Command.NT_TRANSACT and isinstance(primary, NtTransactRequest):
            known = primary.function in NtTransactFunction._value2member_map_
            status = (NtStatus.NOT_IMPLEMENTED if primary.function == NtTransactFunction.RENAME
                      else NtStatus.NOT_SUPPORTED if known else NtStatus.INVALID_PARAMETER)
            self._error(header, status, reply_command)
        elif isinstance(primary, Transaction2Request):
            tree = self.h.trees.get(header.tid)
            if primary.subcommand == Trans2Subcommand.SESSION_SETUP:
                status = NtStatus.NOT_IMPLEMENTED
            elif primary.subcommand == Trans2Subcommand.FIND_FIRST2 and tree is not None and not tree.ipc:
                status = NtStatus.NO_SUCH_FILE
            else:
                status = NtStatus.NOT_SUPPORTED
            self._error(header, status, reply_command)
        elif isinstance(primary, TransactionRequest):
            self._transaction(header, reply_command, primary, data)

    def _error(self, header: Header, status: int, command: int) -> None:
        self.ctx.reply(build_error(header, status, command=command))

    def _transaction(self, header: Header, reply_command: int, primary: TransactionRequest, data: bytes) -> None:
        name = primary.name.upper()
        sub = primary.subcommand
        if not name.startswith("\\PIPE\\") or name.startswith("\\PIPE\\LANMAN") or sub is None:
            self._error(header, NtStatus.NOT_SUPPORTED, reply_command)
            return
        if sub == TransSubcommand.PEEK_NMPIPE and not primary.fid:
            self._error(header, NtStatus.INSUFF_SERVER_RESOURCES, reply_command)
            return
        if sub == TransSubcommand.WAIT_NMPIPE:  # names the pipe, not a FID: every known pipe is free
            self.ctx.reply(build_reply(header, transaction_response(command=reply_command)))
            return
        pipe = self.h.pipe(primary.fid, header.tid)
        if isinstance(pipe, int):
            self._error(header, pipe, reply_command)
            return
        if sub == TransSubcommand.TRANSACT_NMPIPE:
            got = pipe.transact(data, primary.max_data_count)
            if got is None:
                return  # the call took the service down (or nothing answers): the transaction hangs
            out, left = got
            self.ctx.reply(build_reply(header, transaction_response(data=out, command=reply_command),
                                       status=STATUS_BUFFER_OVERFLOW if left else NtStatus.SUCCESS))
            return
        if sub == TransSubcommand.PEEK_NMPIPE:
            queued = sum(len(m) for m in pipe.messages)
            first = len(pipe.messages[0]) if pipe.messages else 0
            params = struct.pack("<HHH", min(queued, 0xFFFF), min(first, 0xFFFF), PIPE_CONNECTED)
            self.ctx.reply(build_reply(header, transaction_response(parameters=params, command=reply_command)))
            return
        if sub == TransSubcommand.QUERY_NMPIPE_STATE:
            self.ctx.reply(build_reply(header, transaction_response(parameters=struct.pack("<H", NMPIPE_STATE),
                                                                    command=reply_command)))
            return
        if sub == TransSubcommand.SET_NMPIPE_STATE:
            self.ctx.reply(build_reply(header, transaction_response(command=reply_command)))
            return
        self._error(header, NtStatus.NOT_SUPPORTED, reply_command)
