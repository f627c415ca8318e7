"""NDR reader/writer and the request decoders and response stubs built on them.

Requests are built with impacket's own NDR structures (the reference client) or, for exploit
shapes impacket cannot express (raw shellcode inside a "string"), laid out by hand the way
Metasploit's ``NDR`` helpers do; every decoder is also cut byte by byte and fuzzed.
"""

from __future__ import annotations

import contextlib
import random
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stormwatch.protocols.dcerpc import calls, responses, rpcss
from stormwatch.protocols.dcerpc.calls import (
    NameCanonicalizeRequest,
    PathCanonicalizeRequest,
    PathCompareRequest,
    ServerGetInfoRequest,
    ShareEnumRequest,
    UpgradeDownlevelServerRequest,
)
from stormwatch.protocols.dcerpc.interfaces import IREMOTEACTIVATION, NDR, SRVSVC
from stormwatch.protocols.dcerpc.ndr import NdrLimits, NdrReader, NdrWriter
from stormwatch.protocols.errors import MalformedMessage, ProtocolError


def hexbytes(text: str) -> bytes:
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def msf_wstring(raw: bytes) -> bytes:
    """Metasploit's NDR.UnicodeConformantVaryingStringPreBuilt: counts len/2, bytes as given, pad to 4."""
    n = len(raw) // 2
    return u32(n) + u32(0) + u32(n) + raw + b"\x00" * (-len(raw) % 4)


def msf_ustring(text: str) -> bytes:
    """NDR.UnicodeConformantVaryingString: the text UTF-16LE with a NUL."""
    return msf_wstring((text + "\x00").encode("utf-16-le"))


# -- the reader ---------------------------------------------------------------------------------------


def test_primitives_alignment_and_both_byte_orders() -> None:
    raw = hexbytes("""
        01                      # small 1
        00                      # pad to 2
        02 00                   # short 2
        03 00 00 00             # long 3 (ends at 8: a hyper needs no pad here)
        04 00 00 00 00 00 00 00 # hyper 4
        c8 4f 32 4b 70 16 d3 01 12 78 5a 47 bf 6e e1 88   # GUID (srvsvc)
    """)
    r = NdrReader(raw)
    assert (r.u8(), r.u16(), r.u32(), r.u64(), r.uuid()) == (1, 2, 3, 4, SRVSVC.uuid)
    assert r.remaining() == 0
    big = NdrReader(hexbytes("00 00 00 2a  00 00 00 02 00 00 00 00 00 00 00 02  00 41 00 00"), little_endian=False)
    assert big.u32() == 42
    s = big.wstring()
    assert (s.max_count, s.actual_count, s.text, s.terminated) == (2, 2, "A", True)
    with pytest.raises(MalformedMessage) as exc:
        NdrReader(b"\x01\x02\x03").u32("OutbufLen")
    assert exc.value.field == "OutbufLen"


def test_strings_keep_their_declared_counts_even_when_they_lie() -> None:
    raw = hexbytes("""
        02 00 00 00             # max_count 2
        05 00 00 00             # offset 5
        03 00 00 00             # actual_count 3 (offset + actual > max: a lie)
        41 00 42 00 43 00       # "ABC", no NUL
    """)
    s = NdrReader(raw).wstring()
    assert (s.max_count, s.offset, s.actual_count, s.byte_length) == (2, 5, 3, 6)
    assert s.text == "ABC" and not s.terminated and not s.consistent
    odd = NdrReader(u32(1) + u32(0) + u32(1) + b"\x00\xd8").wstring()  # a lone surrogate is kept escaped
    assert odd.raw == b"\x00\xd8" and "\\" in odd.text
    c = NdrReader(u32(4) + u32(0) + u32(4) + b"abc\x00").cstring()
    assert c.text == "abc" and c.unit == 1 and c.terminated


@pytest.mark.parametrize(("limits", "raw", "field"), [
    (NdrLimits(max_string_units=8), u32(9) + u32(0) + u32(9) + b"A\x00" * 9, "max_string_units"),
    (NdrLimits(max_array_elements=2), u32(3) + b"\x00" * 12, "max_array_elements"),
    (NdrLimits(max_pointers=2), u32(1) * 3, "max_pointers"),
])
def test_limits_are_named(limits: NdrLimits, raw: bytes, field: str) -> None:
    r = NdrReader(raw, limits=limits)
    with pytest.raises(MalformedMessage) as exc:
        if field == "max_string_units":
            r.wstring()
        elif field == "max_array_elements":
            r.conformant_array(r.u32)
        else:
            for _ in range(3):
                r.referent()
    assert field in exc.value.detail


