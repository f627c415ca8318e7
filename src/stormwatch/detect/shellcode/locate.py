"""Finding shellcode in an exploit argument: NOP-equivalent sleds and GetPC stubs.

An exploit argument is mostly filler (padding, return addresses, protocol strings) around a few
hundred bytes of position-independent code. Two marks give that code away:

* a *sled*: a run of one-byte instructions that change nothing the code after them depends on,
  so a jump anywhere into the run slides to the code (0x90 ``nop`` and the classic one-byte
  equivalents that ADMmutate-style engines substitute for it: ``inc``/``dec`` of a general
  register other than ``esp``, ``xchg eax, reg``, ``cwde``, ``cdq``, flag instructions, BCD
  adjustments, ``salc``);
* a *GetPC* stub: code learning its own address, which it needs to find its data or to decode
  itself: ``call $+5; pop reg`` (call-pop), ``call $+4`` landing in its own last byte then ``pop``
  (call4-pop, Metasploit's ``call4_dword_xor``), an FPU instruction then ``fnstenv [esp-0xc];
  pop reg`` (fnstenv: the saved FPU instruction pointer is the address of that instruction;
  Shikata-ga-nai), and ``jmp`` forward to a ``call`` back to just after the ``jmp`` (jmp-call-pop),
  or any ``call`` backwards onto a ``pop`` (call-back).

Offsets are positions in the input; nothing is executed here. Opcodes: Intel SDM vol. 2, appendix A.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

# One-byte instructions that a sled may be made of (Intel SDM vol. 2 A.3, one-byte opcode map).
# Left out on purpose: inc/dec esp (0x44, 0x4c) and push/pop, which move the stack the code uses.
SLED_BYTES = frozenset(
    [0x90]  # nop
    + [b for b in range(0x40, 0x50) if b not in (0x44, 0x4C)]  # inc/dec r32
    + [0x91, 0x92, 0x93, 0x95, 0x96, 0x97]  # xchg eax, r32 (0x94 is xchg eax, esp)
    + [0x98, 0x99, 0x9B, 0x9E, 0x9F]  # cwde, cdq, wait, sahf, lahf
    + [0x27, 0x2F, 0x37, 0x3F, 0xD6]  # daa, das, aaa, aas, salc
    + [0xF5, 0xF8, 0xF9, 0xFC, 0xFD]  # cmc, clc, stc, cld, std
)
MIN_SLED = 16  # bytes; shorter runs of these bytes occur by chance in text and addresses
_SLED_RE = re.compile(b"[" + b"".join(re.escape(bytes([b])) for b in sorted(SLED_BYTES)) + b"]{%d,}" % MIN_SLED)
_POP = range(0x58, 0x60)  # pop r32
_FNSTENV = re.compile(rb"\x9b?\xd9\x74\x24\xf4|\x9b?\xd9\x34\x24")  # f(n)stenv [esp-0xc] / [esp]
_CALL = re.compile(rb"\xe8", re.DOTALL)


@dataclass(frozen=True)
class Sled:
    offset: int
    length: int
    pure: bool  # only 0x90

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class GetPC:
    """A GetPC stub: ``start`` is its first instruction, ``pop`` the ``pop reg`` that receives the
    address and ``value`` the input offset that address stands for."""

    technique: str
    start: int
    pop: int
    value: int


def find_sleds(data: bytes) -> list[Sled]:
    """Every sled of at least :data:`MIN_SLED` bytes, longest first."""
    out = [Sled(m.start(), m.end() - m.start(), set(m.group()) == {0x90}) for m in _SLED_RE.finditer(data)]
    out.sort(key=lambda s: (-s.length, s.offset))
    return out


def _fpu_before(data: bytes, at: int) -> int | None:
    """Offset of the register-form FPU instruction (D8-DF with mod=11, 2 bytes) that ends within
    the 12 bytes before ``at`` and is the nearest one: the instruction fnstenv saves the IP of."""
    for p in range(at - 2, max(-1, at - 14), -1):
        if 0xD8 <= data[p] <= 0xDF and data[p + 1] >= 0xC0:
            return p
    return None


def find_getpc(data: bytes, limit: int = 64) -> list[GetPC]:
    """GetPC stubs in input order (at most ``limit``)."""
    out: list[GetPC] = []
    n = len(data)
    for m in _CALL.finditer(data):
        c = m.start()
        if c + 5 > n:
            break
        rel = struct.unpack_from("<i", data, c + 1)[0]
        ret = c + 5
        target = ret + rel
        if rel == 0 and ret < n and data[ret] in _POP:
            out.append(GetPC("call-pop", c, ret, ret))
        elif rel == -1 and ret + 1 < n and data[ret - 1] == 0xFF and data[ret] >> 3 == 0x18:
            # call $+4 runs "ff c0+r" (inc r32) formed by its own last byte and the next one
            pop = ret + 1
            if pop < n and data[pop] in _POP:
                out.append(GetPC("call4-pop", c, pop, ret))
        elif -512 <= rel < -5 and 0 <= target < c and data[target] in _POP:
            start, technique = c, "call-back"
            # jmp-call-pop: a short or near jmp just before the pop that lands on this call
            if target >= 2 and data[target - 2] == 0xEB and target + (data[target - 2 + 1] ^ 0x80) - 0x80 == c:
                start, technique = target - 2, "jmp-call-pop"
            elif target >= 5 and data[target - 5] == 0xE9 \
                    and target + struct.unpack_from("<i", data, target - 4)[0] == c:
                start, technique = target - 5, "jmp-call-pop"
            out.append(GetPC(technique, start, target, ret))
        if len(out) >= limit:
            return out
    for m in _FNSTENV.finditer(data):
        end = m.end()
        fpu = _fpu_before(data, m.start())
        if fpu is not None and end < n and data[end] in _POP:
            out.append(GetPC("fnstenv", fpu, end, fpu))
        if len(out) >= limit:
            break
    out.sort(key=lambda g: g.start)
    return out
