"""Exports: what stormwatch knows, in the formats firewalls, SIEMs and threat-intelligence
platforms take in (docs/exports.md).

- :func:`stormwatch.export.stix.stix_bundle`: STIX 2.1 bundle (indicators, sightings,
  vulnerabilities, courses of action, malware families);
- :func:`stormwatch.export.misp.misp_event`: MISP core-format event;
- :func:`stormwatch.export.blocklist.blocklist`: plain or CSV blocklist with expiry;
- :func:`stormwatch.export.firewall.firewall_rules`: nftables, iptables, pf and Cisco IOS rules.

All of them read one selection of attackers and payloads, :func:`stormwatch.export.attackers.select`.
"""

from stormwatch.export.attackers import Attacker, PayloadHash, Selection, select
from stormwatch.export.blocklist import blocklist
from stormwatch.export.firewall import firewall_rules
from stormwatch.export.misp import misp_event
from stormwatch.export.stix import stix_bundle

__all__ = ["Attacker", "PayloadHash", "Selection", "blocklist", "firewall_rules", "misp_event", "select",
           "stix_bundle"]
