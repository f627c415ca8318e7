"""The attack-fingerprint query gives the same rows on Spark (local mode, over the Parquet lake)
as on DuckDB, so campaigns cluster the same on both.

A seeded generator writes sensor sessions the way the honeypot records them (connect, negotiate,
session set-up, tree, pipe, bind, one to three requests, one or two exploit attempts of kind
exploit or probe, close), benign sessions without an exploit, and sessions on two sensors sharing
session ids; the window's edges cut through some sessions.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from engine_helpers import both_engines
from stormwatch.analytics import DuckDBEngine, SparkEngine
from stormwatch.analytics.clustering import cluster
from stormwatch.analytics.fingerprint import columns, fingerprints
from stormwatch.analytics.fingerprint_queries import ATTACK_FINGERPRINTS
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store

pytestmark = pytest.mark.spark

T0 = datetime(2006, 8, 10)
SESSIONS = 300


def _sessions(seed: int) -> dict[str, list[tuple[str, datetime, str, dict[str, Any]]]]:
    rng = random.Random(seed)
    out: dict[str, list[tuple[str, datetime, str, dict[str, Any]]]] = {"honeypot": [], "honeypot-2": []}
    for i in range(SESSIONS):
        sensor = "honeypot" if i % 5 else "honeypot-2"
        sid = f"s{i % 250:04d}"  # ids repeat across the two sensors
        t = T0 + timedelta(microseconds=rng.randrange(6 * 86_400_000_000))
        src = f"198.51.100.{rng.randrange(1, 60)}"
        ev: list[tuple[str, dict[str, Any]]] = [
            ("session.connect", {"service": rng.choice(["smb", "netbios-ssn"]), "persona": "win2000"}),
            ("smb.negotiate", {"dialects": rng.choice([["NT LM 0.12"], ["LANMAN1.0", "NT LM 0.12"]]),
                               "dialect": "NT LM 0.12", "smb_version": 1, "extended_security": rng.random() < 0.5}),
            ("smb.session_setup", {"auth": "anonymous", "user": "", "domain": rng.choice(["", "WORKGROUP"]),
                                   "workstation": rng.choice(["", "ABCDEFGH", "pc-1234"]),
                                   "native_os": rng.choice(["Windows 2000 2195", "Windows 5.1"]),
                                   "native_lanman": "Windows 2000 5.0", "ntlm_flags": rng.choice([0, 0xA0080205]),
                                   "ntlm_version": ""}),
            ("smb.tree_connect", {"path": "\\\\192.0.2.1\\IPC$", "share": "IPC$", "service": "IPC"}),
            ("smb.pipe_open", {"pipe": rng.choice(["browser", "srvsvc"]), "fid": rng.randrange(1, 60000)}),
            ("dcerpc.bind", {"interface": "4b324fc8-1670-01d3-1278-5a47bf6ee188", "interface_name": "srvsvc",
                             "interface_version": "3.0", "transport": "pipe:browser", "accepted": True}),
        ]
        units = rng.choice([355, 403, 533, 45])
        for _ in range(rng.randint(1, 3)):
            ev.append(("dcerpc.request", {"interface": "4b324fc8-1670-01d3-1278-5a47bf6ee188",
                                          "interface_name": "srvsvc", "opnum": 31, "operation": "NetprPathCanonicalize",
                                          "stub_len": 2 * units + 60, "fragments": rng.choice([1, 1, 4]),
                                          "transport": "pipe:browser"}))
        if i % 7:  # the others are benign
            for _ in range(rng.randint(1, 2)):
                kind = "probe" if units == 45 else "exploit"
                ev.append(("exploit.attempt", {
                    "vuln": "MS06-040" if units != 45 else "MS08-067", "cve": "CVE-2006-3439", "kind": kind,
                    "detector": "srvsvc.path_overflow", "confidence": 0.95,
                    "evidence": {"path_units": units, "path_max_count": units, "prefix_units": rng.choice([1, 2]),
                                 "outbuf_len": rng.randint(1, 250), "path_type": 4, "traversal": False},
                    **({"payload_sha256": f"{rng.randrange(8):064x}", "payload_size": 2 * units}
                       if kind == "exploit" else {})}))
        ev.append(("session.closed", {"reason": "client", "duration": 0.5, "bytes_in": 4000, "bytes_out": 600}))
        for name, data in ev:
            t += timedelta(microseconds=rng.randrange(100, 400_000))
            out[sensor].append((name, t, sid, {"src_ip": src, "src_port": 1025 + i, "dst_ip": "192.0.2.1",
                                               "dst_port": 445, "proto": "tcp", **data}))
    return out


@pytest.fixture(scope="module")
def engines(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBEngine, SparkEngine]]:
    tmp = tmp_path_factory.mktemp("campaign-parity")
    store = Store(tmp / "gen.duckdb")
    for sensor, events in _sessions(20060812).items():
        b = EventBatchBuilder(sensor)
        for n, (name, t, sid, fields) in enumerate(events):
            b.add(name, t, f"{sid}:{n}", session=sid, **fields)
        store.write_events(b.take())
    yield both_engines(store, tmp / "lake", spark)
    store.close()


def _normal(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON texts parsed (engines may format them apart), everything else as returned."""
    return [{k: json.loads(v) if k.endswith("_data") and isinstance(v, str) else v for k, v in r.items()}
            for r in rows]


@pytest.mark.parametrize("window", [(None, None), (T0 + timedelta(days=2), T0 + timedelta(days=4))])
def test_fingerprint_rows_and_clusters_agree(engines: tuple[DuckDBEngine, SparkEngine],
                                             window: tuple[datetime | None, datetime | None]) -> None:
    duck, spark = engines
    since, until = window
    params = {"since": since or datetime(1970, 1, 1), "until": until or datetime(9999, 1, 1)}
    expected = duck.run(ATTACK_FINGERPRINTS, params)
    assert len(expected) > 40 and {r["sensor"] for r in expected} == {"honeypot", "honeypot-2"}
    assert _normal(spark.run(ATTACK_FINGERPRINTS, params)) == _normal(expected)
    prints = fingerprints(duck, since, until)
    assert fingerprints(spark, since, until) == prints
    again = fingerprints(spark, since, until)
    assert cluster(columns(prints)).labels.tolist() == cluster(columns(again)).labels.tolist()


def test_probe_only_sessions_have_no_payload(engines: tuple[DuckDBEngine, SparkEngine]) -> None:
    duck, _ = engines
    prints = fingerprints(duck)
    probes = [fp for fp in prints if fp.get("kind") == "probe"]
    assert probes and all(fp.get("payload_sha256") is None and fp.get("arg_units") == "45" for fp in probes)
    assert all(fp.get("gap_repeat") is None for fp in prints if fp.get("requests") == "1")
