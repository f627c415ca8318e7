"""Running shellcode in the unicorn CPU emulator (never on the host CPU) inside the fake process of
:mod:`.winenv`, with the API fakes of :mod:`.apis`, under :class:`~.report.Limits`.

How each limit is enforced:

* instructions: unicorn's own ``count`` (exact, native); the report's count comes from a basic
  block hook that adds each translated block's instruction count (``UC_CTL_TB_REQUEST_CACHE``);
* wall time: checked in the basic-block hook every :data:`_CLOCK_EVERY` blocks (every block runs
  that hook, and a block is at most a few hundred instructions, so a tight ``jmp $`` ends on time;
  unicorn's own ``timeout`` starts and joins a timer thread per run, which cost more than the whole
  emulation of a typical payload);
* memory: only this module maps memory; the fixed layout is about 1.5 MiB plus the payload, and
  ``VirtualAlloc``/``GlobalAlloc``/``HeapAlloc`` come from a bump arena that stops the run when the
  total would pass ``max_memory``;
* API calls: counted in the API hook;
* self-modifying loops: a write hook on the payload's own pages counts writes (a decoder writes
  each byte once); more than ``max_code_writes`` stops the run;
* faults: an invalid memory access, an invalid instruction, ``int3``/``int n``/CPU exceptions end
  the run with that reason (structured exception handling is not emulated).

The write hook also remembers which instruction wrote what into the payload, so a decoder the
static interpreter could not follow is still named from its effect (:func:`infer_decoder`).
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

from unicorn.unicorn import Uc, UcError
from unicorn.unicorn_const import (
    UC_ARCH_X86,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNALIGNED,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNALIGNED,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNALIGNED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_INVALID,
    UC_HOOK_MEM_WRITE,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_PROT,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_32,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
)
from unicorn.x86_const import (
    UC_X86_REG_DS,
    UC_X86_REG_EAX,
    UC_X86_REG_EBP,
    UC_X86_REG_EBX,
    UC_X86_REG_ECX,
    UC_X86_REG_EDI,
    UC_X86_REG_EDX,
    UC_X86_REG_EFLAGS,
    UC_X86_REG_EIP,
    UC_X86_REG_ES,
    UC_X86_REG_ESI,
    UC_X86_REG_ESP,
    UC_X86_REG_FS,
    UC_X86_REG_GDTR,
    UC_X86_REG_SS,
)

from stormwatch.detect.shellcode import winenv
from stormwatch.detect.shellcode.apis import API_TABLE
from stormwatch.detect.shellcode.report import Limits, StopReason

_MEM_KIND = {
    UC_MEM_READ_UNMAPPED: "read unmapped", UC_MEM_WRITE_UNMAPPED: "write unmapped",
    UC_MEM_FETCH_UNMAPPED: "fetch unmapped", UC_MEM_READ_PROT: "read protected",
    UC_MEM_WRITE_PROT: "write protected", UC_MEM_FETCH_PROT: "fetch protected",
}
_MEMORY_ERRORS = frozenset({
    UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED, UC_ERR_READ_PROT, UC_ERR_WRITE_PROT,
    UC_ERR_FETCH_PROT, UC_ERR_READ_UNALIGNED, UC_ERR_WRITE_UNALIGNED, UC_ERR_FETCH_UNALIGNED,
})
_CODE_HI = winenv.CODE_BASE + (64 << 20)  # the payload region lies below this, whatever its size
_MODULE_LO = min(base for _, base in winenv.MODULES)
_MODULE_HI = max(base for _, base in winenv.MODULES) + winenv.MODULE_SIZE
_MAX_RECORDED_WRITES = 1 << 15  # decoder inference needs a sample, not every write
_INTERRUPTS = {3: "int3", 0: "divide error", 6: "invalid opcode", 13: "general protection"}
_CLOCK_EVERY = 64  # basic blocks between two looks at the clock
_TCG_BUFFER = 16 << 20  # translated-code cache per emulator (the 1 GiB default costs page faults)


class _Abort(Exception):
    """A fake API asked to end the run (memory limit); carries the reason."""


@dataclass
class Emulation:
    """What one run did."""

    entry: int  # offset in the payload
    stop_reason: StopReason = StopReason.EMULATOR_ERROR
    stop_detail: str = ""
    instructions: int = 0
    api_calls: list[tuple[str, str]] = field(default_factory=list)
    binds: list[int] = field(default_factory=list)
    connects: list[tuple[str, int]] = field(default_factory=list)
    downloads: list[tuple[str, str]] = field(default_factory=list)  # (url, local file)
    commands: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # files it wrote (ftp scripts, ...)
    image: bytes = b""  # the payload region after the run (decoded, if it decoded itself)
    writes: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)  # block -> (offset, size, value)


class _Run:
    """The emulator of one thread, reused run after run (creating a unicorn engine and mapping the
    fake process costs more than emulating a typical payload). :meth:`reset` puts every writable
    byte, the payload region, registers and the translated-code cache back to their start state
    before each run; the fake DLL images are read-only to the guest and rewritten anyway.
    It is also the Machine the API fakes talk to (see :class:`.apis.Machine`)."""

    def __init__(self) -> None:
        # The unicorn bindings are untyped (their methods are wrapped by a decorator): Any here
        # keeps mypy strict everywhere else.
        self.uc: Any = cast(Any, Uc)(UC_ARCH_X86, UC_MODE_32)
        self.uc.ctl_set_tcg_buffer_size(_TCG_BUFFER)
        self.fixed = [r for r in winenv.regions(0) if r.base != winenv.CODE_BASE]
        self.fixed_size = sum(r.size for r in self.fixed)
        for r in self.fixed:
            perms = UC_PROT_READ | (UC_PROT_WRITE if r.writable else 0) | (UC_PROT_EXEC if r.executable else 0)
            self.uc.mem_map(r.base, r.size, perms)
        self.code_size = 0
        self.heap_regions: list[tuple[int, int]] = []
        self.runs = 0
        uc = self.uc
        uc.hook_add(UC_HOOK_BLOCK, self._on_block)
        uc.hook_add(UC_HOOK_CODE, self._on_api, begin=_MODULE_LO, end=_MODULE_HI - 1)
        uc.hook_add(UC_HOOK_MEM_WRITE, self._on_code_write, begin=winenv.CODE_BASE, end=_CODE_HI - 1)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_bad_memory)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_bad_instruction)
        # The CPU state of a fresh engine (hidden state included, such as a pending exception
        # that would turn the next run's first fault into a double fault) is restored each run.
        self.pristine = uc.context_save()
        self.reset(b"", 0, Limits())

    def reset(self, data: bytes, entry: int, limits: Limits) -> None:
        self.runs += 1
        self.limits = limits
        self.result = Emulation(entry)
        self.data = data
        self.deadline = 0.0
        self.heap = winenv.HEAP_BASE
        self.next_handle = 0x100
        self.open_files: dict[int, str] = {}
        self.code_writes = 0
        # A decoder writes each byte of its body once (twice for some two-pass engines).
        self.max_code_writes = max(limits.max_code_writes, 2 * len(data))
        self.recorded = 0
        self.tb_icount: dict[int, int] = {}  # block address -> instructions in it
        self.icount = 0
        self.block = 0  # address of the basic block running
        self.blocks = 0
        self.stop: tuple[StopReason, str] | None = None
        uc = self.uc
        for base, size in self.heap_regions:
            uc.mem_unmap(base, size)
        self.heap_regions = []
        for r in self.fixed:
            if r.writable or r.content:
                uc.mem_write(r.base, r.content + bytes(r.size - len(r.content)) if r.writable else r.content)
        need = (len(data) + 2 * winenv.PAGE - 1) & ~(winenv.PAGE - 1)
        if need != self.code_size:
            if self.code_size:
                uc.mem_unmap(winenv.CODE_BASE, self.code_size)
            uc.mem_map(winenv.CODE_BASE, need)
            self.code_size = need
        uc.mem_write(winenv.CODE_BASE, data + bytes(need - len(data)))
        self.mapped = self.fixed_size + need
        uc.ctl_flush_tb()  # code translated in an earlier run must not survive into this one
        uc.context_restore(self.pristine)
        uc.mem_write(winenv.STACK_BASE - 0x20, winenv.stack_top())
        gdt = winenv.gdt()
        uc.reg_write(UC_X86_REG_GDTR, (0, winenv.GDT_BASE, len(gdt) - 1, 0))
        uc.reg_write(UC_X86_REG_FS, winenv.FS_SELECTOR)
        uc.reg_write(UC_X86_REG_SS, winenv.SS_SELECTOR)
        uc.reg_write(UC_X86_REG_DS, winenv.DS_SELECTOR)
        uc.reg_write(UC_X86_REG_ES, winenv.DS_SELECTOR)
        uc.reg_write(UC_X86_REG_EFLAGS, 0x202)
        esp = winenv.STACK_START - 4
        uc.mem_write(esp, struct.pack("<I", winenv.RETURN_ADDRESS))  # "called" by the exploited code
        uc.reg_write(UC_X86_REG_ESP, esp)
        uc.reg_write(UC_X86_REG_EBP, esp)
        # Alphanumeric and register-based decoders expect a register holding their own address
        # (an exploit's "jmp reg"): give them all the entry address.
        here = winenv.CODE_BASE + entry
        for reg in (UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_ESI, UC_X86_REG_EDI):
            uc.reg_write(reg, here)

    def writable(self, addr: int, size: int) -> bool:
        """Whether a fake API may write there: the guest's writable memory only (unicorn's own
        mem_write ignores page protections, and the DLL images must stay as built)."""
        end = addr + size
        spans = [(r.base, r.base + r.size) for r in self.fixed if r.writable]
        spans.append((winenv.CODE_BASE, winenv.CODE_BASE + self.code_size))
        spans += [(b, b + n) for b, n in self.heap_regions]
        return any(lo <= addr and end <= hi for lo, hi in spans)

    # -- run ----------------------------------------------------------------------------------
    def run(self) -> Emulation:
        res = self.result
        lim = self.limits
        begin = winenv.CODE_BASE + res.entry
        t0 = time.perf_counter()
        self.deadline = t0 + lim.max_seconds
        try:
            self.uc.emu_start(begin, winenv.RETURN_ADDRESS, count=lim.max_instructions)
            error: UcError | None = None
        except UcError as exc:
            error = exc
        eip = self.uc.reg_read(UC_X86_REG_EIP)
        if self.stop is not None:
            res.stop_reason, res.stop_detail = self.stop
        elif error is not None:
            res.stop_reason, res.stop_detail = self._from_error(error, eip)
        elif eip == winenv.RETURN_ADDRESS:
            res.stop_reason = StopReason.RETURNED
        elif self.icount < lim.max_instructions:
            # The CPU stopped by itself: hlt (privileged; a #GP in a real user-mode process).
            res.stop_reason = StopReason.INVALID_INSTRUCTION
            res.stop_detail = f"privileged instruction at eip {eip:#010x}"
        else:
            res.stop_reason, res.stop_detail = StopReason.INSTRUCTION_LIMIT, f"{lim.max_instructions} instructions"
        if res.stop_reason not in (StopReason.RETURNED, StopReason.INSTRUCTION_LIMIT, StopReason.TIME_LIMIT):
            # The last block was counted whole but stopped at eip (a fault reports the faulting
            # instruction; an interrupt or hlt the one after it, past the block's end). The block
            # translated from eip ends where the last one does, so it is the part that did not run.
            try:
                size = int(self.uc.ctl_request_cache(self.block)[2])
            except UcError:
                size = 0
            if self.block <= eip < self.block + size:
                self.icount -= self._icount_from(eip)
        res.instructions = max(0, min(self.icount, lim.max_instructions))
        try:
            res.image = bytes(self.uc.mem_read(winenv.CODE_BASE, len(self.data)))
        except UcError:  # pragma: no cover - the region is never unmapped
            res.image = self.data
        return res

    def _icount_from(self, address: int) -> int:
        """Instructions of the translated block starting at ``address`` (0 if it cannot be translated)."""
        try:
            return int(self.uc.ctl_request_cache(address)[1])
        except UcError:
            return 0

    def _from_error(self, error: UcError, eip: int) -> tuple[StopReason, str]:
        where = f"at eip {eip:#010x}"
        if error.errno == UC_ERR_INSN_INVALID:
            return StopReason.INVALID_INSTRUCTION, where
        if error.errno == UC_ERR_EXCEPTION:
            return StopReason.INTERRUPT, f"cpu exception {where}"
        if error.errno in _MEMORY_ERRORS:
            return StopReason.INVALID_MEMORY, f"{error} {where}"
        return StopReason.EMULATOR_ERROR, f"{error} {where}"

    def _halt(self, reason: StopReason, detail: str) -> None:
        if self.stop is None:
            self.stop = (reason, detail)
        self.uc.emu_stop()

    # -- hooks --------------------------------------------------------------------------------
    def _on_block(self, uc: Any, address: int, size: int, _ud: object) -> None:
        self.block = address
        self.blocks += 1
        if self.blocks % _CLOCK_EVERY == 0 and time.perf_counter() > self.deadline:
            self._halt(StopReason.TIME_LIMIT, f"{self.limits.max_seconds:g} s")
            return
        n = self.tb_icount.get(address)
        if n is None:
            n = self._icount_from(address)
            self.tb_icount[address] = n
        self.icount += n

    def _on_code_write(self, uc: Any, _access: int, address: int, size: int, value: int, _ud: object) -> None:
        self.code_writes += 1
        if self.code_writes > self.max_code_writes:
            self._halt(StopReason.SELF_MODIFYING_LIMIT, f"more than {self.max_code_writes} writes into its code")
            return
        if self.recorded < _MAX_RECORDED_WRITES:
            self.recorded += 1
            # Grouped by the basic block that wrote (its address is known without a register read):
            # a decoder loop is one block.
            pc = self.block - winenv.CODE_BASE
            self.result.writes.setdefault(pc, []).append((address - winenv.CODE_BASE, size, value))

    def _on_bad_memory(self, uc: Any, access: int, address: int, size: int, _value: int, _ud: object) -> bool:
        eip = uc.reg_read(UC_X86_REG_EIP)
        kind = _MEM_KIND.get(access, "invalid access")
        if self.stop is None:
            self.stop = (StopReason.INVALID_MEMORY, f"{kind} {address:#010x} ({size} bytes) at eip {eip:#010x}")
        return False

    def _on_interrupt(self, uc: Any, intno: int, _ud: object) -> None:
        eip = uc.reg_read(UC_X86_REG_EIP)
        name = _INTERRUPTS.get(intno, f"int {intno:#x}")
        if intno == 6:
            self._halt(StopReason.INVALID_INSTRUCTION, f"at eip {eip:#010x}")
        else:
            self._halt(StopReason.INTERRUPT, f"{name} at eip {eip:#010x}")

    def _on_bad_instruction(self, uc: Any, _ud: object) -> bool:
        eip = uc.reg_read(UC_X86_REG_EIP)
        if self.stop is None:
            self.stop = (StopReason.INVALID_INSTRUCTION, f"at eip {eip:#010x}")
        return False

    def _on_api(self, uc: Any, address: int, _size: int, _ud: object) -> None:
        target = winenv.stub_addresses().get(address)
        if target is None:
            self._halt(StopReason.UNSUPPORTED_API, f"execution inside a DLL at {address:#010x}")
            return
        _module, name = target
        spec = API_TABLE[name]
        res = self.result
        if len(res.api_calls) >= self.limits.max_api_calls:
            self._halt(StopReason.API_CALL_LIMIT, f"{self.limits.max_api_calls} calls; next {name}")
            return
        esp = uc.reg_read(UC_X86_REG_ESP)
        try:
            ret, *args = struct.unpack(f"<{1 + spec.nargs}I", uc.mem_read(esp, 4 + 4 * spec.nargs))
        except UcError:
            self._halt(StopReason.INVALID_MEMORY, f"{name}: stack unreadable at {esp:#010x}")
            return
        try:
            eax, summary = spec.fake(self, list(args))
        except _Abort as exc:
            res.api_calls.append((name, str(exc)))
            self._halt(StopReason.MEMORY_LIMIT, str(exc))
            return
        except ValueError:  # an argument pointing at unmapped memory: the real API would fail too
            eax, summary = 0, "(invalid pointer argument)"
        res.api_calls.append((name, summary))
        if self.stop is not None:
            uc.emu_stop()
            return
        uc.reg_write(UC_X86_REG_EAX, eax)
        uc.reg_write(UC_X86_REG_ESP, esp + 4 + (0 if spec.cdecl else 4 * spec.nargs))
        uc.reg_write(UC_X86_REG_EIP, ret)

    # -- the Machine protocol (used by the API fakes) --------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        try:
            return bytes(self.uc.mem_read(addr, size))
        except UcError as exc:
            raise ValueError(f"unreadable {addr:#x}+{size}") from exc

    def write(self, addr: int, data: bytes) -> None:
        if not self.writable(addr, len(data)):
            raise ValueError(f"not writable {addr:#x}+{len(data)}")
        try:
            self.uc.mem_write(addr, data)
        except UcError as exc:
            raise ValueError(f"unwritable {addr:#x}+{len(data)}") from exc

    def arg_str(self, addr: int, limit: int = 1024) -> str:
        return self._string(addr, limit, 1).decode("latin-1")

    def arg_wstr(self, addr: int, limit: int = 1024) -> str:
        return self._string(addr, limit * 2, 2).decode("utf-16-le", "replace")

    def _string(self, addr: int, limit: int, unit: int) -> bytes:
        out = bytearray()
        while len(out) < limit:
            chunk = min(64, winenv.PAGE - ((addr + len(out)) % winenv.PAGE))
            try:
                piece = bytes(self.uc.mem_read(addr + len(out), chunk))
            except UcError:
                if not out:
                    raise ValueError(f"unreadable string at {addr:#x}") from None
                break
            out += piece
            end = out.find(b"\0\0" if unit == 2 else b"\0")
            while unit == 2 and end != -1 and end % 2:
                end = out.find(b"\0\0", end + 1)
            if end != -1:
                return bytes(out[:end])
        return bytes(out[:limit])

    def alloc(self, size: int) -> int:
        rounded = (max(size, 1) + winenv.PAGE - 1) & ~(winenv.PAGE - 1)
        if size > self.limits.max_memory or self.mapped + rounded > self.limits.max_memory \
                or self.heap + rounded > winenv.HEAP_MAX:
            raise _Abort(f"allocation of {size:#x} bytes would pass max_memory ({self.limits.max_memory:#x})")
        addr = self.heap
        self.uc.mem_map(addr, rounded)
        self.heap_regions.append((addr, rounded))
        self.heap += rounded
        self.mapped += rounded
        return addr

    def module_handle(self, name: str) -> int:
        n = name.strip().lower().rsplit("\\", 1)[-1]
        if "." not in n:
            n += ".dll"
        return dict(winenv.MODULES).get(n, 0)

    def proc_address(self, handle: int, name: str) -> int:
        for module, base in winenv.MODULES:
            if base == handle:
                return winenv.export_address(module, name) or 0
        return 0

    def exit(self, detail: str) -> None:
        self.stop = (StopReason.EXIT_API, detail)

    def new_handle(self) -> int:
        self.next_handle += 4
        return self.next_handle

    def note_bind(self, port: int) -> None:
        self.result.binds.append(port)

    def note_connect(self, host: str, port: int) -> None:
        self.result.connects.append((host, port))

    def note_url(self, url: str, local: str) -> None:
        self.result.downloads.append((url, local))

    def note_command(self, command: str) -> None:
        self.result.commands.append(command)

    def note_file_open(self, handle: int, name: str) -> None:
        self.open_files[handle] = name

    def note_file_write(self, handle: int, data: bytes) -> None:
        name = self.open_files.get(handle, f"handle {handle:#x}")
        files = self.result.files
        if sum(map(len, files.values())) < 1 << 16:
            files[name] = files.get(name, b"") + data


_LOCAL = threading.local()
RECYCLE_AFTER = 5_000  # runs before an engine is replaced by a fresh one (bounds any slow leak)


def emulate(data: bytes, entry: int, limits: Limits) -> Emulation:
    """Run ``data`` from offset ``entry`` until it stops; never raises for anything the payload does.
    One engine per thread, reused (see :class:`_Run`)."""
    try:
        engine: _Run | None = getattr(_LOCAL, "engine", None)
        if engine is None or engine.runs >= RECYCLE_AFTER:
            engine = _LOCAL.engine = _Run()
        engine.reset(data, entry, limits)
    except UcError as exc:
        _LOCAL.engine = None
        return Emulation(entry, StopReason.EMULATOR_ERROR, f"set-up failed: {exc}")
    return engine.run()


def infer_decoder(em: Emulation, original: bytes) -> tuple[str, str | None, int, int, int] | None:
    """(name, key, decoder offset, first decoded offset, decoded size) from what the instruction
    that wrote most into the payload did to it; None when nothing wrote into it in bulk."""
    if not em.writes:
        return None
    pc, writes = max(em.writes.items(), key=lambda kv: len(kv[1]))
    if len({w[0] for w in writes}) < 8:
        return None  # a few stores, or one location hammered: data or a loop, not a decoder
    xors: set[int] = set()
    adds: set[int] = set()
    size = writes[0][1]
    seen: set[int] = set()
    for off, width, value in writes:
        if width != size or off < 0 or off + width > len(original) or off in seen:
            return _unknown(pc, writes)
        seen.add(off)
        orig = int.from_bytes(original[off:off + width], "little")
        mask = (1 << 8 * width) - 1
        xors.add(orig ^ value)
        adds.add((value - orig) & mask)
    lo = min(w[0] for w in writes)
    hi = max(w[0] + w[1] for w in writes)
    if len(xors) == 1:
        key = xors.pop()
        return f"xor{8 * size}", key.to_bytes(size, "little").hex(), pc, lo, hi - lo
    if len(adds) == 1:
        key = adds.pop()
        return f"add{8 * size}", key.to_bytes(size, "little").hex(), pc, lo, hi - lo
    return _unknown(pc, writes)


def _unknown(pc: int, writes: list[tuple[int, int, int]]) -> tuple[str, None, int, int, int]:
    lo = min(w[0] for w in writes)
    hi = max(w[0] + w[1] for w in writes)
    return "self-modifying", None, pc, lo, hi - lo
