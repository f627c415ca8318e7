"""The exception tree of stormwatch.

    StormwatchError
    ├── InputError            a file or record we were given cannot be used
    │   ├── UnknownFormat     no reader recognised the input (names what was tried)
    │   ├── TruncatedInput    readable up to an offset, damaged after it
    │   └── DataFileError     an operator's data file (knowledge base, rules) breaks its schema
    ├── StoreError            the database cannot be opened, migrated or written
    └── EngineError           an analytics engine (DuckDB, Spark) is unavailable or failed

Anything else escaping a stormwatch function is a bug. This module imports nothing of ours so that
every layer may raise these.
"""

from __future__ import annotations


class StormwatchError(Exception):
    """Base of every error stormwatch raises on purpose."""


class InputError(StormwatchError):
    """An input file or record cannot be used."""


class UnknownFormat(InputError):
    """No reader recognised the input; ``tried`` names the formats that were tried."""

    def __init__(self, path: str, tried: list[str], detail: str = "") -> None:
        self.path = path
        self.tried = tried
        msg = f"{path}: not in any known format (tried: {', '.join(tried)})"
        if detail:
            msg += f"; {detail}"
        super().__init__(msg)


class TruncatedInput(InputError):
    """The input was readable up to ``offset`` and damaged after it."""

    def __init__(self, path: str, offset: int, detail: str) -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"{path}: damaged at byte {offset}: {detail}")


class DataFileError(InputError):
    """A data file (knowledge base, threat-level rules) that cannot be read, or one of its items
    that breaks the schema: the message names the file, the item (``kind`` ``name``) and the field."""

    kind = "item"

    def __init__(self, source: str, item: str | None, field: str | None, detail: str) -> None:
        self.source, self.item, self.field, self.detail = source, item, field, detail
        where = source + (f": {self.kind} {item}" if item else "") + (f": field {field!r}" if field else "")
        super().__init__(f"{where}: {detail}")


class StoreError(StormwatchError):
    """The store cannot be opened, migrated or written."""


class EngineError(StormwatchError):
    """An analytics engine is unavailable or failed."""