def test_depth_limit() -> None:
    r = NdrReader(u32(1) * 10, limits=NdrLimits(max_depth=3))

    def nest() -> None:
        if r.referent():
            r.defer(nest)

    with pytest.raises(MalformedMessage, match="max_depth"), r.deferring():
        nest()


def test_deferred_pointees_follow_their_construct_depth_first() -> None:
    """A struct {ptr a; ptr b} whose pointee a holds {ptr c}: wire order a-ref, b-ref, *a (with
    c-ref), *c, *b (what MIDL and impacket write); the writer and reader agree."""
    w = NdrWriter()
    with w.deferring():
        w.referent()

        def a() -> None:
            w.u32(0xA)
            w.referent()
            w.defer(lambda: w.u32(0xC))

        w.defer(a)
        w.referent()
        w.defer(lambda: w.u32(0xB))
    raw = w.getvalue()
    assert struct.unpack(f"<{len(raw) // 4}I", raw) == (0x20000, 0x20004, 0xA, 0x20008, 0xC, 0xB)
    r = NdrReader(raw)
    seen: list[int] = []

    def read_a() -> None:
        seen.append(r.u32())
        r.embedded_unique(lambda: seen.append(r.u32()), lambda _x: None)

    with r.deferring():
        r.embedded_unique(read_a, lambda _x: None)
        r.embedded_unique(lambda: seen.append(r.u32()), lambda _x: None)
    assert seen == [0xA, 0xC, 0xB] and r.remaining() == 0


def test_full_pointer_aliases_are_not_read_twice() -> None:
    r = NdrReader(u32(7) + u32(42) + u32(7) + u32(0))
    assert r.full(r.u32) == (7, 42)
    assert r.full(r.u32) == (7, None)
    assert r.full(r.u32) == (0, None)


# -- srvsvc decoders with impacket-built requests -------------------------------------------------------


def impacket_path_canonicalize(server: Any, path: str, outbuf_len: int, prefix: str, path_type: int,
                               flags: int = 0) -> bytes:
    from impacket.dcerpc.v5 import srvs

    call = srvs.NetprPathCanonicalize()
    call["ServerName"] = server
    call["PathName"] = path
    call["OutbufLen"] = outbuf_len
    call["Prefix"] = prefix
    call["PathType"] = path_type
    call["Flags"] = flags
    data: bytes = call.getData()
    return data


def test_ms06_040_shaped_path_canonicalize() -> None:
    from impacket.dcerpc.v5.dtypes import NULL

    stub = impacket_path_canonicalize(NULL, "A" * 400 + "\x00", 1, "\x00", 0xF1)
    got = calls.decode_request(str(SRVSVC.uuid), 31, stub)
    assert isinstance(got, PathCanonicalizeRequest)
    assert got.server_name is None
    assert (got.path_name.max_count, got.path_name.actual_count, got.path_name.byte_length) == (401, 401, 802)
    assert got.path_name.text == "A" * 400 and got.path_name.terminated and got.path_name.consistent
    assert (got.prefix.actual_count, got.prefix.text) == (1, "")
    assert (got.outbuf_len, got.path_type, got.flags, got.trailing) == (1, 0xF1, 0, 0)
    assert got.stub_length == len(stub)


def test_metasploit_ms06_040_stub_with_raw_shellcode() -> None:
    """ms06_040_netapi target 1: unique ServerName "" then a PreBuilt path of raw bytes (1066
    bytes, 533 units, not UTF-16 text), OutbufLen, Prefix U+02EB, PathType, Flags 0."""
    rng = random.Random(40)
    path = bytes(rng.randrange(256) for _ in range(1064)) + b"\x00\x00"
    stub = (u32(0x41424344) + msf_ustring("") + msf_wstring(path) + u32(17) + msf_wstring(b"\xeb\x02\x00\x00")
            + u32(99) + u32(0))
    got = calls.decode_path_canonicalize(stub)
    assert got.server_name is not None and got.server_name.text == ""
    assert got.path_name.actual_count == 533 and got.path_name.raw == path
    assert got.prefix.raw == b"\xeb\x02\x00\x00" and got.prefix.text == "\u02eb"
    assert (got.outbuf_len, got.path_type, got.flags, got.trailing) == (17, 99, 0, 0)


