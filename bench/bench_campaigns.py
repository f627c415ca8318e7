"""Benchmark: clustering 1 million attack fingerprints into campaigns (target: under 60 s), and how
well the campaigns match the families that made them (adjusted Rand index, purity, completeness).

Synthetic fingerprints (seeded): ``--families`` families with Zipf-like sizes, each drawing its
exploit framing, client stack and payload from pools shared by all families (so families overlap
on many features, as bots copying one exploit do). Per attack, the noise real bots show: a third
of the families randomise OutbufLen / PathType, 30 % of the families are polymorphic (a payload
hash and a key per bot), 30 % of attacks come over the other port (retries), timing buckets are
random, and 20 % of attacks have no shellcode analysis (its features absent).

Rows of the table: ``exact`` (the baseline: one campaign per distinct fingerprint, ``np.unique``
over 64-bit row hashes, the clustering's own first step) and ``campaigns``
(stormwatch.analytics.clustering.cluster: variants, banded leader linking, components); time in
seconds and its ratio to the baseline's, campaigns found, ARI, purity, completeness.
Then a threshold sweep on a 100k subset.

    .venv/bin/python bench/bench_campaigns.py                 # 1M attacks
    .venv/bin/python bench/bench_campaigns.py --attacks 200k
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from stormwatch.analytics.cluster_scores import adjusted_rand_index, completeness, purity
from stormwatch.analytics.clustering import THRESHOLD, _row_hash, cluster, encode
from stormwatch.analytics.fingerprint import FEATURE_NAMES, FEATURES

POOLS: dict[str, list[str]] = {
    "vuln": ["MS06-040", "MS06-040", "MS06-040", "MS04-011", "MS08-067"],
    "kind": ["exploit"], "detector": ["srvsvc.path_overflow"], "call": ["srvsvc:31"], "arg": ["path"],
    "arg_units": ["533", "355", "403", "1004", "309"], "max_count": ["="], "prefix_units": ["1", "2"],
    "traversal": ["false"], "fragments": ["1", "1", "1", "4", "8"], "requests": ["1", "2"],
    "pipe": ["browser", "srvsvc", "lsarpc"], "service": ["smb", "netbios-ssn"], "tree_path": ["\\\\<ip>\\IPC$"],
    "bind_version": ["3.0"],
    "dialects": ["NT LM 0.12", "LANMAN1.0,NT LM 0.12", "PC NETWORK PROGRAM 1.0,LANMAN1.0,LM1.2X002,NT LM 0.12",
                 "PC NETWORK PROGRAM 1.0,LANMAN1.0,Windows for Workgroups 3.1a,LM1.2X002,LANMAN2.1,NT LM 0.12"],
    "smb_version": ["1"], "extended_security": ["true", "false"], "auth": ["anonymous", "anonymous", "ntlmssp"],
    "native_os": ["Windows 2000 2195", "Windows 5.1", "Windows 2002 Service Pack 1 2600", "Unix",
                  "Windows 2002 Service Pack 2 2600", "Windows Server 2003 3790"],
    "native_lanman": ["Windows 2000 5.0", "Windows 2000 LAN Manager", "Windows 2002 5.1", "Samba"],
    "ntlm_flags": ["0x00000000", "0xa0080205", "0x60088215", "0xe2088297", "0x00008201"],
    "ntlm_version": ["", "v1"], "workstation": ["", "A8", "a3-94", "A2-96", "A4-95", "a8", "A5", "A1-93"],
    "domain": ["", "WORKGROUP", "HOME"], "user": [""],
    "payload_size": ["1066", "710", "806", "2008", "618"],
    "decoder": ["xor8", "add8", "xor32", "shikata"], "api_profile": ["WinExec,ExitThread",
                                                                     "URLDownloadToFileA,WinExec",
                                                                     "WSASocketA,bind,listen,accept,CreateProcessA",
                                                                     "WSASocketA,connect,CreateProcessA"],
    "offer_protocol": ["ftp", "tftp", "http", ""], "offer_port": ["21", "69", "2121", "8080", "5554", "8021"],
    "offer_host": ["<self>", "203.0.113.66", "198.51.100.23", "192.0.2.77"],
}
TIMING = ["<1ms", "1ms", "2ms", "4ms", "8ms"]
SHELLCODE = ("decoder", "key", "api_profile", "bind_port", "connect_port", "offer_protocol", "offer_port",
             "offer_file", "offer_host")


def synthetic(n: int, families: int, seed: int = 2006) -> tuple[dict[str, Any], np.ndarray]:
    """``n`` fingerprints as columns (object arrays) and their true family."""
    rng = np.random.default_rng(seed)
    sizes = 1.0 / np.arange(1, families + 1) ** 0.8
    fam = rng.choice(families, size=n, p=sizes / sizes.sum())
    poly = rng.random(families) < 0.3
    random_args = rng.random(families) < 0.35
    cols: dict[str, Any] = {}
    for name in FEATURE_NAMES:
        if name in POOLS:
            per_family = np.array([POOLS[name][i] for i in rng.integers(0, len(POOLS[name]), families)], dtype=object)
        elif name.startswith("gap_"):
            per_family = np.array([TIMING[i] for i in rng.integers(0, len(TIMING), families)], dtype=object)
        else:  # family-specific values: payload hash, key, file, ports, OutbufLen, PathType, stub size
            per_family = np.array([f"{name}-{f}-{rng.integers(1 << 30)}" for f in range(families)], dtype=object)
        col = per_family[fam]
        if name in ("payload_sha256", "key"):  # polymorphic families: one per bot
            idx = np.flatnonzero(poly[fam])
            col[idx] = np.array([f"{name}-{i:x}" for i in rng.integers(0, 1 << 62, len(idx))], dtype=object)
        if name in ("outbuf_len", "path_type"):
            idx = np.flatnonzero(random_args[fam])
            col[idx] = rng.integers(1, 251, len(idx)).astype(str).astype(object)
        if name.startswith("gap_"):
            idx = np.flatnonzero(rng.random(n) < 0.5)
            col[idx] = np.array(TIMING, dtype=object)[rng.integers(0, len(TIMING), len(idx))]
        cols[name] = col
    retry = rng.random(n) < 0.3
    cols["service"] = np.where(retry, np.where(cols["service"] == "smb", "netbios-ssn", "smb"), cols["service"])
    unanalysed = rng.random(n) < 0.2
    for name in SHELLCODE:
        cols[name] = np.where(unanalysed, None, cols[name])
    return cols, fam


def _exact(cols: dict[str, Any]) -> np.ndarray:
    codes, _ = encode(cols)
    _, inverse = np.unique(_row_hash(codes), return_inverse=True)
    return np.asarray(inverse).reshape(-1)


def _scores(truth: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    t, f = truth.tolist(), labels.tolist()
    return adjusted_rand_index(t, f), purity(t, f), completeness(t, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attacks", default="1M", help="number of attacks (1M, 200k, ...)")
    ap.add_argument("--families", type=int, default=60)
    args = ap.parse_args()
    n = int(float(args.attacks.lower().rstrip("mk")) * (1_000_000 if args.attacks.lower().endswith("m") else
                                                        1_000 if args.attacks.lower().endswith("k") else 1))
    t = time.perf_counter()
    cols, truth = synthetic(n, args.families)
    print(f"{n:,} synthetic attacks of {args.families} families, {len(FEATURES)} features, "
          f"generated in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    exact = _exact(cols)
    base = time.perf_counter() - t
    t = time.perf_counter()
    found = cluster(cols)
    took = time.perf_counter() - t
    print(f"\n{'method':<10} {'seconds':>8} {'ratio':>6} {'campaigns':>10} {'variants':>9} {'ARI':>6} "
          f"{'purity':>7} {'complete':>8}")
    for name, labels, sec, variants in (("exact", exact, base, int(exact.max()) + 1),
                                         ("campaigns", found.labels, took, found.n_variants)):
        ari, pur, comp = _scores(truth, labels)
        print(f"{name:<10} {sec:>8.2f} {sec / base:>6.2f} {int(labels.max()) + 1:>10,} {variants:>9,} "
              f"{ari:>6.3f} {pur:>7.3f} {comp:>8.3f}")
    print(f"\nthreshold sweep on 100k attacks (default {THRESHOLD}):")
    sub = {k: v[:100_000] for k, v in cols.items()}
    print(f"{'threshold':>9} {'campaigns':>10} {'ARI':>6} {'purity':>7} {'complete':>8} {'seconds':>8}")
    for thr in (0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
        t = time.perf_counter()
        res = cluster(sub, threshold=thr)
        sec = time.perf_counter() - t
        ari, pur, comp = _scores(truth[:100_000], res.labels)
        print(f"{thr:>9.2f} {res.count:>10,} {ari:>6.3f} {pur:>7.3f} {comp:>8.3f} {sec:>8.2f}")


if __name__ == "__main__":
    main()
