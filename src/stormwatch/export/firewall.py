"""Ready-to-apply perimeter rules: the MS06-040 advice plus a per-address block list.

What every target gets, in this order:

1. traffic from and to the blocklist's addresses (:mod:`stormwatch.export.blocklist`, entries not
   yet expired) is dropped: from, because they attack; to, because download servers hand out the
   next stage and an infected inside host would fetch it;
2. inbound TCP 135, 139 and 445 and UDP 135, 137 and 138 are dropped. The MS06-040 advice
   (ISC, 2006-08; Symantec DeepSight: "restrict access to TCP port 139 and 445 at the network
   perimeter") blocks 139 and 445; 135 (RPC endpoint mapper, MS03-026/Blaster) and the NetBIOS
   datagram and name ports go with them in Microsoft's own perimeter guidance. UDP 137 (name
   service) is blocked inbound only like the rest; nothing here touches outbound NetBIOS.

"Inbound" is traffic arriving on ``wan_iface`` when it is given (a router: the rules go in the
forward path and the firewall's own input); without it, every packet that reaches the host's
input or forward path (a host firewall, or a router that only routes between inside and the
Internet). Every target's rules live in their own table / chains / anchor / ACL, named
``stormwatch``, so applying them replaces only what a previous run applied.

Targets and how to apply them (each output's header says it too):

- ``nftables``: ``nft -f FILE`` (check with ``nft -c -f FILE``); a ``table inet stormwatch`` with
  two sets (``blocklist4``, ``blocklist6``) and base chains at the filter priority;
- ``iptables`` / ``ip6tables``: ``iptables-restore --noflush FILE`` (``--test`` to check); chains
  ``STORMWATCH-IN``/``-OUT`` jumped to from INPUT, FORWARD and OUTPUT; one rule per address
  (for tens of thousands use the nftables output, or an ipset);
- ``pf``: an anchor file, ``pfctl -a stormwatch -f FILE`` with ``anchor "stormwatch"`` in
  pf.conf; a persistent table ``<stormwatch_block>``;
- ``ios``: Cisco IOS configuration lines (``configure terminal``, then paste): an object-group
  ``STORMWATCH-BLOCK``, extended ACLs ``STORMWATCH-IN``/``-OUT`` and IPv6 ACLs; with ``wan_iface``
  the ``ip access-group`` lines too, else a remark says where they go.

Addresses come only from :func:`stormwatch.export.common.parse_address` (a hostile value is
dropped, never pasted); comments only from :func:`stormwatch.export.common.comment_text`; the
interface name must match ``[A-Za-z0-9_.:/-]{1,32}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from stormwatch.analytics.engine import Engine
from stormwatch.export.attackers import EXPIRE_DAYS, Attacker, Selection, active, select
from stormwatch.export.common import comment_text, iso_z

TARGETS: Final = ("nftables", "iptables", "ip6tables", "pf", "ios")
TCP_PORTS: Final = (135, 139, 445)
UDP_PORTS: Final = (135, 137, 138)
WHY_PORTS: Final = "MS06-040 advisory: block TCP 139 and 445 (and 135, UDP 135/137/138) at the perimeter"
WHY_BLOCK: Final = "stormwatch blocklist: attacking addresses seen by the sensors"
_IFACE: Final = re.compile(r"[A-Za-z0-9_.:/-]{1,32}")


@dataclass(frozen=True)
class Rules:
    """The inputs every renderer gets: the addresses by family and the header lines."""

    v4: tuple[Attacker, ...]
    v6: tuple[Attacker, ...]
    header: tuple[str, ...]
    wan: str | None


def firewall_rules(engine: Engine, *, target: str = "nftables", since: datetime | None = None,
                   until: datetime | None = None, expire_days: int = EXPIRE_DAYS, wan_iface: str | None = None,
                   local_nets: Sequence[str] | None = None, selection: Selection | None = None) -> str:
    """Perimeter rules for ``target`` (one of :data:`TARGETS`; module docstring)."""
    if target not in TARGETS:
        raise ValueError(f"unknown firewall target {target!r} (one of {', '.join(TARGETS)})")
    if wan_iface is not None and not _IFACE.fullmatch(wan_iface):
        raise ValueError(f"{wan_iface!r} is not an interface name")
    sel = selection if selection is not None else select(engine, since=since, until=until, expire_days=expire_days,
                                                         local_nets=local_nets)
    entries = active(sel)
    made = iso_z(sel.as_of) if sel.as_of else "no data"
    header = (
        f"stormwatch perimeter rules ({target}), from data up to {made}",
        WHY_PORTS + ".",
        f"{len(entries)} blocked addresses (exploit sources, probes, scanners, SMB sweeps, download servers);",
        f"each expires {expire_days} days after its last sighting: regenerate and re-apply daily.",
        "Inbound means " + (f"arriving on {wan_iface}." if wan_iface else "every packet to or through this host."),
    )
    rules = Rules(v4=tuple(a for a in entries if a.ip.version == 4), v6=tuple(a for a in entries if a.ip.version == 6),
                  header=header, wan=wan_iface)
    render: dict[str, Callable[[Rules], str]] = {
        "nftables": nftables, "iptables": lambda r: iptables(r, 4), "ip6tables": lambda r: iptables(r, 6),
        "pf": pf, "ios": ios}
    return render[target](rules)


def _comment(a: Attacker) -> str:
    return comment_text(f"{a.describe()} last {iso_z(a.last_seen)}", 100)


# -- nftables (nft(8): "SETS", "CHAINS"; wiki.nftables.org "Atomic rule replacement") -----------

def nftables(r: Rules) -> str:
    out = ["#!/usr/sbin/nft -f", *(f"# {h}" for h in r.header),
           "# Apply: nft -f FILE (replaces table inet stormwatch only). Check: nft -c -f FILE.",
           "",
           "# create-if-missing then delete: the definition below replaces the previous one atomically",
           "table inet stormwatch",
           "delete table inet stormwatch",
           "",
           "table inet stormwatch {"]
    for name, typ, addrs in (("blocklist4", "ipv4_addr", r.v4), ("blocklist6", "ipv6_addr", r.v6)):
        out += [f"\tset {name} {{", f"\t\ttype {typ}"]
        if addrs:
            out.append("\t\telements = {")
            out += [f"\t\t\t{a.address},  # {_comment(a)}" for a in addrs]
            out.append("\t\t}")
        out.append("\t}")
    iif = f'iifname "{r.wan}" ' if r.wan else ""
    oif = f'oifname "{r.wan}" ' if r.wan else ""
    tcp = ", ".join(map(str, TCP_PORTS))
    udp = ", ".join(map(str, UDP_PORTS))
    out += [
        "",
        "\tchain inbound {",
        f'\t\tip saddr @blocklist4 counter drop comment "{comment_text(WHY_BLOCK)}"',
        "\t\tip6 saddr @blocklist6 counter drop",
        f'\t\tmeta l4proto tcp th dport {{ {tcp} }} counter drop comment "{comment_text(WHY_PORTS)}"',
        f"\t\tmeta l4proto udp th dport {{ {udp} }} counter drop",
        "\t}",
        "\tchain outbound {",
        '\t\tip daddr @blocklist4 counter drop comment "stormwatch blocklist: no connections to attackers"',
        "\t\tip6 daddr @blocklist6 counter drop",
        "\t}",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\t{iif}jump inbound",
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f"\t\t{iif}jump inbound",
        f"\t\t{oif}jump outbound",
        "\t}",
        "\tchain output {",
        "\t\ttype filter hook output priority filter; policy accept;",
        "\t\tjump outbound",
        "\t}",
        "}",
    ]
    return "\n".join(out) + "\n"


# -- iptables-restore (iptables-restore(8), iptables-extensions(8): comment, multiport) ----------

def iptables(r: Rules, family: int) -> str:
    addrs = r.v4 if family == 4 else r.v6
    plen = 32 if family == 4 else 128
    tool = "iptables" if family == 4 else "ip6tables"
    iif = f"-i {r.wan} " if r.wan else ""
    oif = f"-o {r.wan} " if r.wan else ""
    out = [*(f"# {h}" for h in r.header),
           f"# IPv{family} only ({'ip6tables' if family == 4 else 'iptables'} output has the other family).",
           f"# Apply: {tool}-restore --noflush FILE (check: {tool}-restore --test --noflush FILE).",
           "# The chains are flushed and refilled on every apply; the jumps at the end are inserted each",
           f"# time: remove the previous ones first ({tool} -D INPUT -j STORMWATCH-IN, likewise FORWARD/OUTPUT).",
           "*filter",
           ":STORMWATCH-IN - [0:0]",
           ":STORMWATCH-OUT - [0:0]"]
    for a in addrs:
        out.append(f'-A STORMWATCH-IN -s {a.address}/{plen} -m comment --comment "{_comment(a)}" -j DROP')
    for a in addrs:
        out.append(f'-A STORMWATCH-OUT -d {a.address}/{plen} -m comment --comment "stormwatch blocklist" -j DROP')
    why = comment_text(WHY_PORTS)
    out += [
        f"-A STORMWATCH-IN -p tcp -m multiport --dports {','.join(map(str, TCP_PORTS))} "
        f'-m comment --comment "{why}" -j DROP',
        f"-A STORMWATCH-IN -p udp -m multiport --dports {','.join(map(str, UDP_PORTS))} "
        f'-m comment --comment "{why}" -j DROP',
        f"-I INPUT 1 {iif}-j STORMWATCH-IN",
        f"-I FORWARD 1 {iif}-j STORMWATCH-IN",
        f"-I FORWARD 2 {oif}-j STORMWATCH-OUT",
        "-I OUTPUT 1 -j STORMWATCH-OUT",
        "COMMIT",
    ]
    return "\n".join(out) + "\n"


# -- pf (pf.conf(5): TABLES, PACKET FILTERING, ANCHORS) ------------------------------------------

def pf(r: Rules) -> str:
    on = f" on {r.wan}" if r.wan else ""
    out = [*(f"# {h}" for h in r.header),
           '# Apply: pfctl -a stormwatch -f FILE, with  anchor "stormwatch"  in pf.conf (check: pfctl -n -a ...).',
           ""]
    addrs = (*r.v4, *r.v6)
    if addrs:
        out.append("table <stormwatch_block> persist { \\")
        out += [f"\t{a.address} \\" for a in addrs]
        out.append("}")
    else:
        out.append("table <stormwatch_block> persist")
    tcp = " ".join(map(str, TCP_PORTS))
    udp = " ".join(map(str, UDP_PORTS))
    out += [
        "",
        f"# {comment_text(WHY_BLOCK)}",
        f"block drop in quick{on} from <stormwatch_block> to any",
        f"block drop out quick{on} from any to <stormwatch_block>",
        f"# {comment_text(WHY_PORTS)}",
        f"block drop in quick{on} proto tcp from any to any port {{ {tcp} }}",
        f"block drop in quick{on} proto udp from any to any port {{ {udp} }}",
    ]
    return "\n".join(out) + "\n"


# -- Cisco IOS (IOS Security Configuration Guide: "IP Access Lists", "Object Groups for ACLs") ----

def ios(r: Rules) -> str:
    out = [*(f"! {h}" for h in r.header),
           "! Apply: configure terminal, then paste. Object groups for ACLs need IOS 12.4(20)T or later.",
           "no ip access-list extended STORMWATCH-IN",
           "no ip access-list extended STORMWATCH-OUT",
           "no ipv6 access-list STORMWATCH-IN6",
           "no ipv6 access-list STORMWATCH-OUT6"]
    if r.v4:
        out += ["no object-group network STORMWATCH-BLOCK", "object-group network STORMWATCH-BLOCK",
                f" description {comment_text(WHY_BLOCK, 100)}"]
        out += [f" host {a.address}" for a in r.v4]
    tcp = [f" deny tcp any any eq {p}" for p in TCP_PORTS]
    remark = f" remark {comment_text(WHY_PORTS, 100)}"
    out += ["ip access-list extended STORMWATCH-IN"]
    if r.v4:
        out += [f" remark {comment_text(WHY_BLOCK, 100)}", " deny ip object-group STORMWATCH-BLOCK any"]
    out += [remark, *tcp, " deny udp any any eq 135", " deny udp any any range 137 138", " permit ip any any",
            "ip access-list extended STORMWATCH-OUT"]
    if r.v4:
        out += [" deny ip any object-group STORMWATCH-BLOCK"]
    out += [" permit ip any any", "ipv6 access-list STORMWATCH-IN6"]
    out += [f" deny ipv6 host {a.address} any" for a in r.v6]
    out += [remark, *tcp, " deny udp any any eq 135", " deny udp any any range 137 138", " permit ipv6 any any",
            "ipv6 access-list STORMWATCH-OUT6"]
    out += [f" deny ipv6 any host {a.address}" for a in r.v6]
    out += [" permit ipv6 any any"]
    if r.wan:
        out += [f"interface {r.wan}", " ip access-group STORMWATCH-IN in", " ip access-group STORMWATCH-OUT out",
                " ipv6 traffic-filter STORMWATCH-IN6 in", " ipv6 traffic-filter STORMWATCH-OUT6 out"]
    else:
        out += ["! On the Internet-facing interface: ip access-group STORMWATCH-IN in, "
                "ip access-group STORMWATCH-OUT out,",
                "! ipv6 traffic-filter STORMWATCH-IN6 in, ipv6 traffic-filter STORMWATCH-OUT6 out"]
    out.append("end")
    return "\n".join(out) + "\n"
