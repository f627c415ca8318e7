"""The DCE/RPC exploit detectors, fed with requests built by impacket (our reference client) in the
shapes of the Metasploit modules, and with the real MS04-011 captures."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL

from stormwatch.detect import detect_rpc_call
from stormwatch.protocols.dcerpc import interfaces as ifaces
from stormwatch.protocols.dcerpc.pdu import Request

SRVSVC = str(ifaces.SRVSVC.uuid)


def _canonicalize(path: str, prefix: str = "", outbuf: int = 100, path_type: int = 0,
                  server: str | None = None) -> bytes:
    req = srvs.NetprPathCanonicalize()
    req["ServerName"] = server if server is not None else NULL
    req["PathName"] = path
    req["OutbufLen"] = outbuf
    req["Prefix"] = prefix
    req["PathType"] = path_type
    req["Flags"] = 0
    return req.getData()


def _ms06_040_path(units: int, rng: random.Random) -> str:
    """A Metasploit-like ms06_040 path: NOP sled, shellcode-like bytes and return addresses, no
    traversal, ``units`` UTF-16 units including the terminator (the module's table: 355/403/533)."""
    body = ["\u9090"] * (units // 2)
    body += [chr(rng.choice([c for c in range(0x100, 0xD7FF) if c not in (0x5C, 0x2E)])) for _ in range(units // 2 - 8)]
    body += ["\u0804\u0002"] * 4  # return address 0x00020804, as in the Windows 2000 target
    text = "".join(body)
    return (text + "\u9090" * units)[: units - 1] + "\x00"


@pytest.mark.parametrize("units", [355, 403, 533])
def test_ms06_040_shapes_are_ms06_040(units: int) -> None:
    rng = random.Random(units)
    stub = _canonicalize(_ms06_040_path(units, rng), prefix="\u02eb\x00", outbuf=rng.randint(1, 250),
                         path_type=rng.randint(1, 250))
    [f] = detect_rpc_call(SRVSVC, 31, stub)
    assert (f.vuln, f.cve, f.kind) == ("MS06-040", "CVE-2006-3439", "exploit")
    assert f.evidence["path_units"] == units and f.evidence["traversal"] is False
    assert f.evidence["shellcode_like"] is True and f.confidence >= 0.9
    assert f.payload is not None and len(f.payload) == 2 * units


def test_long_plain_path_without_shellcode_is_ms06_040_with_less_confidence() -> None:
    [f] = detect_rpc_call(SRVSVC, 31, _canonicalize("A" * 400 + "\x00"))
    assert f.vuln == "MS06-040" and f.evidence["shellcode_like"] is False and f.confidence < 0.9


def test_ms08_067_exploit_shape() -> None:
    rng = random.Random(8)
    path = "\\" + "".join(chr(rng.randint(0x41, 0x5A)) for _ in range(50)) + "".join(
        chr(rng.randint(0x100, 0x2000)) for _ in range(150)) + "\\..\\..\\" + "ABCDEFG" + "\u0408\u0002" * 20 + "\x00"
    stub = _canonicalize(path, prefix="\\\x00", outbuf=rng.randint(0, 1023), path_type=0x1001, server="XYZ\x00")
    [f] = detect_rpc_call(SRVSVC, 31, stub)
    assert (f.vuln, f.cve, f.kind) == ("MS08-067", "CVE-2008-4250", "exploit")
    assert f.evidence["traversal"] is True and f.evidence["path_type"] == 0x1001


def test_ms08_067_check_is_a_probe() -> None:
    # Metasploit's check: "\x00\\\x00/" * 0x10 + "\R7\..\..\R7", OutbufLen 8, Prefix "\", PathType 4097
    path = "\\/" * 0x10 + "\\R7\\..\\..\\R7\x00"
    [f] = detect_rpc_call(SRVSVC, 31, _canonicalize(path, prefix="\\\x00", outbuf=8, path_type=4097))
    assert (f.vuln, f.kind) == ("MS08-067", "probe")
    assert f.payload is None


def test_benign_canonicalize_and_compare_are_silent() -> None:
    assert detect_rpc_call(SRVSVC, 31, _canonicalize("\\share\\dir\\file.txt\x00", outbuf=520)) == []
    req = srvs.NetprPathCompare()
    req["ServerName"] = NULL
    req["PathName1"] = "c:\\a\\b\x00"
    req["PathName2"] = "c:\\a\\c\x00"
    req["PathType"] = 0
    req["Flags"] = 0
    assert detect_rpc_call(SRVSVC, 32, req.getData()) == []


def test_path_compare_traversal_is_ms08_067() -> None:
    req = srvs.NetprPathCompare()
    req["ServerName"] = NULL
    req["PathName1"] = "\\A" * 80 + "\\..\\..\\" + "B" * 100 + "\x00"
    req["PathName2"] = "\\x\x00"
    req["PathType"] = 0x1001
    req["Flags"] = 0
    [f] = detect_rpc_call(SRVSVC, 32, req.getData())
    assert f.vuln == "MS08-067" and f.kind == "exploit"


def test_name_canonicalize_routes() -> None:
    req = srvs.NetprNameCanonicalize()
    req["ServerName"] = NULL
    req["Name"] = "N" * 300 + "\x00"
    req["OutbufLen"] = 100
    req["NameType"] = 0
    req["Flags"] = 0
    [f] = detect_rpc_call(SRVSVC, 34, req.getData())
    assert f.vuln == "MS06-040" and f.evidence["operation"] == "NetprNameCanonicalize"
    req["Name"] = "HOST\x00"
    req["OutbufLen"] = 64001
    [f] = detect_rpc_call(SRVSVC, 34, req.getData())
    assert (f.vuln, f.kind) == ("MS08-067", "probe")


def test_benign_share_enum_and_server_info_are_silent() -> None:
    req = srvs.NetrShareEnum()
    req["ServerName"] = "\\\\HOST\x00"
    req["InfoStruct"]["Level"] = 1
    req["InfoStruct"]["ShareInfo"]["tag"] = 1
    req["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"] = NULL
    req["PreferedMaximumLength"] = 0xFFFFFFFF
    req["ResumeHandle"] = NULL
    assert detect_rpc_call(SRVSVC, 15, req.getData()) == []
    info = srvs.NetrServerGetInfo()
    info["ServerName"] = "\\\\HOST\x00"
    info["Level"] = 101
    assert detect_rpc_call(SRVSVC, 21, info.getData()) == []


def test_garbage_stub_never_raises() -> None:
    rng = random.Random(1)
    for opnum in (9, 15, 21, 31, 32, 34, 0):
        for n in (0, 3, 17, 600, 2000):
            stub = bytes(rng.randrange(256) for _ in range(n))
            for iface in (SRVSVC, str(ifaces.DSSETUP.uuid)):
                for f in detect_rpc_call(iface, opnum, stub):
                    assert f.vuln in ("MS06-040", "MS08-067", "MS04-011")


def test_ms04_011_real_captures(shared_data: Path) -> None:
    from test_proto_dcerpc import REF, decode_all, smb_pipe_streams, tcp_connections

    honeynet = [c for c in tcp_connections(shared_data / "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap")
                if c.server_port == 445 and c.client]
    ((up, _down),) = smb_pipe_streams(honeynet[0]).values()
    sv = tcp_connections(shared_data / REF / "suricata-verify-dcerpc-dce-stub-data-02/input.pcap")[0]
    for client, units in ((up, 1004), (sv.client, 993)):
        req = decode_all(client)[1]
        assert isinstance(req, Request)
        [f] = detect_rpc_call(str(ifaces.DSSETUP.uuid), req.opnum, req.stub)
        assert (f.vuln, f.cve, f.kind) == ("MS04-011", "CVE-2003-0533", "exploit")
        assert f.evidence["argument"] == "dns_domain_name" and f.evidence["units"] == units
