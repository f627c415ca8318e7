"""Perimeter rules (stormwatch.export.firewall): nftables and iptables output checked by the real
tools in check-only mode inside a network namespace of their own (never applied to this
machine; skipped where nft / iptables-restore / unshare are missing or not permitted); pf and
Cisco IOS output by golden text and a line grammar of the constructs we emit."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stormwatch.analytics import DuckDBEngine
from stormwatch.export.attackers import Attacker, Seen, Selection
from stormwatch.export.common import parse_address
from stormwatch.export.firewall import TARGETS, firewall_rules
from stormwatch.store import Store
from test_export import build

AT = datetime(2006, 8, 14, 12, 0)


def attacker(ip: str, reasons: tuple[str, ...], vulns: tuple[str, ...] = ()) -> Attacker:
    addr = parse_address(ip)
    assert addr is not None
    return Attacker(ip=addr, reasons=reasons, vulns=vulns, probed=(),
                    seen=(Seen("hp-1", 3, AT - timedelta(hours=2), AT),))


SMALL = Selection(since=None, until=None, as_of=AT, hashes=(), exploits=(), sensors=("hp-1",),
                  attackers=(attacker("198.51.100.1", ("exploit",), ("MS06-040",)),
                             attacker("2001:db8::5", ("scanner",))))


@pytest.fixture
def engine(store: Store) -> DuckDBEngine:
    build(store)
    return DuckDBEngine(store)


def in_netns(tmp_path: Path, tool: str, args: list[str], text: str) -> subprocess.CompletedProcess[str]:
    """Run ``tool args FILE`` inside a fresh network namespace: nothing reaches this host's rules."""
    if shutil.which(tool) is None or shutil.which("unshare") is None:
        pytest.skip(f"{tool} or unshare not installed (apt-get install nftables iptables util-linux)")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip()}")
    path = tmp_path / "rules"
    path.write_text(text)
    return subprocess.run(["unshare", "-n", tool, *args, str(path)], capture_output=True, text=True, check=False)


# -- every target -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_addresses_and_ports(engine: DuckDBEngine, target: str) -> None:
    text = firewall_rules(engine, target=target)
    family = {"iptables": 4, "ip6tables": 6}.get(target)
    want = {"198.51.100.1", "198.51.100.2", "203.0.113.7", "192.0.2.77", "192.0.2.88", "2001:db8::5"}
    for a in want:
        assert (a in text) == (family is None or ipaddress.ip_address(a).version == family), (target, a)
    for bad in ("198.51.100.9", "10.0.0.5", "evil.example", "drop table", "rm -rf", "0.0.0.0"):
        assert bad not in text, (target, bad)
    assert "MS06-040" in text
    for port in ("139", "445", "135", "137", "138"):
        assert port in text


def test_bad_arguments(engine: DuckDBEngine) -> None:
    with pytest.raises(ValueError, match="unknown firewall target"):
        firewall_rules(engine, target="windows")
    with pytest.raises(ValueError, match="not an interface name"):
        firewall_rules(engine, wan_iface='eth0" accept; #')


# -- validated by the real tools -----------------------------------------------------------------

@pytest.mark.parametrize("wan", [None, "eth0"])
def test_nftables_checks(engine: DuckDBEngine, tmp_path: Path, wan: str | None) -> None:
    text = firewall_rules(engine, target="nftables", wan_iface=wan)
    r = in_netns(tmp_path, "nft", ["-c", "-f"], text)
    assert r.returncode == 0, r.stderr
    broken = in_netns(tmp_path, "nft", ["-c", "-f"], text.replace("type ipv4_addr", "type ipv4_adr"))
    assert broken.returncode != 0  # the check is real


