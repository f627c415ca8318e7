"""Blocklists of attacking addresses, plain text or CSV, each entry with an expiry.

The addresses are :func:`stormwatch.export.attackers.select`'s (exploit sources, vulnerability
probers, inbound scanners, SMB sweeps above a threshold, payload download servers), restricted to
entries that have not expired at the newest stored event: an entry expires ``expire_days`` after
its last sighting.

- ``plain``: ``#`` comment lines (what, the window, when it was made from), then one address per
  line followed by ``  # reasons; first=...; last=...; count=N; expires=...``. Tools that read
  "one address per line, # starts a comment" (pf tables, ipset scripts, FireHOL) take it as is.
- ``csv`` (RFC 4180, header row): ``address,version,first_seen,last_seen,expires,count,sensors,reasons``;
  times RFC 3339 UTC, sensors and reasons separated by ``;``. Every cell is quoted as needed by
  :mod:`csv`, and a cell that a spreadsheet would run as a formula (``= + - @`` first) is
  prefixed with ``'`` (OWASP "CSV injection").

Every address has passed :func:`stormwatch.export.common.parse_address`; comment text is reduced by
:func:`stormwatch.export.common.comment_text`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from stormwatch.analytics.engine import Engine
from stormwatch.export.attackers import EXPIRE_DAYS, SMB_TARGETS, Attacker, Selection, active, select
from stormwatch.export.common import comment_text, iso_z

FORMATS: Final = ("plain", "csv")
CSV_HEADER: Final = ("address", "version", "first_seen", "last_seen", "expires", "count", "sensors", "reasons")


def blocklist(engine: Engine, *, since: datetime | None = None, fmt: str = "plain", expire_days: int = EXPIRE_DAYS,
              min_events: int = 1, until: datetime | None = None, smb_targets: int = SMB_TARGETS,
              local_nets: Sequence[str] | None = None, selection: Selection | None = None) -> str:
    """The blocklist of the window in ``fmt`` (``plain`` or ``csv``; module docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown blocklist format {fmt!r} (one of {', '.join(FORMATS)})")
    sel = selection if selection is not None else select(
        engine, since=since, until=until, min_events=min_events, expire_days=expire_days,
        smb_targets=smb_targets, local_nets=local_nets)
    entries = active(sel)
    return _csv(entries) if fmt == "csv" else _plain(sel, entries, expire_days)


def _plain(sel: Selection, entries: Sequence[Attacker], expire_days: int) -> str:
    made = iso_z(sel.as_of) if sel.as_of else "no data"
    lines = [
        "# stormwatch blocklist: attacking addresses (exploit sources, vulnerability probes, inbound scanners,",
        "# SMB sweeps, payload download servers); one address per line, # starts a comment.",
        f"# window: {iso_z(sel.since) if sel.since else 'all data'} .. {made}; {len(entries)} addresses; "
        f"entries expire {expire_days} days after their last sighting.",
    ]
    for a in entries:
        note = comment_text(f"{a.describe()}; first={iso_z(a.first_seen)}; last={iso_z(a.last_seen)}; "
                            f"count={a.count}; expires={iso_z(a.expires)}", 200)
        lines.append(f"{a.address}  # {note}")
    return "\n".join(lines) + "\n"


def _cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def _csv(entries: Sequence[Attacker]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_HEADER)
    for a in entries:
        w.writerow([a.address, str(a.ip.version), iso_z(a.first_seen), iso_z(a.last_seen), iso_z(a.expires),
                    str(a.count), _cell(";".join(a.sensors)), _cell(";".join(a.describe().split(", ")))])
    return out.getvalue()
