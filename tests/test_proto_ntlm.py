"""NTLMSSP and SPNEGO codecs (stormwatch.protocols.ntlmssp, .spnego): vectors, impacket as the
client in both directions, real captures against Zeek's expected output and tshark, fuzzing.

Captures (../shared/data, see SOURCES.md): Zeek's ``raw_ntlm_in_smb.pcap`` (SMB1 session setup
carrying NTLMSSP with no SPNEGO wrapping; Zeek's btest prints the AUTHENTICATE session key) and
``mapi.pcap`` (NTLM in DCE/RPC bind / auth3 auth verifiers; Zeek's ntlm.log lists the logons),
and suricata-verify ``smb-filename`` (a Windows Server 2008 R2 negotiate hint).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from impacket import ntlm
from impacket import spnego as ispnego

from capture_helpers import tcp_payloads
from stormwatch.protocols import ntlmssp, spnego
from stormwatch.protocols.errors import MalformedMessage, NeedMoreData, ProtocolError
from stormwatch.protocols.ntlmssp import Flag

IDENTITY = ntlmssp.ServerIdentity("HOMEUSER-3AF6FE", "WORKGROUP", "homeuser-3af6fe", "", "",
                                  ntlmssp.Version(5, 1, 2600))
FILETIME = 132_000_000_000_000_000
IMPACKET_VERSION = ntlm.VERSION(b"\x0a\x00\x63\x45\x00\x00\x00\x0f")  # 10.0 build 17763

# ------------------------------------------------------------------------------------------ vectors
NEGOTIATE_XP = bytes.fromhex(
    "4e544c4d53535000"    # Signature "NTLMSSP\0"
    "01000000"            # MessageType NEGOTIATE
    "07b208a2"            # NegotiateFlags 0xa208b207
    "0600" "0600" "30000000"  # DomainNameFields: 6 bytes at 48
    "0800" "0800" "28000000"  # WorkstationFields: 8 bytes at 40
    "0501" "280a" "000000" "0f"  # Version 5.1 build 2600, NTLMRevisionCurrent 15
    "414c454f4e415244"    # Workstation "ALEONARD" (OEM)
    "434e414d4953"        # DomainName "CNAMIS" (OEM)
)
AUTHENTICATE_ANONYMOUS = bytes.fromhex(
    "4e544c4d53535000"    # Signature
    "03000000"            # MessageType AUTHENTICATE
    "0100" "0100" "48000000"  # LmChallengeResponseFields: 1 byte at 72
    "0000" "0000" "49000000"  # NtChallengeResponseFields: empty
    "0000" "0000" "40000000"  # DomainNameFields: empty
    "0000" "0000" "40000000"  # UserNameFields: empty
    "0800" "0800" "40000000"  # WorkstationFields: 8 bytes at 64
    "0000" "0000" "49000000"  # EncryptedRandomSessionKeyFields: empty
    "050a8800"            # NegotiateFlags 0x00880a05 (UNICODE, ANONYMOUS, ESS, TARGET_INFO, ...)
    "4e0055004c004c00"    # Workstation "NULL" (UTF-16LE)
    "00"                  # LmChallengeResponse Z(1)
)
# [MS-SPNG] 2.2.1 NegTokenInit2 as Windows sends it in a negotiate response.
SPNEGO_HINT = bytes.fromhex(
    "6048"                # [APPLICATION 0] InitialContextToken, 72 bytes
    "0606" "2b0601050502"  # thisMech OID 1.3.6.1.5.5.2 (SPNEGO)
    "a03e"                # [0] NegTokenInit
    "303c"                # SEQUENCE
    "a00e" "300c"         # [0] mechTypes SEQUENCE OF
    "060a" "2b06010401823702020a"  # OID 1.3.6.1.4.1.311.2.2.10 (NTLMSSP)
    "a32a" "3028"         # [3] negHints SEQUENCE
    "a026" "1b24"         # [0] hintName GeneralString, 36 bytes
    + b"not_defined_in_RFC4178@please_ignore".hex()
)
ACCEPT_COMPLETED = bytes.fromhex(
    "a107"                # [1] NegTokenResp
    "3005"                # SEQUENCE
    "a003" "0a0100"       # [0] negState ENUMERATED accept-completed
)


def test_negotiate_vector() -> None:
    neg = ntlmssp.parse_negotiate(NEGOTIATE_XP)
    assert (neg.flags, neg.domain, neg.workstation) == (0xA208B207, "CNAMIS", "ALEONARD")
    assert neg.version == ntlmssp.Version(5, 1, 2600, 15) and neg.version.text == "5.1.2600"
    assert "NTLMSSP_NEGOTIATE_OEM_WORKSTATION_SUPPLIED" in neg.flag_names
    assert "NTLM_NEGOTIATE_OEM" in neg.flag_names
    again = ntlmssp.parse_negotiate(ntlmssp.build_negotiate(neg.flags, "CNAMIS", "ALEONARD", neg.version))
    assert again == neg


def test_anonymous_vector() -> None:
    auth = ntlmssp.parse_authenticate(AUTHENTICATE_ANONYMOUS)
    assert (auth.user, auth.domain, auth.workstation) == ("", "", "NULL")
    assert auth.anonymous and auth.ntlm_version == "none"
    assert auth.mic is None and auth.version is None and auth.lm_response == b"\x00"
    assert "NTLMSSP_NEGOTIATE_ANONYMOUS" in auth.flag_names


def test_spnego_vectors() -> None:
    assert spnego.build_neg_token_init_hint() == SPNEGO_HINT
    assert spnego.accept_completed() == ACCEPT_COMPLETED
    blob = spnego.parse_security_blob(SPNEGO_HINT)
    assert blob.wrapping == "spnego" and blob.init is not None
    assert blob.init.mech_types == (spnego.NTLMSSP_OID,) and blob.init.hint_name == spnego.HINT_NAME
    resp = spnego.parse_security_blob(ACCEPT_COMPLETED).resp
    assert resp == spnego.NegTokenResp(neg_state=spnego.ACCEPT_COMPLETED)


# ---------------------------------------------------------------------------- impacket as the client
def test_impacket_negotiate_decodes() -> None:
    plain = ntlmssp.parse_negotiate(ntlm.getNTLMSSPType1("WS1", "DOM").getData())
    assert plain.version is None and plain.domain is None and plain.flags & Flag.NEGOTIATE_UNICODE
    with_version = ntlmssp.parse_negotiate(ntlm.getNTLMSSPType1("WS1", "DOM", version=IMPACKET_VERSION).getData())
    assert with_version.version == ntlmssp.Version(10, 0, 17763)
    named = ntlm.NTLMAuthNegotiate()
    named["host_name"] = b"KALI"
    named["domain_name"] = b"EVIL"
    got = ntlmssp.parse_negotiate(named.getData())
    assert (got.domain, got.workstation) == ("EVIL", "KALI")


def test_our_challenge_parses_in_impacket() -> None:
    t1 = ntlm.getNTLMSSPType1("WS1", "DOM", version=IMPACKET_VERSION)
    raw = ntlmssp.build_challenge(t1["flags"], b"\x11" * 8, IDENTITY, FILETIME)
    ch = ntlm.NTLMAuthChallenge(raw)
    assert ch["challenge"] == b"\x11" * 8
    assert ch["domain_name"].decode("utf-16-le") == "HOMEUSER-3AF6FE"  # TargetName: the computer (workgroup)
    assert ch["flags"] & Flag.TARGET_TYPE_SERVER and ch["flags"] & Flag.NEGOTIATE_VERSION
    assert ch["Version"] == ntlmssp.Version(5, 1, 2600).pack()
    av = ntlm.AV_PAIRS(ch["TargetInfoFields"])
    assert av[ntlm.NTLMSSP_AV_HOSTNAME][1].decode("utf-16-le") == "HOMEUSER-3AF6FE"
    assert av[ntlm.NTLMSSP_AV_DOMAINNAME][1].decode("utf-16-le") == "WORKGROUP"
    assert av[ntlm.NTLMSSP_AV_DNS_HOSTNAME][1].decode("utf-16-le") == "homeuser-3af6fe"
    assert int.from_bytes(av[ntlm.NTLMSSP_AV_TIME][1], "little") == FILETIME
    ours = ntlmssp.parse_challenge(raw)
    assert ours.target_info is not None and ours.target_info.timestamp == FILETIME
    assert (ours.target_name, ours.version, ours.server_challenge) == ("HOMEUSER-3AF6FE", IDENTITY.version, b"\x11" * 8)


@pytest.mark.parametrize(("user", "password", "v2", "expected"), [
    ("bob", "pw", True, "v2"),
    ("bob", "pw", False, "v1-ess"),
    ("", "", True, "none"),
])
def test_impacket_authenticate_decodes(user: str, password: str, v2: bool, expected: str) -> None:
    t1 = ntlm.getNTLMSSPType1("WS1", "DOM", signingRequired=v2, use_ntlmv2=v2)
    raw = ntlmssp.build_challenge(t1["flags"], b"\x22" * 8, IDENTITY, FILETIME)
    t3, _key = ntlm.getNTLMSSPType3(t1, raw, user, password, "CORP" if user else "", use_ntlmv2=v2)
    auth = ntlmssp.parse_authenticate(t3.getData())
    assert (auth.user, auth.domain, auth.workstation) == (user, "CORP" if user else "", "WS1")
    assert auth.ntlm_version == expected and auth.anonymous == (user == "")
    if expected == "v2":
        assert auth.client_info is not None and auth.client_info.target_name == "cifs/homeuser-3af6fe"
        assert auth.client_timestamp == FILETIME and auth.client_info.nb_domain == "WORKGROUP"
    # with signing impacket negotiates KEY_EXCH and sends an encrypted random session key
    assert len(auth.session_key) == (16 if v2 else 0)
    assert bool(auth.flags & Flag.NEGOTIATE_KEY_EXCH) == v2


def test_impacket_authenticate_with_version_and_mic() -> None:
    t1 = ntlm.getNTLMSSPType1("WS1", "DOM", version=IMPACKET_VERSION)
    raw = ntlmssp.build_challenge(t1["flags"], b"\x22" * 8, IDENTITY, FILETIME)
    t3, _key = ntlm.getNTLMSSPType3(t1, raw, "bob", "pw", "CORP", version=IMPACKET_VERSION)
    t3["MIC"] = b"\xaa" * 16  # impacket leaves the MIC to its caller; offsets already count it
    auth = ntlmssp.parse_authenticate(t3.getData())
    assert auth.version == ntlmssp.Version(10, 0, 17763) and auth.mic == b"\xaa" * 16
    assert (auth.user, auth.domain) == ("bob", "CORP")


# ------------------------------------------------------------------------------- flag negotiation
def test_flag_negotiation() -> None:
    f = Flag
    oem_client = f.NEGOTIATE_OEM | f.REQUEST_TARGET | f.NEGOTIATE_NTLM | f.NEGOTIATE_LM_KEY
    flags = ntlmssp.negotiate_flags(oem_client, IDENTITY)
    assert flags & f.NEGOTIATE_OEM and not flags & f.NEGOTIATE_UNICODE and flags & f.NEGOTIATE_LM_KEY
    chal = ntlmssp.parse_challenge(ntlmssp.build_challenge(oem_client, bytes(8), IDENTITY))
    assert chal.target_name == "HOMEUSER-3AF6FE"  # OEM-encoded, read back as OEM
    ess = f.NEGOTIATE_UNICODE | f.NEGOTIATE_LM_KEY | f.NEGOTIATE_EXTENDED_SESSIONSECURITY | f.NEGOTIATE_SIGN
    flags = ntlmssp.negotiate_flags(ess, ntlmssp.ServerIdentity("DC1", "CORP", domain_joined=True))
    assert not flags & f.NEGOTIATE_LM_KEY and flags & f.NEGOTIATE_SIGN and flags & f.TARGET_TYPE_DOMAIN
    assert not flags & f.NEGOTIATE_VERSION and not flags & f.REQUEST_TARGET
    dc = ntlmssp.ServerIdentity("DC1", "CORP", domain_joined=True)
    chal = ntlmssp.parse_challenge(ntlmssp.build_challenge(ess | f.REQUEST_TARGET, bytes(8), dc))
    assert chal.target_name == "CORP" and chal.version is None and chal.target_info is not None
    assert chal.target_info.timestamp is None and chal.target_info.nb_computer == "DC1"


# ------------------------------------------------------------------------------------ captures
def smb1_frames(stream: bytes) -> list[bytes]:
    out, off = [], 0
    while off + 4 <= len(stream):
        length = int.from_bytes(stream[off + 1:off + 4], "big") & 0x1FFFF
        if stream[off] == 0 and stream[off + 4:off + 8] == b"\xffSMB":
            out.append(stream[off + 4:off + 4 + length])
        off += 4 + length
    return out


def smb1_security_blob(frame: bytes) -> bytes | None:
    """The security blob of an extended-security SMB1 SESSION_SETUP_ANDX ([MS-SMB] 2.2.4.6):
    request WordCount 12 (blob length in word 7), response WordCount 4 (word 3)."""
    if frame[4] != 0x73:
        return None
    wc = frame[32]
    words = frame[33:33 + 2 * wc]
    length = {12: words[14:16], 4: words[6:8]}.get(wc)
    if length is None:
        return None
    return frame[33 + 2 * wc + 2:][:int.from_bytes(length, "little")]


def tshark(path: Path, display: str, *fields: str) -> list[list[str]]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    cmd = ["tshark", "-r", str(path), "-Y", display, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    return [line.split("|") for line in subprocess.run(cmd, capture_output=True, text=True, check=True)
            .stdout.splitlines()]


def _raw_ntlm_messages(shared_data: Path) -> list[tuple[spnego.SecurityBlob, object]]:
    out = []
    for _key, stream in sorted(tcp_payloads(shared_data / "pcap/smb-reference/raw_ntlm_in_smb.pcap").items()):
        for frame in smb1_frames(stream):
            blob = smb1_security_blob(frame)
            if blob:
                parsed = spnego.parse_security_blob(blob)
                assert parsed.ntlm is not None
                out.append((parsed, ntlmssp.parse_message(parsed.ntlm)))
    return out


@pytest.mark.shared
def test_raw_ntlm_in_smb_matches_zeek(shared_data: Path) -> None:
    msgs = _raw_ntlm_messages(shared_data)
    assert {b.wrapping for b, _m in msgs} == {"raw-ntlmssp"}  # no SPNEGO in either direction
    kinds = [type(m).__name__ for _b, m in msgs]
    assert sorted(kinds) == ["Authenticate", "Challenge", "Negotiate"]
    auth = next(m for _b, m in msgs if isinstance(m, ntlmssp.Authenticate))
    # Zeek's btest prints the session key of the AUTHENTICATE (escaped bytes, as Zeek prints them)
    stdout = (shared_data / "expected/zeek/smb.raw-ntlm/.stdout").read_text().splitlines()[-1]
    assert auth.session_key == stdout.encode("latin-1").decode("unicode_escape").encode("latin-1")
    assert (auth.user, auth.domain, auth.workstation, auth.anonymous) == ("test", "TEST-F7DFBC3FE9", "BABYBOOK", False)
    chal = next(m for _b, m in msgs if isinstance(m, ntlmssp.Challenge))
    assert chal.flags == 0x628A0205 and chal.target_info is not None


@pytest.mark.shared
@pytest.mark.tshark
def test_raw_ntlm_in_smb_matches_tshark(shared_data: Path) -> None:
    path = shared_data / "pcap/smb-reference/raw_ntlm_in_smb.pcap"
    auth = next(m for _b, m in _raw_ntlm_messages(shared_data) if isinstance(m, ntlmssp.Authenticate))
    ((user, domain, host, key, flags),) = tshark(path, "ntlmssp.messagetype == 3", "ntlmssp.auth.username",
                                                 "ntlmssp.auth.domain", "ntlmssp.auth.hostname",
                                                 "ntlmssp.auth.sesskey", "ntlmssp.negotiateflags")
    assert (auth.user, auth.domain, auth.workstation) == (user, domain, host)
    assert auth.session_key.hex() == key and auth.flags == int(flags, 16)


def dcerpc_auth_values(stream: bytes) -> list[bytes]:
    """The auth_value of each connection-oriented DCE/RPC PDU ([C706] 12.6.3: the last auth_length
    bytes of the fragment) in a stream that starts with a PDU."""
    out, off = [], 0
    while off + 16 <= len(stream) and stream[off] == 5:
        frag = int.from_bytes(stream[off + 8:off + 10], "little")
        auth = int.from_bytes(stream[off + 10:off + 12], "little")
        if frag < 16 or off + frag > len(stream):
            break
        if auth:
            out.append(stream[off + frag - auth:off + frag])
        off += frag
    return out


@pytest.mark.shared
def test_mapi_dcerpc_ntlm_matches_zeek_ntlm_log(shared_data: Path) -> None:
    logons, servers = [], []
    for _key, stream in tcp_payloads(shared_data / "pcap/smb-reference/mapi.pcap").items():
        for value in dcerpc_auth_values(stream):
            if value.startswith(ntlmssp.SIGNATURE):
                msg = ntlmssp.parse_message(value)
                if isinstance(msg, ntlmssp.Authenticate):
                    logons.append((msg.user, msg.workstation, msg.domain))
                elif isinstance(msg, ntlmssp.Challenge) and msg.target_info is not None:
                    servers.append(msg.target_info.nb_computer)
    lines = (shared_data / "expected/zeek/dce-rpc.mapi/ntlm.log").read_text().splitlines()
    names = next(ln for ln in lines if ln.startswith("#fields")).split("\t")[1:]
    rows = [dict(zip(names, ln.split("\t"), strict=True)) for ln in lines if not ln.startswith("#")]
    assert sorted(logons) == sorted((r["username"], r["hostname"], r["domainname"]) for r in rows)
    assert sorted(servers) == sorted(r["server_nb_computer_name"] for r in rows)


def captures(shared_data: Path) -> list[Path]:
    root = shared_data / "pcap"
    return sorted(p for p in root.rglob("*") if p.suffix in (".pcap", ".cap"))


def ntlm_in_capture(path: Path) -> list[ntlmssp.Negotiate | ntlmssp.Challenge | ntlmssp.Authenticate]:
    """Every NTLMSSP message in a capture, found by its signature in the reassembled streams
    (whatever carries it: SMB1, SMB2, DCE/RPC) and parsed with the bytes after it as trailing data."""
    out = []
    for _key, stream in sorted(tcp_payloads(path).items()):
        at = stream.find(ntlmssp.SIGNATURE)
        while at >= 0:
            out.append(ntlmssp.parse_message(stream[at:]))
            at = stream.find(ntlmssp.SIGNATURE, at + 1)
    return out


# trace -> (NEGOTIATE, CHALLENGE, AUTHENTICATE) counts; tshark's ntlmssp.messagetype agrees (below)
NTLM_IN_CAPTURES = {
    "eternalchampion.pcap": (2, 2, 2), "honeynet-fc2010-attack-trace-ms04-011.pcap": (1, 1, 1),
    "mapi.pcap": (2, 2, 2), "raw_ntlm_in_smb.pcap": (1, 1, 1), "suricata-verify-output-eve-smb-01": (1, 1, 1),
    "suricata-verify-smb-filename": (3, 3, 3), "suricata-verify-smb-named-pipe-ascii": (1, 1, 1),
    "suricata-verify-smb1-02": (3, 3, 0),
}


def _trace_name(path: Path) -> str:
    return path.parent.name if path.name == "input.pcap" or path.parent.name.startswith("suricata") else path.name


@pytest.mark.shared
def test_every_ntlmssp_message_in_the_captures_decodes(shared_data: Path) -> None:
    found = {}
    for path in captures(shared_data):
        msgs = ntlm_in_capture(path)
        if msgs:
            found[_trace_name(path)] = tuple(sum(isinstance(m, t) for m in msgs) for t in (
                ntlmssp.Negotiate, ntlmssp.Challenge, ntlmssp.Authenticate))
    assert found == NTLM_IN_CAPTURES


@pytest.mark.shared
@pytest.mark.tshark
def test_every_authenticate_in_the_captures_matches_tshark(shared_data: Path) -> None:
    # (tshark finds no NTLMSSP in the other captures either: checked once, too slow to repeat)
    for path in (p for p in captures(shared_data) if _trace_name(p) in NTLM_IN_CAPTURES):
        ours = sorted((m.user or "NULL", m.domain or "NULL", m.workstation or "NULL")  # tshark's empty string
                      for m in ntlm_in_capture(path) if isinstance(m, ntlmssp.Authenticate))
        rows = tshark(path, "ntlmssp.messagetype == 3", "ntlmssp.auth.username", "ntlmssp.auth.domain",
                      "ntlmssp.auth.hostname")
        assert ours == sorted(tuple(r) for r in rows), path.name


@pytest.mark.shared
def test_exploit_traces_log_anonymous_logons(shared_data: Path) -> None:
    """The MS04-011 "House of Dabus" exploit logs on anonymously (empty user, no NT response, LM Z(1))
    from workstation HOD; EternalChampion's two logons are null sessions as well."""
    hod = [m for m in ntlm_in_capture(shared_data / "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap")
           if isinstance(m, ntlmssp.Authenticate)]
    assert [(m.workstation, m.anonymous) for m in hod] == [("HOD", True)]
    champion = [m for m in ntlm_in_capture(shared_data / "pcap/exploits/eternalchampion.pcap")
                if isinstance(m, ntlmssp.Authenticate)]
    assert [(m.anonymous, m.ntlm_version, m.lm_response) for m in champion] == [(True, "none", b"\x00")] * 2