def test_nftables_applies_in_a_namespace(engine: DuckDBEngine, tmp_path: Path) -> None:
    """Applied twice (the replace idiom) in a throw-away namespace, then listed back."""
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (apt-get install nftables)")
    text = firewall_rules(engine, target="nftables")
    r = in_netns(tmp_path, "sh", ["-c", 'nft -f "$0" && nft -f "$0" && nft list table inet stormwatch'], text)
    assert r.returncode == 0, r.stderr
    assert "198.51.100.1" in r.stdout and "2001:db8::5" in r.stdout
    assert r.stdout.count("jump inbound") == 2  # replaced, not appended


@pytest.mark.parametrize(("target", "tool"), [("iptables", "iptables-restore"), ("ip6tables", "ip6tables-restore")])
def test_iptables_restore_test(engine: DuckDBEngine, tmp_path: Path, target: str, tool: str) -> None:
    text = firewall_rules(engine, target=target, wan_iface="eth0")
    r = in_netns(tmp_path, tool, ["--test", "--noflush"], text)
    assert r.returncode == 0, r.stderr
    broken = in_netns(tmp_path, tool, ["--test", "--noflush"], text.replace("--dports", "--dprots", 1))
    assert broken.returncode != 0 and "unknown option" in broken.stderr  # the check is real
    # applied in a throw-away namespace and listed back
    listed = in_netns(tmp_path, "sh", ["-c", f'{tool} --noflush "$0" && {target} -S'], text)
    assert listed.returncode == 0, listed.stderr
    assert "-A INPUT -i eth0 -j STORMWATCH-IN" in listed.stdout
    assert ("198.51.100.1/32" in listed.stdout) == (target == "iptables")
    assert ("2001:db8::5/128" in listed.stdout) == (target == "ip6tables")


# -- pf and IOS: golden text and a grammar of what we emit ---------------------------------------

PF_GOLDEN = """\
table <stormwatch_block> persist { \\
\t198.51.100.1 \\
\t2001:db8::5 \\
}

# stormwatch blocklist: attacking addresses seen by the sensors
block drop in quick on em0 from <stormwatch_block> to any
block drop out quick on em0 from any to <stormwatch_block>
# MS06-040 advisory: block TCP 139 and 445 (and 135, UDP 135/137/138) at the perimeter
block drop in quick on em0 proto tcp from any to any port { 135 139 445 }
block drop in quick on em0 proto udp from any to any port { 135 137 138 }
"""

IOS_GOLDEN = """\
no ip access-list extended STORMWATCH-IN
no ip access-list extended STORMWATCH-OUT
no ipv6 access-list STORMWATCH-IN6
no ipv6 access-list STORMWATCH-OUT6
no object-group network STORMWATCH-BLOCK
object-group network STORMWATCH-BLOCK
 description stormwatch blocklist: attacking addresses seen by the sensors
 host 198.51.100.1
ip access-list extended STORMWATCH-IN
 remark stormwatch blocklist: attacking addresses seen by the sensors
 deny ip object-group STORMWATCH-BLOCK any
 remark MS06-040 advisory: block TCP 139 and 445 (and 135, UDP 135/137/138) at the perimeter
 deny tcp any any eq 135
 deny tcp any any eq 139
 deny tcp any any eq 445
 deny udp any any eq 135
 deny udp any any range 137 138
 permit ip any any
ip access-list extended STORMWATCH-OUT
 deny ip any object-group STORMWATCH-BLOCK
 permit ip any any
ipv6 access-list STORMWATCH-IN6
 deny ipv6 host 2001:db8::5 any
 remark MS06-040 advisory: block TCP 139 and 445 (and 135, UDP 135/137/138) at the perimeter
 deny tcp any any eq 135
 deny tcp any any eq 139
 deny tcp any any eq 445
 deny udp any any eq 135
 deny udp any any range 137 138
 permit ipv6 any any
ipv6 access-list STORMWATCH-OUT6
 deny ipv6 any host 2001:db8::5
 permit ipv6 any any
interface GigabitEthernet0/0
 ip access-group STORMWATCH-IN in
 ip access-group STORMWATCH-OUT out
 ipv6 traffic-filter STORMWATCH-IN6 in
 ipv6 traffic-filter STORMWATCH-OUT6 out
end
"""


