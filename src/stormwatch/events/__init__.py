"""The event catalogue: every fact stormwatch records is one of these event types.

See :mod:`stormwatch.events.catalogue` for the definitions and ``docs/events.md`` for the
field-by-field documentation that a test keeps in agreement with the code.
"""

from stormwatch.events.batch import EventBatchBuilder, Reject
from stormwatch.events.catalogue import CATALOGUE, COMMON_FIELDS, STORE_COLUMNS, arrow_schema, event_type
from stormwatch.events.fields import EventType, Field, FieldType

__all__ = [
    "CATALOGUE",
    "COMMON_FIELDS",
    "STORE_COLUMNS",
    "EventBatchBuilder",
    "EventType",
    "Field",
    "FieldType",
    "Reject",
    "arrow_schema",
    "event_type",
]
