"""DCE/RPC connection-oriented codec: PDUs, stream reassembly, interface table.

Golden vectors: hand-written PDUs (one field per line), impacket-built PDUs, and the DCE/RPC in
real captures compared with Zeek's and suricata-verify's expected outputs. The DCE/RPC bytes are
pulled out of SMB1 by a minimal test-only extractor (:func:`smb_pipe_streams`: NBSS framing,
SMB1 Transaction / WRITE_ANDX / READ_ANDX data, nothing else) so these tests do not depend on the
SMB1 codec; :func:`test_extractor_agrees_with_tshark` checks the extractor against tshark.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stormwatch.protocols.dcerpc import interfaces as ifaces
from stormwatch.protocols.dcerpc.build import (
    NCA_S_OP_RNG_ERROR,
    NIL_SYNTAX,
    build_bind,
    build_bind_ack,
    build_bind_nak,
    build_fault,
    build_request,
    build_response,
    negotiate,
)
from stormwatch.protocols.dcerpc.interfaces import NDR, NDR64, SyntaxId
from stormwatch.protocols.dcerpc.pdu import (
    AlterContext,
    AlterContextResp,
    Auth3,
    AuthVerifier,
    Bind,
    BindAck,
    BindNak,
    ContextElem,
    ContextResult,
    ControlPdu,
    Fault,
    Pdu,
    PType,
    Request,
    Response,
    parse_header,
    parse_pdu,
)
from stormwatch.protocols.dcerpc.reassembly import (
    CallAssembler,
    DceRpcStream,
    PduFramer,
    ReassemblyLimits,
)
from stormwatch.protocols.errors import MalformedMessage, NeedMoreData, ProtocolError

SRVSVC = ifaces.SRVSVC.syntax
FEATURES = SyntaxId(uuid.UUID("6cb71c2c-9812-4540-0300-000000000000"), 1, 0)


def hexbytes(text: str) -> bytes:
    """Hex with ``#`` comments, one field per line."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


# -- capture helpers (test-only) --------------------------------------------------------------------


@dataclass
class Conn:
    """One TCP connection: ``client``/``server`` are the payload bytes of each direction in order."""

    client_port: int
    server_port: int
    first_ts: float
    client: bytes = b""
    server: bytes = b""


def tcp_connections(path: Path) -> list[Conn]:
    """TCP payloads per connection and direction, reassembled by sequence number (dpkt).
    The client is the side that sent the SYN, or else the higher port."""
    segs: dict[tuple[Any, ...], dict[int, bytes]] = defaultdict(dict)
    first: dict[frozenset[Any], float] = {}
    syn_from: dict[frozenset[Any], tuple[Any, ...]] = {}
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        link = reader.datalink()
        for ts, buf in reader:
            if link == dpkt.pcap.DLT_EN10MB:
                ip = dpkt.ethernet.Ethernet(buf).data
            elif link == dpkt.pcap.DLT_LINUX_SLL:
                ip = dpkt.sll.SLL(buf).data
            else:
                ip = dpkt.ip.IP(buf)
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            key = (ip.src, tcp.sport, ip.dst, tcp.dport)
            pair = frozenset([(ip.src, tcp.sport), (ip.dst, tcp.dport)])
            first.setdefault(pair, ts)
            if tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK:
                syn_from[pair] = key
            if tcp.data:
                segs[key].setdefault(tcp.seq, bytes(tcp.data))
    streams: dict[tuple[Any, ...], bytes] = {}
    for key, parts in segs.items():
        data, nxt = bytearray(), None
        for seq in sorted(parts):
            chunk = parts[seq]
            if nxt is not None and seq < nxt:
                chunk = chunk[nxt - seq:]
            data += chunk
            nxt = max(nxt or 0, seq + len(parts[seq]))
        streams[key] = bytes(data)
    out = []
    for pair, ts in sorted(first.items(), key=lambda kv: kv[1]):
        a, b = sorted(pair)
        ckey = syn_from.get(pair) or ((*a, *b) if a[1] > b[1] else (*b, *a))
        skey = (ckey[2], ckey[3], ckey[0], ckey[1])
        out.append(Conn(ckey[1], ckey[3], ts, streams.get(ckey, b""), streams.get(skey, b"")))
    return out


def _smb_messages(stream: bytes) -> Iterator[bytes]:
    """SMB1 messages from NBSS / direct-TCP framing (session messages only)."""
    at = 0
    while at + 4 <= len(stream):
        kind, length = stream[at], int.from_bytes(stream[at + 1:at + 4], "big") & 0x1FFFF
        body = stream[at + 4:at + 4 + length]
        at += 4 + length
        if kind == 0 and body[:4] == b"\xffSMB":
            yield body


def _andx_blocks(smb: bytes) -> Iterator[tuple[int, int]]:
    """(command, offset of WordCount) for a message and its WRITE_ANDX/READ_ANDX chain."""
    cmd, at = smb[4], 32
    seen = 0
    while True:
        yield cmd, at
        if cmd not in (0x2E, 0x2F) or smb[at] < 2 or seen > 4:
            return
        nxt, off = smb[at + 1], struct.unpack_from("<H", smb, at + 3)[0]
        if nxt == 0xFF or off <= at or off >= len(smb):
            return
        cmd, at, seen = nxt, off, seen + 1


