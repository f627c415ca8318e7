"""docs/events.md and the event catalogue must agree, field by field."""

from __future__ import annotations

import re

from conftest import REPO
from stormwatch.events import CATALOGUE, COMMON_FIELDS, STORE_COLUMNS, Field, arrow_schema

DOC = (REPO / "docs" / "events.md").read_text(encoding="utf-8")


def _sections() -> dict[str, list[tuple[str, str, str, str]]]:
    """Section title -> rows (name, type, stored-as) of its field table."""
    out: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in DOC.splitlines():
        if line.startswith("## "):
            m = re.match(r"## `([^`]+)` \(version (\d+)\)", line)
            current = f"{m.group(1)} v{m.group(2)}" if m else line[3:].strip()
            out[current] = []
        elif current and line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[current].append((cells[0].strip("`"), cells[1], cells[2], cells[3]))
    return out


def _rows(fields: tuple[Field, ...]) -> list[tuple[str, str, str, str]]:
    return [(f.name, f.type.value, "column" if f.column else "data", f.doc) for f in fields]


def test_common_fields_documented() -> None:
    assert _sections()["Common fields"] == _rows(COMMON_FIELDS)


def test_every_event_type_documented_with_its_version_and_fields() -> None:
    sections = _sections()
    for et in CATALOGUE.values():
        key = f"{et.name} v{et.version}"
        assert key in sections, f"docs/events.md lacks a section for {key}"
        assert sections[key] == _rows(et.fields), f"fields of {et.name} differ between code and docs"


def test_no_undocumented_or_stale_sections() -> None:
    documented = {k for k in _sections() if " v" in k}
    assert documented == {f"{t.name} v{t.version}" for t in CATALOGUE.values()}


def test_column_fields_are_store_columns_of_the_same_type() -> None:
    columns = {f.name: f.type for f in STORE_COLUMNS}
    for et in CATALOGUE.values():
        for f in et.fields:
            if f.column:
                assert columns.get(f.name) == f.type, f"{et.name}.{f.name} is a column field but not a store column"
            else:
                assert f.name not in columns, f"{et.name}.{f.name} is a store column; mark it column=True"


def test_arrow_schema_covers_store_columns() -> None:
    names = arrow_schema().names
    assert names[: len(STORE_COLUMNS)] == [f.name for f in STORE_COLUMNS]
    assert names[len(STORE_COLUMNS):] == ["schema_version", "data", "key"]


def test_no_event_field_shadows_a_batch_column() -> None:
    """``key``, ``data``, ``schema_version`` and ``event_id`` are the batch's own columns (and
    ``EventBatchBuilder.add`` arguments): an event field of that name could never be recorded."""
    from stormwatch.events import CATALOGUE

    reserved = {"key", "data", "schema_version", "event_id"}
    clashes = [f"{t.name}.{f.name}" for t in CATALOGUE.values() for f in t.fields if f.name in reserved]
    assert clashes == []
