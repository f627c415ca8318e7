"""The iptables reader's compiled fast path: syslog text → event tables with their ids.

:func:`read_fast` reads the input in blocks of whole lines and hands each to the C scanner
(``_netfilter.scan``, built from ``_netfilter.c`` at install; the GIL is released while it runs,
so the store's writer thread inserts the chunk before while the next one is parsed). The scanner
decides every line it can with certainty — the kernel's own layout after a BSD, ISO 8601, epoch
or RFC 5424 syslog header — writing the event columns and the event id
(:mod:`stormwatch.events.ids`; the ``key`` column stays empty); every other line containing
``IN=`` comes back by number for the reference parser
(:func:`stormwatch.ingest.iptables.parse_syslog_line`), so both paths give the same events. Line
numbers of rejects come straight from the scan: no second pass. Chunks are whole DuckDB row
groups (:data:`~stormwatch.events.memory.BULK_ROWS` events), which the store's writer hands over
without copying.

When the extension is missing (no C compiler at install), :func:`available` is False and the
reader uses its DuckDB SQL path instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stormwatch.errors import InputError
from stormwatch.events import EventBatchBuilder, Reject, arrow_schema, event_type
from stormwatch.events.batch import to_micros
from stormwatch.events.ids import event_id, id_prefix, schema_with_ids, split_id
from stormwatch.events.memory import BULK_ROWS, bulk_pool
from stormwatch.ingest.base import Chunk, RecordError, Source
from stormwatch.ingest.normalize import FLAG_ORDER
from stormwatch.ingest.syslog import Clock, Occurrences

_netfilter: ModuleType | None
try:
    _netfilter = importlib.import_module("stormwatch.ingest._netfilter")
except ImportError:  # built without a C compiler: the SQL path reads instead
    _netfilter = None

EVENT = "fw.connection"
VERSION = event_type(EVENT).version
BLOCK_BYTES = 32 << 20  # text read per block
PIECE_BYTES = 1 << 20  # per read of a gzip stream, so damage loses at most this much
ROWS = BULK_ROWS  # events per chunk
SLOW_ROWS = 1 << 14  # lines for the reference parser per scan call
_PROTOS = pa.array(["tcp", "udp", "icmp", "icmp6"])
_ACTIONS = pa.array(["accept", "drop", "reject", "log"])
# tcp_flags by the scanner's bit mask (bit 7 = C ... bit 0 = F); index 256 = not TCP
_FLAGS = pa.array(["".join(c for i, c in enumerate(FLAG_ORDER) if m & (1 << (7 - i))) for m in range(256)] + [None],
                  pa.string())
# bytes per row of each string column's buffer (the scanner stops a call when one is full)
_STRING_BYTES = (("src_ip", 40), ("dst_ip", 40), ("data", 160))


def available() -> bool:
    """True when the compiled scanner was built."""
    return _netfilter is not None


def md5_lanes() -> int:
    """The MD5 lanes the scanner uses on this CPU: 16 (AVX-512), 8 (AVX2) or 1."""
    assert _netfilter is not None
    return int(_netfilter.md5_lanes())


def md5_list(prefix: bytes, messages: list[bytes], lanes: int) -> list[tuple[int, int]]:
    """``(id_lo, id_hi)`` of ``prefix + m`` for each message, hashed ``lanes`` at a time (tests
    hold every width to hashlib)."""
    assert _netfilter is not None
    return [(int(lo), int(hi)) for lo, hi in _netfilter.md5_list(prefix, messages, lanes)]


class _Outputs:
    """The scanner's writable buffers for one chunk (filled by one or more scan calls), from the
    bulk pool (which hands freed memory out again rather than fresh pages); the table built from
    them shares them."""

    def __init__(self) -> None:
        def buf(size: int) -> pa.Buffer:
            return pa.allocate_buffer(size, memory_pool=bulk_pool())

        self.arrow: dict[str, pa.Buffer] = {}
        self.np: dict[str, np.ndarray] = {}
        for name, dtype, rows in (("ts", np.int64, ROWS), ("src_port", np.int32, ROWS), ("dst_port", np.int32, ROWS),
                                  ("proto", np.uint8, ROWS), ("flags", np.uint16, ROWS), ("action", np.uint8, ROWS),
                                  ("id_lo", np.uint64, ROWS), ("id_hi", np.uint64, ROWS), ("lines", np.int64, 2 * ROWS),
                                  ("slow", np.int64, SLOW_ROWS), ("spans", np.int64, 2 * SLOW_ROWS)):
            self._add(name, buf(rows * np.dtype(dtype).itemsize), dtype)
        for name, per_row in _STRING_BYTES:
            self._add(f"{name}.off", buf((ROWS + 1) * 4), np.int32)
            self._add(f"{name}.data", buf(ROWS * per_row), np.uint8)

    def _add(self, name: str, buffer: pa.Buffer, dtype: type) -> None:
        self.arrow[name] = buffer
        self.np[name] = np.frombuffer(buffer, dtype)

    def buffers(self) -> list[np.ndarray]:
        a = self.np
        return [a["ts"], a["src_port"], a["dst_port"], a["proto"], a["flags"], a["action"], a["id_lo"], a["id_hi"],
                *(a[f"{name}.{part}"] for name, _ in _STRING_BYTES for part in ("off", "data")),
                a["lines"], a["slow"], a["spans"]]

    def string(self, name: str, n: int) -> pa.Array:
        return pa.StringArray.from_buffers(n, self.arrow[f"{name}.off"], self.arrow[f"{name}.data"])

    def fixed(self, name: str, typ: pa.DataType, n: int) -> pa.Array:
        return pa.Array.from_buffers(typ, n, [None, self.arrow[name]])

    def table(self, n: int, sensor: str) -> pa.Table:
        """The first ``n`` events as a table of :func:`~stormwatch.events.ids.schema_with_ids`."""
        schema = schema_with_ids()
        ports = [pa.array(self.np[p][:n], pa.int32(), mask=self.np[p][:n] < 0) for p in ("src_port", "dst_port")]
        cols: dict[str, Any] = {
            "event": pa.repeat(EVENT, n), "ts": self.fixed("ts", pa.timestamp("us"), n),
            "sensor": pa.repeat(sensor, n), "session": pa.nulls(n, pa.string()),
            "src_ip": self.string("src_ip", n), "src_port": ports[0],
            "dst_ip": self.string("dst_ip", n), "dst_port": ports[1],
            "proto": pc.take(_PROTOS, self.np["proto"][:n]), "tcp_flags": pc.take(_FLAGS, self.np["flags"][:n]),
            "action": pc.take(_ACTIONS, self.np["action"][:n]), "outcome": pa.nulls(n, pa.string()),
            "count": pa.repeat(pa.scalar(1, pa.int64()), n),
            "schema_version": pa.repeat(pa.scalar(VERSION, pa.int16()), n),
            "data": self.string("data", n), "key": pa.nulls(n, pa.string()),
            "id_lo": self.fixed("id_lo", pa.uint64(), n), "id_hi": self.fixed("id_hi", pa.uint64(), n),
        }
        return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def _blocks(src: Source) -> Iterator[tuple[memoryview, BaseException | None]]:
    """Blocks of whole lines (views of a reused buffer, valid until the next block); the last
    may end without a line end. A read error ends the stream with ``(whatever was read before
    it, the error)``."""
    gz = src.compression == "gzip"
    buf = bytearray(BLOCK_BYTES)
    size = 0  # bytes in buf: the carried-over part line, then what was read
    with src.open() as f:
        while True:
            view = memoryview(buf)
            error: BaseException | None = None
            try:
                while size < len(buf):
                    if gz:
                        piece = f.read1(min(PIECE_BYTES, len(buf) - size))  # type: ignore[attr-defined]
                        got = len(piece)
                        view[size:size + got] = piece
                    else:
                        got = f.readinto(view[size:])  # type: ignore[attr-defined]
                    if not got:
                        break
                    size += got
            except (OSError, EOFError) as exc:
                error = exc
            if size < len(buf) or error is not None:  # the end of the input
                if size or error is not None:
                    yield view[:size], error
                return
            cut = buf.rfind(b"\n") + 1
            if cut == 0:  # no \n: a lone \r ends a line too, unless it may be half of \r\n
                cut = buf.rfind(b"\r", 0, size - 1) + 1
            if cut == 0:  # one line longer than the buffer: a bigger one (the last block may still be in use)
                buf = buf + bytes(len(buf))
                continue
            yield view[:cut], None
            view[:size - cut] = view[cut:size]
            size -= cut


def read_fast(src: Source, clock: Clock, parse_line: Callable[[str, Clock], tuple[int, dict[str, Any]] | None],
              fmt: str) -> Iterator[Chunk]:
    """The events of ``src`` (see the module doc); ``parse_line`` is the reference parser.

    Chunks hold :data:`~stormwatch.events.memory.BULK_ROWS` scanned events each (the outputs
    fill across blocks), the last one the rest and the reference parser's events."""
    assert _netfilter is not None
    scan = _Scan(src, clock, parse_line, fmt)
    for block, error in _blocks(src):
        at = 0
        while at < len(block):
            end = scan.run(block, at)
            if end == at or scan.filled == ROWS:  # the outputs are full
                yield scan.take()
            at = end
        if error is not None:
            yield scan.take(last=True)
            raise InputError(f"{src.path}: unreadable after line {scan.base}: {error}") from error
    yield scan.take(last=True)