def test_ms08_067_shaped_path_canonicalize() -> None:
    path = "\\" + "a" * 100 + "\\..\\..\\" + "BCDEFGH" + "\x00"
    stub = impacket_path_canonicalize("QWERTY\x00", path, 1021, "\\\x00", 0x1001)
    got = calls.decode_path_canonicalize(stub)
    assert got.server_name is not None and got.server_name.text == "QWERTY"
    assert "\\..\\" in got.path_name.text and got.path_name.actual_count == len(path)
    assert (got.prefix.text, got.path_type, got.outbuf_len) == ("\\", 0x1001, 1021)


def test_path_compare_name_canonicalize_share_enum_server_info() -> None:
    from impacket.dcerpc.v5 import srvs
    from impacket.dcerpc.v5.dtypes import NULL

    cmp_ = srvs.NetprPathCompare()  # nmap smb-vuln-ms08-067's probe
    cmp_["ServerName"] = NULL
    cmp_["PathName1"] = "\\" + "A" * 39 + "\\..\\n\x00"
    cmp_["PathName2"] = "\\n\x00"
    cmp_["PathType"] = 1
    cmp_["Flags"] = 0
    got = calls.decode_request(str(SRVSVC.uuid), 32, cmp_.getData())
    assert isinstance(got, PathCompareRequest)
    assert (got.path_name1.text, got.path_name2.text, got.path_type) == ("\\" + "A" * 39 + "\\..\\n", "\\n", 1)

    name = srvs.NetprNameCanonicalize()  # Metasploit's XP SP fingerprint: OutbufLen above the range
    name["ServerName"] = "X\x00"
    name["Name"] = "FOO\x00"
    name["OutbufLen"] = 64001
    name["NameType"] = 4
    name["Flags"] = 0x80000000
    got_n = calls.decode_request(str(SRVSVC.uuid), 34, name.getData())
    assert isinstance(got_n, NameCanonicalizeRequest)
    assert (got_n.name.text, got_n.outbuf_len, got_n.name_type, got_n.flags) == ("FOO", 64001, 4, 0x80000000)

    enum = srvs.NetrShareEnum()
    enum["ServerName"] = "\\\\10.0.0.1\x00"
    enum["PreferedMaximumLength"] = 0xFFFFFFFF
    enum["ResumeHandle"] = NULL
    enum["InfoStruct"]["Level"] = 1
    enum["InfoStruct"]["ShareInfo"]["tag"] = 1
    enum["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"] = NULL
    got_e = calls.decode_request(str(SRVSVC.uuid), 15, enum.getData())
    assert isinstance(got_e, ShareEnumRequest)
    assert (got_e.level, got_e.container_present, got_e.entries_in, got_e.prefered_maximum_length,
            got_e.resume_handle) == (1, True, 0, 0xFFFFFFFF, None)
    assert got_e.server_name is not None and got_e.server_name.text == "\\\\10.0.0.1"

    info = srvs.NetrServerGetInfo()
    info["ServerName"] = NULL
    info["Level"] = 101
    got_i = calls.decode_request(str(SRVSVC.uuid), 21, info.getData())
    assert isinstance(got_i, ServerGetInfoRequest) and got_i.level == 101 and got_i.server_name is None


REAL_SHARE_ENUM = hexbytes("""
    01 00 00 00                                     # ServerName referent
    0f 00 00 00 00 00 00 00 0f 00 00 00             # max 15, offset 0, actual 15
    31 00 39 00 32 00 2e 00 31 00 36 00 38 00 2e 00 35 00 36 00 2e 00 31 00 30 00 31 00 00 00   # "192.168.56.101"
    00 00                                           # pad
    01 00 00 00                                     # Level 1
    01 00 00 00                                     # union arm 1
    01 00 00 00                                     # container referent
    00 00 00 00                                     # EntriesRead 0
    00 00 00 00                                     # Buffer NULL
    ff ff ff ff                                     # PreferedMaximumLength
    01 00 00 00                                     # ResumeHandle referent
    00 00 00 00                                     # *ResumeHandle 0
""")  # from raw_ntlm_in_smb.pcap (Zeek test trace), frame 34


