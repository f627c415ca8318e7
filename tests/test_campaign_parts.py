"""The pieces of campaign attribution without the sensor: scores, feature derivation, the
clustering on hand-made fingerprints, family rules, and the demo families' shellcode."""

from __future__ import annotations

import json
import random
import struct
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stormwatch.analytics.cluster_scores import adjusted_rand_index, completeness, purity
from stormwatch.analytics.clustering import cluster, similarity
from stormwatch.analytics.family_rules import load_rules, parse_toml
from stormwatch.analytics.fingerprint import FEATURE_NAMES, from_row, gap_bucket, shape, tree_form
from stormwatch.demo.families import BAD_CHARS, BY_NAME, FAMILIES, body, encode, shellcode, workstation
from stormwatch.errors import InputError


def test_scores_by_hand() -> None:
    truth, found = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]
    # index 2, expected 6 * 3 / 15 = 1.2, max 4.5: (2 - 1.2) / (4.5 - 1.2)
    assert adjusted_rand_index(truth, found) == pytest.approx(0.8 / 3.3)
    assert purity(truth, found) == 5 / 6 and completeness(truth, found) == 4 / 6
    assert adjusted_rand_index(truth, ["a", "a", "a", "b", "b", "b"]) == 1.0
    assert adjusted_rand_index([1, 1], [2, 2]) == 1.0
    with pytest.raises(ValueError):
        purity([1], [1, 2])


def test_feature_helpers() -> None:
    assert shape("WARG-48213") == "A4-95" and shape("pc-1234") == "a2-94" and shape("") == "" and shape(None) is None
    assert tree_form("\\\\127.0.0.1\\IPC$") == "\\\\<ip>\\IPC$"
    assert tree_form("\\\\*SMBSERVER\\ipc$") == "\\\\*SMBSERVER\\IPC$"
    assert tree_form("\\\\HONEY\\IPC$") == "\\\\<name>\\IPC$" and tree_form(None) is None
    t = datetime(2006, 8, 12)
    assert gap_bucket(t, t + timedelta(microseconds=300)) == "<10ms"
    assert gap_bucket(t, t + timedelta(milliseconds=5)) == "<10ms"
    assert gap_bucket(t, t + timedelta(milliseconds=40)) == "10ms"
    assert gap_bucket(t, t + timedelta(seconds=1)) == "1s" and gap_bucket(None, t) is None
    assert gap_bucket(t, t + timedelta(hours=1)) == "100s"


def test_from_row_reads_shellcode_and_offers() -> None:
    t = datetime(2006, 8, 12)
    row = {"sensor": "s", "session": "x", "src_ip": "203.0.113.9", "ts": t, "requests": 2,
           "attempt_data": json.dumps({"vuln": "MS06-040", "kind": "exploit", "evidence": {"path_units": 533},
                                       "payload_sha256": "ab" * 32, "payload_size": 1066}),
           "shellcode_data": json.dumps({"decoder": "xor8", "decoder_key": "0x99",
                                          "api_calls": ["WinExec", "ExitThread"],
                                         "binds": [{"port": 9996}]}),
           "offer_data": json.dumps({"url": "ftp://203.0.113.9:2121/msnmsgs.exe"}),
           "t_request": t, "t_last_request": t + timedelta(milliseconds=3)}
    fp = from_row(row)
    assert len(fp.values) == len(FEATURE_NAMES)
    assert (fp.get("decoder"), fp.get("key"), fp.get("api_profile"), fp.get("bind_port")) == \
        ("xor8", "0x99", "WinExec,ExitThread", "9996")
    assert (fp.get("offer_protocol"), fp.get("offer_host"), fp.get("offer_port"), fp.get("offer_file")) == \
        ("ftp", "<self>", "2121", "msnmsgs.exe")
    assert fp.offer == "ftp://<self>:2121/msnmsgs.exe" and fp.get("gap_repeat") == "<10ms"
    assert fp.get("native_os") is None  # no set-up seen: absent, not empty


def _columns(rows: list[dict[str, str]]) -> dict[str, list[str | None]]:
    return {n: [r.get(n) for r in rows] for n in FEATURE_NAMES}


