"""The events a followed attack adds to the store: one ``payload.offer`` per download asked for
(by the shellcode or a shell command) and one ``payload.file`` per file rebuilt from the capture.

Both carry ``attack`` = the exploit session's id. Identity fields are the connection the fact was
seen on: the shell connection for an offer typed into it, the exploit connection for one the
shellcode makes, the data connection for a file. The store key is ``<attack>:<event>:<n>``, so
reading the same capture again adds nothing twice. Both types are in the catalogue
(:mod:`stormwatch.events.payload_types`); the batch builder refuses a field they do not declare.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stormwatch.collector.attack_model import MultiStageAttack
from stormwatch.events.batch import EventBatchBuilder


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
    """The attacks' events as one batch for the store (None when there are none)."""
    builder = EventBatchBuilder(sensor)
    for attack in attacks:
        for ev in attack_events(attack):
            builder.add(ev.event, ev.ts, ev.key, session=ev.session, src_ip=ev.src_ip, src_port=ev.src_port,
                        dst_ip=ev.dst_ip, dst_port=ev.dst_port, proto="tcp", **ev.fields)
    return builder.take() if len(builder) else None
