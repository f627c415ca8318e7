"""The SMB1 server side of a session ([MS-CIFS] 3.3, [MS-SMB] 3.3): answers every request as the
persona's Windows does, emits the smb.* events, and runs the MS17-010 detectors on every command
before acting on it.

State: whether NEGOTIATE happened (and how), the logons by UID, the trees by TID (IPC$ or the
decoy disk share), the open files by FID (a pipe's :class:`~stormwatch.sensor.pipes.PipeEndpoint`
or a disk file), reads waiting for pipe data, and the transactions in progress
(:mod:`.smb1_trans`). Identities follow what Windows hands out (UIDs and TIDs from 2048 up, FIDs
from 0x4000 up), because scanners compare them with real hosts.

Decisions where Windows gives no single answer:

* the first message must be NEGOTIATE and there is only one (Windows drops the connection
  otherwise): ``smb_protocol_order`` anomaly;
* a legacy logon with any account and password succeeds, as on Windows 2000 with the Guest account
  enabled: the null session (no account, no password) as itself, anyone else as Guest (Action 1);
  an NTLMSSP logon likewise;
* a request naming a UID or TID the session did not hand out is answered STATUS_SMB_BAD_UID /
  STATUS_SMB_BAD_TID (the detectors have already seen it);
* the decoy share is read-only and empty: opens fail with STATUS_OBJECT_NAME_NOT_FOUND (or
  STATUS_ACCESS_DENIED when they would create), directory searches find nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from stormwatch.detect import smb1 as ms17
from stormwatch.protocols.dcerpc.interfaces import normalise_pipe
from stormwatch.protocols.errors import ProtocolError
from stormwatch.protocols.smb1 import (
    Capabilities,
    CloseRequest,
    Command,
    EchoRequest,
    Flags2,
    Header,
    LogoffAndX,
    NegotiateRequest,
    NtCreateAndXRequest,
    NtStatus,
    ReadAndXRequest,
    ReplyPart,
    SessionSetupAndXExtendedRequest,
    SessionSetupAndXRequest,
    Smb1Body,
    TreeConnectAndXRequest,
    TreeDisconnect,
    UnknownCommand,
    WriteAndXRequest,
    build_error,
    build_reply,
    close_response,
    command_name,
    decode_smb1,
    echo_response,
    logoff_response,
    negotiate_extended_response,
    negotiate_no_dialect,
    negotiate_response,
    nt_create_response,
    read_response,
    session_setup_extended_response,
    session_setup_response,
    tree_connect_response,
    tree_disconnect_response,
    write_response,
)
from stormwatch.protocols.smb1.constants import NT_LM_012
from stormwatch.protocols.smb2 import multiprotocol_dialect
from stormwatch.protocols.spnego import build_neg_token_init_hint
from stormwatch.sensor.auth import logon_leg
from stormwatch.sensor.context import Abort, Context, anomaly_for
from stormwatch.sensor.pipes import KNOWN_PIPES, PipeEndpoint
from stormwatch.sensor.replay_ids import smb1_request
from stormwatch.sensor.smb1_trans import Transactions

#: What Windows 2000/XP advertise (0xF3FD) and Windows 7 (0x1F3FC: LWIO, no raw mode).
CAPS_NT5 = 0x0000F3FD
CAPS_NT6 = 0x0001F3FC
#: [MS-SMB] 2.2.4.7.1 TREE_CONNECT_ANDX_EXTENDED_RESPONSE.
TREE_CONNECT_EXTENDED = 0x0008
#: Maximal share access a guest gets: full on IPC$, read-only (FILE_GENERIC_READ|EXECUTE) on disk.
IPC_ACCESS = 0x001F01FF
DISK_READ_ACCESS = 0x001200A9
#: [MS-CIFS] 2.2.4.43.1 WriteMode: a raw-mode message start carries a 2-byte length prefix.
WRITE_RAW_MODE, WRITE_MSG_START = 0x0004, 0x0008
FILE_OPEN_DISPOSITION = 1
MAX_ECHO_REPLIES = 16  # EchoCount is attacker-chosen; Windows caps it too
STATUS_BUFFER_OVERFLOW = 0x80000005


@dataclass
class Tree:
    share: str
    ipc: bool


@dataclass
class OpenFile:
    tid: int
    pipe: PipeEndpoint | None


@dataclass
class _Chain:
    """UID and TID as a chain's earlier commands left them (SESSION_SETUP + TREE_CONNECT)."""

    uid: int
    tid: int
    new_uid: bool = False
    new_tid: bool = False
    written: list[int] = field(default_factory=list)  # pipes written to: waiting reads may now complete


