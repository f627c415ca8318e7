"""Write the field tables of docs/events.md from the catalogue (run after changing it; the test
tests/test_events_docs.py checks the two agree)."""

from __future__ import annotations

import sys

from stormwatch.events import CATALOGUE, COMMON_FIELDS, Field


def table(fields: tuple[Field, ...]) -> str:
    rows = ["| field | type | stored as | description |", "|---|---|---|---|"]
    for f in fields:
        rows.append(f"| `{f.name}` | {f.type.value} | {'column' if f.column else 'data'} | {f.doc} |")
    return "\n".join(rows)


def main() -> None:
    out = [
        "# The event catalogue",
        "",
        "Every fact stormwatch records is an event: a dotted type name, the common fields, and the",
        "fields of its type. This page is checked against `src/stormwatch/events/catalogue.py` by",
        "`tests/test_events_docs.py`; regenerate the tables with `python tools/gen_events_doc.py`.",
        "",
        "Fields stored as *column* have their own typed column in the `events` table (analytics",
        "filter and group on them); fields stored as *data* are kept in the event's JSON `data` column.",
        "Every stored event also has `event_id` (128-bit MD5 of type, sensor and the record's identity,",
        "which makes ingest idempotent) and `schema_version` (the version of its type).",
        "",
        "Types: `timestamp` is UTC with microseconds; `ip` is an IPv4 or IPv6 address in canonical",
        "text form; `port` is 0-65535.",
        "",
        "## Common fields",
        "",
        table(COMMON_FIELDS),
        "",
    ]
    for et in CATALOGUE.values():
        out += [f"## `{et.name}` (version {et.version})", "", et.doc, "", table(et.fields), ""]
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
