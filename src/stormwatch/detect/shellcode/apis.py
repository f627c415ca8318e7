"""The hooked Windows APIs: which DLL exports each, how many stack arguments it takes, and what the
fake does when the shellcode calls it.

Every fake records the call with a short summary of its arguments, never touches the host (no
file, socket or process is created), and answers so that classic shellcode carries on to its next
step: sockets get small handle numbers, ``accept`` returns a new socket at once, ``recv`` reports
a closed connection (there is no second stage to hand over), ``Sleep`` returns immediately,
``CreateProcessA``/``WinExec`` succeed, allocations come from a bounded arena. Calling
conventions: every API is ``stdcall`` (callee pops its arguments) except the msvcrt C functions
(``cdecl``: caller pops). Prototypes: Microsoft Win32 API documentation (winbase.h, winsock2.h,
urlmon.h, shellapi.h).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Machine(Protocol):
    """What a fake API may do to the emulated process (implemented by the emulator)."""

    def arg_str(self, addr: int, limit: int = 1024) -> str: ...
    def arg_wstr(self, addr: int, limit: int = 1024) -> str: ...
    def read(self, addr: int, size: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...
    def alloc(self, size: int) -> int: ...
    def module_handle(self, name: str) -> int: ...
    def proc_address(self, handle: int, name: str) -> int: ...
    def exit(self, detail: str) -> None: ...
    def note_bind(self, port: int) -> None: ...
    def note_connect(self, host: str, port: int) -> None: ...
    def note_url(self, url: str, local: str) -> None: ...
    def note_command(self, command: str) -> None: ...
    def note_file_write(self, handle: int, data: bytes) -> None: ...
    def note_file_open(self, handle: int, name: str) -> None: ...
    def new_handle(self) -> int: ...


Fake = Callable[[Machine, list[int]], tuple[int, str]]  # -> (eax, arguments summary)


@dataclass(frozen=True)
class ApiSpec:
    module: str
    nargs: int
    fake: Fake
    cdecl: bool = False


def _q(s: str, limit: int = 160) -> str:
    """A quoted, length-capped rendering of an attacker string for a summary."""
    r = repr(s[:limit])
    return r + ("…" if len(s) > limit else "")


def _sockaddr(m: Machine, addr: int) -> tuple[str, int] | None:
    """(host, port) of a ``sockaddr_in`` (family 2, port big-endian, IPv4 address)."""
    try:
        family, port = struct.unpack(">HH", m.read(addr, 4))
        raw = m.read(addr + 4, 4)
    except ValueError:
        return None
    if family not in (2, 0x0200):  # AF_INET, whichever byte order the shellcode wrote
        return None
    return socket.inet_ntoa(raw), port


def _ret(value: int, summary: str = "") -> tuple[int, str]:
    return value & 0xFFFFFFFF, summary


# -- kernel32 -----------------------------------------------------------------------------------
def _load_library(m: Machine, a: list[int]) -> tuple[int, str]:
    name = m.arg_str(a[0])
    return _ret(m.module_handle(name), _q(name))


def _load_library_w(m: Machine, a: list[int]) -> tuple[int, str]:
    name = m.arg_wstr(a[0])
    return _ret(m.module_handle(name), _q(name))


def _get_proc_address(m: Machine, a: list[int]) -> tuple[int, str]:
    if a[1] < 0x10000:  # by ordinal
        return _ret(0, f"{a[0]:#x}, ordinal {a[1]}")
    name = m.arg_str(a[1], 128)
    return _ret(m.proc_address(a[0], name), f"{a[0]:#x}, {_q(name)}")


def _win_exec(m: Machine, a: list[int]) -> tuple[int, str]:
    cmd = m.arg_str(a[0], 4096)
    m.note_command(cmd)
    return _ret(33, f"{_q(cmd)}, {a[1]}")


def _create_process(m: Machine, a: list[int]) -> tuple[int, str]:
    app = m.arg_str(a[0], 1024) if a[0] else ""
    cmd = m.arg_str(a[1], 4096) if a[1] else ""
    m.note_command(cmd or app)
    if a[9]:  # PROCESS_INFORMATION: hProcess, hThread, pid, tid
        m.write(a[9], struct.pack("<IIII", m.new_handle(), m.new_handle(), 0x4D8, 0x4DC))
    std = ""
    if a[8]:  # STARTUPINFO.hStdInput at +0x38: a socket there is a shell bound to the connection
        try:
            hin = struct.unpack("<I", m.read(a[8] + 0x38, 4))[0]
            std = f", stdin={hin:#x}"
        except ValueError:
            std = ""
    return _ret(1, f"{_q(app)}, {_q(cmd)}{std}")


def _exit(m: Machine, a: list[int], name: str) -> tuple[int, str]:
    m.exit(name)
    return _ret(0, f"{a[-1] if a else 0:#x}")


def _virtual_alloc(m: Machine, a: list[int]) -> tuple[int, str]:
    size = a[1]
    return _ret(m.alloc(size), f"size={size:#x}")


def _global_alloc(m: Machine, a: list[int]) -> tuple[int, str]:
    return _ret(m.alloc(a[1]), f"size={a[1]:#x}")


def _heap_alloc(m: Machine, a: list[int]) -> tuple[int, str]:
    return _ret(m.alloc(a[2]), f"size={a[2]:#x}")


def _create_file(m: Machine, a: list[int]) -> tuple[int, str]:
    name = m.arg_str(a[0], 260)
    h = m.new_handle()
    m.note_file_open(h, name)
    return _ret(h, _q(name))


def _lcreat(m: Machine, a: list[int]) -> tuple[int, str]:
    return _create_file(m, a)


def _write_file(m: Machine, a: list[int]) -> tuple[int, str]:
    size = min(a[2], 1 << 16)
    data = m.read(a[1], size)
    m.note_file_write(a[0], data)
    if a[3]:
        m.write(a[3], struct.pack("<I", size))
    return _ret(1, f"{a[0]:#x}, {_q(data.decode('latin-1'), 80)}")


def _lwrite(m: Machine, a: list[int]) -> tuple[int, str]:
    size = min(a[2], 1 << 16)
    data = m.read(a[1], size)
    m.note_file_write(a[0], data)
    return _ret(size, f"{a[0]:#x}, {_q(data.decode('latin-1'), 80)}")


def _get_dir(m: Machine, a: list[int]) -> tuple[int, str]:
    path = b"C:\\WINDOWS\\system32\0"
    if a[0] and a[1] >= len(path):
        m.write(a[0], path)
    return _ret(len(path) - 1, "")


def _handle_of(m: Machine, a: list[int]) -> tuple[int, str]:
    name = m.arg_str(a[0]) if a[0] else ""
    return _ret(m.module_handle(name) if name else 0x00400000, _q(name))


def _zero(_m: Machine, a: list[int]) -> tuple[int, str]:
    return _ret(0, ", ".join(f"{x:#x}" for x in a))


def _one(_m: Machine, a: list[int]) -> tuple[int, str]:
    return _ret(1, ", ".join(f"{x:#x}" for x in a))


# -- ws2_32 -------------------------------------------------------------------------------------
def _socket(m: Machine, a: list[int]) -> tuple[int, str]:
    return _ret(m.new_handle(), f"af={a[0]}, type={a[1]}, proto={a[2]}")


def _bind(m: Machine, a: list[int]) -> tuple[int, str]:
    sa = _sockaddr(m, a[1])
    if sa is None:
        return _ret(0, f"{a[0]:#x}, ?")
    m.note_bind(sa[1])
    return _ret(0, f"{a[0]:#x}, {sa[0]}:{sa[1]}")


def _connect(m: Machine, a: list[int]) -> tuple[int, str]:
    sa = _sockaddr(m, a[1])
    if sa is None:
        return _ret(0, f"{a[0]:#x}, ?")
    m.note_connect(*sa)
    return _ret(0, f"{a[0]:#x}, {sa[0]}:{sa[1]}")


def _accept(m: Machine, a: list[int]) -> tuple[int, str]:
    return _ret(m.new_handle(), f"{a[0]:#x}")


def _send(m: Machine, a: list[int]) -> tuple[int, str]:
    data = m.read(a[1], min(a[2], 256))
    return _ret(a[2], f"{a[0]:#x}, {_q(data.decode('latin-1'), 80)}, {a[2]}")


def _recv(_m: Machine, a: list[int]) -> tuple[int, str]:
    return _ret(0, f"{a[0]:#x}, len={a[2]}")  # the peer "closed": no second stage to hand over


def _inet_addr(m: Machine, a: list[int]) -> tuple[int, str]:
    text = m.arg_str(a[0], 64)
    try:
        value = struct.unpack("<I", socket.inet_aton(text))[0]
    except OSError:
        value = 0xFFFFFFFF
    return _ret(value, _q(text))


def _gethostbyname(m: Machine, a: list[int]) -> tuple[int, str]:
    name = m.arg_str(a[0], 256)
    return _ret(0, _q(name))  # NULL: no resolution in a sandbox (the name is in the summary)


def _htons(_m: Machine, a: list[int]) -> tuple[int, str]:
    return _ret(((a[0] & 0xFF) << 8) | ((a[0] >> 8) & 0xFF), f"{a[0] & 0xFFFF}")


# -- urlmon, shell32, msvcrt --------------------------------------------------------------------
def _url_download(m: Machine, a: list[int]) -> tuple[int, str]:
    url = m.arg_str(a[1], 2048)
    local = m.arg_str(a[2], 260) if a[2] else ""
    m.note_url(url, local)
    return _ret(0, f"{_q(url)}, {_q(local)}")


def _url_download_cache(m: Machine, a: list[int]) -> tuple[int, str]:
    url = m.arg_str(a[1], 2048)
    m.note_url(url, "")
    return _ret(0, _q(url))


def _shell_execute(m: Machine, a: list[int]) -> tuple[int, str]:
    verb = m.arg_str(a[1], 32) if a[1] else ""
    target = m.arg_str(a[2], 2048) if a[2] else ""
    params = m.arg_str(a[3], 2048) if a[3] else ""
    m.note_command(f"{target} {params}".strip())
    return _ret(42, f"{_q(verb)}, {_q(target)}, {_q(params)}")


def _system(m: Machine, a: list[int]) -> tuple[int, str]:
    cmd = m.arg_str(a[0], 4096)
    m.note_command(cmd)
    return _ret(0, _q(cmd))


def _k(nargs: int, fake: Fake) -> ApiSpec:
    return ApiSpec("kernel32.dll", nargs, fake)


def _exiter(name: str) -> Fake:
    return lambda m, a: _exit(m, a, name)


API_TABLE: dict[str, ApiSpec] = {
    # kernel32
    "LoadLibraryA": _k(1, _load_library),
    "LoadLibraryW": _k(1, _load_library_w),
    "LoadLibraryExA": _k(3, _load_library),
    "GetModuleHandleA": _k(1, _handle_of),
    "GetProcAddress": _k(2, _get_proc_address),
    "WinExec": _k(2, _win_exec),
    "CreateProcessA": _k(10, _create_process),
    "ExitProcess": _k(1, _exiter("ExitProcess")),
    "ExitThread": _k(1, _exiter("ExitThread")),
    "TerminateProcess": _k(2, _exiter("TerminateProcess")),
    "TerminateThread": _k(2, _exiter("TerminateThread")),
    "Sleep": _k(1, _zero),
    "WaitForSingleObject": _k(2, _zero),
    "CloseHandle": _k(1, _one),
    "VirtualAlloc": _k(4, _virtual_alloc),
    "VirtualProtect": _k(4, _one),
    "GlobalAlloc": _k(2, _global_alloc),
    "GetProcessHeap": _k(0, lambda m, a: _ret(0x00300000, "")),
    "HeapAlloc": _k(3, _heap_alloc),
    "CreateFileA": _k(7, _create_file),
    "WriteFile": _k(5, _write_file),
    "ReadFile": _k(5, _zero),
    "_lcreat": _k(2, _lcreat),
    "_lwrite": _k(3, _lwrite),
    "_lclose": _k(1, _zero),
    "DeleteFileA": _k(1, lambda m, a: _ret(1, _q(m.arg_str(a[0], 260)))),
    "GetSystemDirectoryA": _k(2, _get_dir),
    "GetTempPathA": _k(2, lambda m, a: _get_dir(m, [a[1], a[0]])),
    "GetTickCount": _k(0, lambda m, a: _ret(0x00A1B2C3, "")),
    "GetLastError": _k(0, lambda m, a: _ret(0, "")),
    "GetVersion": _k(0, lambda m, a: _ret(0x0A280105, "")),  # 5.1 build 2600
    "SetUnhandledExceptionFilter": _k(1, _zero),
    "CreateThread": _k(6, lambda m, a: _ret(m.new_handle(), f"start={a[2]:#x}")),
    # ws2_32
    "WSAStartup": ApiSpec("ws2_32.dll", 2, _zero),
    "WSACleanup": ApiSpec("ws2_32.dll", 0, _zero),
    "WSASocketA": ApiSpec("ws2_32.dll", 6, _socket),
    "socket": ApiSpec("ws2_32.dll", 3, _socket),
    "bind": ApiSpec("ws2_32.dll", 3, _bind),
    "listen": ApiSpec("ws2_32.dll", 2, lambda m, a: _ret(0, f"{a[0]:#x}, {a[1]}")),
    "accept": ApiSpec("ws2_32.dll", 3, _accept),
    "connect": ApiSpec("ws2_32.dll", 3, _connect),
    "WSAConnect": ApiSpec("ws2_32.dll", 7, _connect),
    "send": ApiSpec("ws2_32.dll", 4, _send),
    "recv": ApiSpec("ws2_32.dll", 4, _recv),
    "closesocket": ApiSpec("ws2_32.dll", 1, _zero),
    "inet_addr": ApiSpec("ws2_32.dll", 1, _inet_addr),
    "gethostbyname": ApiSpec("ws2_32.dll", 1, _gethostbyname),
    "htons": ApiSpec("ws2_32.dll", 1, _htons),
    # urlmon
    "URLDownloadToFileA": ApiSpec("urlmon.dll", 5, _url_download),
    "URLDownloadToCacheFileA": ApiSpec("urlmon.dll", 6, _url_download_cache),
    # shell32
    "ShellExecuteA": ApiSpec("shell32.dll", 6, _shell_execute),
    # msvcrt (cdecl)
    "system": ApiSpec("msvcrt.dll", 1, _system, cdecl=True),
    "exit": ApiSpec("msvcrt.dll", 1, _exiter("exit"), cdecl=True),
    # ntdll
    "RtlExitUserThread": ApiSpec("ntdll.dll", 1, _exiter("RtlExitUserThread")),
    "NtTerminateProcess": ApiSpec("ntdll.dll", 2, _exiter("NtTerminateProcess")),
}