def test_real_share_enum_request() -> None:
    got = calls.decode_share_enum(REAL_SHARE_ENUM)
    assert got.server_name is not None and got.server_name.text == "192.168.56.101"
    assert (got.level, got.entries_in, got.prefered_maximum_length, got.resume_handle, got.trailing) == (
        1, 0, 0xFFFFFFFF, 0, 0)


def test_share_enum_with_client_entries_and_bad_union() -> None:
    w = NdrWriter()
    w.referent(False)
    w.u32(1)
    w.u32(1)
    w.referent()
    w.u32(1)
    w.referent()
    with w.deferring():
        w.u32(1)
        w.embedded_wstring("X")
        w.u32(0)
        w.embedded_wstring("")
    w.u32(100)
    w.referent(False)
    got = calls.decode_share_enum(w.getvalue())
    assert (got.entries_in, got.prefered_maximum_length, got.resume_handle) == (1, 100, None)
    with pytest.raises(MalformedMessage, match="union arm"):
        calls.decode_share_enum(u32(0) + u32(1) + u32(2))


# -- dssetup: MS04-011 ----------------------------------------------------------------------------------


def msf_ms04_011_stub(first: bytes) -> bytes:
    """ms04_011_lsass's stub: the long string, then the rest of DsRolerUpgradeDownlevelServer."""
    return (first + u32(0x1000) + msf_ustring("") + msf_ustring("") + msf_ustring("") + msf_ustring("")
            + u32(0x1004) + msf_ustring("") + u32(0x1008) + msf_ustring("") + u32(0x100C) + msf_ustring("")
            + b"\x11" * 528 + b"\x22" * 528 + u32(0x2A))


def test_metasploit_ms04_011_windows_2000_shape() -> None:
    text = "".join(random.Random(11).choice("ABCDEFGHabcdefgh0123456789") for _ in range(3500))
    stub = msf_ms04_011_stub(msf_ustring(text))
    got = calls.decode_request("3919286a-b10c-11d0-9ba8-00c04fd92ef5", 9, stub)
    assert isinstance(got, UpgradeDownlevelServerRequest)
    assert got.dns_domain_name.actual_count == 3501 and got.dns_domain_name.text == text
    assert got.site_name is not None and got.site_name.text == ""
    assert [n for n, _ in got.strings] == ["DnsDomainName", "SiteName", "DsDatabasePath", "DsLogPath",
                                            "SystemVolumeRootPath", "ParentDnsDomainName", "ParentServer", "Account"]
    # Metasploit's 528 random bytes per password: a referent id (the first 4) and 524 bytes
    assert got.encrypted_password == b"\x11" * 524 and got.encrypted_repair_password == b"\x22" * 524
    assert (got.options, got.trailing) == (0x2A, 0)
    assert max(s.byte_length for _, s in got.strings) == 7002


# -- RPCSS: RemoteActivation (MS03-026) and ept_map ------------------------------------------------------


def impacket_remote_activation(object_name: Any, extensions: bool = False) -> bytes:
    from impacket.dcerpc.v5 import dcomrt
    from impacket.dcerpc.v5.dtypes import NULL
    from impacket.uuid import string_to_bin

    r = dcomrt.RemoteActivation()
    o = dcomrt.ORPCTHIS()
    o["version"]["MajorVersion"] = 5
    o["version"]["MinorVersion"] = 7
    o["flags"] = 1
    o["cid"] = string_to_bin("11111111-2222-3333-4444-555555555555")
    if extensions:
        ext = dcomrt.ORPC_EXTENT()
        ext["id"] = string_to_bin("22222222-2222-3333-4444-555555555555")
        ext["size"] = 3
        ext["data"] = list(b"abc\x00\x00\x00\x00\x00")
        o["extensions"]["size"] = 1
        o["extensions"]["reserved"] = 0
        pointer = dcomrt.PORPC_EXTENT()
        pointer["Data"] = ext
        o["extensions"]["extent"].append(pointer)
        o["extensions"]["extent"].append(NULL)
    else:
        o["extensions"] = NULL
    r["ORPCthis"] = o
    r["Clsid"] = string_to_bin("e60c73e6-88f9-11cf-9af1-0020af6e72f4")
    r["pwszObjectName"] = object_name
    r["pObjectStorage"] = NULL
    r["ClientImpLevel"] = 2
    r["Mode"] = 0
    r["Interfaces"] = 1
    iid = dcomrt.IID()
    iid["Data"] = string_to_bin("00000000-0000-0000-c000-000000000046")
    r["pIIDs"].append(iid)
    r["cRequestedProtseqs"] = 1
    r["aRequestedProtseqs"].append(7)
    data: bytes = r.getData()
    return data