def smb_pipe_streams(conn: Conn) -> dict[int, tuple[bytes, bytes]]:
    """DCE/RPC bytes per pipe FID: (client → server, server → client).

    Client: Transaction with TransactNmPipe (0x26) setup, WRITE_ANDX. Server: the Transaction
    response and READ_ANDX response data, matched to the FID by the request's MID."""
    up: dict[int, bytearray] = defaultdict(bytearray)
    down: dict[int, bytearray] = defaultdict(bytearray)
    pending: dict[int, deque[int]] = defaultdict(deque)
    for smb in _smb_messages(conn.client):
        mid = struct.unpack_from("<H", smb, 30)[0]
        for cmd, at in _andx_blocks(smb):
            words = at + 1
            if cmd == 0x25 and smb[at] >= 16:
                count, offset = struct.unpack_from("<HH", smb, words + 22)
                setup = struct.unpack_from("<HH", smb, words + 28) if smb[words + 26] >= 2 else (0, 0)
                if setup[0] == 0x26:
                    up[setup[1]] += smb[offset:offset + count]
                    pending[mid].append(setup[1])
            elif cmd == 0x2F and smb[at] >= 12:
                fid, = struct.unpack_from("<H", smb, words + 4)
                mode, = struct.unpack_from("<H", smb, words + 14)
                length, offset = struct.unpack_from("<HH", smb, words + 20)
                data = smb[offset:offset + length]
                if mode & 0x0008 and data[:1] != b"\x05":  # message-mode start: a 2-byte length first
                    data = data[2:]
                up[fid] += data
            elif cmd == 0x2E and smb[at] >= 10:
                pending[mid].append(struct.unpack_from("<H", smb, words + 4)[0])
    for smb in _smb_messages(conn.server):
        mid = struct.unpack_from("<H", smb, 30)[0]
        for cmd, at in _andx_blocks(smb):
            words = at + 1
            if cmd == 0x25 and smb[at] >= 10 and pending[mid]:
                count, offset = struct.unpack_from("<HH", smb, words + 12)
                down[pending[mid].popleft()] += smb[offset:offset + count]
            elif cmd == 0x2E and smb[at] >= 12 and pending[mid]:
                length, offset = struct.unpack_from("<HH", smb, words + 10)
                down[pending[mid].popleft()] += smb[offset:offset + length]
    return {fid: (bytes(up[fid]), bytes(down.get(fid, b""))) for fid in up}


def decode_all(data: bytes) -> list[Pdu]:
    stream = DceRpcStream()
    out = stream.feed(data)
    assert stream.error is None and stream.idle
    return out


@dataclass
class Dialogue:
    """One pipe or TCP connection's DCE/RPC both ways, and the calls named per Zeek's log."""

    client: list[Pdu]
    server: list[Pdu]
    contexts: dict[int, SyntaxId] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in self.client:
            if isinstance(p, Bind):
                self.contexts.update({c.context_id: c.abstract_syntax for c in p.contexts})

    def requests(self) -> dict[int, Request]:
        return {p.header.call_id: p for p in self.client if isinstance(p, Request)}

    def answered(self) -> list[tuple[str, str]]:
        """(endpoint, operation) of each request with a response or fault, in answer order."""
        reqs = self.requests()
        out = []
        for p in self.server:
            if isinstance(p, Response | Fault) and p.header.call_id in reqs:
                req = reqs[p.header.call_id]
                syntax = self.contexts.get(req.context_id)
                if syntax is not None:
                    out.append((ifaces.interface_name(syntax.uuid), ifaces.operation_name(syntax.uuid, req.opnum)))
        return out


def zeek_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]


# -- the common header -------------------------------------------------------------------------------

BIND_SRVSVC = hexbytes("""
    05 00                               # rpc_vers 5, rpc_vers_minor 0
    0b                                  # PTYPE bind
    03                                  # pfc_flags FIRST_FRAG | LAST_FRAG
    10 00 00 00                         # packed_drep: little-endian, ASCII, IEEE
    48 00                               # frag_length 72
    00 00                               # auth_length 0
    01 00 00 00                         # call_id 1
    b8 10                               # max_xmit_frag 4280
    b8 10                               # max_recv_frag 4280
    00 00 00 00                         # assoc_group_id 0
    01 00 00 00                         # n_context_elem 1, reserved, reserved2
    00 00                               # p_cont_id 0
    01 00                               # n_transfer_syn 1, reserved
    c8 4f 32 4b 70 16 d3 01 12 78 5a 47 bf 6e e1 88   # abstract syntax: srvsvc (mixed-endian)
    03 00 00 00                         # if_version 3.0
    04 5d 88 8a eb 1c c9 11 9f e8 08 00 2b 10 48 60   # transfer syntax: NDR
    02 00 00 00                         # version 2.0
""")


def test_bind_vector() -> None:
    pdu = parse_pdu(BIND_SRVSVC)
    assert isinstance(pdu, Bind) and not isinstance(pdu, AlterContext)
    assert pdu.header.call_id == 1 and pdu.header.frag_length == 72 and pdu.header.little_endian
    assert (pdu.max_xmit_frag, pdu.max_recv_frag, pdu.assoc_group_id) == (4280, 4280, 0)
    assert pdu.contexts == (ContextElem(0, SRVSVC, (NDR,)),)
    assert pdu.auth is None
    assert build_bind(1, pdu.contexts) == BIND_SRVSVC


def test_big_endian_header_and_body() -> None:
    raw = hexbytes("""
        05 00 00 03                     # version 5.0, request, FIRST|LAST
        00 00 00 00                     # packed_drep: big-endian, ASCII, IEEE
        00 1c                           # frag_length 28 (big-endian)
        00 00                           # auth_length 0
        00 00 00 07                     # call_id 7
        00 00 00 04                     # alloc_hint 4
        00 01                           # p_cont_id 1
        00 1f                           # opnum 31
        de ad be ef                     # stub
    """)
    pdu = parse_pdu(raw)
    assert isinstance(pdu, Request)
    assert not pdu.header.little_endian and not pdu.header.ebcdic
    assert (pdu.header.call_id, pdu.context_id, pdu.opnum, pdu.stub) == (7, 1, 31, b"\xde\xad\xbe\xef")


@pytest.mark.parametrize(("raw", "field"), [
    (b"\x04\x00\x0b\x03\x10\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00", "rpc_vers"),
    (b"\x05\x02\x0b\x03\x10\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00", "rpc_vers_minor"),
    (b"\x05\x00\x01\x03\x10\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00", "PTYPE"),  # ping: CL only
    (b"\x05\x00\x0b\x03\x20\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00", "packed_drep"),
    (b"\x05\x00\x0b\x03\x10\x00\x00\x00\x0f\x00\x00\x00\x01\x00\x00\x00", "frag_length"),
    (b"\x05\x00\x00\x03\x10\x00\x00\x00\x20\x00\x10\x00\x01\x00\x00\x00", "auth_length"),
])
def test_bad_headers(raw: bytes, field: str) -> None:
    with pytest.raises(MalformedMessage) as exc:
        parse_header(raw)
    assert exc.value.field == field


