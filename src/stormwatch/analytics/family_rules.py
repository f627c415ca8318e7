"""Family rules: which bot family a campaign is, from its fingerprint or its payload bytes.

Two kinds of rules, both data files that operators extend (``--rules FILE``, repeatable):

- **fingerprint rules** (TOML, the built-in ones in ``analytics/data/families.toml``): a family
  matches a campaign when every condition holds on the campaign's *consensus* fingerprint (the
  value each feature has in more than half of its attacks, see
  :mod:`stormwatch.analytics.clustering`)::

      [[family]]
      name = "Mocbot"                    # the campaign's name
      aka = ["Wargbot"]                  # other names, shown
      reason = "why this rule says so"   # shown with the campaign
      [family.match]                     # feature = value, or = [values] (any of them)
      vuln = "MS06-040"
      service = ["netbios-ssn"]
      [family.pattern]                   # feature = regular expression (Python re, full match)
      workstation = "A4-9\\d+"

- **YARA rules** (``*.yar``/``*.yara``, the built-in ones in ``analytics/data/families.yar``),
  matched with yara-python over the exploit payloads the sensor kept (by SHA-256 under the
  payload directory); a rule names its family in ``meta: family = "..."`` (else the rule's name
  is the family). A campaign is that family when more than half of its attacks whose payload is
  on disk match.

Rules are tried in order, operators' files first (so a local rule overrides a built-in one), and
fingerprint rules before YARA rules; the first that matches names the campaign. Matching is a
pure function of the consensus and the payload bytes: no rule can run code.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stormwatch.analytics.fingerprint import FEATURE_INDEX
from stormwatch.errors import InputError


@dataclass(frozen=True)
class FamilyRule:
    name: str
    aka: tuple[str, ...] = ()
    reason: str = ""
    match: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pattern: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    source: str = ""

    def matches(self, consensus: Mapping[str, str]) -> bool:
        for name, allowed in self.match.items():
            if consensus.get(name) not in allowed:
                return False
        for name, rx in self.pattern.items():
            value = consensus.get(name)
            if value is None or not rx.fullmatch(value):
                return False
        return True


@dataclass
class RuleSet:
    """Fingerprint rules and compiled YARA rules (``yara`` is a ``yara.Rules`` or None)."""

    families: list[FamilyRule] = field(default_factory=list)
    yara: Any = None
    yara_sources: list[str] = field(default_factory=list)

    def family_of(self, consensus: Mapping[str, str]) -> FamilyRule | None:
        return next((r for r in self.families if r.matches(consensus)), None)

    def yara_families(self, data: bytes) -> list[str]:
        """Families whose YARA rules match ``data``, in rule order."""
        if self.yara is None or not data:
            return []
        return [str(m.meta.get("family") or m.rule) for m in self.yara.match(data=data, timeout=10)]


def _values(name: str, value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int):
            out.append(str(item))
        else:
            raise InputError(f"{where}: match.{name}: expected text, a number or a list of them")
    return tuple(out)


def parse_toml(text: str, source: str) -> list[FamilyRule]:
    """The fingerprint rules of one TOML document (:class:`InputError` when it is not valid)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML: {exc}") from exc
    rules = []
    for i, entry in enumerate(doc.get("family", [])):
        where = f"{source}: family #{i + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise InputError(f"{where}: a family needs a name")
        match, pattern = entry.get("match", {}), entry.get("pattern", {})
        if not isinstance(match, dict) or not isinstance(pattern, dict):
            raise InputError(f"{where}: match and pattern are tables")
        unknown = sorted((set(match) | set(pattern)) - set(FEATURE_INDEX))
        if unknown:
            raise InputError(f"{where}: unknown features {', '.join(unknown)}")
        if not match and not pattern:
            raise InputError(f"{where}: a family rule needs at least one condition")
        try:
            compiled = {k: re.compile(str(v)) for k, v in pattern.items()}
        except re.error as exc:
            raise InputError(f"{where}: bad pattern: {exc}") from exc
        aka = entry.get("aka", [])
        rules.append(FamilyRule(entry["name"], tuple(str(a) for a in aka) if isinstance(aka, list) else (str(aka),),
                                str(entry.get("reason", "")),
                                {k: _values(k, v, where) for k, v in match.items()}, compiled, source))
    return rules


def _builtin(name: str) -> tuple[str, str]:
    res = resources.files("stormwatch.analytics").joinpath("data", name)
    return res.read_text(encoding="utf-8"), f"builtin:{name}"


def load_rules(paths: Iterable[str | Path] = (), *, builtin: bool = True) -> RuleSet:
    """Operators' rule files (``.toml`` fingerprint rules, ``.yar``/``.yara`` YARA rules), then the
    built-in ones unless ``builtin`` is False."""
    tomls: list[tuple[str, str]] = []
    yaras: list[tuple[str, str]] = []
    for p in paths:
        path = Path(p)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read rule file {path}: {exc}") from exc
        if path.suffix.lower() in (".yar", ".yara"):
            yaras.append((text, str(path)))
        elif path.suffix.lower() == ".toml":
            tomls.append((text, str(path)))
        else:
            raise InputError(f"{path}: rule files are .toml (fingerprint rules) or .yar/.yara (YARA rules)")
    if builtin:
        tomls.append(_builtin("families.toml"))
        yaras.append(_builtin("families.yar"))
    rules = RuleSet([r for text, src in tomls for r in parse_toml(text, src)])
    if yaras:
        rules.yara = compile_yara(yaras)
        rules.yara_sources = [src for _, src in yaras]
    return rules


def compile_yara(sources: Sequence[tuple[str, str]]) -> Any:
    """Compile YARA sources (text, where) into one ``yara.Rules``, one namespace per source so
    two files may reuse a rule name."""
    import yara  # type: ignore[import-not-found]

    try:
        return yara.compile(sources={f"ns{i}": text for i, (text, _) in enumerate(sources)})
    except yara.Error as exc:
        raise InputError(f"YARA rules ({', '.join(w for _, w in sources)}) do not compile: {exc}") from exc
