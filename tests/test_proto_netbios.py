"""NetBIOS codec: the two TCP framings (139 NBSS, 445 direct TCP), names, session requests and the
UDP 137 name service. impacket's nmb module is the reference client for the round trips."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from impacket import nmb

from capture_helpers import tcp_payloads
from stormwatch.protocols.errors import MalformedMessage, ProtocolError
from stormwatch.protocols.netbios import (
    DEFAULT_MAX_FRAME,
    NAME_FLAG_ACTIVE,
    NAME_FLAG_GROUP,
    DirectTcpFramer,
    Frame,
    NbssFramer,
    NetbiosName,
    SessionError,
    SessionRequest,
    SessionType,
    decode_name_packet,
    decode_negative_response,
    decode_netbios_name,
    decode_session_request,
    encode_direct_tcp,
    encode_keep_alive,
    encode_name_query,
    encode_name_query_response,
    encode_nbss,
    encode_negative_name_query_response,
    encode_negative_response,
    encode_node_status_response,
    encode_positive_response,
    encode_session_request,
    standard_node_names,
)

# -- vectors -----------------------------------------------------------------------------------

#: RFC 1002 4.3.1 SESSION MESSAGE on port 139 carrying the 4 bytes \xffSMB.
NBSS_MESSAGE = bytes.fromhex(
    "00"          # type: SESSION MESSAGE
    "00"          # flags: E (length extension) clear
    "0004"        # length: 4
    "ff534d42"    # payload
)

#: RFC 1002 4.3.1: the E bit is bit 16 of the length, so 0x00 0x01 0x0004 is 65540 bytes.
NBSS_LONG_HEADER = bytes.fromhex(
    "00"          # type: SESSION MESSAGE
    "01"          # flags: E set
    "0004"        # length low 16 bits -> 0x10004
)

#: [MS-SMB2] 2.1 direct TCP frame on port 445: zero byte and a 24-bit length.
DIRECT_TCP_MESSAGE = bytes.fromhex(
    "00"          # zero
    "000004"      # length: 4
    "ff534d42"    # payload
)

#: RFC 1001 14.1's own example: "FRED" padded with spaces (type 0x20), first-level encoded.
FRED_ENCODED = bytes.fromhex(
    "20"                                                                  # label length 32
    "4547464345464545434143414341434143414341434143414341434143414341"  # "EGFCEFEECACA...CA"
    "00"                                                                  # end of name (no scope)
)

#: RFC 1002 4.3.2 SESSION REQUEST as smbclient sends it: called *SMBSERVER<20>, calling STORM<00>.
SESSION_REQUEST = bytes.fromhex(
    "81"                                                            # type: SESSION REQUEST
    "00"                                                            # flags
    "0044"                                                          # length: 68
    "20"                                                            # called: label length 32
    "434b4644454e454346444546464346474546464343414341434143414341"  # "*SMBSERVER" + 5 spaces
    "4341"                                                          # type 0x20 ("CA")
    "00"                                                            # end of name
    "20"                                                            # calling: label length 32
    "4644464545504643454e4341434143414341434143414341434143414341"  # "STORM" + 10 spaces
    "4141"                                                          # type 0x00 ("AA")
    "00"                                                            # end of name
)

#: RFC 1002 4.2.17 NODE STATUS REQUEST as nmblookup -A / nmap nbstat send it.
NODE_STATUS_REQUEST = bytes.fromhex(
    "1234"        # NAME_TRN_ID
    "0000"        # flags: request, opcode QUERY, no RD, no B
    "0001"        # QDCOUNT
    "0000"        # ANCOUNT
    "0000"        # NSCOUNT
    "0000"        # ARCOUNT
    "20"          # label length 32
    "434b"        # "*" (0x2A)
    "414141414141414141414141414141414141414141414141414141414141"  # 15 NULs ("AA" each)
    "00"          # end of name
    "0021"        # QUESTION_TYPE: NBSTAT
    "0001"        # QUESTION_CLASS: IN
)


def test_nbss_vector() -> None:
    assert NbssFramer().feed(NBSS_MESSAGE) == [Frame(SessionType.MESSAGE, b"\xffSMB")]
    assert encode_nbss(SessionType.MESSAGE, b"\xffSMB") == NBSS_MESSAGE


def test_nbss_17_bit_length() -> None:
    payload = bytes(range(256)) * 256 + b"abcd"  # 65540 bytes
    framer = NbssFramer()
    assert framer.feed(NBSS_LONG_HEADER + payload[:-1]) == []
    assert framer.buffered == 4 + len(payload) - 1
    assert framer.feed(payload[-1:]) == [Frame(0, payload)]
    assert encode_nbss(SessionType.MESSAGE, payload)[:4] == NBSS_LONG_HEADER
    with pytest.raises(ValueError, match="exceeds"):
        encode_nbss(SessionType.MESSAGE, bytes(0x20000))


def test_direct_tcp_vector() -> None:
    assert DirectTcpFramer().feed(DIRECT_TCP_MESSAGE) == [Frame(0, b"\xffSMB")]
    assert encode_direct_tcp(b"\xffSMB") == DIRECT_TCP_MESSAGE
    big = bytes(70000)  # the 24-bit length goes past 17 bits
    assert encode_direct_tcp(big)[:4] == bytes.fromhex("00011170")
    assert DirectTcpFramer().feed(encode_direct_tcp(big)) == [Frame(0, big)]


@pytest.mark.parametrize("framer_type", [NbssFramer, DirectTcpFramer])
def test_framer_byte_by_byte_and_batched(framer_type: type[NbssFramer] | type[DirectTcpFramer]) -> None:
    payloads = [b"", b"\xffSMB" + bytes(40), b"x" * 1000]
    stream = b"".join(encode_nbss(0, p) if framer_type is NbssFramer else encode_direct_tcp(p) for p in payloads)
    framer = framer_type()
    got: list[Frame] = []
    for i in range(len(stream)):
        got += framer.feed(stream[i:i + 1])
    assert [f.payload for f in got] == payloads
    assert framer.buffered == 0
    assert [f.payload for f in framer_type().feed(stream + stream)] == payloads + payloads


def test_nbss_control_packets() -> None:
    stream = encode_positive_response() + encode_keep_alive() + encode_negative_response()
    frames = NbssFramer().feed(stream)
    assert [f.type for f in frames] == [0x82, 0x85, 0x83]
    assert decode_negative_response(frames[2].payload) == SessionError.CALLED_NAME_NOT_PRESENT
    assert encode_positive_response() == bytes.fromhex("82000000")
    assert encode_keep_alive() == bytes.fromhex("85000000")
    with pytest.raises(MalformedMessage):
        decode_negative_response(b"")


@pytest.mark.parametrize(("framer", "head", "field", "offset"), [
    (NbssFramer(), bytes.fromhex("86000000"), "type", 8),        # no such session packet type
    (NbssFramer(), bytes.fromhex("00020000"), "flags", 9),       # reserved flag bit
    (DirectTcpFramer(), bytes.fromhex("81000044"), "zero", 8),   # a 139 request sent to 445
])
def test_framer_rejects_bad_headers(framer: NbssFramer | DirectTcpFramer, head: bytes, field: str,
                                    offset: int) -> None:
    good = NBSS_MESSAGE if isinstance(framer, NbssFramer) else DIRECT_TCP_MESSAGE
    assert framer.feed(good + head) == [Frame(0, b"\xffSMB")]  # the good frame is handed over first
    with pytest.raises(MalformedMessage) as exc:
        framer.feed(b"")
    assert exc.value.field == field
    assert exc.value.offset == offset  # counted in the stream, after the first 8-byte frame
    with pytest.raises(MalformedMessage):  # a stream that lost its framing stays failed
        framer.feed(b"")


def test_frame_size_limit() -> None:
    assert DEFAULT_MAX_FRAME == 128 * 1024
    framer = DirectTcpFramer(max_frame=100)
    assert framer.feed(encode_direct_tcp(bytes(100))) == [Frame(0, bytes(100))]
    with pytest.raises(MalformedMessage, match="exceeds the limit of 100"):
        framer.feed(encode_direct_tcp(bytes(101))[:4])
    with pytest.raises(MalformedMessage):
        DirectTcpFramer().feed(bytes.fromhex("00020001"))  # 131073 bytes > 128 KiB, refused at the header


# -- names and session requests ----------------------------------------------------------------


def test_rfc1001_name_example() -> None:
    assert NetbiosName("FRED", 0x20).encode() == FRED_ENCODED
    assert decode_netbios_name(FRED_ENCODED, 0, "name") == (NetbiosName("FRED", 0x20), len(FRED_ENCODED))
    assert nmb.encode_name("FRED", 0x20, None) == FRED_ENCODED


def test_wildcard_is_nul_padded() -> None:
    assert NetbiosName("*").raw16() == b"*" + bytes(15)
    assert NetbiosName("*").encode() == nmb.encode_name("*", 0, None)


def test_scope() -> None:
    name = NetbiosName("HOST", 0x00, "corp.example")
    wire = name.encode()
    assert wire.endswith(b"\x04corp\x07example\x00")
    assert decode_netbios_name(wire, 0, "name") == (name, len(wire))


@pytest.mark.parametrize(("buf", "field"), [
    (b"\x10" + b"A" * 16 + b"\x00", "name_length"),          # first label must be 32 bytes
    (b"\x20" + b"Z" * 32 + b"\x00", "name"),                 # letters outside A-P
    (FRED_ENCODED[:-1] + b"\xc0\x0c", "scope"),              # compression pointer
    (FRED_ENCODED[:-1] + b"\x40" + b"a" * 64 + b"\x00", "scope"),  # label of 64 bytes
])
def test_bad_names(buf: bytes, field: str) -> None:
    with pytest.raises(MalformedMessage) as exc:
        decode_netbios_name(buf, 0, "name")
    assert exc.value.field == field


def test_session_request_vector() -> None:
    frames = NbssFramer().feed(SESSION_REQUEST)
    assert frames[0].type == SessionType.REQUEST
    request = decode_session_request(frames[0].payload)
    assert request == SessionRequest(NetbiosName("*SMBSERVER", 0x20), NetbiosName("STORM", 0x00))
    assert encode_session_request(request.called, request.calling) == SESSION_REQUEST


def test_session_request_from_impacket() -> None:
    packet = nmb.NetBIOSSessionPacket()
    packet.set_type(nmb.NETBIOS_SESSION_REQUEST)
    packet.set_trailer(nmb.encode_name("HOMEUSER-3AF6FE", nmb.TYPE_SERVER, "")
                       + nmb.encode_name("ATTACKER", nmb.TYPE_WORKSTATION, ""))
    (frame,) = NbssFramer().feed(packet.rawData())
    request = decode_session_request(frame.payload)
    assert request.called == NetbiosName("HOMEUSER-3AF6FE", 0x20)
    assert request.calling == NetbiosName("ATTACKER", 0x00)
    reply = nmb.NetBIOSSessionPacket(encode_positive_response())
    assert reply.get_type() == nmb.NETBIOS_SESSION_POSITIVE_RESPONSE


def test_session_request_truncated_and_trailing() -> None:
    payload = SESSION_REQUEST[4:]
    for cut in range(len(payload)):
        with pytest.raises(MalformedMessage):
            decode_session_request(payload[:cut])
    with pytest.raises(MalformedMessage, match="after the names"):
        decode_session_request(payload + b"\x00")


# -- name service ------------------------------------------------------------------------------


def test_node_status_vector_and_response() -> None:
    packet = decode_name_packet(NODE_STATUS_REQUEST)
    assert packet.trn_id == 0x1234 and packet.is_query and not packet.is_response
    (question,) = packet.questions
    assert question.name == NetbiosName("*", 0) and question.is_node_status
    mac = bytes.fromhex("000c29a1b2c3")
    wire = encode_node_status_response(packet, standard_node_names("homeuser-3af6fe", "workgroup"), mac)
    # impacket's own parser, as `lookupsid`/`getnetbiosname` use it
    reply = nmb.NAME_SERVICE_PACKET(wire)
    assert reply["NAME_TRN_ID"] == 0x1234 and reply["FLAGS"] == 0x8400 and reply["ANCOUNT"] == 1
    status = nmb.NBNodeStatusResponse(reply["ANSWERS"])
    assert status["RR_NAME"] == question.wire_name[:-1].decode()  # the question's name, echoed
    assert status.get_mac() == "00-0C-29-A1-B2-C3"
    entries = [(e["NAME"].strip(), e["TYPE"], e["NAME_FLAGS"]) for e in status.entries]
    assert entries == [(b"HOMEUSER-3AF6FE", 0x00, NAME_FLAG_ACTIVE),
                       (b"WORKGROUP", 0x00, NAME_FLAG_ACTIVE | NAME_FLAG_GROUP),
                       (b"HOMEUSER-3AF6FE", 0x20, NAME_FLAG_ACTIVE)]


def test_node_status_request_from_impacket() -> None:
    request = nmb.NODE_STATUS_REQUEST()
    request["NAME_TRN_ID"] = 77
    request["QUESTION_NAME"] = nmb.encode_name("*", 0, None)
    packet = decode_name_packet(request.getData())
    assert packet.trn_id == 77 and packet.questions[0].is_node_status
    assert packet.questions[0].name.name == "*"
    assert encode_name_query(77, NetbiosName("*"), node_status=True) == NODE_STATUS_REQUEST.replace(
        b"\x12\x34", struct.pack(">H", 77), 1)


def test_name_query_response_parsed_by_impacket() -> None:
    request = nmb.NAME_QUERY_REQUEST()
    request["NAME_TRN_ID"] = 0x4321
    request["QUESTION_NAME"] = nmb.encode_name("HOMEUSER-3AF6FE", nmb.TYPE_SERVER, None)
    request["FLAGS"] = nmb.NM_FLAGS_RD | nmb.NM_FLAGS_BROADCAST
    packet = decode_name_packet(request.getData())
    assert packet.is_query and packet.questions[0].name == NetbiosName("HOMEUSER-3AF6FE", 0x20)
    assert not packet.questions[0].is_node_status
    wire = encode_name_query_response(packet, ["192.0.2.7"])
    reply = nmb.NAME_SERVICE_PACKET(wire)
    assert reply["NAME_TRN_ID"] == 0x4321 and reply["FLAGS"] & 0xF == 0
    assert reply["FLAGS"] == 0x8000 | 0x0400 | 0x0100  # R, AA, RD copied
    assert nmb.NBPositiveNameQueryResponse(reply["ANSWERS"]).entries == ["192.0.2.7"]
    negative = nmb.NAME_SERVICE_PACKET(encode_negative_name_query_response(packet))
    assert negative["FLAGS"] & 0xF == 3  # NAM_ERR, impacket raises "Name does not exist"


def test_name_packet_limits_and_truncation() -> None:
    for cut in range(len(NODE_STATUS_REQUEST)):
        with pytest.raises(MalformedMessage):
            decode_name_packet(NODE_STATUS_REQUEST[:cut])
    with pytest.raises(MalformedMessage, match="exceeds the limit"):
        decode_name_packet(NODE_STATUS_REQUEST[:4] + b"\x00\x09" + NODE_STATUS_REQUEST[6:])
    # bytes after the questions are the (undecoded) resource records, kept
    assert decode_name_packet(NODE_STATUS_REQUEST + b"tail").records == b"tail"


# -- fuzz --------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 7))
def test_fuzz_framers(data: bytes, step: int) -> None:
    for framer in (NbssFramer(max_frame=200), DirectTcpFramer(max_frame=200)):
        with contextlib.suppress(ProtocolError):
            for i in range(0, len(data), step):
                for frame in framer.feed(data[i:i + step]):
                    assert len(frame.payload) <= 200


_frame_headers = st.tuples(st.sampled_from([0x00, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86]), st.integers(0, 3),
                           st.integers(0, 0xFFFF), st.binary(max_size=64))


@settings(max_examples=300, deadline=None)
@given(st.lists(_frame_headers, max_size=6))
def test_fuzz_framers_structured(parts: list[tuple[int, int, int, bytes]]) -> None:
    """Plausible headers with lying lengths and flags, fed in one go and byte by byte."""
    stream = b"".join(struct.pack(">BBH", t, f, n) + body for t, f, n, body in parts)
    for framer_type in (NbssFramer, DirectTcpFramer):
        for step in (1, len(stream) or 1):
            framer = framer_type(max_frame=1000)
            with contextlib.suppress(ProtocolError):
                for i in range(0, len(stream), step):
                    framer.feed(stream[i:i + step])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_name_decoders(data: bytes) -> None:
    for decode in (decode_session_request, decode_name_packet, decode_negative_response):
        with contextlib.suppress(ProtocolError):
            decode(data)
    with contextlib.suppress(ProtocolError):
        decode_netbios_name(data, 0, "name")
    with contextlib.suppress(ProtocolError):
        decode_netbios_name(b"\x20" + data, 0, "name")


def test_every_byte_overwritten() -> None:
    """Deterministic sweep over the vectors: each byte set to each boundary value."""
    for vector, decode in ((SESSION_REQUEST[4:], decode_session_request), (NODE_STATUS_REQUEST, decode_name_packet)):
        for position in range(len(vector)):
            for value in (0x00, 0x01, 0x20, 0x3F, 0x40, 0x41, 0x50, 0x51, 0xC0, 0xFF):
                mutated = bytearray(vector)
                mutated[position] = value
                with contextlib.suppress(ProtocolError):
                    decode(bytes(mutated))


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=15),
       st.integers(0, 255), st.lists(st.text("abcdefgh", min_size=1, max_size=8), max_size=3))
def test_name_round_trip(name: str, suffix: int, scope: list[str]) -> None:
    original = NetbiosName(name.rstrip(), suffix, ".".join(scope))
    if not original.name:
        return
    decoded, end = decode_netbios_name(original.encode() + b"rest", 0, "name")
    assert decoded == original and end == len(original.encode())


# -- real traces -------------------------------------------------------------------------------


def test_port_139_trace(shared_data: Path) -> None:
    """mapi.pcap (Zeek's DCE-RPC trace, 2003) carries SMB1 over NBSS on TCP 139 in both directions."""
    streams = {k: v for k, v in tcp_payloads(shared_data / "pcap/smb-reference/mapi.pcap").items()
               if 139 in (k[1], k[3])}
    assert len(streams) == 6
    total = 0
    for data in streams.values():
        framer = NbssFramer()
        frames = framer.feed(data)
        assert frames and all(f.type == SessionType.MESSAGE and f.payload[:4] == b"\xffSMB" for f in frames)
        assert sum(4 + len(f.payload) for f in frames) + framer.buffered == len(data)
        total += len(frames)
    assert total == 156  # every SMB1 message of the 139 sessions


def test_port_445_trace(shared_data: Path) -> None:
    """Zeek's smb1_transaction_request.pcap: four requests and four responses on TCP 445."""
    streams = tcp_payloads(shared_data / "pcap/smb-reference/smb1_transaction_request.pcap")
    for data in streams.values():
        frames = DirectTcpFramer().feed(data)
        assert [f.payload[4] for f in frames] == [0x72, 0x73, 0x75, 0x25][:len(frames)]
        assert len(frames) in (3, 4)