def test_truncated_and_trailing() -> None:
    for n in range(len(BIND_SRVSVC)):
        with pytest.raises(NeedMoreData):
            parse_pdu(BIND_SRVSVC[:n])
    assert parse_pdu(BIND_SRVSVC + b"garbage") == parse_pdu(BIND_SRVSVC)


def test_fields_that_run_past_the_fragment_are_malformed() -> None:
    # n_context_elem 2 in a fragment that holds one
    raw = bytearray(BIND_SRVSVC)
    raw[24] = 2
    with pytest.raises(MalformedMessage):
        parse_pdu(bytes(raw))
    # a request whose frag_length stops inside the request header
    req = build_request(1, 0, 31, b"")
    short = req[:8] + struct.pack("<H", 20) + req[10:20]
    with pytest.raises(MalformedMessage):
        parse_pdu(short)


# -- each PDU type: build, parse, and impacket agrees ------------------------------------------------


def all_pdus() -> dict[str, bytes]:
    auth = AuthVerifier(10, 2, 0, 79231, b"NTLMSSP\x00" + b"\x01" * 24)
    return {
        "bind": build_bind(5, [ContextElem(0, SRVSVC, (NDR,)), ContextElem(1, SRVSVC, (NDR64,)),
                               ContextElem(2, SRVSVC, (FEATURES,))], assoc_group_id=0x1234),
        "bind_auth": build_bind(6, [ContextElem(0, SRVSVC, (NDR,))], auth=auth),
        "alter": build_bind(7, [ContextElem(1, ifaces.WKSSVC.syntax, (NDR,))], alter=True),
        "bind_ack": build_bind_ack(5, negotiate([ContextElem(0, SRVSVC, (NDR,))], ifaces.supports),
                                   secondary_address="\\PIPE\\browser", assoc_group_id=0x5e0c),
        "bind_ack_auth": build_bind_ack(6, [ContextResult(0, 0, NDR)], secondary_address="135",
                                        assoc_group_id=1, auth=auth),
        "alter_resp": build_bind_ack(7, [ContextResult(0, 0, NDR)], secondary_address="", assoc_group_id=1,
                                     alter=True),
        "bind_nak": build_bind_nak(8, 4),
        "request": build_request(9, 0, 31, b"\x01\x02\x03\x04" * 5),
        "request_obj": build_request(10, 1, 4, b"stub", object_uuid=uuid.UUID(int=1)),
        "request_auth": build_request(11, 0, 15, b"abcdef", auth=auth),
        "response": build_response(9, 0, b"\x00" * 12),
        "fault": build_fault(12, 0, NCA_S_OP_RNG_ERROR),
        "auth3": hexbytes("05 00 10 03 10000000 2800 0c00 0b000000") + b"    " +
                 hexbytes("0a 02 00 00 7f350100") + b"\x03" * 12,
        "shutdown": hexbytes("05 00 11 03 10000000 1000 0000 00000000"),
        "orphaned": hexbytes("05 00 13 03 10000000 1000 0000 0d000000"),
    }


def test_each_pdu_type_parses() -> None:
    p = {k: parse_pdu(v) for k, v in all_pdus().items()}
    bind = p["bind"]
    assert isinstance(bind, Bind) and bind.assoc_group_id == 0x1234 and len(bind.contexts) == 3
    assert ifaces.bind_time_features(bind.contexts[2].transfer_syntaxes[0]) == 3
    ba = p["bind_auth"]
    assert isinstance(ba, Bind) and ba.auth is not None and ba.auth.auth_type == 10
    assert ba.auth.value.startswith(b"NTLMSSP") and ba.contexts[0].abstract_syntax == SRVSVC
    assert isinstance(p["alter"], AlterContext)
    ack = p["bind_ack"]
    assert isinstance(ack, BindAck) and ack.secondary_address == "\\PIPE\\browser"
    assert ack.results == (ContextResult(0, 0, NDR),) and ack.assoc_group_id == 0x5e0c
    ack2 = p["bind_ack_auth"]
    assert isinstance(ack2, BindAck) and ack2.secondary_address == "135" and ack2.auth is not None
    resp = p["alter_resp"]
    assert isinstance(resp, AlterContextResp) and resp.secondary_address == ""
    nak = p["bind_nak"]
    assert isinstance(nak, BindNak) and (nak.reason, nak.versions) == (4, ((5, 0),))
    req = p["request"]
    assert isinstance(req, Request) and (req.opnum, req.alloc_hint, req.stub) == (31, 20, b"\x01\x02\x03\x04" * 5)
    obj = p["request_obj"]
    assert isinstance(obj, Request) and obj.object_uuid == uuid.UUID(int=1) and obj.stub == b"stub"
    ra = p["request_auth"]
    assert isinstance(ra, Request) and ra.stub == b"abcdef" and ra.auth is not None
    assert ra.auth.auth_pad_length == 2
    assert isinstance(p["response"], Response)
    fault = p["fault"]
    assert isinstance(fault, Fault) and fault.status == NCA_S_OP_RNG_ERROR and fault.header.pfc_flags == 0x23
    a3 = p["auth3"]
    assert isinstance(a3, Auth3) and a3.auth is not None and a3.auth.value == b"\x03" * 12
    assert isinstance(p["shutdown"], ControlPdu) and p["shutdown"].header.ptype == PType.SHUTDOWN
    assert isinstance(p["orphaned"], ControlPdu)


