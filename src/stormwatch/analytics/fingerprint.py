"""Attack fingerprints: what the attacker controls in one exploit session, as named exact values.

One :class:`Fingerprint` per attack (an exploit session, see
:mod:`stormwatch.analytics.fingerprint_queries`). Its features (:data:`FEATURES`) are strings (or
``None`` when the session did not show them), in four groups:

- ``exploit``: the exploit variant as the bot's code frames it: bulletin, detector, the call, the
  argument's length and prefix in UTF-16 units, the values a bot may fix or randomise
  (OutbufLen, PathType), the first request's stub size and fragment count, the number of calls,
  the pipe, the service (NetBIOS session service 139 or direct TCP 445), the tree path's form;
- ``client``: the SMB client stack: dialects offered in order, SMB version, extended security,
  logon kind, NativeOS / NativeLanMan, NTLMSSP flags, and the *shape* of the workstation and user
  names (character classes and run lengths: bots name each infected host afresh, from one pattern);
- ``timing``: gaps between the session's stages in decade buckets (``<10ms``, ``10ms``, ``100ms``, ...);
- ``payload``: the kept exploit argument's SHA-256 and size, and, when the payload analyser has
  emitted ``payload.shellcode`` / ``payload.offer`` events, decoder, key, API profile, bind and
  connect ports, and the offer's protocol, port, file name and host (``<self>`` when it is the
  attacking address: download-from-the-infector bots embed their own address).

Each feature has a weight: how much an equal value says that two attacks come from one bot
family (:mod:`stormwatch.analytics.clustering` compares weighted features). Values that a
family randomises per bot cost little when they differ; that is why they weigh little.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from stormwatch.analytics.engine import Engine
from stormwatch.analytics.fingerprint_queries import ATTACK_FINGERPRINTS

BEGINNING: Final = datetime(1970, 1, 1)
END_OF_TIME: Final = datetime(9999, 1, 1)


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    group: str  # exploit, client, timing, payload
    weight: float
    doc: str


FEATURES: Final[tuple[Feature, ...]] = (
    Feature("vuln", "exploit", 2.0, "Bulletin of the exploit attempt (MS06-040)."),
    Feature("kind", "exploit", 1.0, "`exploit` or `probe`."),
    Feature("detector", "exploit", 1.0, "Detector that decided."),
    Feature("call", "exploit", 1.0, "Interface name and opnum of the exploit's call."),
    Feature("arg", "exploit", 1.0, "Which argument carried the overflow."),
    Feature("arg_units", "exploit", 3.0, "Its length in UTF-16 units (the exploit target's buffer layout)."),
    Feature("max_count", "exploit", 0.5, "NDR max count when it differs from the length, else `=`."),
    Feature("prefix_units", "exploit", 2.0, "Length of the Prefix argument (MS06-040 Windows 2000 form: 2)."),
    Feature("outbuf_len", "exploit", 0.5, "OutbufLen (Metasploit randomises it, many bots fix it)."),
    Feature("path_type", "exploit", 0.5, "PathType (likewise)."),
    Feature("traversal", "exploit", 0.5, "Whether the path traverses (MS08-067)."),
    Feature("stub_len", "exploit", 1.0, "Stub bytes of the first request."),
    Feature("fragments", "exploit", 2.0, "DCE/RPC fragments of the first request (the bot's fragment size)."),
    Feature("requests", "exploit", 1.0, "Requests in the session (ms06_040_netapi sends its call twice)."),
    Feature("pipe", "exploit", 2.0, "Named pipe opened (browser, srvsvc, lsarpc)."),
    Feature("service", "exploit", 2.0, "Service reached: netbios-ssn (139) or smb (445)."),
    Feature("tree_path", "exploit", 1.0, "Form of the TREE_CONNECT path (host written as <ip>, <name>, ...)."),
    Feature("bind_version", "exploit", 0.5, "Interface version bound."),
    Feature("dialects", "client", 3.0, "SMB dialects offered, in order."),
    Feature("smb_version", "client", 1.0, "1 or 2."),
    Feature("extended_security", "client", 1.0, "Extended security negotiated."),
    Feature("auth", "client", 1.0, "Logon kind: anonymous, ntlmssp, legacy."),
    Feature("native_os", "client", 2.0, "NativeOS string."),
    Feature("native_lanman", "client", 2.0, "NativeLanMan string."),
    Feature("ntlm_flags", "client", 2.0, "NTLMSSP negotiate flags (hex)."),
    Feature("ntlm_version", "client", 0.5, "v1 / v2 from the NT response."),
    Feature("workstation", "client", 2.0, "Shape of the NTLMSSP workstation name."),
    Feature("domain", "client", 1.0, "Domain named at logon."),
    Feature("user", "client", 1.0, "Shape of the account name."),
    Feature("gap_setup", "timing", 0.5, "Connect to session set-up."),
    Feature("gap_bind", "timing", 0.5, "Session set-up to bind."),
    Feature("gap_request", "timing", 0.5, "Bind to first request."),
    Feature("gap_repeat", "timing", 0.5, "First to last request."),
    Feature("payload_sha256", "payload", 4.0, "SHA-256 of the kept exploit argument."),
    Feature("payload_size", "payload", 1.0, "Its size in bytes."),
    Feature("decoder", "payload", 2.0, "Shellcode decoder (payload.shellcode)."),
    Feature("key", "payload", 3.0, "Decoder key."),
    Feature("api_profile", "payload", 2.0, "API calls the shellcode makes, in order."),
    Feature("bind_port", "payload", 2.0, "Port a bind shell listens on."),
    Feature("connect_port", "payload", 2.0, "Port a connect-back shell calls."),
    Feature("offer_protocol", "payload", 1.0, "Protocol of the offered download (ftp, tftp, http)."),
    Feature("offer_port", "payload", 2.0, "Its port."),
    Feature("offer_file", "payload", 2.0, "Its file name."),
    Feature("offer_host", "payload", 1.0, "Its host (<self> for the attacking address)."),
)
FEATURE_NAMES: Final = tuple(f.name for f in FEATURES)
FEATURE_INDEX: Final = {f.name: i for i, f in enumerate(FEATURES)}


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """One attack: its identity (sensor, session, source, time) and its features (``values``,
    aligned with :data:`FEATURES`)."""

    sensor: str
    session: str
    src_ip: str
    ts: datetime
    values: tuple[str | None, ...]

    def get(self, name: str) -> str | None:
        return self.values[FEATURE_INDEX[name]]

    def as_dict(self) -> dict[str, str]:
        return {n: v for n, v in zip(FEATURE_NAMES, self.values, strict=True) if v is not None}

    @property
    def offer(self) -> str | None:
        """``protocol://host:port/file`` of the offered download, when known."""
        proto, host, port, name = (self.get(n) for n in ("offer_protocol", "offer_host", "offer_port", "offer_file"))
        if proto is None and host is None:
            return None
        return f"{proto or '?'}://{host or '?'}{':' + port if port else ''}/{name or ''}"

    @property
    def variant(self) -> str:
        """The exploit variant in words, e.g. ``MS06-040 srvsvc:31 via netbios-ssn pipe browser, 533 units``."""
        parts = [self.get("vuln") or "?", self.get("call") or "", f"via {self.get('service') or '?'}",
                 f"pipe {self.get('pipe') or '-'}"]
        units = self.get("arg_units")
        return " ".join(p for p in parts if p) + (f", {units} units" if units else "")