@pytest.mark.shared
def test_windows_2008r2_negotiate_hint(shared_data: Path) -> None:
    """The SPNEGO hint in the SMB1 extended-security NEGOTIATE response of Windows Server 2008 R2:
    five mechanisms and the RFC 4178 hint name."""
    stream = tcp_payloads(shared_data / "pcap/smb-reference/suricata-verify-smb-filename/input.pcap")
    frame = next(f for k, s in stream.items() if k[1] == 445 for f in smb1_frames(s) if f[4] == 0x72)
    # [MS-SMB] 2.2.4.5.2.1: WordCount 17, then ByteCount, ServerGUID (16) and the blob
    assert frame[32] == 17
    byte_count = int.from_bytes(frame[67:69], "little")
    blob = spnego.parse_security_blob(frame[69 + 16:69 + byte_count])
    assert blob.init is not None and blob.init.hint_name == spnego.HINT_NAME
    assert blob.init.mech_types == (spnego.NEGOEX_OID, spnego.MS_KRB5_OID, spnego.KRB5_OID, spnego.KRB5_U2U_OID,
                                    spnego.NTLMSSP_OID)
    assert [spnego.MECH_NAMES[m] for m in blob.init.mech_types][-1] == "ntlmssp"


# ------------------------------------------------------------------------------- SPNEGO interop
def test_spnego_with_impacket() -> None:
    hint = ispnego.SPNEGO_NegTokenInit(spnego.build_neg_token_init_hint())
    assert hint["MechTypes"] == [ispnego.TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
    challenge = ntlmssp.build_challenge(0xE2088297, b"\x33" * 8, IDENTITY)
    resp = ispnego.SPNEGO_NegTokenResp(spnego.accept_incomplete(challenge))
    assert resp["NegState"] == b"\x01" and resp["ResponseToken"] == challenge
    assert resp["SupportedMech"] == ispnego.TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]
    assert ispnego.SPNEGO_NegTokenResp(spnego.accept_completed())["NegState"] == b"\x00"
    init = ispnego.SPNEGO_NegTokenInit()
    init["MechTypes"] = [ispnego.TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
    init["MechToken"] = ntlm.getNTLMSSPType1("WS", "D").getData()
    blob = spnego.parse_security_blob(init.getData())
    assert blob.ntlm == init["MechToken"] and blob.init is not None and blob.init.hint_name is None
    second = ispnego.SPNEGO_NegTokenResp()
    second["ResponseToken"] = AUTHENTICATE_ANONYMOUS
    blob = spnego.parse_security_blob(second.getData())
    assert blob.ntlm == AUTHENTICATE_ANONYMOUS and blob.resp is not None and blob.resp.neg_state is None


def test_spnego_builders_round_trip() -> None:
    token = spnego.build_neg_token_init((spnego.KRB5_OID, spnego.NTLMSSP_OID), mech_token=NEGOTIATE_XP,
                                        hint_name=None, mech_list_mic=b"mic")
    blob = spnego.parse_security_blob(token)
    assert blob.init == spnego.NegTokenInit((spnego.KRB5_OID, spnego.NTLMSSP_OID), None, NEGOTIATE_XP, b"mic", None)
    big = b"x" * 300  # long-form lengths
    resp = spnego.parse_security_blob(spnego.build_neg_token_resp(spnego.REQUEST_MIC, spnego.NTLMSSP_OID, big, b"m"))
    assert resp.resp == spnego.NegTokenResp(3, spnego.NTLMSSP_OID, big, b"m")
    raw = spnego.parse_security_blob(NEGOTIATE_XP)
    assert raw.wrapping == "raw-ntlmssp" and raw.ntlm == NEGOTIATE_XP
    assert spnego.wrap_like(raw, b"NTLMSSP\x00chal") == b"NTLMSSP\x00chal"
    wrapped = spnego.parse_security_blob(spnego.wrap_like(blob, b"NTLMSSP\x00chal"))
    assert wrapped.resp == spnego.NegTokenResp(1, spnego.NTLMSSP_OID, b"NTLMSSP\x00chal")
    assert spnego.parse_security_blob(b"").wrapping == "empty"
    krb = spnego.parse_security_blob(bytes.fromhex("600b" "06092a864886f712010202" + "") + b"")
    assert krb.wrapping == "gss" and krb.mech == spnego.KRB5_OID and krb.ntlm is None


@pytest.mark.parametrize(("blob", "field"), [
    (bytes.fromhex("a180"), "indefinite"),                     # BER indefinite length
    (bytes.fromhex("bf2000"), "high tag"),                     # high tag number form
    (bytes.fromhex("a18500000000010000"), "5-octet"),         # length of 5 octets
    (bytes.fromhex("a10c300aa0030a0100a0030a0101"), "repeated"),  # negState twice
    (bytes.fromhex("a1073005a1030601" "80"), "OID|unfinished|non-minimal"),  # OID arc 0x80...
    (bytes.fromhex("a1053003a0030a01"), "overruns"),         # inner element longer than its parent
    (bytes.fromhex("0403616263"), "NegotiationToken"),       # not a GSS or SPNEGO token
])
def test_spnego_refuses(blob: bytes, field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        spnego.parse_security_blob(blob)


def test_spnego_mech_list_is_bounded() -> None:
    spnego.parse_security_blob(spnego.build_neg_token_init((spnego.NTLMSSP_OID,) * 32))
    with pytest.raises(MalformedMessage, match="more than 32"):
        spnego.parse_security_blob(spnego.build_neg_token_init((spnego.NTLMSSP_OID,) * 33))


# ---------------------------------------------------------------------------------- robustness
def _valid_ntlm() -> list[bytes]:
    t1 = ntlm.getNTLMSSPType1("WS1", "DOM", version=IMPACKET_VERSION)
    chal = ntlmssp.build_challenge(t1["flags"], b"\x44" * 8, IDENTITY, FILETIME)
    t3, _key = ntlm.getNTLMSSPType3(t1, chal, "bob", "pw", "CORP", version=IMPACKET_VERSION)
    t3["MIC"] = b"\x5c" * 16
    return [NEGOTIATE_XP, AUTHENTICATE_ANONYMOUS, t1.getData(), chal, t3.getData()]


def _valid_blobs() -> list[bytes]:
    return [SPNEGO_HINT, ACCEPT_COMPLETED, spnego.accept_incomplete(_valid_ntlm()[3]),
            spnego.build_neg_token_init(mech_token=NEGOTIATE_XP, hint_name=None, mech_list_mic=b"m" * 200)]


def test_ntlm_truncation_and_trailing_bytes() -> None:
    for msg in _valid_ntlm():
        whole = ntlmssp.parse_message(msg)
        for cut in range(len(msg)):
            try:
                ntlmssp.parse_message(msg[:cut])
            except (NeedMoreData, MalformedMessage):
                continue
            raise AssertionError(f"prefix of {cut} bytes of {whole!r:.60} parsed")
        assert ntlmssp.parse_message(msg + b"\xee" * 11) == whole


def test_spnego_truncation_and_trailing_bytes() -> None:
    for blob in _valid_blobs():
        whole = spnego.parse_security_blob(blob)
        for cut in range(1, len(blob)):
            with pytest.raises((NeedMoreData, MalformedMessage)):
                spnego.parse_security_blob(blob[:cut])
        assert spnego.parse_security_blob(blob + b"\x00\x01") == whole


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_fuzz_ntlm_random(tail: bytes) -> None:
    for kind in (1, 2, 3):
        with contextlib.suppress(ProtocolError):
            ntlmssp.parse_message(ntlmssp.SIGNATURE + kind.to_bytes(4, "little") + tail)
    with contextlib.suppress(ProtocolError):
        ntlmssp.parse_av_pairs(tail)


@settings(max_examples=400)
@given(st.data())
def test_fuzz_mutated(data: st.DataObject) -> None:
    msg = bytearray(data.draw(st.sampled_from(_valid_ntlm() + _valid_blobs())))
    for _ in range(data.draw(st.integers(1, 6))):
        msg[data.draw(st.integers(0, len(msg) - 1))] = data.draw(st.integers(0, 255))
    for parse in (ntlmssp.parse_message, spnego.parse_security_blob):
        with contextlib.suppress(ProtocolError):
            parse(bytes(msg))


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_fuzz_spnego_random(blob: bytes) -> None:
    for prefix in (b"", b"\x60", b"\xa0", b"\xa1"):
        with contextlib.suppress(ProtocolError):
            spnego.parse_security_blob(prefix + blob)
