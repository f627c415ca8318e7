"""Test helpers shared by the reader tests: read a whole input, flatten events for assertions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from stormwatch.events import Reject
from stormwatch.ingest.base import Reader, Source


def read_table(reader: Reader, path: Path, **kw: Any) -> tuple[pa.Table, list[Reject], int, int]:
    """All of ``path`` through ``reader``: (events, rejects, records read, records skipped)."""
    chunks = list(reader.read(Source(str(path), "t", **kw)))
    events = pa.concat_tables([c.events for c in chunks])
    return (events, [r for c in chunks for r in c.rejects], sum(c.read for c in chunks),
            sum(c.skipped for c in chunks))


def event_rows(events: pa.Table) -> list[dict[str, Any]]:
    """Events as dicts with their ``data`` fields merged in."""
    rows: list[dict[str, Any]] = events.to_pylist()
    for r in rows:
        r.update(json.loads(r.pop("data") or "{}"))
    return rows