def test_remote_activation_from_impacket() -> None:
    from impacket.dcerpc.v5.dtypes import NULL

    got = calls.decode_request(str(IREMOTEACTIVATION.uuid), 0, impacket_remote_activation("\\\\SRV\\x\x00"))
    assert isinstance(got, rpcss.RemoteActivationRequest)
    assert (got.orpc_this.version_major, got.orpc_this.version_minor, got.orpc_this.extensions) == (5, 7, None)
    assert got.clsid == uuid.UUID("e60c73e6-88f9-11cf-9af1-0020af6e72f4")
    assert got.object_name is not None and got.object_name.text == "\\\\SRV\\x" and got.server_name_units == 3
    assert got.iids == (uuid.UUID("00000000-0000-0000-c000-000000000046"),) and got.requested_protseqs == (7,)
    assert (got.client_imp_level, got.interfaces, got.trailing) == (2, 1, 0)
    none = rpcss.decode_remote_activation(impacket_remote_activation(NULL, extensions=True))
    assert none.object_name is None and none.server_name_units == 0
    assert none.orpc_this.extensions is not None
    (ext,) = none.orpc_this.extensions
    assert (ext.id, ext.declared_size, ext.data) == (uuid.UUID("22222222-2222-3333-4444-555555555555"), 3,
                                                     b"abc\x00\x00\x00\x00\x00")


def test_metasploit_ms03_026_stub() -> None:
    """ms03_026_dcom's stubdata, field by field as the module lays it out."""
    rng = random.Random(3)
    uncpath = "\\\\".encode("utf-16-le") + bytes(rng.randrange(1, 256) for _ in range(1400)) + "\\\x00".encode(
        "utf-16-le")
    stub = (struct.pack("<HH", 5, 1) + u32(0) + u32(0) + bytes(16)  # ORPCTHIS: version, flags, reserved1, cid
            + u32(0)                                               # extensions NULL
            + u32(0) * 4                                           # Clsid
            + u32(0xDEAD) + msf_wstring(uncpath)                   # pwszObjectName
            + u32(0) + u32(7) + u32(9)                             # pObjectStorage NULL, ClientImpLevel, Mode
            + u32(1) + u32(0xBEEF) + u32(1) + bytes(16)            # Interfaces, pIIDs -> [1] IID
            + u32(1) + u32(1) + u32(0x33330007))                   # cRequestedProtseqs, [1] protseq (+pad)
    got = rpcss.decode_remote_activation(stub)
    assert got.object_name is not None and got.object_name.raw == uncpath
    assert got.server_name_units >= 32 * 2  # the server part alone overflows the 32-character buffer
    assert got.requested_protseqs == (7,) and got.iids == (uuid.UUID(int=0),)


