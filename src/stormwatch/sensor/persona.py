"""Who the honeypot pretends to be: OS strings, names, GUID, MAC — per installation.

Dionaea ships one fixed server GUID, NTLM challenge and host name, which makes every Dionaea
trivially fingerprintable. A stormwatch persona starts from an OS template (the strings a real
Windows 2000/XP/2003 sends) and draws everything identifying at random once per installation;
:func:`load_or_create` keeps it in a state file so that one sensor stays the same across restarts
(as a real host would) while two installations never share values. The NTLM challenge is not part
of the persona at all: the session draws a fresh one for every login.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from stormwatch.errors import StormwatchError


@dataclass(frozen=True)
class OsTemplate:
    """What a given Windows release says about itself over SMB."""

    native_os: str
    native_lanman: str
    major: int
    minor: int
    build: int
    smb2: bool  # offers SMB2 when a client asks for it


# NativeOS / NativeLanMan as the real systems send them (impacket's smbserver and nmap's
# smb-os-discovery read these fields); Windows 2000 and XP speak SMB1 only.
TEMPLATES: dict[str, OsTemplate] = {
    "win2000": OsTemplate("Windows 5.0", "Windows 2000 LAN Manager", 5, 0, 2195, smb2=False),
    "winxp": OsTemplate("Windows 5.1", "Windows 2000 LAN Manager", 5, 1, 2600, smb2=False),
    "win2003": OsTemplate("Windows Server 2003 3790 Service Pack 2", "Windows Server 2003 5.2", 5, 2, 3790,
                          smb2=False),
    "win7": OsTemplate("Windows 7 Professional 7601 Service Pack 1", "Windows 7 Professional 6.1", 6, 1, 7601,
                       smb2=True),
}

_NAME_WORDS = ("FILESRV", "ACCT", "OFFICE", "PC", "WKS", "SALES", "HR", "LAB", "DESK", "NB", "SRV", "PRINT")
_DOMAINS = ("WORKGROUP", "OFFICE", "CORP", "HOME", "MSHOME", "LAN", "ACME", "FINANCE")
_OUIS = ("000c29", "001422", "0019b9", "00508b", "000d56", "0011d8", "001372", "00e018")
_DECOY_SHARES = ("public", "scans", "data", "shared", "docs", "backup", "users")


@dataclass(frozen=True)
class Persona:
    """One sensor's identity. ``template`` names an entry of :data:`TEMPLATES`."""

    template: str
    host_name: str  # NetBIOS name, upper case, at most 15 characters
    domain: str  # workgroup / NetBIOS domain
    server_guid: str  # 32 hex digits
    mac: str  # 12 hex digits
    decoy_share: str  # the disk share offered besides IPC$
    boot_offset: int  # seconds the host has been "up" when the sensor starts (for SMB2 boot time)

    @property
    def os(self) -> OsTemplate:
        return TEMPLATES[self.template]

    @property
    def guid_bytes(self) -> bytes:
        return bytes.fromhex(self.server_guid)

    @property
    def mac_bytes(self) -> bytes:
        return bytes.fromhex(self.mac)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate(template: str = "win2000", rng: random.Random | None = None) -> Persona:
    """A fresh persona of ``template`` with random names, GUID and MAC."""
    if template not in TEMPLATES:
        raise StormwatchError(f"unknown persona template {template!r}; known: {', '.join(TEMPLATES)}")
    r = rng or random.SystemRandom()
    host = f"{r.choice(_NAME_WORDS)}{r.randint(1, 99):02d}"
    if r.random() < 0.5:
        host += "-" + "".join(r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(3))
    return Persona(
        template=template,
        host_name=host[:15],
        domain=r.choice(_DOMAINS),
        server_guid="".join(f"{r.randrange(256):02x}" for _ in range(16)),
        mac=r.choice(_OUIS) + "".join(f"{r.randrange(256):02x}" for _ in range(3)),
        decoy_share=r.choice(_DECOY_SHARES),
        boot_offset=r.randint(3_600, 40 * 86_400),
    )


def load_or_create(path: Path, template: str = "win2000", overrides: dict[str, Any] | None = None) -> Persona:
    """The persona kept in ``path`` (created with random values on first use); ``overrides``
    (from the sensor config) replace fields, e.g. a chosen host name."""
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            persona = Persona(**data)
        except (ValueError, TypeError) as exc:
            raise StormwatchError(f"{path}: not a persona state file: {exc}") from exc
        if persona.template != template and "template" not in (overrides or {}):
            persona = replace(persona, template=template)
    else:
        persona = generate(template)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(persona.as_dict(), indent=1), encoding="utf-8")
    if overrides:
        unknown = set(overrides) - set(Persona.__dataclass_fields__)
        if unknown:
            raise StormwatchError(f"unknown persona settings: {', '.join(sorted(unknown))}")
        persona = replace(persona, **overrides)
    if persona.template not in TEMPLATES:
        raise StormwatchError(f"unknown persona template {persona.template!r}; known: {', '.join(TEMPLATES)}")
    return persona
