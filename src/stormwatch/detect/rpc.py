"""Exploit detectors over DCE/RPC requests: MS06-040, MS08-067, MS04-011, MS03-026.

One entry point, :func:`detect_rpc_call`, takes a reassembled request (interface, opnum, stub) and
returns the findings. Every decision is made from the decoded arguments with the thresholds of
:mod:`stormwatch.detect.rules`, and reports the values that decided it as evidence.

MS06-040 apart from MS08-067 — both reach srvsvc NetprPathCanonicalize (opnum 31), which is why
Dionaea, Nepenthes and Amun label both MS08-067:
- MS06-040 (CVE-2006-3439) overflows NetpwPathCanonicalize's copy of PathName/Prefix: the path is
  longer than MAX_PATH and carries no ``\\..\\`` (Metasploit's ms06_040_netapi: 355-533 units);
- MS08-067 (CVE-2008-4250) abuses the traversal collapse in the same function: the path contains
  ``\\..\\`` and is shorter (Metasploit: Prefix ``\\``, PathType 0x1001, ~310 units); a short
  traversal path is the vulnerability check, a probe.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from stormwatch.detect import rules
from stormwatch.detect.finding import Finding
from stormwatch.protocols.dcerpc.calls import (
    NameCanonicalizeRequest,
    PathCanonicalizeRequest,
    PathCompareRequest,
    UpgradeDownlevelServerRequest,
    decode_request,
)
from stormwatch.protocols.dcerpc.ndr import NdrString
from stormwatch.protocols.dcerpc.rpcss import RemoteActivationRequest
from stormwatch.protocols.errors import MalformedMessage

_TRAVERSALS = ("\\..\\", "/../", "\\../", "/..\\")


def detect_rpc_call(interface: str | uuid.UUID, opnum: int, stub: bytes, little_endian: bool = True) -> list[Finding]:
    """Findings for one request. A stub the decoder rejects is judged on what is known (an
    undecodable opnum-31 stub far beyond any legitimate size is still an MS06-040/MS08-067 shape)."""
    try:
        call = decode_request(interface, opnum, stub, little_endian)
    except MalformedMessage as exc:
        return _undecodable(str(interface).lower(), opnum, stub, exc)
    if isinstance(call, PathCanonicalizeRequest):
        return _path_canonicalize(call)
    if isinstance(call, PathCompareRequest):
        return _path_compare(call)
    if isinstance(call, NameCanonicalizeRequest):
        return _name_canonicalize(call)
    if isinstance(call, UpgradeDownlevelServerRequest):
        return _upgrade_downlevel(call)
    if isinstance(call, RemoteActivationRequest):
        return _remote_activation(call)
    return []


def _units(s: NdrString | None) -> int:
    return 0 if s is None else len(s.raw) // max(s.unit, 1)


def _non_text(s: NdrString) -> int:
    """UTF-16 units outside printable Latin-1 (shellcode, return addresses)."""
    raw = s.raw
    u = np.frombuffer(raw, dtype="<u2", count=len(raw) // 2)
    return int(np.count_nonzero((u != 0) & ((u < 0x20) | ((u >= 0x7F) & (u < 0xA0)) | (u > 0xFF))))


def _traversal(s: NdrString) -> bool:
    text = s.text
    return any(t in text for t in _TRAVERSALS)


def _string_evidence(prefix: str, s: NdrString) -> dict[str, Any]:
    return {f"{prefix}_units": _units(s), f"{prefix}_max_count": s.max_count,
            f"{prefix}_non_text_units": _non_text(s)}


def _path_canonicalize(call: PathCanonicalizeRequest) -> list[Finding]:
    path, prefix = call.path_name, call.prefix
    ev: dict[str, Any] = {"opnum": 31, "operation": "NetprPathCanonicalize", **_string_evidence("path", path),
                          "prefix_units": _units(prefix), "outbuf_len": call.outbuf_len,
                          "path_type": call.path_type, "flags": call.flags}
    if _traversal(path) or _traversal(prefix):
        ev["traversal"] = True
        return [_ms08_067(ev, path)]
    longest = max(_units(path), _units(prefix))
    if longest > rules.MAX_PATH.value:
        ev["traversal"] = False
        ev["max_path"] = rules.MAX_PATH.value
        carrier = path if _units(path) >= _units(prefix) else prefix
        return [_ms06_040(ev, carrier)]
    return []


def _path_compare(call: PathCompareRequest) -> list[Finding]:
    p1, p2 = call.path_name1, call.path_name2
    ev: dict[str, Any] = {"opnum": 32, "operation": "NetprPathCompare", **_string_evidence("path1", p1),
                          **_string_evidence("path2", p2), "path_type": call.path_type}
    if _traversal(p1) or _traversal(p2):
        ev["traversal"] = True
        carrier = p1 if _units(p1) >= _units(p2) else p2
        return [_ms08_067(ev, carrier)]
    if max(_units(p1), _units(p2)) > rules.MAX_PATH.value:
        ev["max_path"] = rules.MAX_PATH.value
        return [_ms06_040(ev, p1 if _units(p1) >= _units(p2) else p2)]
    return []


def _name_canonicalize(call: NameCanonicalizeRequest) -> list[Finding]:
    name = call.name
    ev: dict[str, Any] = {"opnum": 34, "operation": "NetprNameCanonicalize", **_string_evidence("name", name),
                          "outbuf_len": call.outbuf_len, "name_type": call.name_type}
    if _units(name) > rules.MAX_PATH.value:
        ev["max_path"] = rules.MAX_PATH.value
        return [_ms06_040(ev, name)]
    if call.outbuf_len > rules.FINGERPRINT_OUTBUF.value:
        ev["fingerprint_outbuf_len"] = rules.FINGERPRINT_OUTBUF.value
        return [Finding("MS08-067", "CVE-2008-4250", "probe", "srvsvc.name_canonicalize_fingerprint", 0.6, ev)]
    return []


def _ms06_040(ev: dict[str, Any], carrier: NdrString) -> Finding:
    shellcode = _non_text(carrier) >= rules.SHELLCODE_BYTES.value
    ev["shellcode_like"] = shellcode
    return Finding("MS06-040", "CVE-2006-3439", "exploit", "srvsvc.path_overflow",
                   0.95 if shellcode else 0.75, ev, carrier.raw)


def _ms08_067(ev: dict[str, Any], carrier: NdrString) -> Finding:
    units = _units(carrier)
    shellcode = _non_text(carrier) >= rules.SHELLCODE_BYTES.value
    ev["shellcode_like"] = shellcode
    if units <= rules.PROBE_MAX_UNITS.value and not shellcode:
        ev["probe_max_units"] = rules.PROBE_MAX_UNITS.value
        return Finding("MS08-067", "CVE-2008-4250", "probe", "srvsvc.path_traversal", 0.8, ev)
    return Finding("MS08-067", "CVE-2008-4250", "exploit", "srvsvc.path_traversal",
                   0.95 if shellcode else 0.8, ev, carrier.raw)


def _upgrade_downlevel(call: UpgradeDownlevelServerRequest) -> list[Finding]:
    args = {"dns_domain_name": call.dns_domain_name, "site_name": call.site_name,
            "ds_database_path": call.ds_database_path, "ds_log_path": call.ds_log_path,
            "system_volume_root_path": call.system_volume_root_path,
            "parent_dns_domain_name": call.parent_dns_domain_name, "parent_server": call.parent_server,
            "account": call.account}
    sizes = {k: _units(v) for k, v in args.items() if v is not None}
    name, units = max(sizes.items(), key=lambda kv: kv[1])
    limit = rules.DNS_NAME_MAX.value if name == "dns_domain_name" else rules.MAX_PATH.value
    if units <= limit:
        return []
    carrier = args[name]
    assert carrier is not None
    ev = {"opnum": 9, "operation": "DsRolerUpgradeDownlevelServer", "argument": name, "units": units,
          "limit": limit, "non_text_units": _non_text(carrier)}
    return [Finding("MS04-011", "CVE-2003-0533", "exploit", "dssetup.upgrade_downlevel_overflow",
                    0.95, ev, carrier.raw)]


def _remote_activation(call: RemoteActivationRequest) -> list[Finding]:
    name = call.object_name
    if name is None:
        return []
    text = name.text
    host = text[2:].split("\\", 1)[0] if text.startswith("\\\\") else ""
    ev = {"opnum": 0, "operation": "RemoteActivation", "object_name_units": _units(name),
          "server_part_units": len(host), "non_text_units": _non_text(name)}
    if len(host) > rules.COMPUTER_NAME_MAX.value or _units(name) > rules.MAX_PATH.value:
        ev["limit"] = rules.COMPUTER_NAME_MAX.value
        return [Finding("MS03-026", "CVE-2003-0352", "exploit", "rpcss.remote_activation_overflow", 0.9, ev,
                        name.raw)]
    return []


def _undecodable(interface: str, opnum: int, stub: bytes, exc: MalformedMessage) -> list[Finding]:
    from stormwatch.protocols.dcerpc.interfaces import SRVSVC

    if interface == str(SRVSVC.uuid) and opnum == 31 and len(stub) > 2 * rules.MAX_PATH.value:
        ev = {"opnum": 31, "operation": "NetprPathCanonicalize", "stub_len": len(stub), "decode_error": str(exc)}
        return [Finding("MS06-040", "CVE-2006-3439", "exploit", "srvsvc.path_overflow_undecodable", 0.6, ev, stub)]
    return []
