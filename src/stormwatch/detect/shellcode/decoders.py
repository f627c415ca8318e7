"""Static decoding of decoder loops: single- and multi-byte XOR, additive and rotating variants.

A decoder stub is a GetPC followed by a loop that rewrites the bytes after it, e.g. the one in the
2004 LSASS (MS04-011) worm/bot shellcode::

    eb 10            jmp  +0x10          ; to the call
    5a               pop  edx            ; edx = address after the call
    4a               dec  edx
    33 c9            xor  ecx, ecx
    66 b9 7d 01      mov  cx, 0x17d      ; 381 bytes
    80 34 0a 99      xor  byte [edx+ecx], 0x99
    e2 fa            loop -6
    eb 05            jmp  +5             ; into the decoded body
    e8 eb ff ff ff   call -0x15          ; back to the pop

Rather than match whole stubs byte for byte (every engine reorders, pads and swaps registers),
:func:`static_decode` interprets the stub on concrete values with a deliberately tiny x86 subset:
register moves and arithmetic, push/pop, call/jmp/loop/jnz, ``fnstenv``, and the read-modify-write
instructions decoders use (``xor``/``add``/``sub``/``rol``/``ror``/``not``/``neg`` on a byte or a
dword in memory). Memory is the input itself (an address is an offset in it) and a small stack.
It stops at the first instruction outside that subset, at a step budget, or once a backward loop
has finished; the instruction that made the most writes into the input is the decoder, its
operation and key name it, and the bytes it wrote are the decoded body. The key becomes
"additive" when the loop adds memory to the key register (Shikata-ga-nai style feedback) and
"rotating" when it rotates the key register. Encodings: Intel SDM vol. 2, chapters 3-4.
Anything outside the subset is left to the emulator (:mod:`.emulator`).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from stormwatch.detect.shellcode.locate import SLED_BYTES

MAX_STEPS = 30_000  # instructions interpreted per attempt (a 381-byte xor8 loop needs ~1,200)
_STACK = 0x7F000000  # the stack lives far above any input offset
_M32 = 0xFFFFFFFF


class _Stop(Exception):
    """The stub left the interpreted subset (or its budget); not an error of the input."""


@dataclass(frozen=True)
class StaticDecode:
    """A decoder loop decoded without emulation."""

    decoder: str  # "xor8", "xor32", "add8", "sub8", "add32", "sub32", "rol8", "ror8", "not8", "neg8"
    key: str | None  # hex; for 32-bit keys the bytes in memory order
    stub_offset: int  # where the interpreted stub starts
    decoded_offset: int  # first byte it rewrote
    decoded_size: int
    data: bytes  # the whole input with the body decoded


@dataclass
class _Write:
    pc: int
    op: str
    width: int
    key: int | None


class _Machine:
    """Concrete-value interpreter of the decoder subset. Registers hold ints or None (unknown)."""

    def __init__(self, data: bytes, start: int) -> None:
        self.mem = bytearray(data)
        self.regs: list[int | None] = [None] * 8
        self.regs[4] = _STACK
        self.stack: dict[int, int | None] = {}
        self.pc = start
        self.zf = False
        self.sf = False
        self.fpu_ip: int | None = None
        self.writes: dict[int, list[int]] = {}  # pc -> addresses written
        self.write_info: dict[int, _Write] = {}
        self.originals: dict[int, int] = {}  # address -> byte before the first write
        self.key_added_from_mem: set[int] = set()  # registers that got "add reg, [mem]"
        self.key_rotated: set[int] = set()
        self.looped = False  # a backward branch was taken
        self.loop_exit: int | None = None
        self.write_log: list[tuple[int, int, int, str, int | None]] = []  # (pc, addr, width, op, key)
        self.history: list[tuple[tuple[int | None, ...], int]] = []  # (registers, len(write_log)) per turn

    # -- memory -------------------------------------------------------------------------------
    def read(self, addr: int | None, width: int) -> int | None:
        if addr is None:
            raise _Stop("unknown address")
        if addr >= _STACK - 0x10000:
            return self.stack.get(addr) if width == 4 else None
        if addr >= 0 and addr + width <= len(self.mem):
            return int.from_bytes(self.mem[addr:addr + width], "little")
        raise _Stop("address outside the input")

    def write(self, addr: int | None, width: int, value: int | None, op: str, key: int | None) -> None:
        if addr is None:
            raise _Stop("unknown address")
        if addr >= _STACK - 0x10000:
            self.stack[addr] = value
            return
        if value is None or not (addr >= 0 and addr + width <= len(self.mem)):
            raise _Stop("write outside the input or of an unknown value")
        for i in range(width):
            self.originals.setdefault(addr + i, self.mem[addr + i])
        self.mem[addr:addr + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, "little")
        self.writes.setdefault(self.pc, []).append(addr)
        self.write_info.setdefault(self.pc, _Write(self.pc, op, width, key))
        self.write_log.append((self.pc, addr, width, op, key))

    def push(self, v: int | None) -> None:
        esp = self.regs[4]
        assert esp is not None
        self.regs[4] = esp - 4
        self.stack[esp - 4] = v

    def pop(self) -> int | None:
        esp = self.regs[4]
        assert esp is not None
        self.regs[4] = esp + 4
        return self.stack.get(esp)

    # -- operands -----------------------------------------------------------------------------
    def byte(self, at: int) -> int:
        if at >= len(self.mem):
            raise _Stop("ran off the input")
        return self.mem[at]

    def imm(self, at: int, width: int, signed: bool = False) -> int:
        if at + width > len(self.mem):
            raise _Stop("ran off the input")
        return int.from_bytes(self.mem[at:at + width], "little", signed=signed)

    def modrm(self, at: int) -> tuple[int, int, int | None, int]:
        """(mod, reg, address or register number, length). For mod=3 the third item is the rm
        register number; otherwise the effective address (None when a register is unknown)."""
        m = self.byte(at)
        mod, reg, rm = m >> 6, (m >> 3) & 7, m & 7
        if mod == 3:
            return mod, reg, rm, 1
        length = 1
        addr: int | None
        if rm == 4:
            sib = self.byte(at + 1)
            length += 1
            scale, index, base = sib >> 6, (sib >> 3) & 7, sib & 7
            if base == 5 and mod == 0:
                addr = self.imm(at + 2, 4)
                length += 4
            else:
                addr = self.regs[base]
            if index != 4:
                iv = self.regs[index]
                addr = None if addr is None or iv is None else addr + (iv << scale)
        elif rm == 5 and mod == 0:
            addr = self.imm(at + 1, 4)
            length += 4
        else:
            addr = self.regs[rm]
        if mod == 1:
            disp = self.imm(at + length, 1, signed=True)
            length += 1
        elif mod == 2:
            disp = self.imm(at + length, 4, signed=True)
            length += 4
        else:
            disp = 0
        if addr is not None:
            addr = (addr + disp) & _M32
        return mod, reg, addr, length

    def get_reg(self, r: int, width: int) -> int | None:
        if width == 4:
            return self.regs[r]
        v = self.regs[r & 3]
        if v is None:
            return None
        return (v >> 8) & 0xFF if r >= 4 else v & 0xFF

    def set_reg(self, r: int, width: int, value: int | None) -> None:
        if width == 4:
            self.regs[r] = None if value is None else value & _M32
            return
        if width == 2:
            old = self.regs[r]
            self.regs[r] = None if old is None or value is None else (old & 0xFFFF0000) | (value & 0xFFFF)
            return
        idx = r & 3
        old = self.regs[idx]
        if old is None or value is None:
            self.regs[idx] = None
        elif r >= 4:
            self.regs[idx] = (old & 0xFFFF00FF) | ((value & 0xFF) << 8)
        else:
            self.regs[idx] = (old & 0xFFFFFF00) | (value & 0xFF)

    def flags(self, value: int | None, width: int) -> None:
        if value is None:
            self.zf = self.sf = False
            return
        mask = (1 << 8 * width) - 1
        self.zf = value & mask == 0
        self.sf = bool(value >> (8 * width - 1) & 1)

    # -- execution ----------------------------------------------------------------------------
    def run(self, budget: int = MAX_STEPS) -> None:
        for _ in range(budget):
            if self.looped and self.loop_exit is not None and self.pc >= self.loop_exit:
                return
            self.step()
        raise _Stop("step budget")

    def branch(self, target: int, taken: bool, fallthrough: int) -> None:
        if taken:
            if target <= self.pc:
                self.looped = True
                self.loop_exit = fallthrough if self.loop_exit is None else max(self.loop_exit, fallthrough)
            self.pc = target
        else:
            self.pc = fallthrough

    def step(self) -> None:
        pc = self.pc
        op = self.byte(pc)
        if op == 0x90 or op in (0xFC, 0xF8, 0xF9, 0xF5, 0xFD, 0x9B, 0x9E, 0x9F):
            self.pc = pc + 1
        elif 0x40 <= op <= 0x4F:  # inc/dec r32
            r, v = op & 7, self.regs[op & 7]
            v = None if v is None else (v + (1 if op < 0x48 else -1)) & _M32
            self.regs[r] = v
            self.flags(v, 4)
            self.pc = pc + 1
        elif 0x50 <= op <= 0x57:
            self.push(self.regs[op & 7])
            self.pc = pc + 1
        elif 0x58 <= op <= 0x5F:
            self.regs[op & 7] = self.pop()
            self.pc = pc + 1
        elif op == 0x6A:
            self.push(self.imm(pc + 1, 1, signed=True) & _M32)
            self.pc = pc + 2
        elif op == 0x68:
            self.push(self.imm(pc + 1, 4))
            self.pc = pc + 5
        elif 0xB0 <= op <= 0xB7:
            self.set_reg(op & 7, 1, self.imm(pc + 1, 1))
            self.pc = pc + 2
        elif 0xB8 <= op <= 0xBF:
            self.regs[op & 7] = self.imm(pc + 1, 4)
            self.pc = pc + 5
        elif op == 0x66 and 0xB8 <= self.byte(pc + 1) <= 0xBF:
            self.set_reg(self.byte(pc + 1) & 7, 2, self.imm(pc + 2, 2))
            self.pc = pc + 4
        elif op in _ALU:
            self.alu(pc, op)
        elif op in (0x80, 0x81, 0x83):
            self.group1(pc, op)
        elif op in (0xC0, 0xC1, 0xD0, 0xD1):
            self.group2(pc, op)
        elif op in (0xF6, 0xF7):
            self.group3(pc, op)
        elif op == 0x8D:
            mod, reg, addr, n = self.modrm(pc + 1)
            if mod == 3:
                raise _Stop("lea with a register operand")
            self.regs[reg] = addr
            self.pc = pc + 1 + n
        elif 0x91 <= op <= 0x97:
            r = op & 7
            self.regs[0], self.regs[r] = self.regs[r], self.regs[0]
            self.pc = pc + 1
        elif op == 0xE2:  # loop
            ecx = self.regs[1]
            if ecx is None:
                raise _Stop("loop with an unknown count")
            ecx = (ecx - 1) & _M32
            self.regs[1] = ecx
            target = pc + 2 + self.imm(pc + 1, 1, signed=True)
            self.branch(target, ecx != 0, pc + 2)
            if ecx != 0 and target <= pc:
                self.accelerate(target, pc + 2)
        elif op in (0x74, 0x75, 0x78, 0x79):  # jz, jnz, js, jns
            cond = {0x74: self.zf, 0x75: not self.zf, 0x78: self.sf, 0x79: not self.sf}[op]
            self.branch(pc + 2 + self.imm(pc + 1, 1, signed=True), cond, pc + 2)
        elif op == 0xEB:
            self.branch(pc + 2 + self.imm(pc + 1, 1, signed=True), True, pc + 2)
        elif op == 0xE9:
            self.branch(pc + 5 + self.imm(pc + 1, 4, signed=True), True, pc + 5)
        elif op == 0xE8:
            self.push(pc + 5)
            self.pc = pc + 5 + self.imm(pc + 1, 4, signed=True)
        elif op == 0xFF and self.byte(pc + 1) >> 3 == 0x18:  # inc r32 (ff c0+r), the call4 trick
            r = self.byte(pc + 1) & 7
            v = self.regs[r]
            self.regs[r] = None if v is None else (v + 1) & _M32
            self.pc = pc + 2
        elif 0xD8 <= op <= 0xDF and self.byte(pc + 1) >= 0xC0:  # FPU register form
            self.fpu_ip = pc
            self.pc = pc + 2
        elif op == 0xD9 and self.mem[pc + 1:pc + 4] == b"\x74\x24\xf4":  # fnstenv [esp-0xc]
            esp = self.regs[4]
            assert esp is not None
            self.stack[esp] = self.fpu_ip  # the saved FPU instruction pointer lands at [esp]
            self.pc = pc + 4
        elif op in SLED_BYTES:  # cwde, cdq, daa, ... : change nothing a decoder loop depends on
            if op == 0x99:
                self.regs[2] = None
            elif op in (0x98, 0x27, 0x2F, 0x37, 0x3F, 0xD6):
                self.regs[0] = None
            self.pc = pc + 1
        else:
            raise _Stop(f"opcode {op:#04x}")

    def accelerate(self, head: int, after: int) -> None:
        """Finish a steady ``loop`` in one go. Steady: the last two turns each wrote one location
        with the same instruction, operation and key, and moved every register by the same amount
        (ecx by -1); the locations still to write lie outside the loop's own code. Anything else
        (feedback keys, self-modifying stubs) keeps being interpreted turn by turn."""
        self.history.append((tuple(self.regs), len(self.write_log)))
        if len(self.history) < 3:
            return
        (r0, w0), (r1, w1), (r2, w2) = self.history[-3:]
        if w1 - w0 != 1 or w2 - w1 != 1:
            return
        pc_a, a1, width, op, key = self.write_log[w1 - 1]
        pc_b, a2, width_b, op_b, key_b = self.write_log[w2 - 1]
        if (pc_a, width, op, key) != (pc_b, width_b, op_b, key_b) or op not in _BULK:
            return
        deltas = []
        for x0, x1, x2 in zip(r0, r1, r2, strict=True):
            if x0 is None or x1 is None or x2 is None:
                if not (x0 is None and x1 is None and x2 is None):
                    return
                deltas.append(0)
                continue
            if (x1 - x0) & _M32 != (x2 - x1) & _M32:
                return
            deltas.append((x2 - x1) & _M32)
        step = a2 - a1
        turns = self.regs[1]
        if turns is None or deltas[1] != _M32 or step not in (width, -width) or turns > len(self.mem):
            return
        first = a2 + step
        last = first + step * (turns - 1)
        lo, hi = min(first, last), max(first, last) + width
        if lo < 0 or hi > len(self.mem) or (lo < after and hi > head):
            return
        for i in range(lo, hi):
            self.originals.setdefault(i, self.mem[i])
        self.mem[lo:hi] = _bulk(bytes(self.mem[lo:hi]), op, width, key)
        self.writes[pc_a].extend(range(lo, hi, width))
        self.regs = [None if v is None else (v + d * turns) & _M32 for v, d in zip(self.regs, deltas, strict=True)]
        self.regs[1] = 0
        self.pc = after
        self.history.clear()

    def alu(self, pc: int, op: int) -> None:
        """00-3B ALU r/m,r and r,r/m forms, 88/89/8A/8B mov."""
        kind, width, to_reg = _ALU[op]
        mod, reg, loc, n = self.modrm(pc + 1)
        src_reg = self.get_reg(reg, width)
        if mod == 3:
            assert loc is not None
            dst_val = self.get_reg(loc, width)
            if kind in ("xor", "sub") and loc == reg:
                result: int | None = 0
            elif to_reg:
                result = _apply(kind, src_reg, dst_val, width)
            else:
                result = _apply(kind, dst_val, src_reg, width)
            target = reg if to_reg else loc
            if kind != "cmp":
                self.set_reg(target, width, result)
            self.flags(result, width)
        elif to_reg:
            mem_val = self.read(loc, width)
            result = _apply(kind, src_reg, mem_val, width)
            if kind == "add" and width == 4:
                self.key_added_from_mem.add(reg)
            if kind != "cmp":
                self.set_reg(reg, width, result)
            self.flags(result, width)
        else:
            mem_val = self.read(loc, width)
            result = _apply(kind, mem_val, src_reg, width)
            if kind != "cmp":
                self.write(loc, width, result, kind, src_reg)
            self.flags(result, width)
        self.pc = pc + 1 + n

    def group1(self, pc: int, op: int) -> None:
        width = 1 if op == 0x80 else 4
        mod, sub, loc, n = self.modrm(pc + 1)
        isize = 4 if op == 0x81 else 1
        imm = self.imm(pc + 1 + n, isize, signed=op == 0x83)
        imm &= (1 << 8 * width) - 1
        kind = _GROUP1[sub]
        if kind is None:
            raise _Stop("adc/sbb")
        if mod == 3:
            assert loc is not None
            result = _apply(kind, self.get_reg(loc, width), imm, width)
            if kind != "cmp":
                self.set_reg(loc, width, result)
        else:
            result = _apply(kind, self.read(loc, width), imm, width)
            if kind != "cmp":
                self.write(loc, width, result, kind, imm)
        self.flags(result, width)
        self.pc = pc + 1 + n + isize

    def group2(self, pc: int, op: int) -> None:
        width = 1 if op in (0xC0, 0xD0) else 4
        mod, sub, loc, n = self.modrm(pc + 1)
        if sub not in (0, 1):
            raise _Stop("shift")
        count = self.imm(pc + 1 + n, 1) if op in (0xC0, 0xC1) else 1
        kind = "rol" if sub == 0 else "ror"
        if mod == 3:
            assert loc is not None
            self.set_reg(loc, width, _apply(kind, self.get_reg(loc, width), count, width))
            if width == 4:
                self.key_rotated.add(loc)
        else:
            self.write(loc, width, _apply(kind, self.read(loc, width), count, width), kind, count)
        self.pc = pc + 1 + n + (1 if op in (0xC0, 0xC1) else 0)

    def group3(self, pc: int, op: int) -> None:
        width = 1 if op == 0xF6 else 4
        mod, sub, loc, n = self.modrm(pc + 1)
        if sub not in (2, 3):
            raise _Stop("mul/div/test")
        kind = "not" if sub == 2 else "neg"
        if mod == 3:
            assert loc is not None
            self.set_reg(loc, width, _apply(kind, self.get_reg(loc, width), 0, width))
        else:
            self.write(loc, width, _apply(kind, self.read(loc, width), 0, width), kind, None)
        self.pc = pc + 1 + n


_GROUP1: tuple[str | None, ...] = ("add", "or", None, None, "and", "sub", "xor", "cmp")
_ALU: dict[int, tuple[str, int, bool]] = {}
for _base, _kind in ((0x00, "add"), (0x08, "or"), (0x20, "and"), (0x28, "sub"), (0x30, "xor"), (0x38, "cmp")):
    _ALU[_base] = (_kind, 1, False)
    _ALU[_base + 1] = (_kind, 4, False)
    _ALU[_base + 2] = (_kind, 1, True)
    _ALU[_base + 3] = (_kind, 4, True)
_ALU.update({0x88: ("mov", 1, False), 0x89: ("mov", 4, False), 0x8A: ("mov", 1, True), 0x8B: ("mov", 4, True)})


_BULK = frozenset({"xor", "add", "sub", "rol", "ror", "not", "neg"})


def _bulk(chunk: bytes, op: str, width: int, key: int | None) -> bytes:
    """``op`` with ``key`` applied to every byte (width 1) or little-endian dword of ``chunk``."""
    if width == 1:
        table = bytes((_apply(op, b, key if key is not None else 0, 1) or 0) for b in range(256))
        return chunk.translate(table)
    out = bytearray()
    for (word,) in struct.iter_unpack("<I", chunk):
        out += struct.pack("<I", _apply(op, word, key if key is not None else 0, 4) or 0)
    return bytes(out)


def _apply(kind: str, a: int | None, b: int | None, width: int) -> int | None:
    bits = 8 * width
    mask = (1 << bits) - 1
    if kind == "mov":
        return b
    if kind in ("not", "neg"):
        if a is None:
            return None
        return (~a) & mask if kind == "not" else (-a) & mask
    if a is None or b is None:
        return None
    if kind == "add":
        return (a + b) & mask
    if kind in ("sub", "cmp"):
        return (a - b) & mask
    if kind == "xor":
        return a ^ b
    if kind == "or":
        return a | b
    if kind == "and":
        return a & b
    s = b % bits
    if kind == "rol":
        return ((a << s) | (a >> (bits - s))) & mask
    return ((a >> s) | (a << (bits - s))) & mask  # ror


def _name(m: _Machine, info: _Write) -> tuple[str, str | None]:
    """Decoder name and key (hex, memory order) of the instruction that wrote the body."""
    name = f"{info.op}{8 * info.width}"
    if info.key is None:
        return name, None
    key = info.key.to_bytes(info.width, "little").hex() if info.width == 4 else f"{info.key:02x}"
    # Which register held the key? Feedback and rotation are properties of that register.
    op_byte = m.mem[info.pc]
    if op_byte in _ALU:
        reg = (m.mem[info.pc + 1] >> 3) & 7
        if reg in m.key_added_from_mem:
            name += "-additive"
        elif reg in m.key_rotated:
            name += "-rotating"
    return name, key


def static_decode(data: bytes, start: int, budget: int = MAX_STEPS) -> StaticDecode | None:
    """Interpret the stub at ``start``; the decoded input if it is a decoder loop we can follow."""
    m = _Machine(data, start)
    try:
        m.run(budget)
    except _Stop as stop:
        if not m.looped or stop.args == ("step budget",):
            return None  # never reached a loop, or a loop that does not end: not a decoder
    except (IndexError, AssertionError):  # a stack pointer made unknown, an operand off the end
        return None
    if not m.writes or all(m.mem[a] == b for a, b in m.originals.items()):
        return None  # wrote nothing, or rewrote bytes with themselves (a key of 0)
    pc, _count = Counter({pc: len(a) for pc, a in m.writes.items()}).most_common(1)[0]
    addrs = m.writes[pc]
    if len(addrs) < 8:
        return None  # a store or two is data, not a decoder
    info = m.write_info[pc]
    lo = min(addrs)
    hi = max(addrs) + info.width
    name, key = _name(m, info)
    return StaticDecode(name, key, start, lo, hi - lo, bytes(m.mem))
