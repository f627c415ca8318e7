"""The vulnerability knowledge base: which classic network-borne Windows flaw a detector finding
belongs to, which ports and services it reaches, which worms and bots used it, and what to do.

The entries are data (``threat/data/vulns.toml``, read with :mod:`tomllib`, TOML 1.0
https://toml.io/en/v1.0.0); this module only loads and checks them. An operator adds or replaces
entries with files of the same form (``--kb FILE``, ``$STORMWATCH_KB``); a later file replaces an
earlier entry with the same id as a whole. Every problem is a :class:`KBError` naming the file,
the entry and the field. The schema is written down in ``docs/kb.md``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from stormwatch.errors import DataFileError

T = TypeVar("T")

BUILTIN = "stormwatch:threat/data/vulns.toml"

# The names the detectors put in `exploit.attempt` events (docs/detectors.md). The detectors do
# not export them as constants; tests/test_threat_kb.py checks each one against the source of
# stormwatch.detect, so a renamed detector breaks the test rather than the knowledge base.
KNOWN_DETECTORS: frozenset[str] = frozenset({
    "srvsvc.path_overflow",
    "srvsvc.path_overflow_undecodable",
    "srvsvc.path_traversal",
    "srvsvc.name_canonicalize_fingerprint",
    "dssetup.upgrade_downlevel_overflow",
    "rpcss.remote_activation_overflow",
    "ms17_010.peeknmpipe_fid0",
    "eternalblue.nt_trans2_confusion",
    "eternalchampion.completed_trans_race",
    "eternalromance.writex_interleave",
    "eternalromance.displacement_overflow",
    "smb1.trans_type_confusion",
    "doublepulsar.ping",
    "doublepulsar.exec",
    "doublepulsar.kill",
    "doublepulsar.unknown",
})

SEVERITIES = ("critical", "important", "moderate", "low")  # Microsoft's bulletin ratings

BULLETIN_RE = re.compile(r"MS\d{2}-\d{3}")
CVE_RE = re.compile(r"CVE-\d{4}-\d{4,}")
PORT_RE = re.compile(r"(\d{1,5})/(tcp|udp)")
PATCH_RE = re.compile(r"KB\d{6,7}")
URL_RE = re.compile(r"https?://\S+")

REQUIRED = ("id", "cves", "name", "published", "ports", "services", "affected", "patch", "severity",
            "mitigations", "references")
OPTIONAL = ("exploits", "malware", "detectors")


class KBError(DataFileError):
    """A knowledge-base file that cannot be read, or an entry that breaks the schema."""

    kind = "entry"

    @property
    def entry(self) -> str | None:
        return self.item


@dataclass(frozen=True, slots=True)
class Severity:
    rating: str
    cvss: float | None = None  # CVSS v2 base score where known


@dataclass(frozen=True, slots=True)
class Mitigation:
    action: str
    reason: str


@dataclass(frozen=True, slots=True)
class Vuln:
    """One bulletin. ``source`` is the file it came from (the built-in file or an operator's)."""

    id: str
    cves: tuple[str, ...]
    name: str
    published: date
    ports: tuple[str, ...]
    services: tuple[str, ...]
    affected: tuple[str, ...]
    patch: str
    severity: Severity
    mitigations: tuple[Mitigation, ...]
    references: tuple[str, ...]
    exploits: tuple[str, ...] = ()
    malware: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ()
    source: str = BUILTIN

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "cves": list(self.cves), "name": self.name, "published": self.published.isoformat(),
            "ports": list(self.ports), "services": list(self.services), "affected": list(self.affected),
            "patch": self.patch, "severity": {"rating": self.severity.rating, "cvss": self.severity.cvss},
            "exploits": list(self.exploits), "malware": list(self.malware), "detectors": list(self.detectors),
            "mitigations": [{"action": m.action, "reason": m.reason} for m in self.mitigations],
            "references": list(self.references), "source": self.source,
        }


