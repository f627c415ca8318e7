"""What the persona answers a benign (or probing) DCE/RPC call: a response stub, or a fault.

The stubs come from :mod:`stormwatch.protocols.dcerpc.responses`; here is only the choice, per
interface and opnum, made the way an unpatched Windows 2000/XP host makes it:

* srvsvc NetrShareEnum (15) levels 0 and 1: IPC$, the decoy share and ADMIN$ ([MS-SRVS]
  3.1.4.8); levels 2 and 502 need an administrator: ERROR_ACCESS_DENIED.
* srvsvc NetrServerGetInfo (21) levels 100 and 101 from the persona ([MS-SRVS] 3.1.4.17); higher
  levels: ERROR_ACCESS_DENIED, as an anonymous caller gets.
* srvsvc NetprPathCanonicalize (31): the prefix joined to the path, as NetpwPathCanonicalize
  does; a path with ``\\..\\`` (the MS08-067 checks) gets the *unpatched* answer, its last
  component after the climb (Metasploit's check then reads "\\R7" and nmap's conficker check a
  clean host). NetprPathCompare (32): 0 (equal), what nmap's smb-vuln-ms08-067 reads as
  vulnerable. NetprNameCanonicalize (34): the name, or a fault beyond the IDL's OutbufLen range
  of 64000 (what Metasploit's service-pack fingerprint provokes).
* epmapper ept_map (3): EPT_S_NOT_REGISTERED, nothing registered.
* IActivation RemoteActivation (0): a fault (the sensor activates no DCOM object).
* Everything else: fault nca_s_op_rng_error.

A stub that does not decode gets fault RPC_X_BAD_STUB_DATA (0x6F7), as Windows' NDR engine
answers it; the connection stays up.
"""

from __future__ import annotations

import uuid

from stormwatch.protocols.dcerpc import responses
from stormwatch.protocols.dcerpc.build import NCA_S_FAULT_ACCESS_DENIED, NCA_S_FAULT_NDR, NCA_S_OP_RNG_ERROR
from stormwatch.protocols.dcerpc.calls import (
    NameCanonicalizeRequest,
    PathCanonicalizeRequest,
    PathCompareRequest,
    ServerGetInfoRequest,
    ShareEnumRequest,
    UpgradeDownlevelServerRequest,
    decode_request,
)
from stormwatch.protocols.dcerpc.interfaces import IREMOTEACTIVATION
from stormwatch.protocols.dcerpc.ndr import NdrWriter
from stormwatch.protocols.dcerpc.rpcss import EptMapRequest
from stormwatch.protocols.errors import MalformedMessage
from stormwatch.sensor.persona import Persona

#: [MS-SRVS] 3.1.4.30 / 3.1.4.33: OutbufLen is [range(0, 64000)] in both canonicalize calls.
MAX_OUTBUF = 64000
_TRAVERSALS = ("\\..\\", "/../", "\\..", "/..")

Answer = bytes | int  # a response stub, or a fault status


def answer(interface: uuid.UUID | None, opnum: int, stub: bytes, little_endian: bool, persona: Persona) -> Answer:
    """The response stub (bytes) or fault status (int) for one call (see the module docstring)."""
    if interface is None:
        return NCA_S_OP_RNG_ERROR
    if interface == IREMOTEACTIVATION.uuid:
        return NCA_S_FAULT_ACCESS_DENIED
    try:
        call = decode_request(interface, opnum, stub, little_endian)
    except MalformedMessage:
        return NCA_S_FAULT_NDR
    if isinstance(call, ShareEnumRequest):
        return _share_enum(call, persona)
    if isinstance(call, ServerGetInfoRequest):
        return _server_info(call, persona)
    if isinstance(call, PathCanonicalizeRequest):
        return _path_canonicalize(call)
    if isinstance(call, PathCompareRequest):
        return responses.path_compare(responses.ERROR_SUCCESS)
    if isinstance(call, NameCanonicalizeRequest):
        if call.outbuf_len > MAX_OUTBUF:
            return NCA_S_FAULT_NDR
        return responses.name_canonicalize(call.outbuf_len, call.name.text)
    if isinstance(call, EptMapRequest):
        return responses.ept_map_not_registered(min(call.max_towers, 64))
    if isinstance(call, UpgradeDownlevelServerRequest):
        return responses.upgrade_downlevel_server()
    return NCA_S_OP_RNG_ERROR


