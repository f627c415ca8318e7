"""DCE/RPC endpoints: one per opened named pipe (SMB1 and SMB2 alike) and one per TCP 135
connection. An endpoint takes the client's bytes in order, reassembles PDUs
(:class:`~stormwatch.protocols.dcerpc.reassembly.DceRpcStream`), answers binds and calls, runs
the DCE/RPC exploit detectors, and queues its answers as pipe messages, one PDU fragment each,
for the next read (READ_ANDX, SMB2 READ) or transceive (TransactNmPipe, FSCTL_PIPE_TRANSCEIVE).

The pipes a Windows 2000/XP host lets a guest open on IPC$ are :data:`KNOWN_PIPES`; an interface
is accepted on a pipe when Windows serves it through that pipe
(:func:`~stormwatch.protocols.dcerpc.interfaces.supports`: srvsvc answers on ``\\browser`` too,
which is how MS06-040 and MS08-067 reach it), on TCP 135 when RPCSS serves it there.

An exploit call (a finding of kind "exploit") is answered as the unpatched host it hits does:
the service thread that ran it is gone, so the call gets no answer and neither does anything
after it on this endpoint. The SMB layer still acknowledges the write that carried it (the bytes
did reach the pipe), so an exploit that sends its call twice (Metasploit's ms06_040_netapi) gets
to send both (and both are recorded: the endpoint keeps decoding what reaches the dead pipe); a
transceive of it stays unanswered. On TCP 135 IActivation::RemoteActivation is
answered with a fault whatever it carries (RPCSS survives MS03-026's probes there).

Replaying a capture (``Context.replay`` set, :mod:`.replay_ids`): a pipe opened before the capture
began is :data:`UNKNOWN_PIPE`, on which any interface Windows serves through some pipe may be
bound; and a request on a context the endpoint refused is still named and judged — the client
went on with it, so the captured server had accepted it — though still answered with a fault.
"""

from __future__ import annotations

from collections import deque

from stormwatch.detect.rpc import detect_rpc_call
from stormwatch.protocols.dcerpc.build import (
    DEFAULT_MAX_FRAG,
    NCA_S_UNK_IF,
    build_bind_ack,
    build_fault,
    build_response,
    negotiate,
)
from stormwatch.protocols.dcerpc.interfaces import IREMOTEACTIVATION, SyntaxId, lookup, supports
from stormwatch.protocols.dcerpc.pdu import AlterContext, Bind, Pdu, Request
from stormwatch.protocols.dcerpc.reassembly import DceRpcStream, ReassemblyLimits
from stormwatch.protocols.errors import ProtocolError
from stormwatch.sensor import rpc_answers
from stormwatch.sensor.context import Context, anomaly_for

#: Named pipes a guest may open on IPC$ of Windows 2000/XP (lower case, without ``\PIPE\``).
KNOWN_PIPES = frozenset({
    "srvsvc", "browser", "wkssvc", "lsarpc", "lsass", "samr", "netlogon", "epmapper", "spoolss", "svcctl",
    "ntsvcs", "atsvc", "llsrpc", "winreg", "eventlog",
})
#: What RPCSS offers on TCP 135 ([MS-RPCE] 2.1.1.1: it serves the endpoint mapper and the DCOM
#: activation interfaces there; the table marks them reachable through "epmapper").
TCP_ENDPOINT = "epmapper"
TCP_MAX_FRAG = 5840  # what Windows offers over TCP in bind_ack
MIN_CLIENT_FRAG = 128  # a smaller max_recv_frag would make us cut answers into confetti
MAX_QUEUED_MESSAGES = 4096
#: Replay only: the name of a pipe opened before the capture began (never a real pipe name: those
#: are checked against KNOWN_PIPES before they are opened).
UNKNOWN_PIPE = "?"