def test_ept_map_from_impacket() -> None:
    from impacket.dcerpc.v5 import epm
    from impacket.uuid import uuidtup_to_bin

    tower = epm.EPMTower()
    interface = epm.EPMRPCInterface()
    syntax = uuidtup_to_bin((str(IREMOTEACTIVATION.uuid), "0.0"))
    interface["InterfaceUUID"] = syntax[:16]
    interface["MajorVersion"] = 0
    interface["MinorVersion"] = 0
    rep = epm.EPMRPCDataRepresentation()
    ndr = uuidtup_to_bin((str(NDR.uuid), "2.0"))
    rep["DataRepUuid"] = ndr[:16]
    rep["MajorVersion"] = 2
    rep["MinorVersion"] = 0
    prot = epm.EPMProtocolIdentifier()
    prot["ProtIdentifier"] = epm.FLOOR_RPCV5_IDENTIFIER
    port = epm.EPMPortAddr()
    port["IpPort"] = 0
    host = epm.EPMHostAddr()
    host["Ip4addr"] = b"\x00" * 4
    tower["NumberOfFloors"] = 5
    tower["Floors"] = interface.getData() + rep.getData() + prot.getData() + port.getData() + host.getData()
    req = epm.ept_map()
    req["max_towers"] = 4
    req["map_tower"]["tower_length"] = len(tower)
    req["map_tower"]["tower_octet_string"] = tower.getData()
    req.fields["obj"].fields["ReferentID"] = 1
    req.fields["map_tower"].fields["ReferentID"] = 2
    got = calls.decode_request("e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3, req.getData())
    assert isinstance(got, rpcss.EptMapRequest)
    assert got.interface is not None and got.interface.uuid == IREMOTEACTIVATION.uuid
    assert got.transfer_syntax == NDR and got.max_towers == 4 and len(got.floors) == 5
    assert [f.protocol for f in got.floors] == [0x0D, 0x0D, 0x0B, 0x07, 0x09]
    with pytest.raises(MalformedMessage, match="MAX_TOWER_FLOORS"):
        rpcss.parse_tower(struct.pack("<H", 1000))


# -- responses -------------------------------------------------------------------------------------------


def test_responses_parse_in_impacket() -> None:
    from impacket.dcerpc.v5 import epm, srvs

    enum = srvs.NetrShareEnumResponse(responses.share_enum_level1(responses.default_shares("Docs"),
                                                                  resume_handle=None))
    assert [e["shi1_netname"] for e in enum["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"]] == [
        "IPC$\x00", "Docs\x00", "ADMIN$\x00"]
    assert enum["ResumeHandle"] == b"" and enum["ErrorCode"] == 0  # impacket reads NULL as b""
    empty = srvs.NetrShareEnumResponse(responses.share_enum_level1([]))
    assert empty["TotalEntries"] == 0
    info = srvs.NetrServerGetInfoResponse(responses.server_info_101("PC", version_minor=0, comment="x"))
    assert (info["InfoStruct"]["tag"], info["InfoStruct"]["ServerInfo101"]["sv101_comment"]) == (101, "x\x00")
    canon = srvs.NetprPathCanonicalizeResponse(responses.path_canonicalize(40, "c:\\pagefile.sys", path_type=2))
    assert b"".join(canon["Outbuf"]).decode("utf-16-le").rstrip("\x00") == "c:\\pagefile.sys"
    assert len(canon["Outbuf"]) == 40 and canon["PathType"] == 2
    check = srvs.NetprPathCanonicalizeResponse(responses.path_canonicalize(8, "\\R7", path_type=0x1001))
    assert b"".join(check["Outbuf"])[:4] == b"\\\x00R\x00"  # what Metasploit's ms08_067 check reads
    small = responses.path_canonicalize(2, "toolong", status=responses.NERR_BUF_TOO_SMALL)
    err = srvs.NetprPathCanonicalizeResponse(small)
    assert err["ErrorCode"] == 2123 and b"".join(err["Outbuf"]) == b"t\x00"
    ept = epm.ept_mapResponse(responses.ept_map_not_registered(4))
    assert (ept["num_towers"], ept["status"]) == (0, responses.EPT_S_NOT_REGISTERED)


def test_name_canonicalize_response_is_wchars_per_the_spec() -> None:
    """[MS-SRVS] 3.1.4.33 sizes Outbuf in WCHARs (impacket's response class reads bytes)."""
    raw = responses.name_canonicalize(5, "FOO")
    r = NdrReader(raw)
    assert r.u32() == 5 and r.take(10) == "FOO\x00\x00".encode("utf-16-le")
    assert r.u32() == 0 and r.remaining() == 0
    assert responses.level_not_supported() == u32(0) + u32(0) + u32(124)
    assert responses.status_only(5) == responses.path_compare(5) == u32(5)


# -- truncation and fuzzing of every decoder -------------------------------------------------------------

def impacket_stub(module: str, name: str, **fields: Any) -> bytes:
    import importlib

    call = getattr(importlib.import_module(f"impacket.dcerpc.v5.{module}"), name)()
    for k, v in fields.items():
        call[k] = v
    data: bytes = call.getData()
    return data


def ept_map_stub() -> bytes:
    tower = (struct.pack("<H", 2) + struct.pack("<H", 19) + b"\x0d" + IREMOTEACTIVATION.uuid.bytes_le + b"\x00\x00"
             + struct.pack("<H", 2) + b"\x00\x00" + struct.pack("<H", 1) + b"\x07" + struct.pack("<H", 2) + b"\x00\x87")
    return (u32(1) + IREMOTEACTIVATION.uuid.bytes_le + u32(2) + u32(len(tower)) + u32(len(tower)) + tower
            + b"\x00" * (-len(tower) % 4) + bytes(20) + u32(4))


DECODER_SEEDS: list[tuple[Callable[..., object], bytes]] = [
    (calls.decode_path_canonicalize, impacket_path_canonicalize("AB\x00", "\\x\\..\\y\x00", 8, "\\\x00", 1)),
    (calls.decode_path_compare, impacket_stub("srvs", "NetprPathCompare", ServerName="A\x00", PathName1="\\a\x00",
                                              PathName2="\\b\x00", PathType=1, Flags=0)),
    (calls.decode_name_canonicalize, impacket_stub("srvs", "NetprNameCanonicalize", ServerName="A\x00",
                                                   Name="N\x00", OutbufLen=9, NameType=4, Flags=0)),
    (calls.decode_server_get_info, impacket_stub("srvs", "NetrServerGetInfo", ServerName="A\x00", Level=101)),
    (calls.decode_share_enum, REAL_SHARE_ENUM),
    (calls.decode_upgrade_downlevel_server, msf_ms04_011_stub(msf_ustring("x" * 40))),
    (rpcss.decode_remote_activation, impacket_remote_activation("\\\\S\\x\x00", extensions=True)),
    (rpcss.decode_ept_map, ept_map_stub()),
]


@pytest.mark.parametrize(("decode", "stub"), DECODER_SEEDS)
def test_every_cut_is_malformed(decode: Callable[..., object], stub: bytes) -> None:
    decode(stub)
    for n in range(len(stub)):
        with pytest.raises(MalformedMessage):
            decode(stub[:n])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(calls.DECODERS)), st.sampled_from([s for _, s in DECODER_SEEDS]),
       st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=10), st.booleans())
