"""Response stubs (NDR) for the benign calls a client makes before or instead of an exploit, so
that real clients (impacket, smbclient, nmap, Metasploit's fingerprinting) complete their
conversation. Wrap them with :func:`~stormwatch.protocols.dcerpc.build.build_response`.

What a Windows 2000 server answers NetprPathCanonicalize ([MS-SRVS] 3.1.4.30, Windows 2000's
NetpwPathCanonicalize behind it), and so what a persona should pick:

* a path it can canonicalize: status 0, the canonical path (prefix joined with the path,
  UTF-16LE, NUL-terminated) at the start of an Outbuf of OutbufLen bytes, PathType set;
* a name it rejects (an invalid character, ``..`` climbing above the root): ERROR_INVALID_NAME
  (123, 0x7B) with Outbuf zeroed and PathType as sent [inference: the RPC stub marshals the
  OutbufLen-byte [out] buffer whatever the status, zero-filled as MIDL allocates it];
* an Outbuf too small for the result: NERR_BufTooSmall (2123);
* the MS06-040 over-long path: nothing, because the service has crashed (unpatched), or
  ERROR_INVALID_NAME (patched). The MS08-067 ``\\..\\`` traversal likewise crashes an unpatched
  host; Metasploit's ms08_067 ``check`` reads "vulnerable" from an Outbuf starting ``\\R``.

Status values: [MS-ERREF] 2.2 (Win32) and lmerr.h (NERR_*).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stormwatch.protocols.dcerpc.ndr import NdrWriter

ERROR_SUCCESS = 0
ERROR_ACCESS_DENIED = 5
ERROR_NOT_SUPPORTED = 50
ERROR_INVALID_PARAMETER = 87
ERROR_INVALID_NAME = 123
ERROR_INVALID_LEVEL = 124
ERROR_MORE_DATA = 234
ERROR_INVALID_SERVER_STATE = 1352
NERR_BUF_TOO_SMALL = 2123
#: [C706] appendix O / [MS-RPCE] 2.2.1.2.5: the endpoint mapper has no entry for the interface.
EPT_S_NOT_REGISTERED = 0x16C9A0D6

# [MS-SRVS] 2.2.2.4 share types.
STYPE_DISKTREE = 0x00000000
STYPE_PRINTQ = 0x00000001
STYPE_IPC = 0x00000003
STYPE_SPECIAL = 0x80000000

# [MS-SRVS] 2.2.2.7 server types and 2.2.4.41 platform ids.
PLATFORM_ID_NT = 500
SV_TYPE_WORKSTATION = 0x00000001
SV_TYPE_SERVER = 0x00000002
SV_TYPE_NT = 0x00001000
SV_TYPE_POTENTIAL_BROWSER = 0x00010000
SV_TYPE_MASTER_BROWSER = 0x00040000
#: What a standalone Windows 2000 Professional / XP host with the browser service reports.
DEFAULT_SERVER_TYPE = SV_TYPE_WORKSTATION | SV_TYPE_SERVER | SV_TYPE_NT | SV_TYPE_POTENTIAL_BROWSER


@dataclass(frozen=True, slots=True)
class Share:
    """[MS-SRVS] 2.2.4.23 SHARE_INFO_1: a share name, its STYPE_* type and remark."""

    name: str
    type: int
    remark: str = ""


def default_shares(decoy: str = "SharedDocs") -> tuple[Share, ...]:
    """The shares of a Windows 2000/XP host with one decoy disk share (names passed in)."""
    return (
        Share("IPC$", STYPE_IPC | STYPE_SPECIAL, "Remote IPC"),
        Share(decoy, STYPE_DISKTREE, ""),
        Share("ADMIN$", STYPE_DISKTREE | STYPE_SPECIAL, "Remote Admin"),
    )


def share_enum_level1(shares: Sequence[Share], *, resume_handle: int | None = 0,
                      status: int = ERROR_SUCCESS) -> bytes:
    """[MS-SRVS] 3.1.4.8 NetrShareEnum out arguments at level 1: InfoStruct (Level, union arm,
    SHARE_INFO_1_CONTAINER), TotalEntries, ResumeHandle (None when the client sent NULL), status."""
    w = NdrWriter()
    w.u32(1)  # Level
    w.u32(1)  # union arm
    with w.deferring():
        w.referent()  # the container

        def container() -> None:
            w.u32(len(shares))
            w.referent(bool(shares))
            if shares:
                w.defer(entries)

        def entries() -> None:
            w.u32(len(shares))  # conformant array max_count
            for s in shares:
                w.embedded_wstring(s.name)
                w.u32(s.type)
                w.embedded_wstring(s.remark)

        w.defer(container)
    w.u32(len(shares))  # TotalEntries
    w.referent(resume_handle is not None)
    if resume_handle is not None:
        w.u32(resume_handle)
    w.u32(status)
    return w.getvalue()


def server_info_101(name: str, *, version_major: int = 5, version_minor: int = 1,
                    server_type: int = DEFAULT_SERVER_TYPE, comment: str = "",
                    platform_id: int = PLATFORM_ID_NT, status: int = ERROR_SUCCESS) -> bytes:
    """[MS-SRVS] 3.1.4.17 NetrServerGetInfo out arguments at level 101 ([MS-SRVS] 2.2.4.41):
    5.0 is Windows 2000, 5.1 XP."""
    w = NdrWriter()
    w.u32(101)  # union arm
    with w.deferring():
        w.referent()

        def info() -> None:
            w.u32(platform_id)
            w.embedded_wstring(name)
            w.u32(version_major)
            w.u32(version_minor)
            w.u32(server_type)
            w.embedded_wstring(comment)

        w.defer(info)
    w.u32(status)
    return w.getvalue()


def level_not_supported(status: int = ERROR_INVALID_LEVEL) -> bytes:
    """NetrServerGetInfo / NetrShareGetInfo out arguments for a level the persona does not serve:
    an empty union arm (a NULL pointer) and the status."""
    w = NdrWriter()
    w.u32(0)
    w.u32(0)
    w.u32(status)
    return w.getvalue()


def path_canonicalize(outbuf_len: int, canonical: str = "", *, path_type: int = 0,
                      status: int = ERROR_SUCCESS) -> bytes:
    """[MS-SRVS] 3.1.4.30 NetprPathCanonicalize out arguments: Outbuf (a conformant byte array
    of exactly OutbufLen bytes, the UTF-16LE canonical path NUL-terminated at its start and
    zeros after, cut to fit), PathType, status. See the module docstring for which to send."""
    data = (canonical.encode("utf-16-le") + b"\x00\x00") if canonical else b""
    w = NdrWriter()
    w.conformant_bytes(data[:outbuf_len].ljust(outbuf_len, b"\x00"))
    w.u32(path_type)
    w.u32(status)
    return w.getvalue()


def path_compare(status: int = ERROR_SUCCESS) -> bytes:
    """[MS-SRVS] 3.1.4.31 NetprPathCompare: just the result (0 equal, else the ordering or an
    error; nmap's smb-vuln-ms08-067 reads ERROR_INVALID_NAME as "patched")."""
    w = NdrWriter()
    w.u32(status)
    return w.getvalue()


def name_canonicalize(outbuf_len: int, canonical: str = "", *, status: int = ERROR_SUCCESS) -> bytes:
    """[MS-SRVS] 3.1.4.33 NetprNameCanonicalize out arguments: Outbuf (a conformant array of
    OutbufLen WCHARs, the name NUL-terminated and zero-filled) and status."""
    units = (canonical + "\x00").encode("utf-16-le") if canonical else b""
    w = NdrWriter()
    w.u32(outbuf_len)
    w.raw(units[:outbuf_len * 2].ljust(outbuf_len * 2, b"\x00"))
    w.align(4)
    w.u32(status)
    return w.getvalue()


def ept_map_not_registered(max_towers: int, status: int = EPT_S_NOT_REGISTERED) -> bytes:
    """ept_map out arguments when no endpoint is registered for the interface: a nil
    entry_handle, num_towers 0, an empty towers array sized max_towers, status."""
    w = NdrWriter()
    w.raw(b"\x00" * 20)  # entry_handle: attributes + nil UUID
    w.u32(0)  # num_towers
    w.u32(max_towers)  # towers: max_count, offset, actual_count
    w.u32(0)
    w.u32(0)
    w.u32(status)
    return w.getvalue()


def upgrade_downlevel_server(status: int = ERROR_INVALID_SERVER_STATE) -> bytes:
    """dssetup DsRolerUpgradeDownlevelServer out arguments: a nil DsOperationHandle (a 20-byte
    context handle) and the status. The server in the honeynet MS04-011 capture answered the
    exploit's call with exactly this and ERROR_INVALID_SERVER_STATE (1352)."""
    w = NdrWriter()
    w.raw(b"\x00" * 20)
    w.u32(status)
    return w.getvalue()


def status_only(status: int) -> bytes:
    """The out arguments of an operation whose only output is its return value (and a way to
    answer any call with just a status; most clients then report the error and go on)."""
    w = NdrWriter()
    w.u32(status)
    return w.getvalue()
