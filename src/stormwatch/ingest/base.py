"""What every reader is: a named format that recognises its input and turns it into events.

A reader gets a :class:`Source` (a path, its compression, and the sensor name to stamp) and yields
:class:`Chunk` objects: an Arrow table of events (:func:`stormwatch.events.arrow_schema`), the
records it had to reject (kept with their line or packet number), and counts. Line-oriented
formats subclass :class:`LineReader` and implement :meth:`LineReader.parse_line`; high-volume or
binary formats implement :meth:`Reader.read` themselves.

Readers do no writing: the collector hands their chunks to the store.
"""

from __future__ import annotations

import gzip
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, ClassVar, cast

import pyarrow as pa

from stormwatch.errors import InputError
from stormwatch.events import EventBatchBuilder, Reject

GZIP_MAGIC = b"\x1f\x8b"
HEAD_BYTES = 64 * 1024  # how much of an input the format sniffers see
CHUNK_ROWS = 200_000  # events per chunk handed to the store by line readers


class RecordError(ValueError):
    """Raised by a parser for one record it cannot use; becomes a :class:`Reject`."""


@dataclass(frozen=True)
class Source:
    """One input: where it is, how it is compressed, and what to stamp on its events."""

    path: str
    sensor: str
    compression: str | None = None  # "gzip" or None
    year_hint: int | None = None  # for formats whose timestamps lack a year (BSD syslog)
    mtime: datetime | None = None

    def open(self) -> IO[bytes]:
        """The decompressed byte stream."""
        try:
            if self.compression == "gzip":
                return cast(IO[bytes], gzip.open(self.path, "rb"))
            return open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc

    def head(self, n: int = HEAD_BYTES) -> bytes:
        with self.open() as f:
            try:
                return f.read(n)
            except (OSError, EOFError) as exc:  # e.g. a damaged gzip stream
                raise InputError(f"{self.path}: cannot read: {exc}") from exc


@dataclass
class Chunk:
    """A piece of one input turned into events."""

    events: pa.Table
    rejects: list[Reject] = field(default_factory=list)
    read: int = 0  # records (lines, packets) read for this chunk
    skipped: int = 0  # records read that are not events of ours (other syslog programs, comments)


class Reader(ABC):
    """A format: its name (the ``--format`` value), a sniffer and a reader."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def sniff(self, head: bytes) -> bool:
        """True if ``head`` (the first bytes of the decompressed input) is in this format."""

    @abstractmethod
    def read(self, src: Source) -> Iterator[Chunk]:
        """Yield the input's events chunk by chunk. Damage that stops reading raises
        :class:`~stormwatch.errors.InputError` after the readable chunks were yielded."""


class LineReader(Reader):
    """A text format read line by line with :meth:`parse_line`."""

    encoding: ClassVar[str] = "utf-8"

    def start(self, src: Source) -> Any:
        """Per-input state handed to every :meth:`parse_line` call (header fields, say)."""
        return None

    @abstractmethod
    def parse_line(self, line: str, state: Any, out: EventBatchBuilder) -> bool:
        """Parse one line (without its newline) and add its events to ``out``.

        Return True if the line was a record (even one that yielded no event), False for lines
        that are not records (comments, headers, other programs' syslog lines). Raise
        :class:`RecordError` with a reason for a record that cannot be used."""

    def read(self, src: Source) -> Iterator[Chunk]:
        out = EventBatchBuilder(src.sensor)
        state = self.start(src)
        chunk = Chunk(out.take())
        with src.open() as raw:
            # undecodable bytes are kept as \xNN text: a bad byte never loses its line
            text = io.TextIOWrapper(raw, encoding=self.encoding, errors="backslashreplace", newline="")
            lineno = 0
            try:
                for lineno, line in enumerate(text, 1):
                    line = line.rstrip("\r\n")
                    if not line.strip():
                        continue
                    chunk.read += 1
                    try:
                        if not self.parse_line(line, state, out):
                            chunk.skipped += 1
                    except RecordError as exc:
                        chunk.rejects.append(Reject.make(src.path, lineno, str(exc), line, self.name))
                    if len(out) >= CHUNK_ROWS:
                        chunk.events = out.take()
                        yield chunk
                        chunk = Chunk(out.take())
            except (OSError, EOFError) as exc:  # truncated gzip, read error: keep what was read
                chunk.events = out.take()
                yield chunk
                raise InputError(f"{src.path}: unreadable after line {lineno}: {exc}") from exc
        chunk.events = out.take()
        yield chunk


def source_for(path: str, sensor: str) -> Source:
    """A :class:`Source` for ``path`` with its compression sniffed from the magic bytes."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            magic = f.read(2)
        st = p.stat()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if p.is_dir():
        raise InputError(f"{path}: is a directory")
    mtime = datetime.fromtimestamp(st.st_mtime)
    return Source(path, sensor, "gzip" if magic == GZIP_MAGIC else None, mtime.year, mtime)