class _Scan:
    """The state of one input's scan: outputs being filled, counts, rejects and the reference
    parser's events since the last chunk, and the line number reached."""

    def __init__(self, src: Source, clock: Clock,
                 parse_line: Callable[[str, Clock], tuple[int, dict[str, Any]] | None], fmt: str) -> None:
        self.src, self.clock, self.parse_line, self.fmt = src, clock, parse_line, fmt
        self.prefix = id_prefix(EVENT, src.sensor)
        self.latest = None if clock.latest is None else to_micros(clock.latest)
        self.occurrences = Occurrences()
        self.slow = EventBatchBuilder(src.sensor)  # numbers repeats file-wide
        self.base = 0  # lines scanned so far
        self.out, self.filled = _Outputs(), 0
        self.chunk = Chunk(arrow_schema().empty_table())

    def run(self, block: memoryview, at: int) -> int:
        """Scan ``block`` from ``at`` into the outputs; returns where it stopped."""
        assert _netfilter is not None
        out, before = self.out, self.filled
        end, lines, read, other, self.filled, nslow = _netfilter.scan(
            block, at, before, self.prefix, self.clock.year, self.latest, *out.buffers())
        repeats = self.occurrences.numbers(out.np["id_lo"][before:self.filled])
        if repeats is not None:
            _renumber(out, before, repeats, block, self.src.sensor)
        self.chunk.read += read
        self.chunk.skipped += other
        spans = out.np["spans"][:2 * nslow].tolist()
        for i, lineno in enumerate(out.np["slow"][:nslow].tolist()):
            line = bytes(block[spans[2 * i]:spans[2 * i + 1]]).decode("utf-8", "backslashreplace")
            try:
                got = self.parse_line(line, self.clock)
            except RecordError as exc:
                self.chunk.rejects.append(Reject.make(self.src.path, self.base + lineno, str(exc), line, self.fmt))
                continue
            if got is None:
                self.chunk.skipped += 1
            else:
                self.slow.add(EVENT, got[0], line, **got[1])
        self.base += lines
        return int(end)

    def take(self, last: bool = False) -> Chunk:
        """The chunk so far (on the ``last`` one, the reference parser's events too); the
        outputs start again."""
        chunk = self.chunk
        chunk.events = self.out.table(self.filled, self.src.sensor)
        if last and len(self.slow):
            chunk.events = pa.concat_tables([chunk.events, self.slow.take()], promote_options="default")
        self.out, self.filled = _Outputs(), 0
        self.chunk = Chunk(arrow_schema().empty_table())
        return chunk


def _renumber(out: _Outputs, first: int, n: np.ndarray, block: memoryview, sensor: str) -> None:
    """The ids of repeated lines among the rows from ``first`` on: the key of the n-th repeat of
    a line is ``line + "\\x00" + n`` (EventBatchBuilder's occurrence suffix), so it is kept and a
    re-read still adds nothing."""
    lines, lo, hi = out.np["lines"], out.np["id_lo"], out.np["id_hi"]
    for i in np.flatnonzero(n).tolist():
        row = first + i
        key = f"{bytes(block[lines[2 * row]:lines[2 * row + 1]]).decode()}\x00{n[i]}"
        lo[row], hi[row] = split_id(event_id(EVENT, sensor, key))
