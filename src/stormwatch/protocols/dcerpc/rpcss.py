r"""Request-stub decoders for the RPCSS interfaces on TCP 135 (and ``\epmapper``): the DCOM
activation call MS03-026 overflows, and the endpoint mapper's ept_map.

IActivation::RemoteActivation (opnum 0, [MS-DCOM] 3.1.2.5.2.3.1)::

    [in] ORPCTHIS *ORPCthis, [in] GUID *Clsid, [in,string,unique] wchar_t *pwszObjectName,
    [in,unique] MInterfacePointer *pObjectStorage, [in] DWORD ClientImpLevel, [in] DWORD Mode,
    [in] DWORD Interfaces, [in,unique,size_is(Interfaces)] IID *pIIDs,
    [in] unsigned short cRequestedProtseqs, [in,size_is(cRequestedProtseqs)] unsigned short
    aRequestedProtseqs[]

ORPCTHIS ([MS-DCOM] 2.2.13.1) is {COMVERSION version; flags; reserved1; CID cid; [unique]
ORPC_EXTENT_ARRAY *extensions}, the extent array ([MS-DCOM] 2.2.14.2) {size; reserved;
[size_is((size+1)&~1), unique] ORPC_EXTENT **extent} and each extent ([MS-DCOM] 2.2.14.1) a
conformant structure {GUID id; size; [size_is((size+7)&~7)] byte data[]}. The MS03-026 overflow
is the copy of the server name out of a UNC ``pwszObjectName`` (``\\server\...``) into a
fixed 32-character buffer; Metasploit's ms03_026_dcom sends ``\\`` followed by ~1 KiB of raw
shellcode bytes as the "server". :attr:`RemoteActivationRequest.server_name_units` measures it.

ept_map ([C706] appendix O, [MS-RPCE] 2.2.1.2.5)::

    [in,ptr] uuid_p_t object, [in,ptr] twr_p_t map_tower, [in,out] ept_lookup_handle_t
    *entry_handle, [in] unsigned32 max_towers

A tower ([C706] appendix L) is a little-endian floor count, then floors of (lhs length, lhs,
rhs length, rhs); floor 1 names the interface (0x0d, UUID, major version | minor version),
floor 2 the transfer syntax, the rest the protocols (0x0b ncacn, 0x07 TCP port, 0x09 IP, 0x0f
named pipe, 0x10/0x11 NetBIOS).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from stormwatch.protocols.dcerpc.interfaces import EPMAPPER, IREMOTEACTIVATION, SyntaxId, uuid_from_wire
from stormwatch.protocols.dcerpc.ndr import DEFAULT_LIMITS, NdrLimits, NdrReader, NdrString
from stormwatch.protocols.errors import MalformedMessage

# -- RemoteActivation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrpcExtent:
    """[MS-DCOM] 2.2.14.1 ORPC_EXTENT: ``declared_size`` as sent; ``data`` the bytes present."""

    id: uuid.UUID
    declared_size: int
    data: bytes


@dataclass(frozen=True, slots=True)
class OrpcThis:
    """[MS-DCOM] 2.2.13.1 ORPCTHIS."""

    version_major: int
    version_minor: int
    flags: int
    reserved1: int
    cid: uuid.UUID
    extensions: tuple[OrpcExtent, ...] | None


@dataclass(frozen=True, slots=True)
class RemoteActivationRequest:
    """IActivation::RemoteActivation arguments; ``object_storage`` is the marshalled interface's
    bytes (None for NULL)."""

    orpc_this: OrpcThis
    clsid: uuid.UUID
    object_name: NdrString | None
    object_storage: bytes | None
    client_imp_level: int
    mode: int
    interfaces: int
    iids: tuple[uuid.UUID, ...] | None
    requested_protseqs: tuple[int, ...]
    stub_length: int
    trailing: int

    @property
    def server_name_units(self) -> int:
        r"""UTF-16 units of the server part of a ``\\server\...`` object name (0 if not UNC)."""
        if self.object_name is None:
            return 0
        raw = self.object_name.raw
        units = [raw[i:i + 2] for i in range(0, len(raw) - 1, 2)]
        if units[:2] != [b"\\\x00", b"\\\x00"]:
            return 0
        n = 0
        for u in units[2:]:
            if u in (b"\\\x00", b"\x00\x00"):
                break
            n += 1
        return n


def _extents(r: NdrReader, out: list[OrpcExtent]) -> None:
    """ORPC_EXTENT_ARRAY (the pointee of ORPCTHIS.extensions); the extents land in ``out`` as
    their deferred pointees are read."""
    r.u32("ORPC_EXTENT_ARRAY.size")
    r.u32("ORPC_EXTENT_ARRAY.reserved")

    def extent() -> None:
        max_count = r.count("ORPC_EXTENT max_count", r.limits.max_array_elements, "max_array_elements")
        ext_id = r.uuid("ORPC_EXTENT.id")
        declared = r.u32("ORPC_EXTENT.size")
        out.append(OrpcExtent(ext_id, declared, r.take(max_count, "ORPC_EXTENT.data")))

    def pointers() -> None:  # a conformant array of [unique] ORPC_EXTENT*: referents, then pointees
        r.conformant_array(lambda: r.embedded_unique(extent, lambda _x: None, "extent"), "extent")

    if r.referent("ORPC_EXTENT_ARRAY.extent"):
        r.defer(pointers)


def decode_remote_activation(stub: bytes, little_endian: bool = True,
                             limits: NdrLimits = DEFAULT_LIMITS) -> RemoteActivationRequest:
    r = NdrReader(stub, little_endian=little_endian, limits=limits, what="IActivation RemoteActivation")
    extents: list[OrpcExtent] = []
    with r.deferring("ORPCTHIS"):
        major = r.u16("COMVERSION.MajorVersion")
        minor = r.u16("COMVERSION.MinorVersion")
        flags = r.u32("ORPCTHIS.flags")
        reserved1 = r.u32("ORPCTHIS.reserved1")
        cid = r.uuid("ORPCTHIS.cid")
        has_extensions = bool(r.referent("ORPCTHIS.extensions"))
        if has_extensions:
            r.defer(lambda: _extents(r, extents))
    orpc = OrpcThis(major, minor, flags, reserved1, cid, tuple(extents) if has_extensions else None)
    clsid = r.uuid("Clsid")
    name = r.unique(lambda: r.wstring("pwszObjectName"), "pwszObjectName")

    def storage() -> bytes:  # MInterfacePointer: a conformant structure {ulCntData; abData[]}
        max_count = r.count("MInterfacePointer max_count", limits.max_array_elements, "max_array_elements")
        r.u32("ulCntData")
        return r.take(max_count, "abData")

    obj = r.unique(storage, "pObjectStorage")
    imp = r.u32("ClientImpLevel")
    mode = r.u32("Mode")
    n_ifaces = r.u32("Interfaces")
    iids = r.unique(lambda: tuple(r.conformant_array(lambda: r.uuid("IID"), "pIIDs")), "pIIDs")
    r.u16("cRequestedProtseqs")
    protseqs = tuple(r.conformant_array(lambda: r.u16("protseq"), "aRequestedProtseqs"))
    return RemoteActivationRequest(orpc, clsid, name, obj, imp, mode, n_ifaces, iids, protseqs, len(stub),
                                   r.remaining())


# -- ept_map ----------------------------------------------------------------------------------------

MAX_TOWER_FLOORS = 32  # real towers have 5


@dataclass(frozen=True, slots=True)
class TowerFloor:
    lhs: bytes
    rhs: bytes

    @property
    def protocol(self) -> int:
        return self.lhs[0] if self.lhs else -1


@dataclass(frozen=True, slots=True)
class EptMapRequest:
    """ept_map arguments; ``interface`` / ``transfer_syntax`` are the tower's first two floors
    when they are UUID floors."""

    object: uuid.UUID | None
    floors: tuple[TowerFloor, ...]
    interface: SyntaxId | None
    transfer_syntax: SyntaxId | None
    entry_handle: bytes
    max_towers: int
    stub_length: int
    trailing: int


def parse_tower(octets: bytes, what: str = "tower") -> tuple[TowerFloor, ...]:
    """[C706] appendix L: the floors of a tower octet string (always little-endian)."""
    def need(at: int, n: int, field: str) -> None:
        if at + n > len(octets):
            raise MalformedMessage(what, field, at, f"{n} bytes needed, {len(octets) - at} left")

    need(0, 2, "floor_count")
    (count,) = struct.unpack_from("<H", octets, 0)
    if count > MAX_TOWER_FLOORS:
        raise MalformedMessage(what, "floor_count", 0, f"{count} floors exceed MAX_TOWER_FLOORS={MAX_TOWER_FLOORS}")
    at, floors = 2, []
    for _ in range(count):
        need(at, 2, "lhs_length")
        (n,) = struct.unpack_from("<H", octets, at)
        need(at + 2, n, "lhs")
        lhs = octets[at + 2:at + 2 + n]
        at += 2 + n
        need(at, 2, "rhs_length")
        (m,) = struct.unpack_from("<H", octets, at)
        need(at + 2, m, "rhs")
        floors.append(TowerFloor(lhs, octets[at + 2:at + 2 + m]))
        at += 2 + m
    return tuple(floors)


def _floor_syntax(floor: TowerFloor) -> SyntaxId | None:
    if len(floor.lhs) != 19 or floor.lhs[0] != 0x0D or len(floor.rhs) != 2:
        return None
    (major,) = struct.unpack_from("<H", floor.lhs, 17)
    (minor,) = struct.unpack_from("<H", floor.rhs, 0)
    return SyntaxId(uuid_from_wire(floor.lhs, 1), major, minor)


def decode_ept_map(stub: bytes, little_endian: bool = True, limits: NdrLimits = DEFAULT_LIMITS) -> EptMapRequest:
    r = NdrReader(stub, little_endian=little_endian, limits=limits, what="epmapper ept_map")
    _ref, obj = r.full(lambda: r.uuid("object"), "object")

    def tower() -> bytes:  # twr_t: a conformant structure {tower_length; tower_octet_string[]}
        max_count = r.count("twr_t max_count", limits.max_array_elements, "max_array_elements")
        length = r.u32("tower_length")
        if length != max_count:
            raise r.fail("tower_length", f"tower_length {length} differs from its size {max_count}", r.pos - 4)
        return r.take(max_count, "tower_octet_string")

    _ref, octets = r.full(tower, "map_tower")
    floors = parse_tower(octets, "epmapper ept_map tower") if octets is not None else ()
    r.align(4)
    handle = r.take(20, "entry_handle")  # a context handle: attributes(4) + UUID(16)
    max_towers = r.u32("max_towers")
    iface = _floor_syntax(floors[0]) if floors else None
    transfer = _floor_syntax(floors[1]) if len(floors) > 1 else None
    return EptMapRequest(obj, floors, iface, transfer, handle, max_towers, len(stub), r.remaining())


DECODERS: dict[tuple[str, int], Callable[[bytes, bool, NdrLimits], object]] = {
    (str(IREMOTEACTIVATION.uuid), 0): decode_remote_activation,
    (str(EPMAPPER.uuid), 3): decode_ept_map,
}
