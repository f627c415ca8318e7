"""The codecs' error tree.

    ProtocolError            the input is not a valid message of the protocol
    ├── NeedMoreData         the input is a valid prefix: wait for more bytes
    └── MalformedMessage     the input is invalid at ``offset`` in ``field``

The sensor turns a ProtocolError into a ``session.anomaly`` event and closes the connection; any
other exception from a codec is a bug, and the fuzz tests fail on it.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of the codecs' errors."""


class NeedMoreData(ProtocolError):
    """The buffer holds an incomplete message; ``needed`` is the total size known so far, if any."""

    def __init__(self, what: str, needed: int | None = None) -> None:
        self.what = what
        self.needed = needed
        super().__init__(f"incomplete {what}" + (f" (need {needed} bytes)" if needed is not None else ""))


class MalformedMessage(ProtocolError):
    """The message is invalid: ``field`` at byte ``offset`` (relative to the message start)."""

    def __init__(self, what: str, field: str, offset: int, detail: str) -> None:
        self.what = what
        self.field = field
        self.offset = offset
        self.detail = detail
        super().__init__(f"malformed {what}: {field} at offset {offset}: {detail}")
