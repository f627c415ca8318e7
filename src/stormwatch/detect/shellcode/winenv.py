"""A minimal fake 32-bit Windows XP process for the emulator: TEB, PEB, loader lists and DLL images
whose export tables list the hooked APIs.

What shellcode of the period reads, and where it finds it here:

* ``fs:[0x30]`` -> PEB; ``PEB+0x0C`` -> ``PEB_LDR_DATA`` with the three module lists
  (``+0x0C`` InLoadOrder, ``+0x14`` InMemoryOrder, ``+0x1C`` InInitializationOrder). Each
  ``LDR_DATA_TABLE_ENTRY`` has ``DllBase`` at ``+0x18``, ``FullDllName`` at ``+0x24`` and
  ``BaseDllName`` at ``+0x2C`` (UNICODE_STRING: Length, MaximumLength, Buffer). Order as on XP:
  load and memory order start with the executable, then ntdll, kernel32; initialisation order
  starts with ntdll, kernel32 (so "second entry of InInitializationOrder is kernel32" holds).
* ``fs:[0]`` -> the SEH chain, whose last record's handler lies inside kernel32 (the "SEH walk"
  technique), and ``[fs:4] - 0x1c`` holds a kernel32 address (the "top of stack" technique); both
  then scan down 64 KiB-aligned for ``MZ``.
* each DLL image: DOS header (``e_lfanew`` at 0x3C), ``PE\\0\\0``, optional header whose export
  data directory is at ``PE+0x78``; the ``IMAGE_EXPORT_DIRECTORY`` (NumberOfNames ``+0x18``,
  AddressOfFunctions ``+0x1C``, AddressOfNames ``+0x20``, AddressOfNameOrdinals ``+0x24``) lists
  every hooked API by name, so ROR-13 or any other name-hash look-up resolves it. Each function is
  a 16-byte stub (``mov edi, edi; push ebp; mov ebp, esp; ...``) that the emulator intercepts
  before it runs. Layout references: Microsoft PE/COFF specification ("Export Directory Table"),
  the winternl.h PEB/TEB structures and Skape, "Understanding Windows Shellcode" (2003).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

from stormwatch.detect.shellcode.apis import API_TABLE

PAGE = 0x1000
MODULE_SIZE = 0x10000  # each fake DLL image: 64 KiB (headers, export table, stubs)
STUB_RVA = 0x4000  # first API stub
STUB_SIZE = 0x10

# Where things live (32-bit user space, XP-like).
EXE_BASE = 0x00400000  # the "host process" image (headers only, no exports)
RETURN_ADDRESS = EXE_BASE + 0x800  # the payload is "called" from here; reaching it ends the run
STACK_LIMIT = 0x00100000
STACK_BASE = 0x00200000  # top of the 1 MiB stack (TEB.StackBase)
STACK_START = STACK_BASE - 0x10000  # initial esp: room above for [esp+n] reads and the SEH record
LDR_BASE = 0x00250000  # PEB_LDR_DATA and the LDR_DATA_TABLE_ENTRY records
HEAP_BASE = 0x00300000  # VirtualAlloc/GlobalAlloc/HeapAlloc bump allocator
HEAP_MAX = 0x00C00000  # heap may grow up to here (the memory limit usually stops it first)
CODE_BASE = 0x00C00000  # the payload
GDT_BASE = 0x7FF00000
TEB = 0x7FFDE000
PEB = 0x7FFDF000

# (name, base) in load order after the executable; XP SP2 preferred bases.
MODULES: tuple[tuple[str, int], ...] = (
    ("ntdll.dll", 0x7C900000),
    ("kernel32.dll", 0x7C800000),
    ("ws2_32.dll", 0x71AB0000),
    ("msvcrt.dll", 0x77C10000),
    ("urlmon.dll", 0x78130000),
    ("shell32.dll", 0x7C9C0000),
)
KERNEL32 = dict(MODULES)["kernel32.dll"]


@dataclass(frozen=True)
class Region:
    """One mapped range and what is written into it at start."""

    base: int
    size: int
    content: bytes
    writable: bool = True
    executable: bool = True


def module_exports(module: str) -> list[str]:
    """The hooked APIs of ``module``, sorted by name as real export tables are (binary search)."""
    return sorted(name for name, spec in API_TABLE.items() if spec.module == module)


@cache
def stub_addresses() -> dict[int, tuple[str, str]]:
    """Address of each API stub -> (module, API name)."""
    out: dict[int, tuple[str, str]] = {}
    for module, base in MODULES:
        for i, name in enumerate(module_exports(module)):
            out[base + STUB_RVA + i * STUB_SIZE] = (module, name)
    return out


@cache
def export_address(module: str, name: str) -> int | None:
    """Address of ``name`` in the fake ``module`` (GetProcAddress), None when not exported."""
    base = dict(MODULES).get(module)
    if base is None:
        return None
    names = module_exports(module)
    return base + STUB_RVA + names.index(name) * STUB_SIZE if name in names else None


def _pe_headers(base: int, size: int, export_rva: int, export_size: int, dll: bool) -> bytearray:
    img = bytearray(0x200)
    img[0:2] = b"MZ"
    struct.pack_into("<I", img, 0x3C, 0x80)  # e_lfanew
    img[0x80:0x84] = b"PE\0\0"
    # IMAGE_FILE_HEADER: machine i386, 1 section, optional header 0xE0 bytes, DLL or EXE
    struct.pack_into("<HHIIIHH", img, 0x84, 0x14C, 1, 0x41107CC3, 0, 0, 0xE0, 0x2102 if dll else 0x010F)
    opt = 0x98  # IMAGE_OPTIONAL_HEADER32
    struct.pack_into("<H", img, opt, 0x10B)
    struct.pack_into("<I", img, opt + 28, base)  # ImageBase
    struct.pack_into("<II", img, opt + 32, PAGE, 0x200)  # SectionAlignment, FileAlignment
    struct.pack_into("<I", img, opt + 56, size)  # SizeOfImage
    struct.pack_into("<I", img, opt + 92, 16)  # NumberOfRvaAndSizes
    struct.pack_into("<II", img, opt + 96, export_rva, export_size)  # DataDirectory[0]: exports
    return img


@cache
def module_image(module: str, base: int) -> bytes:
    """Headers, export directory and API stubs of one fake DLL (the rest of its 64 KiB is zero)."""
    names = module_exports(module)
    n = len(names)
    exp = 0x200  # IMAGE_EXPORT_DIRECTORY
    funcs = exp + 40
    name_ptrs = funcs + 4 * n
    ordinals = name_ptrs + 4 * n
    strings = ordinals + 2 * n
    blob = bytearray()
    name_rvas = []
    dll_name_rva = strings
    blob += module.encode() + b"\0"
    for name in names:
        name_rvas.append(strings + len(blob))
        blob += name.encode() + b"\0"
    end = strings + len(blob)
    img = _pe_headers(base, MODULE_SIZE, exp, end - exp, dll=True)
    img += bytes(end - len(img))
    struct.pack_into("<IIHHIIIIIII", img, exp, 0, 0x41107CC3, 0, 0, dll_name_rva, 1, n, n, funcs, name_ptrs, ordinals)
    for i in range(n):
        struct.pack_into("<I", img, funcs + 4 * i, STUB_RVA + i * STUB_SIZE)
        struct.pack_into("<I", img, name_ptrs + 4 * i, name_rvas[i])
        struct.pack_into("<H", img, ordinals + 2 * i, i)
    img[strings:end] = blob
    img += bytes(STUB_RVA - len(img))
    # Hot-patchable prologue, then "ret": shellcode that checks for hooks or trampolines sees what
    # it expects; the emulator intercepts the first byte, so none of this runs.
    stub = b"\x8b\xff\x55\x8b\xec\x5d\xc3" + b"\xcc" * (STUB_SIZE - 7)
    img += stub * n
    return bytes(img)


def _unicode_string(length_chars: int, buffer: int) -> bytes:
    return struct.pack("<HHI", 2 * length_chars, 2 * length_chars + 2, buffer)


@cache
def loader_region() -> bytes:
    """PEB_LDR_DATA at LDR_BASE, then one LDR_DATA_TABLE_ENTRY (0x50 bytes) per module, then the
    UTF-16 names. Entry 0 is the executable."""
    entries = [("svchost.exe", EXE_BASE, PAGE, "C:\\WINDOWS\\system32\\svchost.exe")]
    entries += [(name, base, MODULE_SIZE, f"C:\\WINDOWS\\system32\\{name}") for name, base in MODULES]
    ldr = LDR_BASE
    first = ldr + 0x40
    size = 0x50
    addr = [first + i * size for i in range(len(entries))]
    names_at = first + len(entries) * size
    buf = bytearray(names_at - ldr)
    strings = bytearray()

    def link(off: int, order: list[int]) -> None:
        """Circular doubly linked LIST_ENTRY at field offset ``off`` of each entry, head in LDR."""
        head = ldr + {0x00: 0x0C, 0x08: 0x14, 0x10: 0x1C}[off]
        nodes = [head] + [addr[i] + off for i in order]
        for j, node in enumerate(nodes):
            flink = nodes[(j + 1) % len(nodes)]
            blink = nodes[j - 1]
            struct.pack_into("<II", buf, node - ldr, flink, blink)

    struct.pack_into("<II", buf, 0, 0x28, 1)  # Length, Initialized
    everything = list(range(len(entries)))
    link(0x00, everything)  # InLoadOrder
    link(0x08, everything)  # InMemoryOrder
    link(0x10, everything[1:])  # InInitializationOrder: DLLs only, ntdll first
    for i, (name, base, image_size, full) in enumerate(entries):
        e = addr[i] - ldr
        struct.pack_into("<III", buf, e + 0x18, base, base + 0x1000, image_size)  # DllBase, EntryPoint, SizeOfImage
        full_at = names_at + len(strings)
        strings += full.encode("utf-16-le") + b"\0\0"
        base_at = full_at + 2 * (len(full) - len(name))
        buf[e + 0x24:e + 0x2C] = _unicode_string(len(full), full_at)
        buf[e + 0x2C:e + 0x34] = _unicode_string(len(name), base_at)
        struct.pack_into("<HH", buf, e + 0x38, 1, 0xFFFF)  # LoadCount
    return bytes(buf + strings)


def teb_peb() -> bytes:
    """Two pages: TEB at TEB, PEB at PEB (= TEB + 0x1000)."""
    teb = bytearray(PAGE)
    seh = STACK_BASE - 0x10  # the last (and only) SEH record, on the stack
    struct.pack_into("<III", teb, 0, seh, STACK_BASE, STACK_LIMIT)  # ExceptionList, StackBase, StackLimit
    struct.pack_into("<I", teb, 0x18, TEB)  # Self
    struct.pack_into("<II", teb, 0x20, 0x2F0, 0x3A4)  # ClientId: pid, tid
    struct.pack_into("<I", teb, 0x30, PEB)
    peb = bytearray(PAGE)
    struct.pack_into("<I", peb, 0x08, EXE_BASE)  # ImageBaseAddress
    struct.pack_into("<I", peb, 0x0C, LDR_BASE)  # Ldr
    struct.pack_into("<I", peb, 0x18, HEAP_BASE)  # ProcessHeap
    struct.pack_into("<II", peb, 0xA4, 5, 1)  # OSMajorVersion, OSMinorVersion: XP
    struct.pack_into("<H", peb, 0xAC, 2600)  # OSBuildNumber
    return bytes(teb + peb)


def stack_top() -> bytes:
    """The top 0x20 bytes of the stack: the SEH record and the kernel32 pointer at StackBase-0x1c."""
    top = bytearray(0x20)
    struct.pack_into("<I", top, 0x20 - 0x1C, KERNEL32 + 0x2F1A)  # "top of stack" kernel32 pointer
    struct.pack_into("<II", top, 0x10, 0xFFFFFFFF, KERNEL32 + 0x3E58)  # SEH: Next=-1, Handler in kernel32
    return bytes(top)


def gdt() -> bytes:
    """A GDT: entry 1 a data segment based at the TEB (what FS selects on Windows), entries 2 and 3
    flat 4 GiB data segments for DS/ES (ring 3) and SS (ring 0: SS must match the CPL). Loading any
    selector makes the CPU consult the GDT, so every data segment the code uses gets one."""

    def entry(base: int, limit: int, access: int, flags: int) -> bytes:
        v = limit & 0xFFFF
        v |= (base & 0xFFFFFF) << 16
        v |= (access & 0xFF) << 40
        v |= ((limit >> 16) & 0xF) << 48
        v |= (flags & 0xF) << 52
        v |= ((base >> 24) & 0xFF) << 56
        return struct.pack("<Q", v)

    # access 0xF3: present, ring 3, data, read/write, accessed (0x93: the same in ring 0);
    # flags 0x4: 32-bit, 0xC: 32-bit with 4 KiB granularity (limit 0xFFFFF = 4 GiB)
    return (bytes(8) + entry(TEB, 0xFFF, 0xF3, 0x4) + entry(0, 0xFFFFF, 0xF3, 0xC)
            + entry(0, 0xFFFFF, 0x93, 0xC))


FS_SELECTOR = (1 << 3) | 3  # GDT entry 1, RPL 3
DS_SELECTOR = (2 << 3) | 3
SS_SELECTOR = 3 << 3


def regions(payload_size: int) -> list[Region]:
    """Everything mapped before the payload runs (the payload region included, empty)."""
    out = [
        Region(EXE_BASE, PAGE, _exe_image(), writable=False),
        Region(STACK_LIMIT, STACK_BASE - STACK_LIMIT, b""),
        Region(LDR_BASE, _round(len(loader_region())), loader_region()),
        Region(GDT_BASE, PAGE, gdt(), executable=False),
        Region(TEB, 2 * PAGE, teb_peb(), executable=False),
        Region(CODE_BASE, _round(payload_size + PAGE), b""),
    ]
    for name, base in MODULES:
        out.append(Region(base, MODULE_SIZE, module_image(name, base), writable=False))
    return out


@cache
def _exe_image() -> bytes:
    img = _pe_headers(EXE_BASE, PAGE, 0, 0, dll=False)
    img += bytes(RETURN_ADDRESS - EXE_BASE - len(img)) + b"\xc3"
    return bytes(img)


def _round(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)
