"""The sensor's configuration file (TOML, read with :mod:`tomllib`).

Every key is optional; docs/sensor.md is the reference. Layout::

    [sensor]
    name = "hp-berlin-1"        # stamped on every event as `sensor`
    host = "0.0.0.0"            # address the listeners bind
    state_dir = "/var/lib/stormwatch-sensor"   # persona.json lives here
    spool = "spool.jsonl"       # relative paths are relative to state_dir
    payload_dir = "payloads"

    [ports]                     # 0 = an ephemeral port, false = service off
    smb = 445
    netbios = 139
    rpc = 135
    nbns = 137

    [persona]
    template = "win2000"        # win2000 | winxp | win2003 | win7
    host_name = "FILESRV07"     # any other Persona field overrides the generated value

    [limits]                    # connection level (ServerLimits + transport limits)
    max_sessions = 20000
    ...

    [session_limits]            # per connection, protocol level (SessionLimits)
    max_frame = 131072
    ...

    [payloads]
    max_payload_bytes = 4194304
    max_total_bytes = 1073741824
    analyse = true              # shellcode analysis of kept payloads, in a worker thread
    download = false            # fetch what the shellcode offers (sandboxed; docs/payloads.md)
    download_max_bytes = 8388608
    download_timeout = 60.0
    download_allow = []         # CIDRs a download may reach although not global, e.g. ["127.0.0.0/8"]

Unknown tables or keys are errors (a typo must not silently leave a limit at its default).
Relative ``state_dir`` is relative to the configuration file's directory.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from stormwatch.errors import StormwatchError
from stormwatch.sensor.download import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, networks
from stormwatch.sensor.limits import ServerLimits, SessionLimits
from stormwatch.sensor.payloads import DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_TOTAL
from stormwatch.sensor.persona import TEMPLATES, Persona

# Config key of each port → the service name used in events and by the server.
PORT_KEYS: dict[str, str] = {"smb": "smb", "netbios": "netbios-ssn", "rpc": "dcerpc", "nbns": "nbns"}
DEFAULT_PORTS: dict[str, int | None] = {"smb": 445, "netbios-ssn": 139, "dcerpc": 135, "nbns": 137}


@dataclass(frozen=True)
class TransportLimits:
    """Limits of the asyncio transports themselves (set in ``[limits]`` beside ServerLimits)."""

    #: Bytes queued for a client above which the server stops reading from it (back-pressure: a
    #: client that does not read cannot make the sensor buffer without bound).
    write_buffer_high: int = 64 << 10
    #: Bytes queued for a client above which the connection is closed (reason `limit`).
    write_buffer_max: int = 1 << 20
    #: NBNS (UDP 137) datagrams answered per second per source address: the name service answers
    #: spoofable UDP with a larger reply, so it must not become a reflection amplifier.
    nbns_per_source: int = 5
    #: NBNS datagrams handled per second from all sources together.
    nbns_per_second: int = 200
    #: Seconds between sweeps for idle and over-long sessions.
    sweep_interval: float = 1.0


class ConfigError(StormwatchError):
    """The configuration file cannot be used; the message names the file and the key."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/stormwatch/sensor`` (``~/.local/state/stormwatch/sensor``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "stormwatch" / "sensor"


@dataclass(frozen=True)
class SensorConfig:
    """Everything the sensor needs to start."""

    sensor: str = "sensor"
    host: str = "0.0.0.0"
    ports: dict[str, int | None] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    state_dir: Path = field(default_factory=default_state_dir)
    spool: Path | None = None  # None: state_dir / "spool.jsonl"
    payload_dir: Path | None = None  # None: state_dir / "payloads"
    persona_template: str = "win2000"
    persona_overrides: dict[str, Any] = field(default_factory=dict)
    limits: ServerLimits = field(default_factory=ServerLimits)
    transport_limits: TransportLimits = field(default_factory=TransportLimits)
    session_limits: SessionLimits = field(default_factory=SessionLimits)
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD
    max_total_payload_bytes: int = DEFAULT_MAX_TOTAL
    analyse_payloads: bool = True
    download: bool = False  # off unless the operator turns it on
    download_max_bytes: int = DEFAULT_MAX_BYTES
    download_timeout: float = DEFAULT_TIMEOUT
    download_allow: tuple[str, ...] = ()

    @property
    def spool_path(self) -> Path:
        return self.spool if self.spool is not None else self.state_dir / "spool.jsonl"

    @property
    def payload_path(self) -> Path:
        return self.payload_dir if self.payload_dir is not None else self.state_dir / "payloads"

    @property
    def persona_path(self) -> Path:
        return self.state_dir / "persona.json"

    def with_overrides(self, **changes: Any) -> SensorConfig:
        """A copy with command-line values applied (``None`` values are ignored)."""
        ports = dict(self.ports)
        for key, service in PORT_KEYS.items():
            v = changes.pop(f"{key}_port", None)
            if v is not None:
                ports[service] = v
        kept = {k: v for k, v in changes.items() if v is not None}
        return replace(self, ports=ports, **kept)


def load(path: Path | str | None) -> SensorConfig:
    """The configuration in ``path``; the defaults when ``path`` is None."""
    if path is None:
        return SensorConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    return parse(data, base=p.resolve().parent, origin=str(p))