def fingerprints(engine: Engine, since: datetime | None = None, until: datetime | None = None) -> list[Fingerprint]:
    """Every attack of ``since <= ts < until`` (UTC, naive), in time order."""
    rows = engine.run(ATTACK_FINGERPRINTS, {"since": since or BEGINNING, "until": until or END_OF_TIME})
    return [from_row(r) for r in rows]


# -- features from one pivoted row -----------------------------------------------------------------

def _json(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _s(value: Any) -> str | None:
    """A feature value: exact text; None stays None; booleans as true/false; lists joined by commas."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ",".join(str(_s(v)) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


_RUNS = re.compile(r"([A-Z]+|[a-z]+|[0-9]+|[^A-Za-z0-9]+)")


def shape(name: Any) -> str | None:
    """The shape of a name: each run of upper-case letters, lower-case letters or digits as its
    class and length (``A8``, ``a3``, ``9-5``); other characters kept. ``WARG-48213`` -> ``A4-95``.
    Bots name each infected host from one pattern, so the shape is the family's, the name the host's."""
    if name is None:
        return None
    text = str(name)
    if not text:
        return ""
    out = []
    for run in _RUNS.findall(text):
        c = run[0]
        cls = "A" if c.isupper() else "a" if c.islower() else "9" if c.isdigit() else None
        out.append(f"{cls}{len(run)}" if cls and c.isascii() else run)
    return "".join(out)


_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def tree_form(path: Any) -> str | None:
    r"""``\\HOST\SHARE`` with the host replaced by its kind: ``<ip>``, ``*SMBSERVER`` or ``<name>``."""
    if not isinstance(path, str):
        return None
    parts = path.lstrip("\\").split("\\", 1)
    host = parts[0]
    kind = "<ip>" if _IPV4.match(host) else host.upper() if host.upper() == "*SMBSERVER" else "<name>"
    return "\\\\" + kind + ("\\" + parts[1].upper() if len(parts) > 1 else "")


GAP_BUCKETS = ((10.0, "<10ms"), (100.0, "10ms"), (1000.0, "100ms"), (10_000.0, "1s"), (100_000.0, "10s"))


def gap_bucket(start: datetime | None, end: datetime | None) -> str | None:
    """The gap in decade buckets (lower bounds): ``<10ms``, ``10ms``, ``100ms``, ``1s``, ``10s``,
    ``100s``. Decades, not finer: below them the gaps are the network's and the host's load, not
    the bot's (power-of-two milliseconds split one family's attacks by how busy the sensor was);
    what they tell apart is a bot that pauses on purpose from one that does not."""
    if start is None or end is None:
        return None
    ms = (end - start).total_seconds() * 1000.0
    return next((name for bound, name in GAP_BUCKETS if ms < bound), "100s")


def _first_of(d: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if d.get(n) not in (None, "", []):
            return d[n]
    return None


def _offer(offer: Mapping[str, Any], src_ip: str) -> dict[str, str | None]:
    """Protocol, host, port and file of a ``payload.offer`` (a URL, or host/port/protocol fields)."""
    proto, host, port, name = (_first_of(offer, "protocol", "scheme"), _first_of(offer, "host"),
                               _first_of(offer, "port"), _first_of(offer, "filename", "file", "path"))
    url = offer.get("url")
    if isinstance(url, str) and "://" in url:
        parts = urlsplit(url)
        proto = proto or parts.scheme
        host = host or parts.hostname
        try:
            port = port or parts.port
        except ValueError:
            port = None
        name = name or parts.path.rsplit("/", 1)[-1] or None
    if isinstance(name, str):
        name = name.replace("\\", "/").rsplit("/", 1)[-1]
    host_s, proto_s, name_s = _s(host), _s(proto), _s(name)
    return {"offer_protocol": proto_s.lower() if proto_s else None,
            "offer_host": "<self>" if host_s is not None and host_s == src_ip else host_s,
            "offer_port": _s(port), "offer_file": name_s.lower() if name_s else None}


def _port_of(value: Any) -> str | None:
    """A port from a bind/connect description: an int, ``host:port``, a dict or a list of them."""
    if isinstance(value, list):
        ports = [p for p in (_port_of(v) for v in value) if p]
        return ",".join(sorted(set(ports))) or None
    if isinstance(value, dict):
        return _s(value.get("port"))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value.rsplit(":", 1)[-1]
    return None


def from_row(row: Mapping[str, Any]) -> Fingerprint:
    """The fingerprint of one row of :data:`~stormwatch.analytics.fingerprint_queries.ATTACK_FINGERPRINTS`."""
    attempt = _json(row.get("exploit_data")) or _json(row.get("attempt_data"))
    ev = attempt.get("evidence") if isinstance(attempt.get("evidence"), dict) else {}
    assert isinstance(ev, dict)
    request, neg, setup = _json(row.get("request_data")), _json(row.get("negotiate_data")), _json(row.get("setup_data"))
    bind, sc = _json(row.get("bind_data")), _json(row.get("shellcode_data"))
    src_ip = str(row.get("src_ip") or "")
    units = _first_of(ev, "path_units", "units")
    max_count = ev.get("path_max_count")
    opnum = _first_of(ev, "opnum") if ev.get("opnum") is not None else request.get("opnum")
    flags = setup.get("ntlm_flags")
    api = _first_of(sc, "api_calls", "api_profile", "apis")
    api_names = [a.get("name", a.get("api")) if isinstance(a, dict) else a for a in api] \
        if isinstance(api, list) else api
    v: dict[str, str | None] = {
        "vuln": _s(attempt.get("vuln")),
        "kind": _s(attempt.get("kind")),
        "detector": _s(attempt.get("detector")),
        "call": f"{request.get('interface_name') or request.get('interface') or '?'}:{opnum}" if opnum is not None
        else None,
        "arg": _s(ev.get("argument", "path" if "path_units" in ev else None)),
        "arg_units": _s(units),
        "max_count": None if max_count is None else "=" if max_count == units else _s(max_count),
        "prefix_units": _s(ev.get("prefix_units")),
        "outbuf_len": _s(ev.get("outbuf_len")),
        "path_type": _s(ev.get("path_type")),
        "traversal": _s(ev.get("traversal")),
        "stub_len": _s(request.get("stub_len")),
        "fragments": _s(request.get("fragments")),
        "requests": _s(row.get("requests")),
        "pipe": _s(_json(row.get("pipe_data")).get("pipe")),
        "service": _s(_json(row.get("connect_data")).get("service")),
        "tree_path": tree_form(_json(row.get("tree_data")).get("path")),
        "bind_version": _s(bind.get("interface_version")),
        "dialects": _s(neg.get("dialects")) if isinstance(neg.get("dialects"), list) else None,
        "smb_version": _s(neg.get("smb_version")),
        "extended_security": _s(neg.get("extended_security")),
        "auth": _s(setup.get("auth")),
        "native_os": _s(setup.get("native_os")),
        "native_lanman": _s(setup.get("native_lanman")),
        "ntlm_flags": f"0x{flags:08x}" if isinstance(flags, int) and not isinstance(flags, bool) else None,
        "ntlm_version": _s(setup.get("ntlm_version")),
        "workstation": shape(setup.get("workstation")),
        "domain": _s(setup.get("domain")),
        "user": shape(setup.get("user")),
        "gap_setup": gap_bucket(row.get("t_connect"), row.get("t_setup")),
        "gap_bind": gap_bucket(row.get("t_setup"), row.get("t_bind")),
        "gap_request": gap_bucket(row.get("t_bind"), row.get("t_request")),
        "gap_repeat": gap_bucket(row.get("t_request"), row.get("t_last_request"))
        if (row.get("requests") or 0) > 1 else None,
        "payload_sha256": _s(attempt.get("payload_sha256")),
        "payload_size": _s(attempt.get("payload_size")),
        "decoder": _s(sc.get("decoder")),
        "key": _s(sc.get("decoder_key")),
        "api_profile": _s(api_names),
        "bind_port": _port_of(_first_of(sc, "binds", "bind_port", "bind")),
        "connect_port": _port_of(_first_of(sc, "connects", "connect", "connect_back")),
        **_offer(_json(row.get("offer_data")), src_ip),
    }
    ts = row.get("ts") or row.get("t_connect")
    assert isinstance(ts, datetime), ts
    return Fingerprint(str(row["sensor"]), str(row["session"]), src_ip, ts,
                       tuple(v.get(n) for n in FEATURE_NAMES))


def columns(prints: Sequence[Fingerprint]) -> dict[str, list[str | None]]:
    """The features of many fingerprints as columns (the clustering's input)."""
    cols: dict[str, list[str | None]] = {n: [] for n in FEATURE_NAMES}
    lists = [cols[n] for n in FEATURE_NAMES]
    for fp in prints:
        for col, value in zip(lists, fp.values, strict=True):
            col.append(value)
    return cols
