"""The DCE/RPC interfaces a Windows 2000/XP host exposes to an attacker, and UUID helpers.

An interface is named by its UUID and a major.minor version ([C706] 12.6.3.1 ``p_syntax_id_t``);
an operation is its opnum within the interface. The opnum tables are those of the Microsoft
protocol documents (section 3.1.4 of each, "Methods in RPC Opnum Order"), with the historical names
of the opnums that the documents now list as "NotUsedOnWire" where Windows 2000 still served them
(the MS04-011 LSASS overflow is dssetup opnum 9, "Opnum9NotUsedOnWire" in today's [MS-DSSP]).

    srvsvc          [MS-SRVS] 3.1.4       wkssvc     [MS-WKST] 3.2.4      browser   [MS-BRWSA] 3.1.4
    lsarpc          [MS-LSAD]/[MS-LSAT]   dssetup    [MS-DSSP] 3.2.5      samr      [MS-SAMR] 3.1.5
    epmapper        [C706] appendix O     svcctl     [MS-SCMR] 3.1.4      DCOM      [MS-DCOM] 3.1.2.5
    drsuapi         [MS-DRSR] 4.1         nspi       [MS-NSPI] 3.1.4      EMSMDB    [MS-OXCRPC] 3.1.4

Interface names follow Zeek's ``DCE_RPC::uuid_endpoint_map`` where Zeek has one, so our logs and
Zeek's line up.

UUIDs travel in the "mixed-endian" GUID layout ([C706] appendix A, [MS-DTYP] 2.3.4.2): the first
three fields (32, 16 and 16 bits) in the sender's integer byte order, the last eight bytes as they
are. :func:`uuid_from_wire` and :func:`uuid_to_wire` convert.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from stormwatch.protocols.errors import NeedMoreData

# -- UUIDs ---------------------------------------------------------------------------------------


def uuid_from_wire(buf: bytes | memoryview, offset: int = 0, little_endian: bool = True) -> uuid.UUID:
    """The 16-byte GUID at ``offset``, its first three fields in the given byte order."""
    raw = bytes(buf[offset:offset + 16])
    if len(raw) < 16:
        raise NeedMoreData("UUID", offset + 16)
    return _uuid(raw, little_endian)


@functools.lru_cache(maxsize=1024)  # a few interfaces and syntaxes recur in every bind; UUIDs are immutable
def _uuid(raw: bytes, little_endian: bool) -> uuid.UUID:
    return uuid.UUID(bytes_le=raw) if little_endian else uuid.UUID(bytes=raw)


def uuid_to_wire(value: uuid.UUID | str, little_endian: bool = True) -> bytes:
    """The wire form of a UUID (little-endian first fields unless told otherwise)."""
    u = value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    return u.bytes_le if little_endian else u.bytes


def parse_uuid(text: str) -> uuid.UUID:
    """A UUID from its text form (``4b324fc8-1670-01d3-1278-5a47bf6ee188``, braces allowed)."""
    return uuid.UUID(text.strip().strip("{}"))


@dataclass(frozen=True, slots=True)
class SyntaxId:
    """[C706] 12.6.3.1 ``p_syntax_id_t``: an interface or transfer syntax UUID and its version
    (on the wire a 32-bit ``if_version``: major in the low 16 bits, minor in the high 16)."""

    uuid: uuid.UUID
    major: int
    minor: int = 0

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        return f"{self.uuid} v{self.version}"


#: [C706] appendix I: the NDR transfer syntax, version 2.0.
NDR = SyntaxId(uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860"), 2, 0)
#: [MS-RPCE] 2.2.5.2: NDR64, version 1.0 (Windows XP does not offer or accept it).
NDR64 = SyntaxId(uuid.UUID("71710533-beba-4937-8319-b5dbef9ccc36"), 1, 0)
#: [MS-RPCE] 3.3.1.5.3: bind-time feature negotiation; the UUID's first 8 bytes are this prefix and
#: its last 8 bytes are the little-endian bitmask of features the client offers.
BIND_TIME_FEATURE_PREFIX = uuid.UUID("6cb71c2c-9812-4540-0000-000000000000").bytes_le[:8]
FEATURE_SECURITY_CONTEXT_MULTIPLEXING = 0x01
FEATURE_KEEP_CONNECTION_ON_ORPHAN = 0x02


def bind_time_features(syntax: SyntaxId) -> int | None:
    """The feature bitmask when ``syntax`` is a bind-time feature negotiation UUID, else None."""
    raw = syntax.uuid.bytes_le
    if raw[:8] != BIND_TIME_FEATURE_PREFIX:
        return None
    return int.from_bytes(raw[8:], "little")


# -- the interface table -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interface:
    """One RPC interface: ``pipes`` are the SMB named pipes (lower case, no ``\\PIPE\\``) it is
    reachable through on Windows 2000/XP; an empty tuple means TCP only (other hosts' services)."""

    uuid: uuid.UUID
    name: str
    major: int
    minor: int
    operations: Mapping[int, str] = field(repr=False)
    pipes: tuple[str, ...] = ()

    @property
    def syntax(self) -> SyntaxId:
        return SyntaxId(self.uuid, self.major, self.minor)

    def operation(self, opnum: int) -> str | None:
        return self.operations.get(opnum)


def _ops(names: str, start: int = 0) -> dict[int, str]:
    """Consecutive opnums from a whitespace-separated list; "-" marks an opnum with no name."""
    return {start + i: n for i, n in enumerate(names.split()) if n != "-"}


_SRVSVC_OPS = _ops("""
    NetrCharDevEnum NetrCharDevGetInfo NetrCharDevControl NetrCharDevQEnum NetrCharDevQGetInfo
    NetrCharDevQSetInfo NetrCharDevQPurge NetrCharDevQPurgeSelf NetrConnectionEnum NetrFileEnum
    NetrFileGetInfo NetrFileClose NetrSessionEnum NetrSessionDel NetrShareAdd NetrShareEnum
    NetrShareGetInfo NetrShareSetInfo NetrShareDel NetrShareDelSticky NetrShareCheck NetrServerGetInfo
    NetrServerSetInfo NetrServerDiskEnum NetrServerStatisticsGet NetrServerTransportAdd
    NetrServerTransportEnum NetrServerTransportDel NetrRemoteTOD NetrServerSetServiceBits
    NetprPathType NetprPathCanonicalize NetprPathCompare NetprNameValidate NetprNameCanonicalize
    NetprNameCompare NetrShareEnumSticky NetrShareDelStart NetrShareDelCommit NetrpGetFileSecurity
    NetrpSetFileSecurity NetrServerTransportAddEx NetrServerSetServiceBitsEx NetrDfsGetVersion
    NetrDfsCreateLocalPartition NetrDfsDeleteLocalPartition NetrDfsSetLocalVolumeState
    NetrDfsSetServerInfo NetrDfsCreateExitPoint NetrDfsDeleteExitPoint NetrDfsModifyPrefix
    NetrDfsFixLocalVolume NetrDfsManagerReportSiteInfo NetrServerTransportDelEx NetrServerAliasAdd
    NetrServerAliasEnum NetrServerAliasDel NetrShareDelEx
""")
_WKSSVC_OPS = _ops("""
    NetrWkstaGetInfo NetrWkstaSetInfo NetrWkstaUserEnum NetrWkstaUserGetInfo NetrWkstaUserSetInfo
    NetrWkstaTransportEnum NetrWkstaTransportAdd NetrWkstaTransportDel NetrUseAdd NetrUseGetInfo
    NetrUseDel NetrUseEnum NetrMessageBufferSend NetrWorkstationStatisticsGet NetrLogonDomainNameAdd
    NetrLogonDomainNameDel NetrJoinDomain NetrUnjoinDomain NetrRenameMachineInDomain NetrValidateName
    NetrGetJoinInformation NetrGetJoinableOUs NetrJoinDomain2 NetrUnjoinDomain2
    NetrRenameMachineInDomain2 NetrValidateName2 NetrGetJoinableOUs2 NetrAddAlternateComputerName
    NetrRemoveAlternateComputerName NetrSetPrimaryComputerName NetrEnumerateComputerNames
""")
_BROWSER_OPS = _ops("""
    I_BrowserrServerEnum I_BrowserrDebugCall I_BrowserrQueryOtherDomains I_BrowserrResetNetlogonState
    I_BrowserrDebugTrace I_BrowserrQueryStatistics I_BrowserResetStatistics NetrBrowserStatisticsClear
    NetrBrowserStatisticsGet I_BrowserrSetNetlogonState I_BrowserrQueryEmulatedDomains
    I_BrowserrServerEnumEx
""")
_LSARPC_OPS = _ops("""
    LsarClose - LsarEnumeratePrivileges LsarQuerySecurityObject LsarSetSecurityObject - LsarOpenPolicy
    LsarQueryInformationPolicy LsarSetInformationPolicy - LsarCreateAccount LsarEnumerateAccounts
    LsarCreateTrustedDomain LsarEnumerateTrustedDomains LsarLookupNames LsarLookupSids LsarCreateSecret
    LsarOpenAccount LsarEnumeratePrivilegesAccount LsarAddPrivilegesToAccount
    LsarRemovePrivilegesFromAccount - - LsarGetSystemAccessAccount LsarSetSystemAccessAccount
    LsarOpenTrustedDomain LsarQueryInfoTrustedDomain LsarSetInformationTrustedDomain LsarOpenSecret
    LsarSetSecret LsarQuerySecret LsarLookupPrivilegeValue LsarLookupPrivilegeName
    LsarLookupPrivilegeDisplayName LsarDeleteObject LsarEnumerateAccountsWithUserRight
    LsarEnumerateAccountRights LsarAddAccountRights LsarRemoveAccountRights
    LsarQueryTrustedDomainInfo LsarSetTrustedDomainInfo LsarDeleteTrustedDomain LsarStorePrivateData
    LsarRetrievePrivateData LsarOpenPolicy2 LsarGetUserName LsarQueryInformationPolicy2
    LsarSetInformationPolicy2 LsarQueryTrustedDomainInfoByName LsarSetTrustedDomainInfoByName
    LsarEnumerateTrustedDomainsEx LsarCreateTrustedDomainEx - LsarQueryDomainInformationPolicy
    LsarSetDomainInformationPolicy LsarOpenTrustedDomainByName - LsarLookupSids2 LsarLookupNames2
    LsarCreateTrustedDomainEx2
""")
_LSARPC_OPS.update({68: "LsarLookupNames3", 73: "LsarQueryForestTrustInformation",
                    74: "LsarSetForestTrustInformation", 76: "LsarLookupSids3", 77: "LsarLookupNames4"})
_DSSETUP_OPS = _ops("""
    DsRolerGetPrimaryDomainInformation DsRolerDnsNameToFlatName DsRolerDcAsDc DsRolerDcAsReplica
    DsRolerDemoteDc DsRolerGetDcOperationProgress DsRolerGetDcOperationResults DsRolerCancel
    DsRolerServerSaveStateForUpgrade DsRolerUpgradeDownlevelServer DsRolerAbortDownlevelServerUpgrade
    DsRolerGetDatabaseFacts
""")
_SAMR_OPS = _ops("""
    SamrConnect SamrCloseHandle SamrSetSecurityObject SamrQuerySecurityObject SamrShutdownSamServer
    SamrLookupDomainInSamServer SamrEnumerateDomainsInSamServer SamrOpenDomain
    SamrQueryInformationDomain SamrSetInformationDomain SamrCreateGroupInDomain
    SamrEnumerateGroupsInDomain SamrCreateUserInDomain SamrEnumerateUsersInDomain
    SamrCreateAliasInDomain SamrEnumerateAliasesInDomain SamrGetAliasMembership SamrLookupNamesInDomain
    SamrLookupIdsInDomain SamrOpenGroup SamrQueryInformationGroup SamrSetInformationGroup
    SamrAddMemberToGroup SamrDeleteGroup SamrRemoveMemberFromGroup SamrGetMembersInGroup
    SamrSetMemberAttributesOfGroup SamrOpenAlias SamrQueryInformationAlias SamrSetInformationAlias
    SamrDeleteAlias SamrAddMemberToAlias SamrRemoveMemberFromAlias SamrGetMembersInAlias SamrOpenUser
    SamrDeleteUser SamrQueryInformationUser SamrSetInformationUser SamrChangePasswordUser
    SamrGetGroupsForUser SamrQueryDisplayInformation SamrGetDisplayEnumerationIndex
    SamrTestPrivateFunctionsDomain SamrTestPrivateFunctionsUser SamrGetUserDomainPasswordInformation
    SamrRemoveMemberFromForeignDomain SamrQueryInformationDomain2 SamrQueryInformationUser2
    SamrQueryDisplayInformation2 SamrGetDisplayEnumerationIndex2 SamrCreateUser2InDomain
    SamrQueryDisplayInformation3 SamrAddMultipleMembersToAlias SamrRemoveMultipleMembersFromAlias
    SamrOemChangePasswordUser2 SamrUnicodeChangePasswordUser2 SamrGetDomainPasswordInformation
    SamrConnect2 SamrSetInformationUser2 - - - SamrConnect4 - SamrConnect5 SamrRidToSid
    SamrSetDSRMPassword SamrValidatePassword
""")
_EPMAPPER_OPS = _ops("""
    ept_insert ept_delete ept_lookup ept_map ept_lookup_handle_free ept_inq_object ept_mgmt_delete
""")
_SVCCTL_OPS = _ops("""
    RCloseServiceHandle RControlService RDeleteService RLockServiceDatabase RQueryServiceObjectSecurity
    RSetServiceObjectSecurity RQueryServiceStatus RSetServiceStatus RUnlockServiceDatabase
    RNotifyBootConfigStatus RI_ScSetServiceBitsW RChangeServiceConfigW RCreateServiceW
    REnumDependentServicesW REnumServicesStatusW ROpenSCManagerW ROpenServiceW RQueryServiceConfigW
    RQueryServiceLockStatusW RStartServiceW RGetServiceDisplayNameW RGetServiceKeyNameW
    RI_ScSetServiceBitsA RChangeServiceConfigA RCreateServiceA REnumDependentServicesA
    REnumServicesStatusA ROpenSCManagerA ROpenServiceA RQueryServiceConfigA RQueryServiceLockStatusA
    RStartServiceA RGetServiceDisplayNameA RGetServiceKeyNameA RI_ScGetCurrentGroupStateW
    REnumServiceGroupW RChangeServiceConfig2A RChangeServiceConfig2W RQueryServiceConfig2A
    RQueryServiceConfig2W RQueryServiceStatusEx REnumServicesStatusExA REnumServicesStatusExW
    RI_ScSendTSMessage RCreateServiceWOW64A RCreateServiceWOW64W - RNotifyServiceStatusChange
    RGetNotifyResults RCloseNotifyHandle RControlServiceExA RControlServiceExW
""")
_SVCCTL_OPS[56] = "RQueryServiceConfigEx"
_DRSUAPI_OPS = _ops("""
    DRSBind DRSUnbind DRSReplicaSync DRSGetNCChanges DRSUpdateRefs DRSReplicaAdd DRSReplicaDel
    DRSReplicaModify DRSVerifyNames DRSGetMemberships DRSInterDomainMove DRSGetNT4ChangeLog
    DRSCrackNames DRSWriteSPN DRSRemoveDsServer DRSRemoveDsDomain DRSDomainControllerInfo DRSAddEntry
    DRSExecuteKCC DRSGetReplInfo DRSAddSidHistory DRSGetMemberships2 DRSReplicaVerifyObjects
    DRSGetObjectExistence DRSQuerySitesByCost DRSInitDemotion DRSReplicaDemotion DRSFinishDemotion
    DRSAddCloneDC DRSWriteNgcKey DRSReadNgcKey
""")
_NSPI_OPS = _ops("""
    NspiBind NspiUnbind NspiUpdateStat NspiQueryRows NspiSeekEntries NspiGetMatches
    NspiResortRestriction NspiDNToMId NspiGetPropList NspiGetProps NspiCompareMIds NspiModProps
    NspiGetSpecialTable NspiGetTemplateInfo NspiModLinkAtt - NspiQueryColumns NspiGetNamesFromIDs
    NspiGetIDsFromNames NspiResolveNames NspiResolveNamesW
""")
_EMSMDB_OPS = _ops("""
    EcDoConnect EcDoDisconnect EcDoRpc EcGetMoreRpc EcRRegisterPushNotification
    EcRUnregisterPushNotification EcDummyRpc EcRGetDCName EcRNetGetDCName EcDoRpcExt EcDoConnectEx
    EcDoRpcExt2 - - EcDoAsyncConnectEx
""")
# [MS-DCOM] 3.1.2.5: the three DCOM object-resolution interfaces the MS03-026 family goes through.
_IREMOTEACTIVATION_OPS = {0: "RemoteActivation"}
_ISYSTEMACTIVATOR_OPS = _ops("QueryInterface AddRef Release RemoteGetClassObject RemoteCreateInstance")
_IOXIDRESOLVER_OPS = _ops("ResolveOxid SimplePing ComplexPing ServerAlive ResolveOxid2 ServerAlive2")


def _iface(text: str, name: str, major: int, minor: int, ops: dict[int, str],
           pipes: tuple[str, ...] = ()) -> Interface:
    return Interface(uuid.UUID(text), name, major, minor, MappingProxyType(ops), pipes)


SRVSVC = _iface("4b324fc8-1670-01d3-1278-5a47bf6ee188", "srvsvc", 3, 0, _SRVSVC_OPS,
                # Windows 2000/XP serve srvsvc through \browser too: MS06-040 and MS08-067 use it.
                ("srvsvc", "browser"))
WKSSVC = _iface("6bffd098-a112-3610-9833-46c3f87e345a", "wkssvc", 1, 0, _WKSSVC_OPS, ("wkssvc", "browser"))
BROWSER = _iface("6bffd098-a112-3610-9833-012892020162", "browser", 0, 0, _BROWSER_OPS, ("browser",))
LSARPC = _iface("12345778-1234-abcd-ef00-0123456789ab", "lsarpc", 0, 0, _LSARPC_OPS, ("lsarpc", "lsass"))
DSSETUP = _iface("3919286a-b10c-11d0-9ba8-00c04fd92ef5", "dssetup", 0, 0, _DSSETUP_OPS, ("lsarpc", "lsass"))
SAMR = _iface("12345778-1234-abcd-ef00-0123456789ac", "samr", 1, 0, _SAMR_OPS, ("samr", "lsarpc", "lsass"))
EPMAPPER = _iface("e1af8308-5d1f-11c9-91a4-08002b14a0fa", "epmapper", 3, 0, _EPMAPPER_OPS, ("epmapper",))
SVCCTL = _iface("367abb81-9844-35f1-ad32-98f038001003", "svcctl", 2, 0, _SVCCTL_OPS, ("svcctl", "ntsvcs"))
# RPCSS serves the DCOM interfaces on TCP 135 and through \epmapper (MS03-026 reached both).
IREMOTEACTIVATION = _iface("4d9f4ab8-7d1c-11cf-861e-0020af6e7c57", "IActivation", 0, 0, _IREMOTEACTIVATION_OPS,
                           ("epmapper",))
ISYSTEMACTIVATOR = _iface("000001a0-0000-0000-c000-000000000046", "IRemoteSCMActivator", 0, 0,
                          _ISYSTEMACTIVATOR_OPS, ("epmapper",))
IOXIDRESOLVER = _iface("99fcfec4-5260-101b-bbcb-00aa0021347a", "IObjectExporter", 0, 0, _IOXIDRESOLVER_OPS,
                       ("epmapper",))
DRSUAPI = _iface("e3514235-4b06-11d1-ab04-00c04fc2dcd2", "drsuapi", 4, 0, _DRSUAPI_OPS)
NSPI = _iface("f5cc5a18-4264-101a-8c59-08002b2f8426", "nspi", 56, 0, _NSPI_OPS)
EMSMDB = _iface("a4f1db00-ca47-1067-b31f-00dd010662da", "exchange_mapi", 0, 81, _EMSMDB_OPS)

INTERFACES: Mapping[uuid.UUID, Interface] = MappingProxyType({i.uuid: i for i in (
    SRVSVC, WKSSVC, BROWSER, LSARPC, DSSETUP, SAMR, EPMAPPER, SVCCTL, IREMOTEACTIVATION,
    ISYSTEMACTIVATOR, IOXIDRESOLVER, DRSUAPI, NSPI, EMSMDB)})


def lookup(value: uuid.UUID | str) -> Interface | None:
    """The interface with this UUID, or None."""
    u = value if isinstance(value, uuid.UUID) else parse_uuid(value)
    return INTERFACES.get(u)


def interface_name(value: uuid.UUID | str) -> str:
    """The interface's name, or ``unknown-<uuid>`` (Zeek's spelling) for one not in the table."""
    iface = lookup(value)
    return iface.name if iface else f"unknown-{value}"


def operation_name(value: uuid.UUID | str, opnum: int) -> str:
    """The operation's name, or ``opnum-<n>`` when the interface or the opnum is not known."""
    iface = lookup(value)
    name = iface.operation(opnum) if iface else None
    return name or f"opnum-{opnum}"


def normalise_pipe(name: str) -> str:
    r"""``\PIPE\Browser`` / ``\browser`` / ``browser`` → ``browser`` (SMB pipe names are
    case-insensitive and may arrive with or without the ``\PIPE\`` prefix)."""
    n = name.replace("/", "\\").strip("\\").lower()
    if n.startswith("pipe\\"):
        n = n[5:]
    return n.strip("\\")


def reachable(value: uuid.UUID | str, pipe: str) -> bool:
    """Whether Windows 2000/XP serves the interface through this named pipe."""
    iface = lookup(value)
    return iface is not None and normalise_pipe(pipe) in iface.pipes


def supports(syntax: SyntaxId, pipe: str | None = None) -> bool:
    """Whether a Windows 2000/XP server accepts a bind to ``syntax`` ([C706] 12.6.3.1: the major
    versions must match and the client's minor may not exceed the server's), optionally only
    through the named pipe ``pipe``."""
    iface = INTERFACES.get(syntax.uuid)
    if iface is None or syntax.major != iface.major or syntax.minor > iface.minor:
        return False
    return pipe is None or normalise_pipe(pipe) in iface.pipes
