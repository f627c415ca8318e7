"""The SMB2 server side of a session ([MS-SMB2] 3.3), for personas that speak it (Windows 7:
dialects 2.0.2 and 2.1): NEGOTIATE (also as the answer to an SMB1 multi-protocol negotiate),
SESSION_SETUP with NTLMSSP, TREE_CONNECT to IPC$ and the decoy share, CREATE of the named pipes,
WRITE / READ / IOCTL FSCTL_PIPE_TRANSCEIVE to the same DCE/RPC endpoints as SMB1, CLOSE, LOGOFF,
TREE_DISCONNECT, ECHO; every other command STATUS_NOT_SUPPORTED. Events are those of SMB1 with
``smb_version`` 2.

Signing is enabled but never required (the sensor accepts logons without knowing the password, so
it could not sign); 3.x dialects are not offered, so nothing is encrypted. Reads of an empty pipe
wait, unanswered, until a write queues something, as on SMB1. Compounds are answered as a compound;
a related CREATE's FileId is used by the related requests after it ([MS-SMB2] 3.3.5.2.7.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from stormwatch.protocols.dcerpc.interfaces import normalise_pipe
from stormwatch.protocols.errors import ProtocolError
from stormwatch.protocols.smb2 import (
    CloseRequest,
    Command,
    CreateRequest,
    Dialect,
    EmptyBody,
    Header,
    HeaderFlags,
    IoctlRequest,
    Message,
    NegotiateRequest,
    NtStatus,
    ReadRequest,
    SessionFlags,
    SessionSetupRequest,
    ShareType,
    TreeConnectRequest,
    WriteRequest,
    build_close_response,
    build_compound,
    build_create_response,
    build_empty,
    build_error,
    build_ioctl_response,
    build_message,
    build_negotiate_response,
    build_read_response,
    build_session_setup_response,
    build_tree_connect_response,
    build_write_response,
    parse_frame,
    response_header,
    select_dialect,
)
from stormwatch.protocols.smb2.constants import FSCTL_PIPE_TRANSCEIVE
from stormwatch.protocols.spnego import build_neg_token_init_hint
from stormwatch.sensor.auth import logon_leg
from stormwatch.sensor.context import Abort, Context, anomaly_for
from stormwatch.sensor.pipes import KNOWN_PIPES, PipeEndpoint
from stormwatch.sensor.replay_ids import smb2_request

DIALECTS = (Dialect.SMB_2_0_2, Dialect.SMB_2_1)
MAX_IO = 65536  # read, write and transact sizes offered: one frame stays well under max_frame
MAX_CREDITS = 64
DISK_READ_ACCESS = 0x001200A9
RELATED_FILE_ID = b"\xff" * 16
FILE_OPEN_DISPOSITION = 1
CAPS_2_1 = 0x00000003  # DFS | LEASING, as Windows 7 answers 2.1 (without multi-credit)


@dataclass
class _Open:
    tree_id: int
    fid: int
    pipe: PipeEndpoint | None


Reply = bytes | None


class Smb2Handler:
    """SMB2 requests in, answers and events out through the :class:`Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.dialect: int | None = None  # a real dialect once negotiated
        self.sessions: dict[int, bool] = {}  # SessionId -> logon complete
        self.trees: dict[int, str] = {}  # TreeId -> share name
        self.ipc: set[int] = set()
        self.opens: dict[bytes, _Open] = {}
        self.pending_reads: dict[bytes, list[tuple[Header, int]]] = {}
        self._next_tree = 1

    # -- entry points --------------------------------------------------------------------------

    def answer_multiprotocol(self, dialects: list[str], dialect: int) -> None:
        """Answer an SMB1 NEGOTIATE that offered SMB2 ([MS-SMB2] 3.3.5.3.1): DialectRevision
        0x02FF (the client then negotiates again in SMB2) or 0x0202 (negotiated at once)."""
        self.ctx.emit("smb.negotiate", {"dialects": dialects, "dialect": f"0x{dialect:04x}", "smb_version": 2,
                                        "extended_security": True})
        if dialect != Dialect.WILDCARD:
            self.dialect = dialect
        header = Header(Command.NEGOTIATE, flags=HeaderFlags.SERVER_TO_REDIR, credits=1)
        self.ctx.reply(build_message(header, self._negotiate_body(dialect)))

    def handle(self, payload: bytes) -> None:
        try:
            messages = parse_frame(payload)
        except ProtocolError as exc:
            raise anomaly_for(exc, "smb2") from None
        replies: list[bytes] = []
        last_file: bytes | None = None
        for m in messages:
            if m.header.is_response:
                continue
            if self.ctx.replay is not None:  # a capture: its server's SessionId/TreeId/FileId → ours
                m = smb2_request(self, m)
            self.ctx.count_request()
            reply, created = self._message(m, last_file)
            if created is not None:
                last_file = created
            if reply is not None:
                replies.append(reply)
        if replies:
            self.ctx.reply(build_compound(replies))
        for file_id in list(self.pending_reads):
            self._complete_reads(file_id)

    # -- one message ---------------------------------------------------------------------------

    def _answer(self, req: Header, body: bytes, status: int = NtStatus.SUCCESS, *, session_id: int | None = None,
                tree_id: int | None = None) -> bytes:
        credits = max(1, min(req.credits, MAX_CREDITS))
        return build_message(response_header(req, status=status, credits=credits, session_id=session_id,
                                             tree_id=tree_id), body)

    def _error(self, req: Header, status: int) -> bytes:
        return self._answer(req, build_error(), status)

    def _message(self, m: Message, last_file: bytes | None) -> tuple[Reply, bytes | None]:
        h, body = m.header, m.body
        if isinstance(body, NegotiateRequest):
            return self._negotiate(h, body), None
        if self.dialect is None:
            raise Abort("smb_protocol_order", f"SMB2 command {h.command} before NEGOTIATE")
        if h.command == Command.CANCEL:
            return None, None  # [MS-SMB2] 3.3.5.16: no response
        if isinstance(body, EmptyBody) and h.command == Command.ECHO:
            return self._answer(h, build_empty()), None
        if isinstance(body, SessionSetupRequest):
            return self._session_setup(h, body), None
        if not self.sessions.get(h.session_id):
            return self._error(h, NtStatus.USER_SESSION_DELETED), None
        if isinstance(body, EmptyBody) and h.command == Command.LOGOFF:
            self.sessions.pop(h.session_id, None)
            return self._answer(h, build_empty()), None
        if isinstance(body, TreeConnectRequest):
            return self._tree_connect(h, body), None
        if h.tree_id not in self.trees:
            return self._error(h, NtStatus.NETWORK_NAME_DELETED), None
        if isinstance(body, EmptyBody) and h.command == Command.TREE_DISCONNECT:
            self.trees.pop(h.tree_id, None)
            for file_id in [f for f, o in self.opens.items() if o.tree_id == h.tree_id]:
                self._forget(file_id)
            return self._answer(h, build_empty()), None
        if isinstance(body, CreateRequest):
            return self._create(h, body)
        if isinstance(body, CloseRequest | ReadRequest | WriteRequest | IoctlRequest):
            file_id = body.file_id
            if h.is_related and file_id == RELATED_FILE_ID and last_file is not None:
                file_id = last_file
            return self._file_op(h, body, file_id), None
        return self._error(h, NtStatus.NOT_SUPPORTED), None

    def _negotiate_body(self, dialect: int) -> bytes:
        return build_negotiate_response(
            dialect=dialect, server_guid=self.ctx.persona.guid_bytes, system_time=self.ctx.filetime(),
            security_buffer=build_neg_token_init_hint(), security_mode=1,
            capabilities=CAPS_2_1 if dialect != Dialect.SMB_2_0_2 else 0x1, max_transact_size=MAX_IO,
            max_read_size=MAX_IO, max_write_size=MAX_IO, server_start_time=self.ctx.boot_filetime())

    def _negotiate(self, h: Header, body: NegotiateRequest) -> bytes:
        if self.dialect is not None:
            raise Abort("smb_protocol_order", "a second NEGOTIATE on the connection")
        chosen = select_dialect(body.dialects, DIALECTS)
        self.ctx.emit("smb.negotiate", {"dialects": [f"0x{d:04x}" for d in body.dialects],
                                        "dialect": f"0x{chosen:04x}" if chosen else "", "smb_version": 2,
                                        "extended_security": True})
        if chosen is None:
            return self._error(h, NtStatus.NOT_SUPPORTED)
        self.dialect = chosen
        return self._answer(h, self._negotiate_body(chosen))

    def _session_setup(self, h: Header, body: SessionSetupRequest) -> bytes:
        leg = logon_leg(self.ctx, body.security_buffer)
        if leg.status == NtStatus.LOGON_FAILURE:
            return self._error(h, leg.status)
        sid = h.session_id
        if sid not in self.sessions:
            if len(self.sessions) >= self.ctx.limits.max_logons:
                raise Abort("max_logons", f"more than max_logons={self.ctx.limits.max_logons} logons",
                            reason="limit")
            sid = self.ctx.rng.randrange(1, 1 << 16) << 32 | self.ctx.rng.randrange(1, 1 << 16)
        done = leg.status == NtStatus.SUCCESS
        self.sessions[sid] = done
        if leg.event is not None:
            self.ctx.emit("smb.session_setup", leg.event)
        flags = 0
        if done:
            flags = SessionFlags.IS_NULL if leg.anonymous else SessionFlags.IS_GUEST
        return self._answer(h, build_session_setup_response(leg.blob, int(flags)), leg.status, session_id=sid)

    def _tree_connect(self, h: Header, body: TreeConnectRequest) -> bytes:
        share = body.share
        ipc = share == "IPC$"
        disk = share == self.ctx.persona.decoy_share.upper()
        self.ctx.emit("smb.tree_connect", {"path": body.path, "share": share,
                                           "service": "IPC" if ipc else "A:" if disk else ""})
        if share in ("ADMIN$", "C$", "D$"):
            return self._error(h, NtStatus.ACCESS_DENIED)
        if not (ipc or disk):
            return self._error(h, NtStatus.BAD_NETWORK_NAME)
        if len(self.trees) >= self.ctx.limits.max_trees:
            raise Abort("max_trees", f"more than max_trees={self.ctx.limits.max_trees} trees", reason="limit")
        tree_id = self._next_tree
        self._next_tree += 1
        self.trees[tree_id] = share
        if ipc:
            self.ipc.add(tree_id)
            reply = build_tree_connect_response(ShareType.PIPE)
        else:
            reply = build_tree_connect_response(ShareType.DISK, share_flags=0, maximal_access=DISK_READ_ACCESS)
        return self._answer(h, reply, tree_id=tree_id)

    def _create(self, h: Header, body: CreateRequest) -> tuple[Reply, bytes | None]:
        if h.tree_id not in self.ipc:
            opening = body.create_disposition == FILE_OPEN_DISPOSITION
            return self._error(h, NtStatus.OBJECT_NAME_NOT_FOUND if opening else NtStatus.ACCESS_DENIED), None
        pipe = normalise_pipe(body.name)
        if pipe not in KNOWN_PIPES:
            return self._error(h, NtStatus.OBJECT_NAME_NOT_FOUND), None
        fid = self.ctx.open_file()
        file_id = fid.to_bytes(8, "little") + self.ctx.rng.getrandbits(64).to_bytes(8, "little")
        self.opens[file_id] = _Open(h.tree_id, fid, PipeEndpoint(self.ctx, pipe))
        self.ctx.emit("smb.pipe_open", {"pipe": pipe, "fid": fid})
        return self._answer(h, build_create_response(file_id)), file_id

    def _file_op(self, h: Header, body: CloseRequest | ReadRequest | WriteRequest | IoctlRequest,
                 file_id: bytes) -> Reply:
        opened = self.opens.get(file_id)
        if opened is None or opened.tree_id != h.tree_id:
            return self._error(h, NtStatus.FILE_CLOSED)
        if isinstance(body, CloseRequest):
            self._forget(file_id)
            return self._answer(h, build_close_response())
        pipe = opened.pipe
        if pipe is None:
            return self._error(h, NtStatus.ACCESS_DENIED)
        if isinstance(body, WriteRequest):
            pipe.write(body.data)
            return self._answer(h, build_write_response(len(body.data)))
        if isinstance(body, ReadRequest):
            got = pipe.read(body.length)
            if got is None:
                waiting = self.pending_reads.setdefault(file_id, [])
                if len(waiting) < 4:
                    waiting.append((h, body.length))
                return None
            data, left = got
            status = NtStatus.BUFFER_OVERFLOW if left else NtStatus.SUCCESS
            return self._answer(h, build_read_response(data, left), status)
        if body.ctl_code != FSCTL_PIPE_TRANSCEIVE:
            return self._error(h, NtStatus.NOT_SUPPORTED)
        got = pipe.transact(body.input, body.max_output_response)
        if got is None:
            return None  # the service is gone (exploit) or silent: the IOCTL never completes
        out, left = got
        status = NtStatus.BUFFER_OVERFLOW if left else NtStatus.SUCCESS
        return self._answer(h, build_ioctl_response(body.ctl_code, file_id, out), status)

    def _complete_reads(self, file_id: bytes) -> None:
        waiting = self.pending_reads.get(file_id)
        opened = self.opens.get(file_id)
        while waiting and opened is not None and opened.pipe is not None:
            h, length = waiting[0]
            got = opened.pipe.read(length)
            if got is None:
                return
            waiting.pop(0)
            data, left = got
            status = NtStatus.BUFFER_OVERFLOW if left else NtStatus.SUCCESS
            self.ctx.reply(self._answer(h, build_read_response(data, left), status))

    def _forget(self, file_id: bytes) -> None:
        if self.opens.pop(file_id, None) is not None:
            self.ctx.close_file()
        self.pending_reads.pop(file_id, None)