@pytest.mark.parametrize("name", sorted(all_pdus()))
def test_every_prefix_is_need_more_data_or_malformed(name: str) -> None:
    raw = all_pdus()[name]
    for n in range(len(raw)):
        with pytest.raises(ProtocolError):
            parse_pdu(raw[:n])
        # a fragment whose frag_length was cut to n bytes: parsed or refused, nothing else
        if n >= 16:
            cut = raw[:8] + struct.pack("<H", n) + raw[10:n]
            with contextlib.suppress(ProtocolError):
                parse_pdu(cut)
    assert parse_pdu(raw + b"\xff" * 9) == parse_pdu(raw)


def test_impacket_builds_we_parse() -> None:
    from impacket.dcerpc.v5 import rpcrt, srvs
    from impacket.uuid import uuidtup_to_bin

    bind = rpcrt.MSRPCBind()
    for ctx, syntax in enumerate([("8a885d04-1ceb-11c9-9fe8-08002b104860", "2.0"),
                                  ("71710533-beba-4937-8319-b5dbef9ccc36", "1.0")]):
        item = rpcrt.CtxItem()
        item["ContextID"] = ctx
        item["TransItems"] = 1
        item["AbstractSyntax"] = srvs.MSRPC_UUID_SRVS
        item["TransferSyntax"] = uuidtup_to_bin(syntax)
        bind.addCtxItem(item)
    header = rpcrt.MSRPCHeader()
    header["type"] = rpcrt.MSRPC_BIND
    header["call_id"] = 0x41414141  # nmap's call_id
    header["pduData"] = bind.getData()
    pdu = parse_pdu(header.get_packet())
    assert isinstance(pdu, Bind) and pdu.header.call_id == 0x41414141
    assert [c.abstract_syntax for c in pdu.contexts] == [SRVSVC, SRVSVC]
    assert [c.transfer_syntaxes for c in pdu.contexts] == [(NDR,), (NDR64,)]
    assert negotiate(pdu.contexts, ifaces.supports) == (ContextResult(0, 0, NDR), ContextResult(2, 2, NIL_SYNTAX))

    call = srvs.NetprPathCanonicalize()
    call["ServerName"] = "\x00"
    call["PathName"] = "\\pagefile.sys\x00"
    call["OutbufLen"] = 50
    call["Prefix"] = "c:\x00"
    call["PathType"] = 0
    call["Flags"] = 0
    req = rpcrt.MSRPCRequestHeader()
    req["call_id"] = 3
    req["ctx_id"] = 1
    req["op_num"] = call.opnum
    req["pduData"] = call.getData()
    req["alloc_hint"] = len(req["pduData"])
    got = parse_pdu(req.get_packet())
    assert isinstance(got, Request) and (got.opnum, got.context_id, got.stub) == (31, 1, call.getData())

    req["flags"] |= rpcrt.PFC_OBJECT_UUID
    req["uuid"] = uuid.UUID(int=7).bytes_le
    got = parse_pdu(req.get_packet())
    assert isinstance(got, Request) and got.object_uuid == uuid.UUID(int=7)


def test_we_build_impacket_parses() -> None:
    from impacket.dcerpc.v5 import rpcrt

    results = [ContextResult(0, 0, NDR), ContextResult(2, 1, NIL_SYNTAX)]
    raw = build_bind_ack(1, results, secondary_address="\\PIPE\\srvsvc", assoc_group_id=0x4ef8,
                         max_xmit_frag=4280, max_recv_frag=4280)
    ack = rpcrt.MSRPCBindAck(raw)
    assert ack["type"] == rpcrt.MSRPC_BINDACK and ack["frag_len"] == len(raw)
    assert ack["SecondaryAddr"] == "\\PIPE\\srvsvc" and ack["assoc_group"] == 0x4ef8
    items = [ack.getCtxItem(i) for i in (1, 2)]
    assert [(i["Result"], i["Reason"]) for i in items] == [(0, 0), (2, 1)]
    assert items[0]["TransferSyntax"] == rpcrt.DCERPC.NDRSyntax

    resp = rpcrt.MSRPCRespHeader(build_response(4, 1, b"payload!"))
    assert (resp["type"], resp["call_id"], resp["ctx_id"], resp["pduData"]) == (2, 4, 1, b"payload!")
    fault = rpcrt.MSRPCRespHeader(build_fault(5, 0, NCA_S_OP_RNG_ERROR))
    assert fault["type"] == rpcrt.MSRPC_FAULT
    assert struct.unpack("<L", fault["pduData"][:4])[0] == NCA_S_OP_RNG_ERROR
    nak = rpcrt.MSRPCBindNak(rpcrt.MSRPCHeader(build_bind_nak(6, 4))["pduData"])
    assert nak["RejectedReason"] == 4


def test_negotiate_like_windows_xp_and_vista() -> None:
    ctxs = [ContextElem(0, SRVSVC, (NDR,)), ContextElem(1, SRVSVC, (NDR64,)), ContextElem(2, SRVSVC, (FEATURES,)),
            ContextElem(3, SyntaxId(uuid.UUID(int=5), 1), (NDR,)), ContextElem(4, SyntaxId(SRVSVC.uuid, 2), (NDR,)),
            ContextElem(5, SyntaxId(SRVSVC.uuid, 3, 1), (NDR,))]
    xp = negotiate(ctxs, ifaces.supports)
    assert [(r.result, r.reason) for r in xp] == [(0, 0), (2, 2), (2, 2), (2, 1), (2, 1), (2, 1)]
    vista = negotiate(ctxs, ifaces.supports, ndr64=True, features=0x3)
    assert [(r.result, r.reason) for r in vista[:3]] == [(0, 0), (0, 0), (3, 3)]
    assert vista[1].transfer_syntax == NDR64
    # srvsvc is served through \browser on Windows 2000/XP, not through \lsarpc
    assert ifaces.supports(SRVSVC, "\\PIPE\\BROWSER") and not ifaces.supports(SRVSVC, "lsarpc")


# -- reassembly ---------------------------------------------------------------------------------------


