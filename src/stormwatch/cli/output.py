"""Rendering rows (dicts) for the terminal: an aligned table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

FORMATS = ("table", "json", "csv")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    if isinstance(v, list | tuple):
        return ",".join(_cell(x) for x in v)
    return str(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    raise TypeError(f"cannot serialise {type(v).__name__}")


def render(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> str:
    """``rows`` as text in ``fmt`` (table, json or csv). Table cells are printed as data: control
    characters an attacker may have put in a field are escaped."""
    cols = list(columns) if columns else (list(rows[0].keys()) if rows else [])
    if fmt == "json":
        return json.dumps([{c: r.get(c) for c in cols} for r in rows], default=_json_default, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in cols])
        return buf.getvalue().rstrip("\n")
    if not rows:
        return "(no rows)"
    cells = [[_printable(_cell(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    numeric = [all(_is_num(r.get(c)) for r in rows) for c in cols]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric, strict=True)).rstrip()

    out = [line(cols), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _is_num(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _printable(s: str) -> str:
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in s)