def test_cluster_on_hand_made_fingerprints() -> None:
    rng = random.Random(1)
    base = {"A": {"vuln": "MS06-040", "arg_units": "533", "pipe": "browser", "service": "netbios-ssn",
                  "dialects": "NT LM 0.12", "native_os": "Windows 2000 2195", "payload_sha256": "a" * 64},
            "B": {"vuln": "MS06-040", "arg_units": "355", "pipe": "srvsvc", "service": "smb",
                  "dialects": "NT LM 0.12", "native_os": "Windows 5.1", "workstation": "A8"}}
    common = {"kind": "exploit", "detector": "srvsvc.path_overflow", "call": "srvsvc:31", "requests": "1",
              "fragments": "1", "smb_version": "1", "auth": "anonymous", "native_lanman": "Windows 2000 5.0"}
    base = {k: {**common, **v} for k, v in base.items()}
    rows, truth = [], []
    for i in range(200):
        fam = "A" if i % 3 else "B"
        r = dict(base[fam], outbuf_len=str(rng.randint(1, 250)))
        if fam == "B":
            r["payload_sha256"] = f"{rng.getrandbits(256):064x}"  # polymorphic: a hash per bot
        if rng.random() < 0.3:
            r["service"] = "smb" if r["service"] == "netbios-ssn" else "netbios-ssn"
        rows.append(r)
        truth.append(fam)
    found = cluster(_columns(rows))
    assert adjusted_rand_index(truth, found.labels.tolist()) == 1.0 and found.count == 2
    assert found.sizes.tolist() == sorted(found.sizes.tolist(), reverse=True)
    assert found.consensus[0]["payload_sha256"] == "a" * 64 and "outbuf_len" not in found.consensus[0]
    assert cluster(_columns([])).count == 0
    # a strict threshold splits the polymorphic family into its variants
    assert cluster(_columns(rows), threshold=0.99).count > 2


def test_similarity_counts_one_sided_absence_at_half_weight() -> None:
    import numpy as np

    w = np.array([1.0, 1.0, 2.0])
    x = np.array([[1, 2, 0], [1, 3, 0], [1, 2, 5]], dtype=np.int32)
    leader = np.array([1, 2, 0], dtype=np.int32)
    assert similarity(x, leader, w).tolist() == [1.0, 0.5, 2 / 3]


def test_rule_files(tmp_path: Path) -> None:
    rules = parse_toml('[[family]]\nname = "X"\n[family.match]\nvuln = ["MS06-040", "MS08-067"]\n'
                       '[family.pattern]\nworkstation = "A\\\\d+"\n', "t")
    assert rules[0].matches({"vuln": "MS08-067", "workstation": "A8"})
    assert not rules[0].matches({"vuln": "MS08-067", "workstation": "A8x"})
    assert not rules[0].matches({"workstation": "A8"})
    for bad, why in (('[[family]]\nname = "X"\n', "at least one condition"),
                     ('[[family]]\nname = "X"\n[family.match]\nnope = 1\n', "unknown features nope"),
                     ('[[family]]\n[family.match]\nvuln = "x"\n', "needs a name"),
                     ('[[family]\n', "not valid TOML"),
                     ('[[family]]\nname = "X"\n[family.pattern]\nvuln = "("\n', "bad pattern")):
        with pytest.raises(InputError, match=why):
            parse_toml(bad, "t")
    yar = tmp_path / "bad.yar"
    yar.write_text("rule broken { condition: }")
    with pytest.raises(InputError, match="do not compile"):
        load_rules([yar], builtin=False)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputError, match="rule files are"):
        load_rules([tmp_path / "x.txt"], builtin=False)


def _decode(code: bytes) -> bytes:
    """What the decoder stub would leave in memory: read its count and key from the stub itself."""
    if code[:2] == b"\xeb\x0e":
        n, op, key = code[6], code[8], code[9]
        data = code[21:21 + n]
        return bytes(b ^ key for b in data) if op == 0x36 else bytes((b + key) & 0xFF for b in data)
    assert code[:7] == b"\xd9\xee\xd9\x74\x24\xf4\x5b"
    n, key = code[10], code[14:18]
    data = code[23:23 + 4 * n]
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family_shellcode_decodes_to_its_body(family: object) -> None:
    from stormwatch.demo.families import Family

    assert isinstance(family, Family)
    for n in range(20):
        ip = f"127.{n + 1}.{n * 37 % 256}.{n * 11 % 250 + 1}"
        code = shellcode(family, random.Random(n), ip)
        assert not set(code) & BAD_CHARS
        clear = body(family.payload, ip)
        assert _decode(code)[: len(clear)] == clear
    assert b"ftp -n -s:o" in body(BY_NAME["Randex"].payload, "127.1.2.3")
    assert b"echo open 127.1.2.3 2121" in body(BY_NAME["Randex"].payload, "127.1.2.3")
    assert struct.pack(">H", 9996) in body(BY_NAME["Spybot"].payload, "127.1.2.3")


def test_a_key_that_leaves_a_bad_character_is_refused() -> None:
    with pytest.raises(ValueError, match="bad character"):
        encode("xor8", 0x5C ^ ord("k"), b"kernel32")


def test_workstation_patterns() -> None:
    name = workstation("PC-999999", random.Random(3))
    assert name.startswith("PC-") and name[3:].isdigit() and shape(name) == "A2-96"
    assert shape(workstation("aaa-9999", random.Random(4))) == "a3-94"