def parse(data: dict[str, Any], *, base: Path, origin: str = "config") -> SensorConfig:
    """A :class:`SensorConfig` from parsed TOML; relative paths are taken from ``base``."""
    _only(data, {"sensor", "ports", "persona", "limits", "session_limits", "payloads"}, origin, "")
    sensor = _table(data, "sensor", origin)
    _only(sensor, {"name", "host", "state_dir", "spool", "payload_dir"}, origin, "sensor.")
    state_dir = base / _str(sensor, "state_dir", origin) if "state_dir" in sensor else default_state_dir()
    cfg = SensorConfig(state_dir=state_dir)
    changes: dict[str, Any] = {}
    if "name" in sensor:
        changes["sensor"] = _str(sensor, "name", origin)
    if "host" in sensor:
        changes["host"] = _str(sensor, "host", origin)
    for key in ("spool", "payload_dir"):
        if key in sensor:
            changes[key] = state_dir / _str(sensor, key, origin)

    ports_t = _table(data, "ports", origin)
    _only(ports_t, set(PORT_KEYS), origin, "ports.")
    ports = dict(DEFAULT_PORTS)
    for key, value in ports_t.items():
        if value is False:
            ports[PORT_KEYS[key]] = None
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
            ports[PORT_KEYS[key]] = value
        else:
            raise ConfigError(f"{origin}: ports.{key} must be a port number (0 = any) or false, not {value!r}")
    changes["ports"] = ports

    persona = dict(_table(data, "persona", origin))
    template = persona.pop("template", cfg.persona_template)
    if template not in TEMPLATES:
        raise ConfigError(f"{origin}: persona.template {template!r} is not one of {', '.join(TEMPLATES)}")
    _only(persona, set(Persona.__dataclass_fields__) - {"template"}, origin, "persona.")
    changes["persona_template"] = template
    changes["persona_overrides"] = persona

    limits = dict(_table(data, "limits", origin))
    server_keys = {f.name for f in fields(ServerLimits)}
    transport_keys = {f.name for f in fields(TransportLimits)}
    _only(limits, server_keys | transport_keys, origin, "limits.")
    changes["limits"] = _numbers(ServerLimits, {k: v for k, v in limits.items() if k in server_keys}, origin,
                                 "limits.")
    changes["transport_limits"] = _numbers(TransportLimits, {k: v for k, v in limits.items() if k in transport_keys},
                                           origin, "limits.")
    session = _table(data, "session_limits", origin)
    _only(session, {f.name for f in fields(SessionLimits)}, origin, "session_limits.")
    changes["session_limits"] = _numbers(SessionLimits, session, origin, "session_limits.")

    payloads = _table(data, "payloads", origin)
    _only(payloads, {"max_payload_bytes", "max_total_bytes", "analyse", "download", "download_max_bytes",
                     "download_timeout", "download_allow"}, origin, "payloads.")
    for key, attr in (("analyse", "analyse_payloads"), ("download", "download")):
        if key in payloads:
            if not isinstance(payloads[key], bool):
                raise ConfigError(f"{origin}: payloads.{key} must be true or false, not {payloads[key]!r}")
            changes[attr] = payloads[key]
    if "download_max_bytes" in payloads or "download_timeout" in payloads:
        dl = _numbers(_Download, {k.removeprefix("download_"): v for k, v in payloads.items()
                                  if k in ("download_max_bytes", "download_timeout")}, origin, "payloads.download_")
        changes["download_max_bytes"], changes["download_timeout"] = dl.max_bytes, dl.timeout
    if "download_allow" in payloads:
        allow = payloads["download_allow"]
        try:
            if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
                raise ValueError("not a list of strings")
            networks(allow)
        except ValueError as exc:
            raise ConfigError(f"{origin}: payloads.download_allow must be a list of CIDR networks "
                              f"(e.g. [\"127.0.0.0/8\"]): {exc}") from None
        changes["download_allow"] = tuple(allow)
    for key, attr in (("max_payload_bytes", "max_payload_bytes"), ("max_total_bytes", "max_total_payload_bytes")):
        if key in payloads:
            v = payloads[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{origin}: payloads.{key} must be a non-negative integer, not {v!r}")
            changes[attr] = v
    return replace(cfg, **changes)


T = TypeVar("T")


@dataclass(frozen=True)
class _Download:
    """The numeric download settings, checked like the other limits (positive numbers)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT


def _numbers(cls: type[T], values: dict[str, Any], origin: str, prefix: str) -> T:
    """``cls(**values)`` after checking each value is a positive number of the field's kind."""
    types = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    for k, v in values.items():
        want_float = "float" in str(types[k])
        ok = isinstance(v, int | float) if want_float else isinstance(v, int)
        if isinstance(v, bool) or not ok or v <= 0:
            kind = "a positive number" if want_float else "a positive integer"
            raise ConfigError(f"{origin}: {prefix}{k} must be {kind}, not {v!r}")
    return cls(**{k: float(v) if "float" in str(types[k]) else v for k, v in values.items()})


def _table(data: dict[str, Any], key: str, origin: str) -> dict[str, Any]:
    t = data.get(key, {})
    if not isinstance(t, dict):
        raise ConfigError(f"{origin}: [{key}] must be a table")
    return t


def _only(table: dict[str, Any], allowed: set[str], origin: str, prefix: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{origin}: unknown setting {prefix}{unknown[0]} (known: {', '.join(sorted(allowed))})")


def _str(table: dict[str, Any], key: str, origin: str) -> str:
    v = table[key]
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{origin}: sensor.{key} must be a non-empty string, not {v!r}")
    return v
