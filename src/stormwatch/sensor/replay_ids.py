"""A :class:`~stormwatch.sensor.session.Session` replaying a captured connection: the captured
server's ids.

In a capture the client's requests name the ids the *captured* server handed out — SMB1 UID, TID
and FID ([MS-CIFS] 2.2.3.1, 2.2.4.64.2), SMB2 SessionId, TreeId ([MS-SMB2] 2.2.1.2) and FileId
(2.2.14) — not the ones the replaying session hands out. A session in replay mode is therefore also
given the captured server's bytes (``Session.server_data``) and pairs the two answers to the same
request (same PID and MID in SMB1, same MessageId in SMB2):

* :meth:`ReplayIds.ours` records the ids each of the session's own answers granted (a
  SESSION_SETUP's UID, a TREE_CONNECT's TID, an NT_CREATE's FID, the SMB2 equivalents);
* :meth:`ReplayIds.theirs` reads the captured server's answer to the same request and maps each
  id it granted to ours — or to *refused* when the session did not grant what the server did (a
  share our persona does not offer): the request naming it then fails as it would on the honeypot.

Every id of a later request is translated before the handlers see it (:func:`smb1_request`,
:func:`smb2_request`); the detectors have already judged the message as it was on the wire. An id
the capture never showed being granted is left as it is — unless the session is *lenient*: the
capture starts after the connection's NEGOTIATE, or its server side has a gap or is missing. Then an
unknown id stands for the most recent of the session's own that no captured id stands for yet (the
server's answer that would have paired them is not in the capture), or else for something granted
before the capture began, which the session creates at first use: a logon, an IPC$ tree (replays
are about pipes), a pipe whose name is unknown (:data:`~stormwatch.sensor.pipes.UNKNOWN_PIPE`, on
which every interface Windows serves through some pipe may be bound). Such implicit objects keep
the capture's own id when it is free and emit no event of their own.

DCE/RPC context ids are chosen by the client ([C706] 12.6.3.1) and need no translation; what the
replay changes there is in :class:`~stormwatch.sensor.pipes.PipeEndpoint`: a request on a context
the session refused but the captured server evidently accepted is still named and judged.

Nothing here runs for a live connection (``Context.replay`` is None).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Container
from dataclasses import replace
from typing import TYPE_CHECKING

from stormwatch.protocols import smb1 as s1
from stormwatch.protocols import smb2 as s2
from stormwatch.protocols.errors import ProtocolError
from stormwatch.protocols.smb2.header import split_compound
from stormwatch.sensor.pipes import UNKNOWN_PIPE, PipeEndpoint

if TYPE_CHECKING:
    from stormwatch.sensor.smb1_handler import Smb1Handler
    from stormwatch.sensor.smb2_handler import Smb2Handler

#: Answers waiting for their counterpart, and aliases kept per kind of id: a client juggles a few.
MAX_REMEMBERED = 4096

Ident = int | bytes
Key = tuple[int, ...]
Grants = dict[str, Ident]

#: Ids meaning "none" in a request: never translated (FID 0 is also MS17-010's PeekNmPipe probe).
_NONE: dict[str, frozenset[Ident]] = {
    "uid": frozenset({0}), "tid": frozenset({0, 0xFFFF}), "fid": frozenset({0, 0xFFFF}),
    "sid": frozenset({0}), "tree": frozenset({0, 0xFFFFFFFF}), "file": frozenset({bytes(16), b"\xff" * 16}),
}
#: What an id the session refused becomes: a value the handlers never hand out, so the request
#: is answered as naming an unknown UID / TID / FID, as on the honeypot.
_REFUSED: dict[str, Ident] = {"uid": 0xFFFF, "tid": 0xFFFF, "fid": 0xFFFF, "sid": (1 << 64) - 1,
                              "tree": 0xFFFFFFFF, "file": bytes(16)}
_PIPE_WAIT = s1.TransSubcommand.WAIT_NMPIPE  # its second setup word is a priority, not a FID


def grants(message: bytes) -> list[tuple[Key, Grants]]:
    """The ids an SMB1 or SMB2 answer grants, keyed by the request it answers. A body the codecs
    refuse still gives what its header says (servers other than Windows answer in odd shapes)."""
    if message[:4] == b"\xffSMB":
        return _smb1_grants(message)
    if message[:4] == b"\xfeSMB":
        return _smb2_grants(message)
    return []


#: The commands whose answers grant ids: SESSION_SETUP_ANDX, TREE_CONNECT_ANDX and NT_CREATE_ANDX
#: (the first two may chain the next: [MS-CIFS] 2.2.4.53, 2.2.4.55); SMB2 SESSION_SETUP,
#: TREE_CONNECT and CREATE. Any other answer is not decoded at all (most of a replay's answers).
_SMB1_GRANTING = frozenset({0x73, 0x75, 0xA2})
_SMB2_GRANTING = frozenset({1, 3, 5})


def _smb1_grants(message: bytes) -> list[tuple[Key, Grants]]:
    if len(message) < 5 or message[4] not in _SMB1_GRANTING:
        return []
    try:
        h = s1.parse_header(message)
    except ProtocolError:
        return []
    if not h.is_reply:
        return []
    ok = h.status in (s1.NtStatus.SUCCESS, s1.NtStatus.MORE_PROCESSING_REQUIRED)
    found: Grants = {}
    try:
        for body in s1.decode_smb1(message).commands:
            if isinstance(body, s1.SessionSetupAndXResponse):
                found["uid"] = h.uid
            elif isinstance(body, s1.TreeConnectAndXResponse):
                found["tid"] = h.tid
            elif isinstance(body, s1.NtCreateAndXResponse):
                found["fid"] = body.fid
    except ProtocolError:
        if ok and h.command == s1.Command.SESSION_SETUP_ANDX:
            found["uid"] = h.uid
        elif ok and h.command == s1.Command.TREE_CONNECT_ANDX:
            found["tid"] = h.tid
    return [((1, h.pid, h.mid), found)]


def _smb2_grants(message: bytes) -> list[tuple[Key, Grants]]:
    try:
        parts = split_compound(message)
    except ProtocolError:
        return []
    out: list[tuple[Key, Grants]] = []
    for part in parts:
        if len(part) < 14 or int.from_bytes(part[12:14], "little") not in _SMB2_GRANTING:
            continue
        try:
            m = s2.parse_message(part)
        except ProtocolError:
            continue
        h, body = m.header, m.body
        if not h.is_response:
            continue
        found: Grants = {}
        if isinstance(body, s2.SessionSetupResponse):
            found["sid"] = h.session_id
        elif isinstance(body, s2.TreeConnectResponse) and h.async_id is None:
            found["tree"] = h.tree_id
        elif isinstance(body, s2.CreateResponse):
            found["file"] = body.file_id
        out.append(((2, h.message_id), found))
    return out


class ReplayIds:
    """The captured server's ids of one connection → the session's (see the module docstring)."""

    def __init__(self) -> None:
        #: Unknown ids stand for objects granted before the capture saw them (see the docstring).
        self.lenient = False
        self._ours: OrderedDict[Key, Grants] = OrderedDict()
        self._alias: dict[str, OrderedDict[Ident, Ident | None]] = {k: OrderedDict() for k in _NONE}
        self._unclaimed: dict[str, OrderedDict[Ident, None]] = {k: OrderedDict() for k in _NONE}  # ours, unmapped

    def ours(self, message: bytes) -> None:
        """The session answered: remember what it granted to which request."""
        for key, found in grants(message):
            if found:
                self._ours[key] = found
                self._ours.move_to_end(key)
                if len(self._ours) > MAX_REMEMBERED:
                    self._ours.popitem(last=False)
                for kind, mine in found.items():
                    unclaimed = self._unclaimed[kind]
                    unclaimed[mine] = None
                    unclaimed.move_to_end(mine)
                    if len(unclaimed) > MAX_REMEMBERED:
                        unclaimed.popitem(last=False)

    def theirs(self, message: bytes) -> None:
        """The captured server answered: map what it granted to what the session granted."""
        for key, found in grants(message):
            if not found:
                continue  # an interim answer (SMB2 STATUS_PENDING) or an error: the final one decides
            mine = self._ours.pop(key, {})
            for kind, real in found.items():
                if real not in _NONE[kind]:
                    self._remember(kind, real, mine.get(kind))

    def _remember(self, kind: str, real: Ident, mine: Ident | None) -> None:
        alias = self._alias[kind]
        alias[real] = mine
        alias.move_to_end(real)
        if len(alias) > MAX_REMEMBERED:
            alias.popitem(last=False)
        if mine is not None:
            self._unclaimed[kind].pop(mine, None)

    def translate(self, kind: str, real: Ident, alive: Callable[[Ident], bool],
                  create: Callable[[], Ident | None]) -> Ident:
        """The session's id for the captured ``real`` one. Lenient sessions give an unknown id the
        most recent of their own still ``alive`` that no captured id stands for yet (the answer that
        would have paired them is not in the capture), else what ``create`` makes (an implicit
        object; None if it cannot)."""
        if real in _NONE[kind]:
            return real
        alias = self._alias[kind]
        if real in alias:
            mine = alias[real]
            return _REFUSED[kind] if mine is None else mine
        if not self.lenient:
            return real
        made = self._claim(kind, alive)
        if made is None:
            made = create()
        self._remember(kind, real, made)
        return _REFUSED[kind] if made is None else made

    def _claim(self, kind: str, alive: Callable[[Ident], bool]) -> Ident | None:
        unclaimed = self._unclaimed[kind]
        while unclaimed:
            mine, _ = unclaimed.popitem()
            if alive(mine):
                return mine
        return None


def _free(real: int, taken: Container[int], low: int, high: int) -> int | None:
    """``real`` if it is free and in range, else the first free id from ``low``."""
    if low <= real <= high and real not in taken:
        return real
    return next((i for i in range(low, high + 1) if i not in taken), None)


# -- SMB1 ----------------------------------------------------------------------------------------

def smb1_request(h: Smb1Handler, header: s1.Header, commands: tuple[s1.Smb1Body, ...]
                 ) -> tuple[s1.Header, tuple[s1.Smb1Body, ...]]:
    """A request with the captured server's UID, TID and FIDs replaced by the session's."""
    from stormwatch.sensor.smb1_handler import OpenFile, Tree

    ids = h.ctx.replay
    assert ids is not None
    limits = h.ctx.limits

    def logon() -> int | None:
        uid = _free(header.uid, h.logons, 1, 0xFFFE) if len(h.logons) < limits.max_logons else None
        if uid is not None:
            h.logons[uid] = True
        return uid

    def tree() -> int | None:
        tid = _free(header.tid, h.trees, 1, 0xFFFE) if len(h.trees) < limits.max_trees else None
        if tid is not None:
            h.trees[tid] = Tree("IPC$", ipc=True)
        return tid

    uid = int(ids.translate("uid", header.uid, h.logons.__contains__, logon))
    tid = int(ids.translate("tid", header.tid, h.trees.__contains__, tree))

    def pipe() -> int | None:
        fid = h.ctx.open_file()
        h.files[fid] = OpenFile(tid, PipeEndpoint(h.ctx, UNKNOWN_PIPE))
        return fid

    out: list[s1.Smb1Body] = []
    for body in commands:
        if isinstance(body, s1.WriteAndXRequest | s1.ReadAndXRequest | s1.CloseRequest):
            body = replace(body, fid=int(ids.translate("fid", body.fid, h.files.__contains__, pipe)))
        elif (isinstance(body, s1.TransactionRequest) and len(body.setup) > 1 and body.setup[0] != _PIPE_WAIT
              and body.name.upper().startswith("\\PIPE\\")):
            fid = int(ids.translate("fid", body.setup[1], h.files.__contains__, pipe))
            body = replace(body, setup=(body.setup[0], fid, *body.setup[2:]))
        out.append(body)
    if (uid, tid) != (header.uid, header.tid):
        header = replace(header, uid=uid, tid=tid)
    return header, tuple(out)


# -- SMB2 ----------------------------------------------------------------------------------------

def smb2_request(h: Smb2Handler, m: s2.Message) -> s2.Message:
    """A request with the captured server's SessionId, TreeId and FileId replaced by the session's."""
    from stormwatch.sensor.smb2_handler import _Open

    ids = h.ctx.replay
    assert ids is not None
    limits = h.ctx.limits
    header, body = m.header, m.body

    def session() -> int | None:
        if len(h.sessions) >= limits.max_logons:
            return None
        h.sessions[header.session_id] = True  # 64 random-looking bits: never one of ours
        return header.session_id

    def tree() -> int | None:
        tree_id = _free(header.tree_id, h.trees, 1, 0xFFFFFFFE) if len(h.trees) < limits.max_trees else None
        if tree_id is not None:
            h.trees[tree_id] = "IPC$"
            h.ipc.add(tree_id)
        return tree_id

    sid = int(ids.translate("sid", header.session_id, h.sessions.__contains__, session))
    tree_id = header.tree_id
    if header.async_id is None:
        tree_id = int(ids.translate("tree", header.tree_id, h.trees.__contains__, tree))

    def file() -> bytes | None:
        if not isinstance(body, s2.CloseRequest | s2.ReadRequest | s2.WriteRequest | s2.IoctlRequest):
            return None
        if body.file_id in h.opens:
            return None
        fid = h.ctx.open_file()
        h.opens[body.file_id] = _Open(tree_id, fid, PipeEndpoint(h.ctx, UNKNOWN_PIPE))
        return body.file_id

    if isinstance(body, s2.CloseRequest | s2.ReadRequest | s2.WriteRequest | s2.IoctlRequest):
        body = replace(body, file_id=bytes(ids.translate("file", body.file_id, h.opens.__contains__, file)))
    if (sid, tree_id) != (header.session_id, header.tree_id):
        header = replace(header, session_id=sid, tree_id=tree_id)
    if header is m.header and body is m.body:
        return m
    return replace(m, header=header, body=body)