def test_fragmented_request_reassembles_and_stream_takes_any_split() -> None:
    stub = bytes(range(256)) * 7
    raw = build_request(3, 0, 31, stub, max_frag=100)
    frames = PduFramer().feed(raw)
    assert len(frames) > 20
    assert [parse_pdu(f).header.pfc_flags & 3 for f in frames[:2]] == [1, 0]
    for step in (1, 7, 100, len(raw)):
        stream = DceRpcStream()
        got: list[Pdu] = []
        for i in range(0, len(raw), step):
            got += stream.feed(raw[i:i + step])
        assert len(got) == 1 and stream.idle
        call = got[0]
        assert isinstance(call, Request) and call.stub == stub and call.fragments == len(frames)
        assert call.opnum == 31 and call.header.call_id == 3


def test_interleaved_calls_and_passthrough() -> None:
    a = PduFramer().feed(build_request(1, 0, 15, b"A" * 64, max_frag=40))
    b = PduFramer().feed(build_request(2, 0, 21, b"B" * 64, max_frag=40))
    calls = CallAssembler()
    out = [calls.add(parse_pdu(f)) for pair in zip(a, b, strict=True) for f in pair]
    done = [p for p in out if p is not None]
    assert [(p.header.call_id, p.stub) for p in done if isinstance(p, Request)] == [(1, b"A" * 64), (2, b"B" * 64)]
    assert calls.add(parse_pdu(BIND_SRVSVC)) == parse_pdu(BIND_SRVSVC)


@pytest.mark.parametrize(("limits", "raw", "field"), [
    (ReassemblyLimits(max_fragments=3), build_request(1, 0, 31, b"x" * 64, max_frag=40), "max_fragments"),
    (ReassemblyLimits(max_stub_bytes=50), build_request(1, 0, 31, b"x" * 64, max_frag=40), "max_stub_bytes"),
    (ReassemblyLimits(max_stub_bytes=10), build_request(1, 0, 31, b"x" * 64), "max_stub_bytes"),
    (ReassemblyLimits(max_frag_length=64), build_request(1, 0, 31, b"x" * 64), "max_frag_length"),
    (ReassemblyLimits(max_outstanding_calls=1),
     build_request(1, 0, 31, b"x" * 64, max_frag=40)[:40] + build_request(2, 0, 31, b"y" * 64, max_frag=40)[:40],
     "max_outstanding_calls"),
    (ReassemblyLimits(), build_request(1, 0, 31, b"x" * 64, max_frag=40)[40:], "pfc_flags"),
    (ReassemblyLimits(),
     build_request(1, 0, 31, b"x" * 64, max_frag=40)[:40] + build_request(1, 0, 31, b"x" * 64, max_frag=40)[:40],
     "call_id"),
    (ReassemblyLimits(),
     build_request(1, 0, 31, b"x" * 64, max_frag=40)[:40] + build_response(1, 0, b"z" * 64, max_frag=40)[40:],
     "PTYPE"),
    (ReassemblyLimits(), b"\x06" + BIND_SRVSVC[1:], "rpc_vers"),
])
def test_limits_and_protocol_errors(limits: ReassemblyLimits, raw: bytes, field: str) -> None:
    stream = DceRpcStream(limits)
    with pytest.raises(MalformedMessage) as exc:
        stream.feed(raw)
    assert exc.value.field == field
    assert field in str(exc.value)
    with pytest.raises(MalformedMessage):  # the stream stays failed
        stream.feed(BIND_SRVSVC)


def test_pdus_before_an_error_are_kept() -> None:
    stream = DceRpcStream()
    got = stream.feed(BIND_SRVSVC + b"\x00garbage")
    assert len(got) == 1 and isinstance(stream.error, MalformedMessage)
    with pytest.raises(MalformedMessage):
        stream.feed(b"")


def test_buffer_is_bounded_by_one_pdu() -> None:
    framer = PduFramer(ReassemblyLimits(max_frag_length=200))
    raw = build_request(1, 0, 31, b"x" * 150)
    for b in raw[:-1]:
        assert framer.feed(bytes([b])) == []
    assert framer.buffered == len(raw) - 1 < 200
    assert framer.feed(raw[-1:]) == [raw]


# -- fuzzing --------------------------------------------------------------------------------------------

SEEDS = list(all_pdus().values())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8),
       st.integers(0, 420))
