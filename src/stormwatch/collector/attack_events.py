"""The events a followed attack adds to the store: one ``payload.offer`` per download asked for
(by the shellcode or a shell command) and one ``payload.file`` per file rebuilt from the capture.

Both carry ``attack`` = the exploit session's id. Identity fields are the connection the fact was
seen on: the shell connection for an offer typed into it, the exploit connection for one the
shellcode makes, the data connection for a file. The store key is ``<attack>:<event>:<n>``, so
reading the same capture again adds nothing twice.

``payload.offer`` belongs to the shellcode analyser's catalogue module
(``stormwatch.events.payload_types``): its fields are offered as ``attack``, ``source``,
``protocol``, ``host``, ``port``, ``path``, ``filename``, ``url``, ``endpoint``, ``user`` and
``password``, and :func:`attack_event_table` keeps those the registered type declares (logging
the others once), so the two modules may evolve apart without a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stormwatch.collector.attack_model import MultiStageAttack
from stormwatch.events.batch import EventBatchBuilder
from stormwatch.events.catalogue import CATALOGUE

log = logging.getLogger(__name__)
_warned: set[str] = set()


@dataclass(frozen=True)
class AttackEvent:
    """One event of an attack, before it is put in a batch."""

    event: str
    ts: int
    key: str
    session: str
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    fields: dict[str, Any]


def attack_events(attack: MultiStageAttack) -> list[AttackEvent]:
    """The ``payload.offer`` and ``payload.file`` events of one attack."""
    out: list[AttackEvent] = []
    exp = attack.exploit
    for n, o in enumerate(attack.offers):
        if o.source == "shell" and attack.shell is not None:
            c = attack.shell
            ident = (c.session, c.client, c.client_port, c.server, c.server_port)
        else:
            ident = (exp.session, exp.attacker, exp.attacker_port, exp.victim, exp.victim_port)
        out.append(AttackEvent("payload.offer", o.ts if o.ts is not None else exp.ts, f"{attack.attack_id}:offer:{n}",
                               *ident, {
                                   "attack": attack.attack_id, "source": o.source, "protocol": o.protocol,
                                   "host": o.host, "port": o.port, "path": o.filename, "filename": o.filename,
                                   "url": o.url, "endpoint": f"{o.host}:{o.port}:{o.protocol}",
                                   "user": o.user, "password": o.password}))
    for n, f in enumerate(attack.files):
        c = f.connection
        out.append(AttackEvent("payload.file", c.last_ts, f"{attack.attack_id}:file:{n}", c.session, c.client,
                               c.client_port, c.server, c.server_port, {
                                   "attack": attack.attack_id, "stage": f"{f.protocol}-data", "name": f.name,
                                   "url": f.url, "protocol": f.protocol, "source_host": f.source_host,
                                   "source_port": f.source_port, "sha256": f.sha256, "md5": f.md5, "size": f.size,
                                   "expected_size": f.expected_size, "expected_from": f.expected_from or None,
                                   "complete": f.complete, "missing_bytes": f.missing_bytes,
                                   "file_type": f.file_type or None, "stored": f.stored, "notes": list(f.notes)}))
    return out


def attack_event_table(attacks: Iterable[MultiStageAttack], sensor: str) -> pa.Table | None:
    """The attacks' events as one batch for the store (None when there are none). An event type not
    in the catalogue yet is left out, and said so once in the log."""
    builder = EventBatchBuilder(sensor)
    for attack in attacks:
        for ev in attack_events(attack):
            et = CATALOGUE.get(ev.event)
            if et is None:
                _warn(ev.event, f"event type {ev.event} is not registered in the catalogue: not stored")
                continue
            fields = {k: v for k, v in ev.fields.items() if et.field(k) is not None}
            dropped = sorted(k for k in ev.fields if k not in fields)
            if dropped:
                _warn(f"{ev.event}:{dropped}", f"{ev.event} does not declare {', '.join(dropped)}: left out")
            builder.add(ev.event, ev.ts, ev.key, session=ev.session, src_ip=ev.src_ip, src_port=ev.src_port,
                        dst_ip=ev.dst_ip, dst_port=ev.dst_port, proto="tcp", **fields)
    return builder.take() if len(builder) else None


def _warn(what: str, message: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning(message)
