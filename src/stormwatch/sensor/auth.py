"""The NTLMSSP logon legs of SMB1 extended security and SMB2 SESSION_SETUP ([MS-NLMP] 3.2.5,
[MS-SPNG] 3.2.5): accept everyone, remember who said what.

    leg = logon_leg(ctx, security_blob, challenge_sent)
    leg.status             # MORE_PROCESSING_REQUIRED (challenge sent) / SUCCESS / LOGON_FAILURE
    leg.blob               # the answer, in the client's own wrapping (SPNEGO or raw NTLMSSP)
    leg.event              # the smb.session_setup fields once AUTHENTICATE arrived (else None)

Every CHALLENGE carries a fresh 8-byte server challenge from the session's rng (Dionaea's fixed
one is its best-known tell) and the persona's names as TargetInfo; Vista-and-later personas also
send MsvAvTimestamp and their VERSION, as those systems do. A token that is not NTLMSSP (Kerberos)
gets STATUS_LOGON_FAILURE: a standalone host has no key to accept it with; an empty token is an
anonymous logon, as Windows 7 treats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stormwatch.protocols import ntlmssp, spnego
from stormwatch.protocols.errors import ProtocolError
from stormwatch.protocols.smb1 import NtStatus
from stormwatch.sensor.context import Context, anomaly_for


@dataclass(frozen=True)
class LogonLeg:
    status: int
    blob: bytes
    event: dict[str, Any] | None = None
    anonymous: bool = False


def identity(ctx: Context) -> ntlmssp.ServerIdentity:
    p = ctx.persona
    os = p.os
    version = ntlmssp.Version(os.major, os.minor, os.build) if os.major >= 6 else None
    return ntlmssp.ServerIdentity(nb_computer=p.host_name, nb_domain=p.domain, dns_computer=p.host_name.lower(),
                                  version=version)


def ntlm_version(auth: ntlmssp.Authenticate) -> str:
    """``v1`` / ``v2`` / empty, for smb.session_setup."""
    v = auth.ntlm_version
    return "v1" if v.startswith("v1") else "v2" if v == "v2" else ""


def logon_leg(ctx: Context, blob: bytes, *, native_os: str = "", native_lanman: str = "") -> LogonLeg:
    """Answer one SESSION_SETUP security token (raises Abort when it does not parse)."""
    try:
        parsed = spnego.parse_security_blob(blob)
        if parsed.wrapping == "empty":
            # No token at all: Windows 7 logs such a client on anonymously (Metasploit's EternalBlue
            # sends one to open its "free hole" session, and the capture shows the success).
            event = {"auth": "anonymous", "user": "", "domain": "", "workstation": "", "native_os": native_os,
                     "native_lanman": native_lanman, "ntlm_flags": 0, "ntlm_version": ""}
            return LogonLeg(NtStatus.SUCCESS, b"", event, True)
        if parsed.ntlm is None:
            return LogonLeg(NtStatus.LOGON_FAILURE, b"")
        message = ntlmssp.parse_message(parsed.ntlm)
    except ProtocolError as exc:
        raise anomaly_for(exc, "ntlmssp") from None
    if isinstance(message, ntlmssp.Negotiate):
        challenge = bytes(ctx.rng.getrandbits(8) for _ in range(8))
        ts = ctx.filetime() if ctx.persona.os.major >= 6 else None
        answer = ntlmssp.build_challenge(message.flags, challenge, identity(ctx), timestamp=ts)
        return LogonLeg(NtStatus.MORE_PROCESSING_REQUIRED, spnego.wrap_like(parsed, answer))
    if isinstance(message, ntlmssp.Authenticate):
        event = {"auth": "anonymous" if message.anonymous else "ntlmssp", "user": message.user,
                 "domain": message.domain, "workstation": message.workstation, "native_os": native_os,
                 "native_lanman": native_lanman, "ntlm_flags": message.flags, "ntlm_version": ntlm_version(message)}
        final = b"" if parsed.wrapping == "raw-ntlmssp" else spnego.accept_completed()
        return LogonLeg(NtStatus.SUCCESS, final, event, message.anonymous)
    return LogonLeg(NtStatus.LOGON_FAILURE, b"")  # a CHALLENGE from a client