def _shares(persona: Persona) -> tuple[responses.Share, ...]:
    return responses.default_shares(persona.decoy_share)


def _share_enum(call: ShareEnumRequest, persona: Persona) -> bytes:
    resume = None if call.resume_handle is None else 0
    if call.level == 1:
        return responses.share_enum_level1(_shares(persona), resume_handle=resume)
    if call.level == 0:
        return _share_enum_level0(_shares(persona), resume)
    return _share_enum_denied(call.level, resume)


def _share_enum_level0(shares: tuple[responses.Share, ...], resume_handle: int | None) -> bytes:
    """[MS-SRVS] 2.2.4.22 SHARE_INFO_0_CONTAINER: the names only (same layout as level 1's)."""
    w = NdrWriter()
    w.u32(0)  # Level
    w.u32(0)  # union arm
    with w.deferring():
        w.referent()

        def container() -> None:
            w.u32(len(shares))
            w.referent(bool(shares))
            if shares:
                w.defer(entries)

        def entries() -> None:
            w.u32(len(shares))
            for s in shares:
                w.embedded_wstring(s.name)

        w.defer(container)
    w.u32(len(shares))
    w.referent(resume_handle is not None)
    if resume_handle is not None:
        w.u32(resume_handle)
    w.u32(responses.ERROR_SUCCESS)
    return w.getvalue()


def _share_enum_denied(level: int, resume_handle: int | None) -> bytes:
    """NetrShareEnum out arguments with a NULL container and ERROR_ACCESS_DENIED."""
    w = NdrWriter()
    w.u32(level)
    w.u32(level)
    w.referent(False)
    w.u32(0)  # TotalEntries
    w.referent(resume_handle is not None)
    if resume_handle is not None:
        w.u32(resume_handle)
    w.u32(responses.ERROR_ACCESS_DENIED)
    return w.getvalue()


def _server_info(call: ServerGetInfoRequest, persona: Persona) -> bytes:
    os = persona.os
    if call.level == 101:
        return responses.server_info_101(persona.host_name, version_major=os.major, version_minor=os.minor)
    if call.level == 100:
        w = NdrWriter()
        w.u32(100)
        with w.deferring():
            w.referent()

            def info() -> None:
                w.u32(responses.PLATFORM_ID_NT)
                w.embedded_wstring(persona.host_name)

            w.defer(info)
        w.u32(responses.ERROR_SUCCESS)
        return w.getvalue()
    return responses.level_not_supported(responses.ERROR_ACCESS_DENIED)


def _path_canonicalize(call: PathCanonicalizeRequest) -> Answer:
    if call.outbuf_len > MAX_OUTBUF:
        return NCA_S_FAULT_NDR
    path, prefix = call.path_name.text, call.prefix.text
    if any(t in path for t in _TRAVERSALS):
        # The unpatched collapse climbs past the root and keeps what follows the last "..".
        tail = path.replace("/", "\\").rsplit("\\..", 1)[-1].lstrip("\\")
        canonical = "\\" + tail
    elif prefix:
        canonical = prefix.rstrip("\\") + "\\" + path.lstrip("\\")
    else:
        canonical = path
    needed = 2 * len(canonical) + 2
    if needed > call.outbuf_len:
        return responses.path_canonicalize(call.outbuf_len, "", path_type=call.path_type,
                                           status=responses.NERR_BUF_TOO_SMALL)
    return responses.path_canonicalize(call.outbuf_len, canonical, path_type=call.path_type)
