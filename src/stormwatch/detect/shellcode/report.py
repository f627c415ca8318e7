"""What payload analysis reports: its limits, the offers it recovered and the report itself.

Everything here is a frozen dataclass of plain values (str, int, tuples), so a report can be
hashed, compared, turned into JSON (:meth:`ShellcodeReport.as_dict`) and handed across process
boundaries by the caller that runs analysis off the sensor's event loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class StopReason(StrEnum):
    """Why an emulation ended; every run ends with exactly one."""

    EXIT_API = "exit_api"  # ExitProcess, ExitThread, TerminateProcess, RtlExitUserThread, ...
    RETURNED = "returned"  # returned to the address it was "called" from
    INSTRUCTION_LIMIT = "instruction_limit"
    MEMORY_LIMIT = "memory_limit"  # an allocation would pass Limits.max_memory
    TIME_LIMIT = "time_limit"
    API_CALL_LIMIT = "api_call_limit"
    SELF_MODIFYING_LIMIT = "self_modifying_limit"  # more writes into its own pages than Limits.max_code_writes
    INVALID_MEMORY = "invalid_memory"  # read, write or fetch of unmapped or protected memory
    INVALID_INSTRUCTION = "invalid_instruction"
    INTERRUPT = "interrupt"  # int3, int n or a CPU exception (no SEH dispatch is emulated)
    UNSUPPORTED_API = "unsupported_api"  # a call into a fake DLL's stub the emulator does not model
    EMULATOR_ERROR = "emulator_error"  # the emulator refused for another reason
    NOT_EMULATED = "not_emulated"  # emulation switched off, or nothing looked like code


@dataclass(frozen=True)
class Limits:
    """Bounds of one analysis. Hostile shellcode ends at the first one it reaches.

    The defaults let classic 2003-2010 shellcode (PEB walk, hash look-ups over the fake DLLs'
    small export tables, a decoder over a few KiB) finish with room to spare: the real MS04-011
    bind shell needs about 12,000 instructions and 11 API calls."""

    max_instructions: int = 200_000  # instructions executed per run
    max_memory: int = 16 << 20  # bytes mapped: payload, stack, fake DLLs and its allocations
    # wall time of one emulation run: a safety net only. The instruction count is what ends a loop,
    # so that a result never depends on how loaded the machine is (a worker thread starved of the
    # GIL by a busy sensor must find the same API calls as an idle analyser)
    max_seconds: float = 2.0
    max_api_calls: int = 128  # calls to hooked APIs per run
    max_code_writes: int = 16_384  # writes into the payload's own pages per run (at least 2 per input byte)
    max_input: int = 1 << 20  # bytes of input looked at; the rest is ignored (and reported)
    max_runs: int = 3  # entry points emulated, best first, until one calls an API
    emulate: bool = True  # False: static analysis only (sleds, GetPC, decoder loops, strings)


@dataclass(frozen=True)
class Offer:
    """Where the shellcode (or the commands it runs) fetches its next stage from."""

    protocol: str  # "http", "https", "ftp", "tftp"
    host: str
    port: int
    path: str  # remote path or file name as given
    url: str  # protocol://host:port/path, or the URL as given
    filename: str = ""  # base name of the file fetched (what the victim will run)

    @property
    def endpoint(self) -> str:
        """``host:port:protocol``, the form a ``payload.offer`` event carries when there is no URL."""
        return f"{self.host}:{self.port}:{self.protocol}"


@dataclass(frozen=True)
class ShellcodeReport:
    """The analysis of one payload. ``found`` is False when nothing in it looked like shellcode."""

    found: bool
    offset: int | None  # where the shellcode starts in the input (sled end, GetPC stub or decoder)
    decoder: str | None  # "xor8", "xor32", "add8", "sub8", "rol8", "ror8", "xor32-additive", ...
    key: str | None  # decoder key as hex (for xor32: the 4 key bytes in memory order)
    size: int  # bytes of the input analysed
    sha256: str  # of the whole input
    md5: str
    api_calls: tuple[tuple[str, str], ...] = ()  # (API name, arguments summary) in call order
    binds: tuple[int, ...] = ()  # TCP ports a bind shell listens on
    connects: tuple[tuple[str, int], ...] = ()  # (host, port) of connect-backs
    urls: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()  # command lines run (WinExec, CreateProcess, system, ShellExecute)
    offers: tuple[Offer, ...] = ()
    stop_reason: str = StopReason.NOT_EMULATED.value
    instructions: int = 0  # instructions emulated, all runs together
    stop_detail: str = ""  # e.g. "ExitThread", "read unmapped 0x00000000 at eip 0x00500123"
    sled: tuple[int, int] | None = None  # (offset, length) of the longest NOP-equivalent sled
    getpc: str | None = None  # "call-pop", "call4-pop", "fnstenv", "jmp-call-pop", "call-back"
    decoder_offset: int | None = None  # offset of the decoder stub in the input
    decoded_offset: int | None = None  # offset of the first decoded byte in the input
    decoded_size: int = 0
    decoded_sha256: str | None = None  # of the decoded body, when there is one
    strings: tuple[str, ...] = field(default=(), repr=False)  # printable strings of the decoded body
    notes: tuple[str, ...] = ()  # what the analyser could not do, in words

    @property
    def api_profile(self) -> str:
        """The API names in call order, repeats collapsed: ``WSASocketA,bind,listen,accept,...``."""
        names: list[str] = []
        for name, _ in self.api_calls:
            if not names or names[-1] != name:
                names.append(name)
        return ",".join(names)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        out["api_profile"] = self.api_profile
        return out
