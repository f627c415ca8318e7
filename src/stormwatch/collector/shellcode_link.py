"""The exploit's shellcode, analysed by :func:`stormwatch.detect.shellcode.analyze` when that
analyser is installed, turned into what following the attack needs: the ports a bind shell
listens on, the addresses a connect-back shell calls, the downloads it offers, and the commands it
runs itself (interpreted like a shell's, :mod:`.shell_stream`).

The analyser is imported lazily: without it an attack is still followed, by the heuristic rules
of :mod:`.multistage`, and the attack says so in a note. Its report is read by field name
(``found``, ``offset``, ``decoder``, ``key``, ``size``, ``sha256``, ``md5``, ``api_calls``,
``binds``, ``connects``, ``urls``, ``commands``, ``offers`` of ``(protocol, host, port, filename or
path, url)``, ``stop_reason``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stormwatch.collector.attack_model import ExploitRef, MultiStageAttack, Offer, Stage
from stormwatch.collector.capture_flows import Flow
from stormwatch.collector.shell_stream import ShellLine, parse_shell
from stormwatch.sensor.payloads import PayloadStore

log = logging.getLogger(__name__)
MAX_INPUT = 4 << 20  # bytes of an exploit connection handed to the analyser


@dataclass(frozen=True)
class ShellcodeFacts:
    binds: tuple[int, ...]
    connects: tuple[tuple[str, int], ...]
    offers: tuple[Offer, ...]


def load_analyser() -> Callable[[bytes], Any] | None:
    """``stormwatch.detect.shellcode.analyze``, or None while it is not installed."""
    try:
        module = importlib.import_module("stormwatch.detect.shellcode")
    except ImportError:
        return None
    fn: Callable[[bytes], Any] | None = getattr(module, "analyze", None)
    return fn


def analyse_payload(exp: ExploitRef, exploit_flow: Flow | None, store: PayloadStore | None,
                    analyse: Callable[[bytes], Any] | None, atk: MultiStageAttack) -> ShellcodeFacts | None:
    """Analyse the exploit's payload (the stored exploit argument, else the exploit connection's
    client bytes); record the summary and a ``shellcode`` stage on ``atk``."""
    fn = analyse or load_analyser()
    if fn is None:
        atk.notes.append("shellcode analyser (stormwatch.detect.shellcode) not installed: the shell is found "
                         "by the heuristic rule")
        return None
    data, origin = None, ""
    if exp.payload_sha256 and store is not None:
        try:
            path = store.path_for(exp.payload_sha256)
        except ValueError:
            path = None
        if path is not None and path.is_file():
            data, origin = path.read_bytes()[:MAX_INPUT], f"stored exploit argument {exp.payload_sha256[:16]}"
    if data is None and exploit_flow is not None:
        data, origin = exploit_flow.up.assemble().data[:MAX_INPUT], "the exploit connection's client bytes"
    if not data:
        atk.notes.append("no exploit payload to analyse (not stored, exploit connection not captured)")
        return None
    try:
        report = fn(data)
    except Exception:  # a bug of the analyser: logged, and the attack followed without it
        log.exception("shellcode analyser failed on the payload of exploit session %s", exp.session)
        atk.notes.append("shellcode analyser failed (see the operator log)")
        return None
    if not getattr(report, "found", False):
        atk.notes.append(f"no shellcode found in {origin} ({getattr(report, 'stop_reason', '') or 'no reason given'})")
        return None
    binds = tuple(int(p) for p in getattr(report, "binds", ()) or ())
    connects = tuple((str(h), int(p)) for h, p in getattr(report, "connects", ()) or ())
    offers = [_offer(o, exp.ts) for o in getattr(report, "offers", ()) or ()]
    commands = [str(c) for c in getattr(report, "commands", ()) or ()]
    if commands:  # the shellcode runs them itself (WinExec, CreateProcess): read them as shell lines
        act = parse_shell([ShellLine(c, exp.ts, True) for c in commands], [])
        known = {o.url for o in offers}
        offers += [Offer(o.protocol, o.host, o.port, o.filename, o.url, "shellcode", exp.ts, o.user, o.password)
                   for o in act.offers if o.url not in known]
    key = getattr(report, "key", None)
    atk.shellcode = {
        "origin": origin,
        "offset": getattr(report, "offset", None),
        "decoder": getattr(report, "decoder", None),
        "key": key.hex() if isinstance(key, bytes) else key,
        "size": getattr(report, "size", None),
        "sha256": getattr(report, "sha256", None),
        "md5": getattr(report, "md5", None),
        "api_calls": [_call(a) for a in getattr(report, "api_calls", ()) or ()],
        "binds": list(binds),
        "connects": [list(c) for c in connects],
        "urls": [str(u) for u in getattr(report, "urls", ()) or ()],
        "commands": commands,
        "stop_reason": getattr(report, "stop_reason", None),
    }
    does = [f"binds {p}" for p in binds] + [f"connects to {h}:{p}" for h, p in connects]
    does += [f"offers {o.url}" for o in offers] + [f"runs {c[:80]!r}" for c in commands[:3]]
    atk.stages.append(Stage("shellcode", exp.ts, "", f"{atk.shellcode['decoder'] or 'plain'} shellcode of "
                            f"{atk.shellcode['size']} bytes: {', '.join(does) or 'no network behaviour seen'}",
                            exp.session))
    return ShellcodeFacts(binds, connects, tuple(offers))


def _offer(o: Any, ts: int) -> Offer:
    name = getattr(o, "filename", None) or getattr(o, "path", None) or ""
    port = getattr(o, "port", None)
    return Offer(str(getattr(o, "protocol", "") or ""), str(getattr(o, "host", "") or ""),
                 int(port) if port is not None else None, str(name), str(getattr(o, "url", "") or ""),
                 "shellcode", ts)


def _call(a: Any) -> str:
    """An API call of the report, ``(name, arguments)``, as ``name(arguments)``."""
    if isinstance(a, tuple) and len(a) == 2:
        return f"{a[0]}({a[1]})"
    return str(a)
