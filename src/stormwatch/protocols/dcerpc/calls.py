"""Request-stub decoders for the operations the exploit detectors look at (srvsvc, dssetup), and
:func:`decode_request`, the dispatcher over all of them (the RPCSS ones are in :mod:`.rpcss`).

Each decoder takes the reassembled stub of a request and returns a frozen dataclass holding every
argument with its declared NDR counts and raw bytes (:class:`~.ndr.NdrString`): the detectors
judge sizes, so nothing is truncated or "fixed". ``trailing`` counts stub bytes left after the
last argument (Windows ignores them; a crafted stub may carry a payload there).

srvsvc ([MS-SRVS] 3.1.4), the MS06-040 / MS08-067 operations::

    NetprPathCanonicalize (31)  [in,string,unique] ServerName, [in,string] PathName,
                                [in] OutbufLen, [in,string] Prefix, [in,out] *PathType, [in] Flags
    NetprPathCompare (32)       ServerName, [in,string] PathName1, PathName2, [in] PathType, Flags
    NetprNameCanonicalize (34)  ServerName, [in,string] Name, [in] OutbufLen, NameType, Flags
    NetrShareEnum (15)          ServerName, [in,out] SHARE_ENUM_STRUCT InfoStruct,
                                [in] PreferedMaximumLength, [in,out,unique] *ResumeHandle
    NetrServerGetInfo (21)      ServerName, [in] Level

dssetup opnum 9, DsRolerUpgradeDownlevelServer (the MS04-011 LSASS overflow). Today's [MS-DSSP]
lists it as Opnum9NotUsedOnWire. The argument order is Windows 2000's DsRolerUpgradeDownlevelServer
(its source has been public); the pointer attributes are those Metasploit's ms04_011_lsass and
both real attack captures encode (each capture decodes to its last byte with them)::

    [in,string] DnsDomainName, [in,string,unique] SiteName, [in,string] DsDatabasePath,
    [in,string] DsLogPath, [in,string] SystemVolumeRootPath, [in,string,unique]
    ParentDnsDomainName, ParentServer, Account, [in,unique] EPassword, EDsRepairPassword,
    [in] Options

with each encrypted password a 524-byte DSROLEPR_ENCRYPTED_USER_PASSWORD (inferred from the
captures, where both sit exactly 4 + 524 bytes apart, and Metasploit's 528 random bytes = a
referent id + 524). The overflow is in the logging of an over-long first argument: the honeynet
capture sends DnsDomainName with 1004 UTF-16 units, the suricata-verify one 993.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from stormwatch.protocols.dcerpc import rpcss
from stormwatch.protocols.dcerpc.interfaces import DSSETUP, SRVSVC
from stormwatch.protocols.dcerpc.ndr import DEFAULT_LIMITS, NdrLimits, NdrReader, NdrString

# -- srvsvc ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PathCanonicalizeRequest:
    """[MS-SRVS] 3.1.4.30 NetprPathCanonicalize (opnum 31)."""

    server_name: NdrString | None
    path_name: NdrString
    outbuf_len: int
    prefix: NdrString
    path_type: int
    flags: int
    stub_length: int
    trailing: int


@dataclass(frozen=True, slots=True)
class PathCompareRequest:
    """[MS-SRVS] 3.1.4.31 NetprPathCompare (opnum 32)."""

    server_name: NdrString | None
    path_name1: NdrString
    path_name2: NdrString
    path_type: int
    flags: int
    stub_length: int
    trailing: int


@dataclass(frozen=True, slots=True)
class NameCanonicalizeRequest:
    """[MS-SRVS] 3.1.4.33 NetprNameCanonicalize (opnum 34)."""

    server_name: NdrString | None
    name: NdrString
    outbuf_len: int
    name_type: int
    flags: int
    stub_length: int
    trailing: int


@dataclass(frozen=True, slots=True)
class ShareEnumRequest:
    """[MS-SRVS] 3.1.4.8 NetrShareEnum (opnum 15): ``entries_in`` is the container's EntriesRead
    as sent (0 from real clients); ``resume_handle`` None when the client passed NULL."""

    server_name: NdrString | None
    level: int
    container_present: bool
    entries_in: int
    prefered_maximum_length: int
    resume_handle: int | None
    stub_length: int
    trailing: int


@dataclass(frozen=True, slots=True)
class ServerGetInfoRequest:
    """[MS-SRVS] 3.1.4.17 NetrServerGetInfo (opnum 21)."""

    server_name: NdrString | None
    level: int
    stub_length: int
    trailing: int


def _reader(stub: bytes, little_endian: bool, limits: NdrLimits, what: str) -> NdrReader:
    return NdrReader(stub, little_endian=little_endian, limits=limits, what=what)


def decode_path_canonicalize(stub: bytes, little_endian: bool = True,
                             limits: NdrLimits = DEFAULT_LIMITS) -> PathCanonicalizeRequest:
    r = _reader(stub, little_endian, limits, "srvsvc NetprPathCanonicalize")
    server = r.unique(lambda: r.wstring("ServerName"), "ServerName")
    path = r.wstring("PathName")
    outbuf_len = r.u32("OutbufLen")
    prefix = r.wstring("Prefix")
    path_type = r.u32("PathType")
    flags = r.u32("Flags")
    return PathCanonicalizeRequest(server, path, outbuf_len, prefix, path_type, flags, len(stub), r.remaining())


def decode_path_compare(stub: bytes, little_endian: bool = True,
                        limits: NdrLimits = DEFAULT_LIMITS) -> PathCompareRequest:
    r = _reader(stub, little_endian, limits, "srvsvc NetprPathCompare")
    server = r.unique(lambda: r.wstring("ServerName"), "ServerName")
    path1 = r.wstring("PathName1")
    path2 = r.wstring("PathName2")
    path_type = r.u32("PathType")
    flags = r.u32("Flags")
    return PathCompareRequest(server, path1, path2, path_type, flags, len(stub), r.remaining())


def decode_name_canonicalize(stub: bytes, little_endian: bool = True,
                             limits: NdrLimits = DEFAULT_LIMITS) -> NameCanonicalizeRequest:
    r = _reader(stub, little_endian, limits, "srvsvc NetprNameCanonicalize")
    server = r.unique(lambda: r.wstring("ServerName"), "ServerName")
    name = r.wstring("Name")
    outbuf_len = r.u32("OutbufLen")
    name_type = r.u32("NameType")
    flags = r.u32("Flags")
    return NameCanonicalizeRequest(server, name, outbuf_len, name_type, flags, len(stub), r.remaining())


def _skip_share_entries(r: NdrReader, level: int) -> None:
    """A client-sent SHARE_INFO_0/1 array (clients send none; read so the rest still decodes)."""
    def entry() -> None:
        r.embedded_unique(lambda: r.wstring("shi_netname"), lambda _s: None, "shi_netname")
        if level == 1:
            r.u32("shi1_type")
            r.embedded_unique(lambda: r.wstring("shi1_remark"), lambda _s: None, "shi1_remark")

    if level not in (0, 1):
        raise r.fail("InfoStruct", f"level {level} container with entries is not decoded")
    with r.deferring("SHARE_INFO array"):
        r.conformant_array(entry, "Buffer")


def decode_share_enum(stub: bytes, little_endian: bool = True,
                      limits: NdrLimits = DEFAULT_LIMITS) -> ShareEnumRequest:
    r = _reader(stub, little_endian, limits, "srvsvc NetrShareEnum")
    server = r.unique(lambda: r.wstring("ServerName"), "ServerName")
    level = r.u32("Level")
    tag = r.u32("ShareInfo switch")
    if tag != level:
        raise r.fail("ShareInfo switch", f"union arm {tag} differs from Level {level}", r.pos - 4)
    # The container pointer is the last thing in InfoStruct and its Buffer pointer the last thing
    # in the container, so their deferred pointees follow at once: reading inline is the same.
    present = bool(r.referent("ShareInfo container"))
    entries = 0
    if present:
        entries = r.u32("EntriesRead")
        if r.referent("Buffer"):
            _skip_share_entries(r, level)
    prefmax = r.u32("PreferedMaximumLength")
    resume = r.unique(lambda: r.u32("ResumeHandle"), "ResumeHandle")
    return ShareEnumRequest(server, level, present, entries, prefmax, resume, len(stub), r.remaining())


def decode_server_get_info(stub: bytes, little_endian: bool = True,
                           limits: NdrLimits = DEFAULT_LIMITS) -> ServerGetInfoRequest:
    r = _reader(stub, little_endian, limits, "srvsvc NetrServerGetInfo")
    server = r.unique(lambda: r.wstring("ServerName"), "ServerName")
    level = r.u32("Level")
    return ServerGetInfoRequest(server, level, len(stub), r.remaining())


# -- dssetup ---------------------------------------------------------------------------------

DSROLE_ENCRYPTED_PASSWORD_SIZE = 524


@dataclass(frozen=True, slots=True)
class UpgradeDownlevelServerRequest:
    """dssetup DsRolerUpgradeDownlevelServer (opnum 9): the MS04-011 call. Unique arguments the
    client passed as NULL are None; the passwords are kept raw (524 bytes each)."""

    dns_domain_name: NdrString
    site_name: NdrString | None
    ds_database_path: NdrString
    ds_log_path: NdrString
    system_volume_root_path: NdrString
    parent_dns_domain_name: NdrString | None
    parent_server: NdrString | None
    account: NdrString | None
    encrypted_password: bytes | None
    encrypted_repair_password: bytes | None
    options: int
    stub_length: int
    trailing: int

    @property
    def strings(self) -> tuple[tuple[str, NdrString], ...]:
        """The string arguments present, by name (for a detector's "largest argument" test)."""
        named = (("DnsDomainName", self.dns_domain_name), ("SiteName", self.site_name),
                 ("DsDatabasePath", self.ds_database_path), ("DsLogPath", self.ds_log_path),
                 ("SystemVolumeRootPath", self.system_volume_root_path),
                 ("ParentDnsDomainName", self.parent_dns_domain_name), ("ParentServer", self.parent_server),
                 ("Account", self.account))
        return tuple((n, s) for n, s in named if s is not None)


def decode_upgrade_downlevel_server(stub: bytes, little_endian: bool = True,
                                    limits: NdrLimits = DEFAULT_LIMITS) -> UpgradeDownlevelServerRequest:
    r = _reader(stub, little_endian, limits, "dssetup DsRolerUpgradeDownlevelServer")
    dns = r.wstring("DnsDomainName")
    site = r.unique(lambda: r.wstring("SiteName"), "SiteName")
    db = r.wstring("DsDatabasePath")
    log = r.wstring("DsLogPath")
    sysvol = r.wstring("SystemVolumeRootPath")
    parent = r.unique(lambda: r.wstring("ParentDnsDomainName"), "ParentDnsDomainName")
    server = r.unique(lambda: r.wstring("ParentServer"), "ParentServer")
    account = r.unique(lambda: r.wstring("Account"), "Account")
    password = r.unique(lambda: r.take(DSROLE_ENCRYPTED_PASSWORD_SIZE, "EPassword"), "EPassword")
    repair = r.unique(lambda: r.take(DSROLE_ENCRYPTED_PASSWORD_SIZE, "EDsRepairPassword"), "EDsRepairPassword")
    options = r.u32("Options")
    return UpgradeDownlevelServerRequest(dns, site, db, log, sysvol, parent, server, account, password, repair,
                                         options, len(stub), r.remaining())


# -- dispatch ------------------------------------------------------------------------------------

Decoder = Callable[[bytes, bool, NdrLimits], object]


DECODERS: dict[tuple[str, int], Decoder] = {
    (str(SRVSVC.uuid), 15): decode_share_enum,
    (str(SRVSVC.uuid), 21): decode_server_get_info,
    (str(SRVSVC.uuid), 31): decode_path_canonicalize,
    (str(SRVSVC.uuid), 32): decode_path_compare,
    (str(SRVSVC.uuid), 34): decode_name_canonicalize,
    (str(DSSETUP.uuid), 9): decode_upgrade_downlevel_server,
    **rpcss.DECODERS,
}


def decoder_for(interface: str | uuid.UUID, opnum: int) -> Decoder | None:
    """The stub decoder for an interface UUID and opnum, or None if there is none."""
    return DECODERS.get((str(interface).lower(), opnum))


def decode_request(interface: str | uuid.UUID, opnum: int, stub: bytes, little_endian: bool = True,
                   limits: NdrLimits = DEFAULT_LIMITS) -> object | None:
    """The decoded arguments of a request, or None for an operation without a decoder.

    Raises MalformedMessage when the stub does not hold the operation's arguments."""
    fn = decoder_for(interface, opnum)
    return fn(stub, little_endian, limits) if fn else None