class KnowledgeBase(Mapping[str, Vuln]):
    """Entries by bulletin id, in the order first loaded; :meth:`find` also takes a CVE."""

    def __init__(self, vulns: Iterable[Vuln] = ()) -> None:
        self._by_id: dict[str, Vuln] = {}
        for v in vulns:
            self._by_id[v.id] = v

    def __getitem__(self, key: str) -> Vuln:
        return self._by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def find(self, ident: str) -> Vuln | None:
        """The entry for a bulletin (``MS06-040``) or one of its CVEs, case-insensitively."""
        key = ident.strip().upper()
        if key in self._by_id:
            return self._by_id[key]
        return next((v for v in self._by_id.values() if key in v.cves), None)

    def for_detector(self, detector: str) -> Vuln | None:
        return next((v for v in self._by_id.values() if detector in v.detectors), None)


_FROM_ENTRY: Any = object()  # `text()` reads the field from the entry itself


class _Entry:
    """Typed access to one raw entry; every failure names the file, entry and field."""

    def __init__(self, source: str, label: str, raw: Mapping[str, Any]) -> None:
        self.source, self.label, self.raw = source, label, raw

    def fail(self, field: str, detail: str) -> KBError:
        return KBError(self.source, self.label, field, detail)

    def text(self, field: str, pattern: re.Pattern[str] | None = None, value: Any = _FROM_ENTRY) -> str:
        v = self.raw.get(field) if value is _FROM_ENTRY else value
        if not isinstance(v, str) or not v.strip():
            raise self.fail(field, f"must be a non-empty string, got {_show(v)}")
        if pattern is not None and not pattern.fullmatch(v):
            raise self.fail(field, f"{v!r} does not match {pattern.pattern}")
        return v

    def texts(self, field: str, pattern: re.Pattern[str] | None = None, *, required: bool = True) -> tuple[str, ...]:
        v = self.raw.get(field, None if required else [])
        if not isinstance(v, list) or (required and not v):
            raise self.fail(field, f"must be a {'non-empty ' if required else ''}list of strings, got {_show(v)}")
        return tuple(self.text(f"{field}[{i}]", pattern, item) for i, item in enumerate(v))


def _show(v: Any) -> str:
    return "nothing" if v is None else f"{type(v).__name__} {v!r}"


def parse_entry(raw: Any, source: str, index: int) -> Vuln:
    """One ``[[vuln]]`` table as a :class:`Vuln`, or :class:`KBError`."""
    label = f"#{index + 1}"
    if not isinstance(raw, dict):
        raise KBError(source, label, None, f"must be a table, got {_show(raw)}")
    if isinstance(raw.get("id"), str):
        label = f"{raw['id']} (#{index + 1})"
    e = _Entry(source, label, raw)
    for field in REQUIRED:
        if field not in raw:
            raise e.fail(field, "is required")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:  # a misspelt optional field would otherwise vanish without a word
        raise e.fail(unknown[0], f"is not a known field (known: {', '.join(REQUIRED + OPTIONAL)})")
    published = raw["published"]
    if not isinstance(published, date) or isinstance(published, datetime):
        raise e.fail("published", f"must be a TOML date such as 2006-08-08, got {_show(published)}")
    ports = e.texts("ports", PORT_RE)
    for i, p in enumerate(ports):
        if not 0 < int(p.split("/")[0]) <= 65535:
            raise e.fail(f"ports[{i}]", f"{p!r} is not a port number 1-65535")
    detectors = e.texts("detectors", required=False)
    for i, d in enumerate(detectors):
        if d not in KNOWN_DETECTORS:
            known = ", ".join(sorted(KNOWN_DETECTORS))
            raise e.fail(f"detectors[{i}]", f"{d!r} is not a stormwatch detector (known: {known})")
    return Vuln(
        id=e.text("id", BULLETIN_RE), cves=e.texts("cves", CVE_RE), name=e.text("name"), published=published,
        ports=ports, services=e.texts("services"), affected=e.texts("affected"), patch=e.text("patch", PATCH_RE),
        severity=_severity(e), mitigations=_mitigations(e), references=e.texts("references", URL_RE),
        exploits=e.texts("exploits", required=False), malware=e.texts("malware", required=False),
        detectors=detectors, source=source)