@dataclass
class Step:
    """One chained command's answer: its part (if any) and the status to report."""

    part: ReplyPart | None = None
    status: int = NtStatus.SUCCESS


SwitchToSmb2 = Callable[[list[str], int], None]


class Smb1Handler:
    """SMB1 requests in, answers and events out through the :class:`Context`."""

    def __init__(self, ctx: Context, switch_to_smb2: SwitchToSmb2) -> None:
        self.ctx = ctx
        self.switch_to_smb2 = switch_to_smb2
        self.negotiated = False
        self.extended = False
        self.logons: dict[int, bool] = {}  # UID -> logon complete
        self.trees: dict[int, Tree] = {}
        self.files: dict[int, OpenFile] = {}
        self.pending_reads: dict[int, list[tuple[Header, int]]] = {}
        self.detector = ms17.Ms17010State()
        self.trans = Transactions(self)
        self._next_uid = 2048
        self._next_tid = 2048

    # -- entry ---------------------------------------------------------------------------------

    def handle(self, payload: bytes) -> None:
        try:
            msg = decode_smb1(payload, max_andx_depth=self.ctx.limits.max_andx_depth)
        except ProtocolError as exc:
            raise anomaly_for(exc, "smb1") from None
        header = msg.header
        if header.is_reply:
            return  # a server's message sent to a server: Windows ignores it
        self.ctx.count_request()
        for body in msg.commands:
            self.ctx.report(ms17.inspect(self.detector, header, body))
        commands = msg.commands
        if self.ctx.replay is not None:  # a capture: its server's UID/TID/FIDs → ours
            header, commands = smb1_request(self, header, commands)
        first = commands[0]
        if isinstance(first, NegotiateRequest):
            self._negotiate(header, first)
            return
        if not self.negotiated:
            raise Abort("smb_protocol_order", f"{command_name(header.command)} before NEGOTIATE")
        if header.command in (Command.SESSION_SETUP_ANDX, Command.TREE_CONNECT_ANDX, Command.NT_CREATE_ANDX,
                              Command.READ_ANDX, Command.WRITE_ANDX, Command.LOGOFF_ANDX):
            self._chain(header, commands)
        else:
            self._single(header, first)

    # -- dispatch ------------------------------------------------------------------------------

    def _chain(self, header: Header, commands: tuple[Smb1Body, ...]) -> None:
        chain = _Chain(header.uid, header.tid)
        parts: list[ReplyPart] = []
        status: int = NtStatus.SUCCESS
        for body in commands:
            step = self._andx(header, body, chain, alone=len(commands) == 1)
            if step is None:
                return  # answered later (a pipe read waiting for data)
            if step.part is not None:
                parts.append(step.part)
            status = step.status
            if status != NtStatus.SUCCESS:
                break
        if not parts:
            self.ctx.reply(build_error(header, status))
            return
        self.ctx.reply(build_reply(header, *parts, status=status, uid=chain.uid if chain.new_uid else None,
                                   tid=chain.tid if chain.new_tid else None))
        for fid in chain.written:
            self.complete_reads(fid)

    def _andx(self, header: Header, body: Smb1Body, chain: _Chain, alone: bool) -> Step | None:
        if isinstance(body, SessionSetupAndXRequest | SessionSetupAndXExtendedRequest):
            return self._session_setup(header, body, chain)
        if isinstance(body, LogoffAndX):
            self.logons.pop(chain.uid, None)
            return Step(logoff_response())
        if chain.uid not in self.logons or not self.logons[chain.uid]:
            return Step(status=NtStatus.SMB_BAD_UID)
        if isinstance(body, TreeConnectAndXRequest):
            return self._tree_connect(body, chain)
        tree = self.trees.get(chain.tid)
        if tree is None:
            return Step(status=NtStatus.SMB_BAD_TID)
        if isinstance(body, NtCreateAndXRequest):
            return self._nt_create(body, chain, tree)
        if isinstance(body, WriteAndXRequest):
            return self._write(header, body, chain)
        if isinstance(body, ReadAndXRequest):
            return self._read(header, body, chain.tid, wait=alone)
        return Step(status=NtStatus.NOT_IMPLEMENTED)  # another AndX command (LOCKING_ANDX, OPEN_ANDX)

    def _single(self, header: Header, body: Smb1Body) -> None:
        if isinstance(body, EchoRequest):
            for seq in range(1, min(body.echo_count, MAX_ECHO_REPLIES) + 1):
                self.ctx.reply(build_reply(header, echo_response(sequence_number=seq, data=body.data)))
            return
        if self.trans.handles(body):
            self.trans.handle(header, body)
            return
        if isinstance(body, UnknownCommand) and body.command == Command.NT_CANCEL:
            return  # [MS-CIFS] 2.2.4.65: no response
        if header.uid not in self.logons or not self.logons[header.uid]:
            self.ctx.reply(build_error(header, NtStatus.SMB_BAD_UID))
            return
        if isinstance(body, TreeDisconnect):
            self._tree_disconnect(header)
            return
        if header.tid not in self.trees:
            self.ctx.reply(build_error(header, NtStatus.SMB_BAD_TID))
            return
        if isinstance(body, CloseRequest):
            self._close(header, body)
            return
        known = header.command in Command._value2member_map_
        self.ctx.reply(build_error(header, NtStatus.NOT_IMPLEMENTED if known else NtStatus.SMB_BAD_COMMAND))

    # -- NEGOTIATE and SESSION_SETUP -----------------------------------------------------------

    def _negotiate(self, header: Header, body: NegotiateRequest) -> None:
        if self.negotiated:
            raise Abort("smb_protocol_order", "a second NEGOTIATE on the connection")
        self.negotiated = True
        dialects = list(body.dialects)
        os = self.ctx.persona.os
        if os.smb2:
            smb2 = multiprotocol_dialect(dialects, smb2_dialects(self.ctx))
            if smb2 is not None:
                self.switch_to_smb2(dialects, smb2)
                return
        index = max((i for i, d in enumerate(dialects) if d == NT_LM_012), default=None)
        self.extended = index is not None and bool(header.flags2 & Flags2.EXTENDED_SECURITY)
        self.ctx.emit("smb.negotiate", {"dialects": dialects, "dialect": NT_LM_012 if index is not None else "",
                                        "smb_version": 1, "extended_security": self.extended})
        if index is None:
            self.ctx.reply(build_reply(header, negotiate_no_dialect()))
            return
        caps = CAPS_NT6 if os.major >= 6 else CAPS_NT5
        if self.extended:
            blob = build_neg_token_init_hint(hint=os.major >= 6)
            part = negotiate_extended_response(dialect_index=index, system_time=self.ctx.filetime(),
                                               server_guid=self.ctx.persona.guid_bytes, security_blob=blob,
                                               capabilities=caps | Capabilities.EXTENDED_SECURITY)
        else:
            challenge = bytes(self.ctx.rng.getrandbits(8) for _ in range(8))
            part = negotiate_response(dialect_index=index, system_time=self.ctx.filetime(), challenge=challenge,
                                      domain_name=self.ctx.persona.domain, server_name=self.ctx.persona.host_name,
                                      capabilities=caps)
        self.ctx.reply(build_reply(header, part))

    def _new_uid(self) -> int:
        if len(self.logons) >= self.ctx.limits.max_logons:
            raise Abort("max_logons", f"more than max_logons={self.ctx.limits.max_logons} logons", reason="limit")
        uid = self._next_uid
        self._next_uid = uid + 1 if uid < 0xFFFE else 2048
        return uid

    def _session_setup(self, header: Header, body: SessionSetupAndXRequest | SessionSetupAndXExtendedRequest,
                       chain: _Chain) -> Step:
        persona = self.ctx.persona
        if isinstance(body, SessionSetupAndXRequest):
            anonymous = not body.account and body.oem_password in (b"", b"\x00") and not body.unicode_password
            nt = len(body.unicode_password)
            self.ctx.emit("smb.session_setup", {
                "auth": "anonymous" if anonymous else "legacy", "user": body.account, "domain": body.primary_domain,
                "workstation": "", "native_os": body.native_os, "native_lanman": body.native_lanman,
                "ntlm_flags": 0, "ntlm_version": "v1" if nt == 24 else "v2" if nt > 24 else ""})
            uid = self._new_uid()
            self.logons[uid] = True
            chain.uid, chain.new_uid = uid, True
            return Step(session_setup_response(native_os=persona.os.native_os, native_lanman=persona.os.native_lanman,
                                               primary_domain=persona.domain, action=0 if anonymous else 1))
        leg = logon_leg(self.ctx, body.security_blob, native_os=body.native_os, native_lanman=body.native_lanman)
        if leg.status == NtStatus.LOGON_FAILURE:
            return Step(status=leg.status)
        uid = chain.uid
        if uid not in self.logons:
            uid = self._new_uid()
            chain.uid, chain.new_uid = uid, True
        done = leg.status == NtStatus.SUCCESS
        self.logons[uid] = done
        if leg.event is not None:
            self.ctx.emit("smb.session_setup", leg.event)
        part = session_setup_extended_response(security_blob=leg.blob, native_os=persona.os.native_os,
                                               native_lanman=persona.os.native_lanman,
                                               primary_domain=persona.domain,
                                               action=1 if done and not leg.anonymous else 0)
        chain.new_uid = True
        return Step(part, leg.status)

    # -- trees and files -----------------------------------------------------------------------

    def _tree_connect(self, body: TreeConnectAndXRequest, chain: _Chain) -> Step:
        share = body.share
        persona = self.ctx.persona
        ipc = share == "IPC$"
        disk = share == persona.decoy_share.upper()
        granted = "IPC" if ipc else "A:" if disk else body.service
        self.ctx.emit("smb.tree_connect", {"path": body.path, "share": share, "service": granted})
        if share in ("ADMIN$", "C$", "D$"):
            return Step(status=NtStatus.ACCESS_DENIED)
        if not (ipc or disk):
            return Step(status=NtStatus.BAD_NETWORK_NAME)
        if len(self.trees) >= self.ctx.limits.max_trees:
            raise Abort("max_trees", f"more than max_trees={self.ctx.limits.max_trees} trees", reason="limit")
        tid = self._next_tid
        self._next_tid = tid + 1 if tid < 0xFFFE else 2048
        self.trees[tid] = Tree(share, ipc)
        chain.tid, chain.new_tid = tid, True
        extended = bool(body.flags & TREE_CONNECT_EXTENDED)
        access = IPC_ACCESS if ipc else DISK_READ_ACCESS
        return Step(tree_connect_response(service="IPC" if ipc else "A:", native_file_system="" if ipc else "NTFS",
                                          maximal_share_access=access if extended else None,
                                          guest_maximal_share_access=access if extended else None))

    def _tree_disconnect(self, header: Header) -> None:
        if self.trees.pop(header.tid, None) is None:
            self.ctx.reply(build_error(header, NtStatus.SMB_BAD_TID))
            return
        for fid in [f for f, o in self.files.items() if o.tid == header.tid]:
            self._forget(fid)
        self.ctx.reply(build_reply(header, tree_disconnect_response()))

    def _nt_create(self, body: NtCreateAndXRequest, chain: _Chain, tree: Tree) -> Step:
        if not tree.ipc:
            opening = body.create_disposition == FILE_OPEN_DISPOSITION
            return Step(status=NtStatus.OBJECT_NAME_NOT_FOUND if opening else NtStatus.ACCESS_DENIED)
        pipe = normalise_pipe(body.file_name)
        if pipe not in KNOWN_PIPES:
            return Step(status=NtStatus.OBJECT_NAME_NOT_FOUND)
        fid = self.ctx.open_file()
        self.files[fid] = OpenFile(chain.tid, PipeEndpoint(self.ctx, pipe))
        self.ctx.emit("smb.pipe_open", {"pipe": pipe, "fid": fid})
        return Step(nt_create_response(fid=fid))

    def pipe(self, fid: int | None, tid: int) -> PipeEndpoint | int:
        """The pipe behind ``fid`` on tree ``tid``, or the status to answer with."""
        f = self.files.get(fid) if fid is not None else None
        if f is None or f.tid != tid:
            return NtStatus.INVALID_HANDLE
        return f.pipe if f.pipe is not None else NtStatus.INVALID_DEVICE_REQUEST

    def _write(self, header: Header, body: WriteAndXRequest, chain: _Chain) -> Step:
        pipe = self.pipe(body.fid, chain.tid)
        if isinstance(pipe, int):
            return Step(status=pipe)
        data = body.data
        if body.write_mode & WRITE_RAW_MODE and body.write_mode & WRITE_MSG_START and len(data) >= 2:
            data = data[2:]  # the raw-mode message length prefix (as Samba's pipe write skips it)
        pipe.write(data)
        chain.written.append(body.fid)
        return Step(write_response(count=body.data_length))

    def _read(self, header: Header, body: ReadAndXRequest, tid: int, wait: bool) -> Step | None:
        pipe = self.pipe(body.fid, tid)
        if isinstance(pipe, int):
            return Step(status=pipe)
        got = pipe.read(body.max_count)
        if got is None:
            if not wait:
                return Step(read_response(data=b""))
            waiting = self.pending_reads.setdefault(body.fid, [])
            if len(waiting) < 4:  # more waiting reads than that is a client not making sense
                waiting.append((header, body.max_count))
            return None
        data, left = got
        return Step(read_response(data=data, available=left), STATUS_BUFFER_OVERFLOW if left else NtStatus.SUCCESS)

    def complete_reads(self, fid: int) -> None:
        """Answer reads that waited for data on ``fid`` (after a write queued some)."""
        waiting = self.pending_reads.get(fid)
        f = self.files.get(fid)
        while waiting and f is not None and f.pipe is not None:
            header, max_count = waiting[0]
            got = f.pipe.read(max_count)
            if got is None:
                return
            waiting.pop(0)
            data, left = got
            self.ctx.reply(build_reply(header, read_response(data=data, available=left),
                                       status=STATUS_BUFFER_OVERFLOW if left else NtStatus.SUCCESS))

    def _close(self, header: Header, body: CloseRequest) -> None:
        if body.fid not in self.files:
            self.ctx.reply(build_error(header, NtStatus.INVALID_HANDLE))
            return
        self._forget(body.fid)
        self.ctx.reply(build_reply(header, close_response()))

    def _forget(self, fid: int) -> None:
        if self.files.pop(fid, None) is not None:
            self.ctx.close_file()
        self.pending_reads.pop(fid, None)


def smb2_dialects(ctx: Context) -> tuple[int, ...]:
    """The SMB2 dialects the persona speaks (Windows 7: 2.0.2 and 2.1)."""
    return (0x0202, 0x0210) if ctx.persona.os.smb2 else ()