class PipeEndpoint:
    """A DCE/RPC server endpoint on a named pipe (``pipe`` set) or on TCP 135 (``pipe`` None)."""

    def __init__(self, ctx: Context, pipe: str | None) -> None:
        self.ctx = ctx
        self.pipe = pipe
        self.transport = f"pipe:{pipe}" if pipe is not None else "tcp"
        limits = ctx.limits
        self.stream = DceRpcStream(ReassemblyLimits(
            max_frag_length=min(limits.max_frame, 65535), max_fragments=limits.max_dcerpc_fragments,
            max_stub_bytes=limits.max_stub_bytes))
        self.contexts: dict[int, SyntaxId] = {}
        self.proposed: dict[int, SyntaxId] = {}  # replay only: every context a bind proposed
        self.messages: deque[bytes] = deque()
        self.crashed = False
        self.assoc_group = 0
        self.client_max_frag = DEFAULT_MAX_FRAG

    # -- the pipe's two directions -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Client bytes into the pipe; answers are queued. Raises Abort on malformed DCE/RPC.
        After a crash the bytes are still decoded, recorded and judged, but nothing answers."""
        try:
            pdus = self.stream.feed(data)
        except ProtocolError as exc:
            raise anomaly_for(exc, "dcerpc") from None
        for pdu in pdus:
            self._pdu(pdu)
        if self.stream.error is not None:
            raise anomaly_for(self.stream.error, "dcerpc")

    def read(self, max_count: int) -> tuple[bytes, int] | None:
        """(up to ``max_count`` bytes of the next message, bytes of it left over) or None when
        nothing is queued (the read waits, as a blocking pipe read does)."""
        if not self.messages:
            return None
        message = self.messages[0]
        n = max(0, max_count)
        if len(message) > n:
            self.messages[0] = message[n:]
            return message[:n], len(message) - n
        self.messages.popleft()
        return message, 0

    def transact(self, data: bytes, max_count: int) -> tuple[bytes, int] | None:
        """TransactNmPipe / FSCTL_PIPE_TRANSCEIVE: write one message, read one ([MS-CIFS] 2.2.5.6)."""
        self.write(data)
        return self.read(max_count)

    def drain(self) -> bytes:
        """Every queued byte (TCP 135 sends them as they come)."""
        out = b"".join(self.messages)
        self.messages.clear()
        return out

    # -- DCE/RPC -------------------------------------------------------------------------------

    def _queue(self, pdus: bytes) -> None:
        """Queue one or more concatenated PDUs as one message each (a pipe message per fragment);
        nothing once the service has crashed."""
        if self.crashed:
            return
        pos = 0
        while pos + 10 <= len(pdus):
            length = int.from_bytes(pdus[pos + 8:pos + 10], "little")
            self.messages.append(pdus[pos:pos + length])
            pos += length
        while len(self.messages) > MAX_QUEUED_MESSAGES:  # a client that never reads
            self.messages.popleft()

    def _supported(self, syntax: SyntaxId) -> bool:
        if self.pipe == UNKNOWN_PIPE:
            return supports(syntax)
        return supports(syntax, self.pipe if self.pipe is not None else TCP_ENDPOINT)

    def _pdu(self, pdu: Pdu) -> None:
        if isinstance(pdu, Bind):
            self._bind(pdu)
        elif isinstance(pdu, Request):
            self.ctx.count_request()
            self._request(pdu)
        # auth3, shutdown, cancel and PDUs only a server sends get no answer, as from Windows

    def _bind(self, pdu: Bind) -> None:
        alter = isinstance(pdu, AlterContext)
        results = negotiate(pdu.contexts, self._supported)
        for elem, result in zip(pdu.contexts, results, strict=True):
            iface = lookup(elem.abstract_syntax.uuid)
            accepted = result.result == 0
            if accepted:
                self.contexts[elem.context_id] = elem.abstract_syntax
            if self.ctx.replay is not None:
                self.proposed[elem.context_id] = elem.abstract_syntax
            self.ctx.emit("dcerpc.bind", {
                "interface": str(elem.abstract_syntax.uuid), "interface_name": iface.name if iface else "",
                "interface_version": elem.abstract_syntax.version, "transport": self.transport,
                "accepted": accepted})
        if not self.assoc_group:
            self.assoc_group = pdu.assoc_group_id or self.ctx.rng.randrange(0x1000, 0x10000)
        self.client_max_frag = max(MIN_CLIENT_FRAG, min(pdu.max_recv_frag, 65535))
        ours = DEFAULT_MAX_FRAG if self.pipe is not None else TCP_MAX_FRAG
        address = "" if alter else (f"\\PIPE\\{self.pipe}" if self.pipe is not None else "135")
        self._queue(build_bind_ack(pdu.header.call_id, results, secondary_address=address,
                                   assoc_group_id=self.assoc_group, max_xmit_frag=ours, max_recv_frag=ours,
                                   alter=alter))

    def _request(self, pdu: Request) -> None:
        syntax = self.contexts.get(pdu.context_id)
        judged = syntax if syntax is not None else self.proposed.get(pdu.context_id)
        iface = lookup(judged.uuid) if judged else None
        name = iface.operation(pdu.opnum) if iface else None
        self.ctx.emit("dcerpc.request", {
            "interface": str(judged.uuid) if judged else "", "interface_name": iface.name if iface else "",
            "opnum": pdu.opnum, "operation": name or "", "stub_len": len(pdu.stub), "fragments": pdu.fragments,
            "transport": self.transport})
        call_id = pdu.header.call_id
        if judged is None:
            self._queue(build_fault(call_id, pdu.context_id, NCA_S_UNK_IF))
            return
        findings = detect_rpc_call(judged.uuid, pdu.opnum, pdu.stub, pdu.header.little_endian)
        self.ctx.report(findings)
        exploit = any(f.kind == "exploit" for f in findings)
        if exploit and not (self.pipe is None and judged.uuid == IREMOTEACTIVATION.uuid):
            self.crashed = True
            self.messages.clear()
        if self.crashed:
            return
        if syntax is None:  # replay: refused here, accepted by the captured server
            self._queue(build_fault(call_id, pdu.context_id, NCA_S_UNK_IF))
            return
        result = rpc_answers.answer(syntax.uuid, pdu.opnum, pdu.stub, pdu.header.little_endian, self.ctx.persona)
        if isinstance(result, int):
            self._queue(build_fault(call_id, pdu.context_id, result))
        else:
            self._queue(build_response(call_id, pdu.context_id, result, max_frag=self.client_max_frag))