def test_fuzz_parse_pdu_only_protocol_errors(seed: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(seed)
    for at, value in edits:
        if at < len(raw):
            raw[at] = value
    with contextlib.suppress(ProtocolError):
        parse_pdu(bytes(raw[:cut]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([*SEEDS, b"\x05\x00\x00\x01\x10\x00\x00\x000\x00"]), max_size=6),
       st.lists(st.integers(1, 64), min_size=1, max_size=20), st.binary(max_size=40))
def test_fuzz_stream_only_protocol_errors(pdus: list[bytes], splits: list[int], junk: bytes) -> None:
    data = b"".join(pdus) + junk
    stream = DceRpcStream(ReassemblyLimits(max_fragments=4, max_outstanding_calls=2))
    at, i = 0, 0
    while at < len(data):
        n = splits[i % len(splits)]
        try:
            stream.feed(data[at:at + n])
        except ProtocolError:
            break
        at, i = at + n, i + 1


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_pdu(data)
    with contextlib.suppress(ProtocolError):
        DceRpcStream().feed(data)


# -- interface table --------------------------------------------------------------------------------


def test_uuid_wire_form() -> None:
    assert ifaces.uuid_to_wire(SRVSVC.uuid) == bytes.fromhex("c84f324b7016d30112785a47bf6ee188")
    assert ifaces.uuid_from_wire(bytes.fromhex("c84f324b7016d30112785a47bf6ee188")) == SRVSVC.uuid
    assert ifaces.uuid_from_wire(bytes.fromhex("4b324fc8167001d312785a47bf6ee188"), little_endian=False) == SRVSVC.uuid
    assert ifaces.parse_uuid("{4B324FC8-1670-01D3-1278-5A47BF6EE188}") == SRVSVC.uuid
    with pytest.raises(NeedMoreData):
        ifaces.uuid_from_wire(b"\x00" * 15)


def test_interface_table_matches_impacket() -> None:
    """Every opnum impacket knows for these interfaces has the same name and number here."""
    import importlib
    import inspect

    from impacket.dcerpc.v5.ndr import NDRCALL

    for module, iface in [("srvs", ifaces.SRVSVC), ("wkst", ifaces.WKSSVC), ("lsad", ifaces.LSARPC),
                          ("lsat", ifaces.LSARPC), ("samr", ifaces.SAMR), ("scmr", ifaces.SVCCTL),
                          ("epm", ifaces.EPMAPPER), ("drsuapi", ifaces.DRSUAPI), ("nspi", ifaces.NSPI),
                          ("dssp", ifaces.DSSETUP)]:
        m = importlib.import_module(f"impacket.dcerpc.v5.{module}")
        for name, cls in vars(m).items():
            if (inspect.isclass(cls) and issubclass(cls, NDRCALL) and cls.__module__ == m.__name__
                    and hasattr(cls, "opnum") and not name.endswith("Response")):
                assert iface.operation(cls.opnum) == name, (module, cls.opnum, name)
    assert ifaces.operation_name(ifaces.SRVSVC.uuid, 31) == "NetprPathCanonicalize"
    assert ifaces.operation_name(str(ifaces.DSSETUP.uuid), 9) == "DsRolerUpgradeDownlevelServer"
    assert ifaces.operation_name(ifaces.SRVSVC.uuid, 99) == "opnum-99"
    assert ifaces.interface_name("00000000-0000-0000-0000-000000000001").startswith("unknown-")
    assert ifaces.lookup("000001a0-0000-0000-c000-000000000046") is ifaces.ISYSTEMACTIVATOR
    assert ifaces.IOXIDRESOLVER.operation(5) == "ServerAlive2"
    assert ifaces.reachable(ifaces.WKSSVC.uuid, "\\PIPE\\browser")


# -- real captures ------------------------------------------------------------------------------------

REF = "pcap/smb-reference"


def test_tcp_context_trace_matches_zeek(shared_data: Path) -> None:
    """cs_window7-join_stream092.pcap: drsuapi over TCP with three contexts in one bind, an
    alter_context, sealed requests; Zeek's dce-rpc.context and request-response-stub-events."""
    (conn,) = [c for c in tcp_connections(shared_data / REF / "cs_window7-join_stream092.pcap") if c.client]
    d = Dialogue(decode_all(conn.client), decode_all(conn.server))
    bind = d.client[0]
    assert isinstance(bind, Bind) and bind.auth is not None
    assert [(c.context_id, str(c.abstract_syntax.uuid)) for c in bind.contexts] == [
        (0, "e3514235-4b06-11d1-ab04-00c04fc2dcd2"), (1, "e3514235-4b06-11d1-ab04-00c04fc2dcd2"),
        (2, "e3514235-4b06-11d1-ab04-00c04fc2dcd2")]
    assert [c.transfer_syntaxes[0] for c in bind.contexts][:2] == [NDR, NDR64]
    assert ifaces.bind_time_features(bind.contexts[2].transfer_syntaxes[0]) is not None
    ack = d.server[0]
    assert isinstance(ack, BindAck) and ack.secondary_address == "\\PIPE\\drsuapi"
    alter = d.client[1]
    assert isinstance(alter, AlterContext) and [c.context_id for c in alter.contexts] == [0]
    assert isinstance(d.server[1], AlterContextResp)
    zeek = zeek_rows(shared_data / "expected/zeek/dce-rpc.context/dce_rpc.log")
    assert d.answered() == [(r[8], r[9]) for r in zeek]
    # Zeek's bind / bind_ack / alter_context events, field by field (fid is 0 off SMB)
    events = []
    binds = [p for p in d.client if isinstance(p, Bind)]
    acks = [p for p in d.server if isinstance(p, BindAck)]
    for b, a in zip(binds, acks, strict=True):
        kind = "dce_rpc_alter_context" if isinstance(b, AlterContext) else "dce_rpc_bind"
        for c in b.contexts:
            events += [(kind, "fid", "0"), (kind, "ctx_id", str(c.context_id)),
                       (kind, "uuid", str(c.abstract_syntax.uuid))]
        events.append((f"{kind}_resp" if isinstance(a, AlterContextResp) else "dce_rpc_bind_ack", "fid", "0"))
        if not isinstance(a, AlterContextResp):
            events.append(("dce_rpc_bind_ack", "sec_addr", a.secondary_address))
    lines = (shared_data / "expected/zeek/dce-rpc.context/out").read_text().splitlines()[1:]
    expected = [(ev.strip(), *(x.strip() for x in rest.split("==", 1))) for ev, rest in
                (line.split("::", 1) for line in lines)]
    assert events == expected
    # request-response-stub-events: the first request and response stubs, byte for byte
    out = (shared_data / "expected/zeek/dce-rpc.request-response-stub-events/out").read_text().splitlines()
    first_req = next(p for p in d.client if isinstance(p, Request))
    first_resp = next(p for p in d.server if isinstance(p, Response))
    # Zeek's stub keeps the auth padding ([MS-RPCE] 2.2.2.11 auth_pad_length) that we strip
    assert first_req.auth is not None and first_resp.auth is not None
    assert first_req.auth.auth_level == 6  # packet privacy: kept, not verified
    assert (first_req.opnum, first_req.context_id, len(first_req.stub) + first_req.auth.auth_pad_length) == (0, 0, 144)
    assert out[3].startswith(first_req.stub.hex()) and len(out[3]) == 288
    assert len(first_resp.stub) + first_resp.auth.auth_pad_length == 64
    assert out[6].startswith(first_resp.stub.hex()) and len(out[6]) == 128


def test_mapi_trace_matches_zeek(shared_data: Path) -> None:
    """mapi.pcap: epmapper, nspi and exchange_mapi over TCP, lsarpc over SMB on 139."""
    conns = tcp_connections(shared_data / REF / "mapi.pcap")
    ours = []
    for c in conns:
        if c.server_port in (139, 445) or not c.client.startswith(b"\x05"):
            continue
        d = Dialogue(decode_all(c.client), decode_all(c.server))
        ours += [(c.client_port, c.server_port, *row) for row in d.answered()]
    log = shared_data / "expected/zeek/dce-rpc.mapi/dce_rpc.log"
    zeek = [(int(r[3]), int(r[5]), r[8], r[9]) for r in zeek_rows(log)]
    # Zeek logs the connection-1073 request that never got a response (call 7, EcDoRpc) with the
    # previous call's operation and round-trip time; everything answered matches exactly.
    assert zeek[-1] == zeek[-2] == (1073, 1032, "exchange_mapi", "EcRRegisterPushNotification")
    assert ours == zeek[:-1]
    last = next(c for c in conns if c.client_port == 1073)
    unanswered = Dialogue(decode_all(last.client), decode_all(last.server)).requests()[7]
    assert unanswered.opnum == 2
    # the lsarpc conversation over SMB (not in Zeek's log): bind and the LSA calls by name
    names = []
    for c in conns:
        if c.server_port == 139:
            for up, down in smb_pipe_streams(c).values():
                names += [op for _, op in Dialogue(decode_all(up), decode_all(down)).answered()]
    assert {"LsarOpenPolicy2", "LsarQueryInformationPolicy", "LsarLookupSids", "LsarClose"} <= set(names)


def test_smb1_transaction_dcerpc_matches_zeek(shared_data: Path) -> None:
    name = "dssetup_DsRoleGetPrimaryDomainInformation_standalone_workstation.cap"
    (conn,) = tcp_connections(shared_data / REF / name)
    ((up, down),) = smb_pipe_streams(conn).values()
    d = Dialogue(decode_all(up), decode_all(down))
    zeek = zeek_rows(shared_data / "expected/zeek/smb.smb1-transaction-dcerpc/dce_rpc.log")
    assert d.answered() == [(r[8], r[9]) for r in zeek] == [("dssetup", "DsRolerGetPrimaryDomainInformation")]
    ack = d.server[0]
    assert isinstance(ack, BindAck) and ack.secondary_address == "\\PIPE\\lsass"  # Zeek's named_pipe


def test_ms04_011_captures(shared_data: Path) -> None:
    """The DSSETUP bind and DsRolerUpgradeDownlevelServer request in both MS04-011 captures,
    decoded to the argument sizes the detector judges."""
    from stormwatch.protocols.dcerpc import calls, responses

    honeynet = [c for c in tcp_connections(shared_data / "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap")
                if c.server_port == 445 and c.client]
    ((up, down),) = smb_pipe_streams(honeynet[0]).values()
    sv = tcp_connections(shared_data / REF / "suricata-verify-dcerpc-dce-stub-data-02/input.pcap")[0]
    seen = []
    for client, size in ((up, 3208), (sv.client, 3284)):
        pdus = decode_all(client)
        bind, req = pdus[0], pdus[1]
        assert isinstance(bind, Bind) and bind.contexts[0].abstract_syntax == ifaces.DSSETUP.syntax
        assert isinstance(req, Request) and req.opnum == 9 and len(req.stub) == req.alloc_hint == size
        assert ifaces.operation_name(ifaces.DSSETUP.uuid, req.opnum) == "DsRolerUpgradeDownlevelServer"
        args = calls.decode_request(str(ifaces.DSSETUP.uuid), 9, req.stub)
        assert isinstance(args, calls.UpgradeDownlevelServerRequest) and args.trailing == 0
        assert args.encrypted_password is not None and args.encrypted_repair_password is not None
        dns = args.dns_domain_name
        seen.append((dns.max_count, dns.offset, dns.actual_count, dns.byte_length, dns.terminated))
        assert all(s.actual_count <= 11 for name, s in args.strings if name != "DnsDomainName")
    # the oversized first argument: 1004 and 993 UTF-16 units (a DNS name has at most 255)
    assert seen == [(1004, 0, 1004, 2008, True), (993, 0, 993, 1986, True)]
    # the honeynet server's answer: a nil DsOperationHandle and ERROR_INVALID_SERVER_STATE
    ack, resp = decode_all(down)
    assert isinstance(ack, BindAck) and isinstance(resp, Response)
    assert resp.stub == responses.upgrade_downlevel_server()


def test_real_share_enum_response_and_ours_agree_in_impacket(shared_data: Path) -> None:
    """raw_ntlm_in_smb.pcap holds a real Windows NetrShareEnum (level 1) reply; impacket reads
    it and ours the same way."""
    from impacket.dcerpc.v5 import srvs

    from stormwatch.protocols.dcerpc import responses

    conns = [c for c in tcp_connections(shared_data / REF / "raw_ntlm_in_smb.pcap") if c.server_port == 445]
    dialogues = [Dialogue(decode_all(up), decode_all(down)) for c in conns for up, down in smb_pipe_streams(c).values()]
    (d,) = [d for d in dialogues if any(isinstance(p, Request) and p.opnum == 15 for p in d.client)]
    reply = next(p for p in d.server if isinstance(p, Response))
    real = srvs.NetrShareEnumResponse(reply.stub)
    level = real["InfoStruct"]["ShareInfo"]["tag"]
    shares = [responses.Share(e["shi1_netname"][:-1], e["shi1_type"], e["shi1_remark"][:-1])
              for e in real["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"]]
    assert level == 1 and shares
    ours = srvs.NetrShareEnumResponse(responses.share_enum_level1(shares, resume_handle=real["ResumeHandle"]))
    ours_raw = responses.share_enum_level1(shares, resume_handle=real["ResumeHandle"])
    ours = srvs.NetrShareEnumResponse(ours_raw)

    def entries(r: Any) -> list[tuple[str, int, str]]:
        buffer = r["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"]
        return [(e["shi1_netname"], e["shi1_type"], e["shi1_remark"]) for e in buffer]

    assert entries(ours) == entries(real) and len(entries(real)) == 5
    assert ours["TotalEntries"] == real["TotalEntries"] and ours["ErrorCode"] == real["ErrorCode"] == 0
    # Same layout byte for byte except the referent ids (XP used heap addresses) and pad bytes.
    assert len(ours_raw) == len(reply.stub)


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_extractor_agrees_with_tshark(shared_data: Path) -> None:
    """The test-only SMB extractor finds the same DCE/RPC PDUs as Wireshark's dissector."""
    for name in ("mapi.pcap", "raw_ntlm_in_smb.pcap",
                 "dssetup_DsRoleGetPrimaryDomainInformation_standalone_workstation.cap"):
        path = shared_data / REF / name
        out = subprocess.run(["tshark", "-r", str(path), "-Y", "dcerpc && smb", "-T", "fields",
                              "-e", "dcerpc.pkt_type", "-e", "dcerpc.cn_call_id"],
                             capture_output=True, text=True, check=True).stdout
        theirs = sorted(tuple(int(v) for v in line.split("\t")) for line in out.splitlines() if line)
        ours = []
        for c in tcp_connections(path):
            for up, down in smb_pipe_streams(c).values():
                ours += [(p.header.ptype, p.header.call_id) for p in decode_all(up) + decode_all(down)]
        assert sorted(ours) == theirs, name


# -- impacket's client against our codec ---------------------------------------------------------------


class LoopbackTransport:
    """A stand-in for impacket's SMB/TCP transport: ``send`` feeds our stream decoder and a tiny
    test server (built only from this package's builders) queues the answer for ``recv``."""

    def __init__(self, pipe: str = "browser") -> None:
        from stormwatch.protocols.dcerpc import calls, responses

        self.calls, self.responses = calls, responses
        self.pipe = pipe
        self.stream = DceRpcStream()
        self.out = bytearray()
        self.contexts: dict[int, SyntaxId] = {}
        self.seen: list[Pdu] = []

    def answer(self, pdu: Pdu) -> bytes:
        r = self.responses
        if isinstance(pdu, Bind):
            results = negotiate(pdu.contexts, lambda s: ifaces.supports(s, self.pipe))
            for c, res in zip(pdu.contexts, results, strict=True):
                if res.result == 0:
                    self.contexts[c.context_id] = c.abstract_syntax
            return build_bind_ack(pdu.header.call_id, results, secondary_address=f"\\PIPE\\{self.pipe}",
                                  assoc_group_id=0x1d2e, alter=isinstance(pdu, AlterContext))
        assert isinstance(pdu, Request)
        syntax = self.contexts[pdu.context_id]
        args = self.calls.decode_request(str(syntax.uuid), pdu.opnum, pdu.stub)
        if isinstance(args, self.calls.ShareEnumRequest):
            stub = r.share_enum_level1(r.default_shares("Public"), resume_handle=args.resume_handle)
        elif isinstance(args, self.calls.ServerGetInfoRequest):
            stub = r.server_info_101("HOMEUSER-4F2B9C", version_minor=0, comment="")
        elif isinstance(args, self.calls.PathCanonicalizeRequest):
            stub = r.path_canonicalize(args.outbuf_len, path_type=args.path_type, status=r.ERROR_INVALID_NAME)
        elif isinstance(args, self.calls.PathCompareRequest):
            stub = r.path_compare(r.ERROR_INVALID_NAME)
        else:
            return build_fault(pdu.header.call_id, pdu.context_id, NCA_S_OP_RNG_ERROR)
        return build_response(pdu.header.call_id, pdu.context_id, stub, max_frag=64)  # force fragments

    def send(self, data: bytes, forceWriteAndx: int = 0, forceRecv: int = 0) -> None:
        for pdu in self.stream.feed(data):
            self.seen.append(pdu)
            self.out += self.answer(pdu)

    def recv(self, forceRecv: int = 0, count: int = 0) -> bytes:
        n = count or len(self.out)
        data = bytes(self.out[:n])
        del self.out[:n]
        return data


def test_impacket_client_completes_against_our_codec() -> None:
    from impacket.dcerpc.v5 import rpcrt, srvs

    transport = LoopbackTransport("browser")
    dce = rpcrt.DCERPC_v5(transport)
    dce.bind(srvs.MSRPC_UUID_SRVS)
    shares = srvs.hNetrShareEnum(dce, 1)
    names = [e["shi1_netname"][:-1] for e in shares["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"]]
    assert names == ["IPC$", "Public", "ADMIN$"] and shares["TotalEntries"] == 3
    info = srvs.hNetrServerGetInfo(dce, 101)["InfoStruct"]["ServerInfo101"]
    assert (info["sv101_platform_id"], info["sv101_name"], info["sv101_version_major"],
            info["sv101_version_minor"]) == (500, "HOMEUSER-4F2B9C\x00", 5, 0)
    with pytest.raises(srvs.DCERPCSessionError) as exc:
        srvs.hNetprPathCanonicalize(dce, "\\pagefile.sys\x00", "c:\x00", 50)
    assert exc.value.get_error_code() == 0x7B
    with pytest.raises(rpcrt.DCERPCException, match="nca_s_op_rng_error"):
        srvs.hNetrRemoteTOD(dce)
    # impacket fragments a long request; we reassemble it and decode the MS06-040-sized path
    dce.set_max_fragment_size(200)
    with pytest.raises(srvs.DCERPCSessionError):
        srvs.hNetprPathCanonicalize(dce, "A" * 400 + "\x00", "\x00", 2)
    big = transport.seen[-1]
    assert isinstance(big, Request) and big.fragments > 1 and len(big.stub) > 800
    # alter_context to wkssvc (also served through \browser): impacket accepts our empty-address reply
    from impacket.dcerpc.v5 import wkst
    dce.alter_ctx(wkst.MSRPC_UUID_WKST)
    assert isinstance(transport.seen[-1], AlterContext) and transport.contexts[1] == ifaces.WKSSVC.syntax
    # a bind to lsarpc over \browser is refused the way Windows refuses it
    from impacket.dcerpc.v5 import lsat
    with pytest.raises(rpcrt.DCERPCException, match="abstract_syntax_not_supported"):
        rpcrt.DCERPC_v5(LoopbackTransport("browser")).bind(lsat.MSRPC_UUID_LSAT)