def body(text: str, marker: str) -> str:
    """The output without its header comment lines."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if not ln.startswith(marker))
    return "".join(lines[start:]).lstrip("\n")


def test_pf_golden(store: Store) -> None:
    text = firewall_rules(DuckDBEngine(store), target="pf", wan_iface="em0", selection=SMALL)
    assert body(text, "#") == PF_GOLDEN
    assert "# stormwatch perimeter rules (pf), from data up to 2006-08-14T12:00:00Z" in text


def test_ios_golden(store: Store) -> None:
    text = firewall_rules(DuckDBEngine(store), target="ios", wan_iface="GigabitEthernet0/0", selection=SMALL)
    assert body(text, "!") == IOS_GOLDEN


_ADDR = r"(?P<addr>[0-9A-Fa-f:.]+)"
PF_LINE = [re.compile(p) for p in (
    r"#.*", r"", r"table <stormwatch_block> persist( \{ \\)?", rf"\t{_ADDR} \\", r"\}",
    r"block drop (in|out) quick( on [\w.]+)? from (<stormwatch_block>|any) to (any|<stormwatch_block>)",
    r"block drop in quick( on [\w.]+)? proto (tcp|udp) from any to any port \{ \d+( \d+)* \}",
)]
IOS_LINE = [re.compile(p) for p in (
    r"!.*", r"no (ip access-list extended|ipv6 access-list|object-group network) STORMWATCH-[A-Z0-9]+",
    r"(ip access-list extended|ipv6 access-list|object-group network) STORMWATCH-[A-Z0-9]+",
    r" description [^\n]{1,100}", r" remark [^\n]{1,100}", rf" host {_ADDR}",
    r" deny ip (object-group STORMWATCH-BLOCK any|any object-group STORMWATCH-BLOCK)",
    rf" deny ipv6 host {_ADDR} any", rf" deny ipv6 any host {_ADDR}", r" deny (tcp|udp) any any (eq \d+|range \d+ \d+)",
    r" permit (ip|ipv6) any any", r"interface [\w/.:-]+", r" ip access-group STORMWATCH-(IN|OUT) (in|out)",
    r" ipv6 traffic-filter STORMWATCH-(IN6|OUT6) (in|out)", r"end",
)]


def check_grammar(text: str, grammar: list[re.Pattern[str]]) -> int:
    """Every line matches one of ``grammar``, every address parses; returns the addresses seen."""
    n = 0
    for line in text.splitlines():
        m = next((p.fullmatch(line) for p in grammar if p.fullmatch(line)), None)
        assert m is not None, f"unexpected line {line!r}"
        for v in m.groupdict().values():
            if v is not None:
                ipaddress.ip_address(v)
                n += 1
    return n


@pytest.mark.parametrize("wan", [None, "em0"])
def test_pf_grammar(engine: DuckDBEngine, wan: str | None) -> None:
    assert check_grammar(firewall_rules(engine, target="pf", wan_iface=wan), PF_LINE) == 6


@pytest.mark.parametrize("wan", [None, "Gi0/1"])
def test_ios_grammar(engine: DuckDBEngine, wan: str | None) -> None:
    # 5 IPv4 hosts in the object group, the IPv6 one in each IPv6 list
    assert check_grammar(firewall_rules(engine, target="ios", wan_iface=wan), IOS_LINE) == 7
    with pytest.raises(AssertionError, match="unexpected line"):
        check_grammar(" permit ip any any\n do reload", IOS_LINE)


def test_empty_blocklist_still_valid(store: Store, tmp_path: Path) -> None:
    e = DuckDBEngine(store)
    assert "table <stormwatch_block> persist\n" in firewall_rules(e, target="pf")
    assert "object-group" not in firewall_rules(e, target="ios")
    r = in_netns(tmp_path, "nft", ["-c", "-f"], firewall_rules(e, target="nftables"))
    assert r.returncode == 0, r.stderr