def _severity(e: _Entry) -> Severity:
    raw = e.raw["severity"]
    if not isinstance(raw, dict):
        raise e.fail("severity", f"must be a table {{ rating = ..., cvss = ... }}, got {_show(raw)}")
    extra = sorted(set(raw) - {"rating", "cvss"})
    if extra:
        raise e.fail(f"severity.{extra[0]}", "is not a known field (known: rating, cvss)")
    rating = raw.get("rating")
    if rating not in SEVERITIES:
        raise e.fail("severity.rating", f"must be one of {', '.join(SEVERITIES)}, got {_show(rating)}")
    cvss = raw.get("cvss")
    if cvss is not None and (isinstance(cvss, bool) or not isinstance(cvss, int | float) or not 0 <= cvss <= 10):
        raise e.fail("severity.cvss", f"must be a number from 0 to 10, got {_show(cvss)}")
    return Severity(rating, None if cvss is None else float(cvss))


def _mitigations(e: _Entry) -> tuple[Mitigation, ...]:
    raw = e.raw["mitigations"]
    if not isinstance(raw, list) or not raw:
        raise e.fail("mitigations", f"must be a non-empty list of {{ action, reason }} tables, got {_show(raw)}")
    out = []
    for i, m in enumerate(raw):
        field = f"mitigations[{i}]"
        if not isinstance(m, dict):
            raise e.fail(field, f"must be a table with action and reason, got {_show(m)}")
        extra = sorted(set(m) - {"action", "reason"})
        if extra:
            raise e.fail(f"{field}.{extra[0]}", "is not a known field (known: action, reason)")
        out.append(Mitigation(e.text(f"{field}.action", value=m.get("action")),
                              e.text(f"{field}.reason", value=m.get("reason"))))
    return tuple(out)


def parse_document(doc: Mapping[str, Any], source: str) -> list[Vuln]:
    """Every ``[[vuln]]`` entry of a parsed TOML document; an id given twice in one file is an error."""
    extra = sorted(set(doc) - {"vuln"})
    if extra:
        raise KBError(source, None, extra[0], "unknown top-level key (entries are [[vuln]] tables)")
    return parse_entries(doc.get("vuln"), "vuln", source, parse_entry, lambda v: (v.id, "id"), KBError)


def parse_entries(raw: Any, table: str, source: str, parse: Callable[[Any, str, int], T],
                  ident: Callable[[T], tuple[str, str]], error: type[DataFileError]) -> list[T]:
    """The ``[[table]]`` entries of a parsed TOML file, each parsed with ``parse``; none at all,
    or one name (``ident``: the name and the field that holds it) given twice, is an ``error``."""
    if not isinstance(raw, list) or not raw:
        raise error(source, None, table, f"no [[{table}]] entries")
    items = [parse(r, source, i) for i, r in enumerate(raw)]
    seen: set[str] = set()
    for item in items:
        name, field = ident(item)
        if name in seen:
            raise error(source, name, field, "appears twice in this file")
        seen.add(name)
    return items


def parse_text(text: str, source: str) -> list[Vuln]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KBError(source, None, None, f"not valid TOML: {exc}") from exc
    return parse_document(doc, source)


def load_file(path: str | Path) -> list[Vuln]:
    """The entries of an operator's file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KBError(str(path), None, None, f"cannot read: {exc}") from exc
    return parse_text(text, str(path))


def load_builtin() -> list[Vuln]:
    text = resources.files("stormwatch.threat").joinpath("data/vulns.toml").read_text(encoding="utf-8")
    return parse_text(text, BUILTIN)


def load_kb(extra: Sequence[str | Path] = ()) -> KnowledgeBase:
    """The built-in entries with each file in ``extra`` merged over them, in order: an entry with
    the id of an earlier one replaces it whole (a partial override would silently keep stale
    mitigations), a new id is added at the end."""
    vulns = load_builtin()
    for path in extra:
        vulns += load_file(path)
    return KnowledgeBase(vulns)