def test_fuzz_decoders_only_protocol_errors(key: tuple[str, int], seed: bytes, edits: list[tuple[int, int]],
                                            little: bool) -> None:
    raw = bytearray(seed)
    for at, value in edits:
        if at < len(raw):
            raw[at] = value
    with contextlib.suppress(ProtocolError):
        calls.decode_request(key[0], key[1], bytes(raw), little, NdrLimits(max_array_elements=4096))


def test_hand_built_ept_map_tower() -> None:
    got = rpcss.decode_ept_map(ept_map_stub())
    assert got.object == IREMOTEACTIVATION.uuid and got.interface is not None
    assert got.interface.uuid == IREMOTEACTIVATION.uuid and got.transfer_syntax is None
    assert [f.protocol for f in got.floors] == [0x0D, 0x07] and got.floors[1].rhs == b"\x00\x87"


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_fuzz_parse_tower(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        rpcss.parse_tower(data)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_fuzz_decoders_random(data: bytes) -> None:
    for (iface, opnum) in calls.DECODERS:
        with contextlib.suppress(ProtocolError):
            calls.decode_request(iface, opnum, data)
    assert calls.decode_request(str(SRVSVC.uuid), 28, data) is None  # no decoder: None, not an error


def test_big_endian_request_decodes_end_to_end() -> None:
    """A big-endian client (packed_drep 00 00 00 00): the PDU and the stub in network order."""
    from stormwatch.protocols.dcerpc.pdu import Request, parse_pdu

    def be_wstring(text: str) -> bytes:
        data = (text + "\x00").encode("utf-16-be")
        n = len(data) // 2
        return struct.pack(">III", n, 0, n) + data + b"\x00" * (-len(data) % 4)

    stub = (struct.pack(">I", 0x20000) + be_wstring("SRV") + be_wstring("\\a\\..\\b") + struct.pack(">I", 10)
            + be_wstring("\\") + struct.pack(">II", 0x1001, 0))
    pdu = struct.pack(">BBBB4sHHIIHH", 5, 0, 0, 3, b"\x00\x00\x00\x00", 24 + len(stub), 0, 9, len(stub), 0, 31) + stub
    req = parse_pdu(pdu)
    assert isinstance(req, Request) and not req.header.little_endian and req.opnum == 31
    got = calls.decode_request(str(SRVSVC.uuid), req.opnum, req.stub, req.header.little_endian)
    assert isinstance(got, PathCanonicalizeRequest)
    assert got.server_name is not None and got.server_name.text == "SRV"
    assert (got.path_name.text, got.prefix.text, got.outbuf_len, got.path_type) == ("\\a\\..\\b", "\\", 10, 0x1001)
