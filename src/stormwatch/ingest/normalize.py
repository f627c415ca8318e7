"""Shared normalisation of the values every format spells its own way: protocols, addresses,
ports, TCP flags, actions and flow outcomes. Readers call these; none re-implements them."""

from __future__ import annotations

import functools
import ipaddress
from datetime import UTC, datetime

from stormwatch.ingest.base import RecordError

# IANA protocol numbers to the names used in events (`proto`).
PROTO_NAMES: dict[int, str] = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp",
                               51: "ah", 58: "icmp6", 132: "sctp"}
_PROTO_ALIASES = {"icmpv6": "icmp6", "ipv6-icmp": "icmp6", "icmp6": "icmp6", "tcp": "tcp", "udp": "udp",
                  "icmp": "icmp", "igmp": "igmp", "gre": "gre", "esp": "esp", "ah": "ah", "sctp": "sctp"}

FLAG_ORDER = "CEUAPRSF"  # CWR ECE URG ACK PSH RST SYN FIN
_FLAG_WORDS = {"CWR": "C", "ECE": "E", "URG": "U", "ACK": "A", "PSH": "P", "RST": "R", "SYN": "S", "FIN": "F"}

ACTIONS = ("accept", "drop", "reject", "alert", "log")
_ACTION_ALIASES = {"allow": "accept", "allowed": "accept", "accept": "accept", "pass": "accept",
                   "permit": "accept", "permitted": "accept", "built": "accept",
                   "drop": "drop", "deny": "drop", "denied": "drop", "block": "drop", "blocked": "drop",
                   "reject": "reject", "rejected": "reject", "alert": "alert", "log": "log"}


def proto_name(value: str | int) -> str:
    """``TCP``/``6``/``tcp`` → ``tcp``; an unknown name is lower-cased, an unknown number kept."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        n = int(value)
        return PROTO_NAMES.get(n, str(n))
    v = value.strip().lower()
    if not v:
        raise RecordError("empty protocol")
    return _PROTO_ALIASES.get(v, v)


@functools.lru_cache(maxsize=1 << 16)  # scanners and targets repeat: parsing dominates otherwise
def canonical_ip(value: str) -> str:
    """Canonical text of an IPv4/IPv6 address (IPv6 compressed, zone id dropped); RecordError if
    it is not an address."""
    try:
        return ipaddress.ip_address(value.split("%", 1)[0]).compressed
    except ValueError:
        raise RecordError(f"not an IP address: {value[:64]!r}") from None


def port(value: str | int | None) -> int | None:
    """A port number, or None for empty/'-'; RecordError outside 0-65535."""
    if value is None or value in ("", "-"):
        return None
    try:
        n = int(value)
    except ValueError:
        raise RecordError(f"not a port: {str(value)[:32]!r}") from None
    if not 0 <= n <= 65535:
        raise RecordError(f"port out of range: {n}")
    return n


def flags_from_words(words: list[str] | tuple[str, ...] | set[str]) -> str:
    """iptables-style flag words (``SYN``, ``ACK`` …) → letters in CEUAPRSF order."""
    got = {_FLAG_WORDS[w] for w in words if w in _FLAG_WORDS}
    return "".join(c for c in FLAG_ORDER if c in got)


def flags_from_letters(letters: str) -> str:
    """Letters in any order/case (``SA``, ``as``, ``S.`` from tcpdump) → CEUAPRSF order; tcpdump's
    ``.`` means ACK, ``W`` CWR."""
    s = letters.upper().replace(".", "A").replace("W", "C")
    return "".join(c for c in FLAG_ORDER if c in s)


def action(value: str) -> str:
    """Normalise a device's verdict word to one of :data:`ACTIONS`."""
    v = value.strip().lower()
    try:
        return _ACTION_ALIASES[v]
    except KeyError:
        raise RecordError(f"unknown action: {value[:32]!r}") from None


# Timestamps outside these bounds are taken as corrupt records, not as events.
MIN_MICROS = 0  # 1970-01-01
MAX_MICROS = 7_258_118_400 * 1_000_000  # 2200-01-01


def checked_micros(us: int, text: object) -> int:
    """``us`` if it lies within [MIN_MICROS, MAX_MICROS), else RecordError naming ``text``."""
    if not MIN_MICROS <= us < MAX_MICROS:
        raise RecordError(f"timestamp out of range: {str(text)[:40]!r}")
    return us


def epoch_micros(seconds: float | str) -> int:
    """Epoch seconds (float or text) → epoch microseconds."""
    try:
        value = float(seconds)
        return checked_micros(round(value * 1_000_000), seconds)
    except (ValueError, OverflowError):
        raise RecordError(f"not a timestamp: {str(seconds)[:40]!r}") from None


def iso_micros(text: str) -> int:
    """ISO 8601 / RFC 3339 timestamp (with offset or ``Z``; naive = UTC) → epoch microseconds."""
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(f"not a timestamp: {text[:40]!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    try:
        return checked_micros(int(ts.timestamp()) * 1_000_000 + ts.microsecond, text)
    except (OverflowError, ValueError):
        raise RecordError(f"timestamp out of range: {text[:40]!r}") from None
