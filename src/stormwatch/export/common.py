"""What every export format shares: stable identifiers, timestamps, and the rules that keep
attacker-controlled text and malformed addresses out of rules, patterns and comments.

- Identifiers are UUIDv5 (RFC 9562 5.5) of a stable key (``producer|kind|value``) in
  :data:`NAMESPACE`, so exporting the same data twice gives the same ids (STIX objects, MISP
  uuids) and two installations with different producer names never share an id.
- Addresses reach an export only through :func:`parse_address`: text that ``ipaddress`` does not
  accept, and addresses no perimeter rule should name (unspecified, multicast, broadcast,
  reserved, the host's own loopback address), are dropped, never pasted.
- Free text that ends up in a rule comment or a blocklist comment goes through :func:`comment_text`
  (printable ASCII without quotes, backslashes or comment markers, cut to a length): the
  formats' own quoting rules differ (nft, iptables-restore, pf, IOS, CSV) and a narrow alphabet is
  safe in all of them.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import UTC, datetime
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A fixed namespace for stormwatch's export ids (itself the UUIDv5 of a URL-like name).
NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:stormwatch:export")

# Never name these in a block rule: blocking them cuts the firewall off from itself or is
# meaningless as a source. Other loopback addresses stay: the demo and replayed captures stand
# Internet attackers in as 127.x addresses (see stormwatch.analytics.scanners).
_NEVER: Final = (
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("127.0.0.1/32"),
    ipaddress.ip_network("240.0.0.0/4"),  # reserved, with 255.255.255.255 (limited broadcast)
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("::1/128"),
)

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_MD5: Final = re.compile(r"[0-9a-f]{32}")
BULLETIN: Final = re.compile(r"MS\d{2}-\d{3}")
CVE: Final = re.compile(r"CVE-\d{4}-\d{4,}")
_COMMENT_BAD: Final = re.compile(r"[^A-Za-z0-9 .,:;/+()=_\-]")


def stable_uuid(*parts: str) -> str:
    """The UUIDv5 of ``parts`` joined by ``|`` in :data:`NAMESPACE`, as text."""
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def parse_address(text: object) -> IPAddress | None:
    """``text`` as an address when it is one that a block rule may name, else None."""
    if not isinstance(text, str) or not text or len(text) > 45:
        return None
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified or any(ip.version == n.version and ip in n for n in _NEVER):
        return None
    return ip


def sha256_hex(text: object) -> str | None:
    v = text.strip().lower() if isinstance(text, str) else ""
    return v if _SHA256.fullmatch(v) else None


def md5_hex(text: object) -> str | None:
    v = text.strip().lower() if isinstance(text, str) else ""
    return v if _MD5.fullmatch(v) else None


def bulletin(text: object) -> str | None:
    """A Microsoft bulletin id (``MS06-040``) or None: detector output is data too."""
    v = text.strip().upper() if isinstance(text, str) else ""
    return v if BULLETIN.fullmatch(v) else None


def cve(text: object) -> str | None:
    v = text.strip().upper() if isinstance(text, str) else ""
    return v if CVE.fullmatch(v) else None


def comment_text(text: str, limit: int = 120) -> str:
    """``text`` reduced to an alphabet every rule and list format takes inside a comment."""
    return _COMMENT_BAD.sub("_", text)[:limit]


def utc(ts: datetime) -> datetime:
    """A naive UTC datetime (the store's) as an aware one."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def iso_z(ts: datetime) -> str:
    """RFC 3339 UTC with seconds, ``2006-08-14T23:59:10Z`` (blocklists, rule comments)."""
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(ts: datetime) -> int:
    return int(utc(ts).timestamp())
