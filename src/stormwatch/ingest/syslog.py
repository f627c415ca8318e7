"""How system log files frame their records: syslog headers and journald export entries.

Syslog lines come in four framings, told apart by their first characters:

- **BSD** (RFC 3164 §4.1.2, the classic ``/var/log/*`` format, ``journalctl -o short``):
  ``Nov 26 10:00:01 host message`` — optionally after a ``<PRI>`` when received raw from the
  network, or with microseconds (``journalctl -o short-precise``). The timestamp has no year
  and no zone (see :class:`Clock`).
- **RFC 5424** (§6): ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG``; the message
  starts after the structured data (``-`` or ``[...]`` elements).
- **ISO** (rsyslog's ``RSYSLOG_FileFormat``, ``journalctl -o short-iso``/``short-iso-precise``):
  ``2026-11-26T10:00:01.123456+01:00 host message``; converted to UTC, a zone-less time is UTC.
- **Epoch** (the DShield pi/AWS sensor's ``/var/log/dshield.log``, written by its rsyslog
  template ``%timegenerated:::date-unixtimestamp%``): ``1764151201 host message``.

:func:`parse_header` is the reference implementation. :func:`sql_time` and friends are the same
rules as DuckDB expressions for column-wise readers (``ingest/iptables.py``), which read a file
with :func:`sql_lines`, hand every line the SQL leaves undecided to the Python path, find the
line numbers of rejects with :func:`locate_lines` and number repeated lines with
:class:`Occurrences`. :func:`journal_entries` splits ``journalctl -o export`` output.
"""


from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stormwatch.errors import TruncatedInput
from stormwatch.events.batch import to_micros
from stormwatch.ingest.base import RecordError, Source
from stormwatch.ingest.normalize import epoch_micros, iso_micros

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = {m: i for i, m in enumerate(MONTHS, 1)}

_PRI = re.compile(r"<(\d{1,3})>")
# `journalctl -o short-precise` adds microseconds to the BSD time.
_BSD = re.compile(r"([A-Z][a-z]{2}) ([ 0-3]\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? ")
# The accepted spellings are exactly the ones the SQL path checks with the same patterns.
ISO_PATTERN = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:?\d\d)?"
EPOCH_PATTERN = r"\d{9,10}(?:\.\d{1,6})?"
_ISO = re.compile(ISO_PATTERN + " ")
_EPOCH = re.compile(EPOCH_PATTERN + " ")
ROLLBACK_SLACK = timedelta(days=1)  # a BSD date this far after the file's mtime is last year's


@dataclass(frozen=True)
class Clock:
    """What a year-less BSD timestamp means: the year to assume and the latest plausible time.

    A BSD date later than ``latest`` (the file's mtime plus a day) belongs to the year before:
    a log written in early January still holds December's lines. The time of day is taken as
    UTC — syslog wrote local time without a zone, so hosts logging in another zone are shifted
    by their offset (run the sensor in UTC, or use an ISO/RFC 5424 template).
    """

    year: int
    latest: datetime | None  # naive UTC; None = no roll-back

    @classmethod
    def for_source(cls, src: Source, now: datetime | None = None) -> Clock:
        ref = src.mtime
        if ref is None and src.year_hint is None:
            ref = now or datetime.now(UTC).replace(tzinfo=None)
        if ref is not None and ref.tzinfo is not None:
            ref = ref.astimezone(UTC).replace(tzinfo=None)
        year = src.year_hint or (ref.year if ref is not None else datetime.now(UTC).year)
        return cls(year, ref + ROLLBACK_SLACK if ref is not None else None)

    def bsd_micros(self, month: int, day: int, hh: int, mm: int, ss: int) -> int:
        """Epoch microseconds of a BSD timestamp in :attr:`year`, or the year before when the
        date does not exist in it (29 February) or lies after :attr:`latest`."""
        try:
            ts = datetime(self.year, month, day, hh, mm, ss)
            if self.latest is None or ts <= self.latest:
                return to_micros(ts)
        except ValueError:
            pass
        try:
            return to_micros(datetime(self.year - 1, month, day, hh, mm, ss))
        except ValueError:
            raise RecordError(f"not a date: {MONTHS[month - 1]} {day} {hh:02}:{mm:02}:{ss:02}") from None


def parse_header(line: str, clock: Clock) -> tuple[int, int]:
    """``(epoch microseconds, index where the message starts)`` of a syslog line.

    The message is what follows the host name (BSD, ISO, epoch) or the structured data
    (RFC 5424). RecordError for a line in none of the framings or with an impossible time."""
    pos = 0
    m = _PRI.match(line)
    if m:
        pos = m.end()
        if line.startswith("1 ", pos):
            return _rfc5424(line, pos + 2)
    m = _BSD.match(line, pos)
    if m:
        mon, day, hh, mi, ss, frac = m.groups()
        ts = clock.bsd_micros(_MONTH.get(mon, 0) or _bad_month(mon), int(day), int(hh), int(mi), int(ss))
        ts += int(frac.ljust(6, "0")) if frac else 0
    elif pos == 0 and (m := _ISO.match(line)):
        ts = iso_micros(m.group()[:-1])
    elif pos == 0 and (m := _EPOCH.match(line)):
        ts = epoch_micros(m.group()[:-1])
    else:
        raise RecordError("unrecognised syslog header (not BSD, RFC 5424, ISO or epoch)")
    return ts, _after_token(line, m.end())


def _rfc5424(line: str, pos: int) -> tuple[int, int]:
    """RFC 5424 §6: TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG]."""
    parts = line[pos:].split(" ", 5)
    if len(parts) < 6:
        raise RecordError("RFC 5424 header cut short")
    stamp = parts[0]
    if not re.fullmatch(ISO_PATTERN, stamp):
        raise RecordError(f"RFC 5424 timestamp not usable: {stamp[:40]!r}")
    ts = iso_micros(stamp)
    sd_at = pos + sum(len(p) + 1 for p in parts[:5])
    return ts, _skip_structured_data(line, sd_at)


def _skip_structured_data(line: str, i: int) -> int:
    """Index after the STRUCTURED-DATA (``-`` or ``[id param="v\\]"]...``) and its space."""
    if line.startswith("-", i):
        i += 1
    elif line.startswith("[", i):
        quoted = False
        while i < len(line):
            c = line[i]
            if c == "\\" and quoted:
                i += 2
                continue
            if c == '"':
                quoted = not quoted
            elif c == "]" and not quoted:
                i += 1
                if not line.startswith("[", i):
                    break
            i += 1
        else:
            raise RecordError("RFC 5424 structured data not closed")
    else:
        raise RecordError("RFC 5424 structured data missing")
    return i + 1 if line.startswith(" ", i) else i


def _after_token(line: str, i: int) -> int:
    """Index after the host name that starts at ``i`` and the space that ends it."""
    j = line.find(" ", i)
    if j <= i:
        raise RecordError("no host name after the timestamp")
    return j + 1


def _bad_month(name: str) -> int:
    raise RecordError(f"not a month: {name!r}")


# --- the same rules as DuckDB SQL --------------------------------------------------------------
# Expressions for the vectorised reader (ingest/iptables.py). Each is NULL where the line needs
# the Python path (parse_header), which that reader then takes, so both paths always agree.

SQL_BSD_SHAPE = r"[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d "  # left(line, 16) of a BSD line


def sql_bsd_this_year(clock: Clock) -> str:
    """SQL: a BSD line's time in :attr:`Clock.year` (NULL if that date does not exist). The
    caller checks ``left(line, 16)`` against :data:`SQL_BSD_SHAPE`."""
    return f"try_strptime('{clock.year} ' || left(line, 15), '%Y %b %d %H:%M:%S')"


def sql_time(clock: Clock, bsd: str, tok5424: str, tok: str) -> str:
    """SQL: the TIMESTAMP (UTC) of a header. ``bsd`` is :func:`sql_bsd_this_year` (NULL for other
    lines), ``tok5424`` an RFC 5424 TIMESTAMP ('' for other lines), ``tok`` the first token of an
    ISO or epoch line. A BSD time goes back a year as in :meth:`Clock.bsd_micros`."""
    last_year = f"try_strptime('{clock.year - 1} ' || left(line, 15), '%Y %b %d %H:%M:%S')"
    late = f"{bsd} > TIMESTAMP '{clock.latest.isoformat(sep=' ')}'" if clock.latest else "false"
    months = ", ".join(f"'{m}'" for m in MONTHS)
    iso = "make_timestamp(epoch_us(try_cast({} AS TIMESTAMPTZ)))"
    return f"""CASE
      WHEN {tok5424} <> '' THEN CASE WHEN regexp_full_match({tok5424}, '{ISO_PATTERN}') THEN {iso.format(tok5424)} END
      WHEN left(line, 3) IN ({months}) THEN CASE WHEN {bsd} IS NULL OR {late} THEN {last_year} ELSE {bsd} END
      WHEN left(line, 1) BETWEEN '0' AND '9' THEN
        CASE WHEN regexp_full_match({tok}, '{ISO_PATTERN}') THEN {iso.format(tok)}
             WHEN regexp_full_match({tok}, '{EPOCH_PATTERN}')
             THEN make_timestamp(CAST(round_even(CAST({tok} AS DOUBLE) * 1000000, 0) AS BIGINT)) END
    END"""


# --- reading syslog files column-wise ------------------------------------------------------------

BATCH_ROWS = 262_144  # lines per Arrow batch out of DuckDB (and per Chunk)


def sql_lines(src: Source, *, keep_refused: bool = True) -> str:
    """DuckDB table expression with one VARCHAR column ``line`` per line of ``src``.

    A CSV read with a 0x01 delimiter and no quoting is DuckDB's fastest way to split text into
    lines. Lines it refuses (invalid UTF-8, a 0x01 byte, over 2 MB) are left out and, with
    ``keep_refused``, listed with their line numbers in the connection's ``reject_errors`` table
    (``store_rejects``). An empty line is a NULL ``line``; ``\\r\\n`` and a lone ``\\r`` end lines
    too."""
    path = src.path.replace("'", "''")
    compression = "gzip" if src.compression == "gzip" else "none"
    refused = "store_rejects = true" if keep_refused else "ignore_errors = true"
    return (f"read_csv('{path}', columns = {{'line': 'VARCHAR'}}, delim = chr(1), quote = '', "
            f"escape = '', header = false, auto_detect = false, compression = '{compression}', {refused})")


SQL_NOT_BLANK = "line IS NOT NULL AND (left(line, 1) NOT IN (' ', chr(9)) OR trim(line, ' ' || chr(9)) <> '')"


@dataclass
class Located:
    """Where a second pass found the lines it was asked about."""

    positions: list[int]  # line number of each wanted text, in the order asked
    raw_lines: list[tuple[int, bytes]]  # (line number, bytes) of each wanted line number


def locate_lines(src: Source, texts: list[str], numbers: list[int]) -> Located:
    """One pass over ``src``: the 1-based line numbers of ``texts`` (the n-th repeat of a text
    gets its n-th line), and the raw bytes of the lines ``numbers``. Lines end at ``\\n``,
    ``\\r\\n`` or a lone ``\\r``, as in the column-wise read."""
    want: dict[bytes, list[int]] = {}
    for i, t in enumerate(texts):
        want.setdefault(t.encode("utf-8", "surrogateescape"), []).append(i)
    positions = [0] * len(texts)
    left = len(texts)
    numbered = set(numbers)
    raw_lines: list[tuple[int, bytes]] = []
    lineno = 0
    with src.open() as f:
        for chunk in f:
            body = chunk.rstrip(b"\n").removesuffix(b"\r")
            for part in body.split(b"\r") if b"\r" in body else (body,):
                lineno += 1
                slots = want.get(part)
                if slots:
                    positions[slots.pop(0)] = lineno
                    left -= 1
                if lineno in numbered:
                    raw_lines.append((lineno, part))
            if not left and len(raw_lines) == len(numbered):
                break
    return Located(positions, raw_lines)


class Occurrences:
    """EventBatchBuilder's occurrence suffix for column-wise readers.

    The n-th repeat of an identical line gets ``key + "\\x00" + n``, so it is kept and a re-read
    still adds nothing. Repeats are found by a 64-bit hash of the line (DuckDB's ``hash`` on the
    SQL path, the low half of the MD5 id on the compiled one) within a batch and against the
    batch before; identical lines further apart (a log concatenated to itself)
    are left to the store's de-duplication. Identical syslog lines carry the same second, so
    they sit next to each other in a time-ordered log."""

    def __init__(self) -> None:
        self._keys = np.empty(0, np.uint64)  # sorted distinct hashes of the previous batch
        self._totals = np.empty(0, np.int64)  # times each was seen so far

    def apply(self, table: pa.Table, hashes: np.ndarray) -> pa.Table:
        """``table`` (with a ``key`` column) with suffixes on repeated keys."""
        n = self.numbers(hashes)
        return table if n is None else suffixed(table, n)

    def numbers(self, hashes: np.ndarray) -> np.ndarray | None:
        """How many times each row's line was seen before it (0 for a first sighting), or None
        when no line of this batch repeats one."""
        if len(hashes) == 0:
            return None
        ordered = np.sort(hashes)
        starts = np.ones(len(ordered), bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        if starts.all() and not _meet(self._keys, ordered):  # the common case, found by sorting
            self._keys, self._totals = ordered, np.ones(len(ordered), np.int64)
            return None
        firsts = np.flatnonzero(starts)
        distinct = ordered[firsts]
        base = np.zeros(len(distinct), np.int64)
        if len(self._keys):
            at = np.minimum(np.searchsorted(self._keys, distinct), len(self._keys) - 1)
            hit = self._keys[at] == distinct
            base[hit] = self._totals[at[hit]]
        self._keys = distinct
        self._totals = base + np.diff(np.append(firsts, len(ordered)))
        # Number each row within its group of equal hashes, in file order (a stable sort).
        order = np.argsort(hashes, kind="stable")
        group = np.cumsum(starts) - 1
        n_sorted = base[group] + (np.arange(len(ordered)) - firsts[group])
        n: np.ndarray = np.empty_like(n_sorted)
        n[order] = n_sorted
        return n


def _meet(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the sorted arrays of distinct values ``a`` and ``b`` share one (one sort of
    both, cheaper than a binary search of each)."""
    if len(a) == 0 or a[-1] < b[0] or b[-1] < a[0]:
        return False
    both = np.sort(np.concatenate([a, b]))
    return bool((both[1:] == both[:-1]).any())


def suffixed(table: pa.Table, n: np.ndarray) -> pa.Table:
    """``table`` with ``key + "\\x00" + n`` as the key of every row whose ``n`` is not 0."""
    rows = np.flatnonzero(n)
    column = table.column("key").combine_chunks()
    repeats = pa.array([f"{column[i].as_py()}\x00{n[i]}" for i in rows.tolist()], pa.string())
    idx = table.schema.get_field_index("key")
    keys = pc.replace_with_mask(column, pa.array(n > 0), repeats)
    return table.set_column(idx, table.schema.field(idx), keys)


# --- journald export -----------------------------------------------------------------------------

MAX_FIELD = 16 * 1024 * 1024  # a binary journal field claiming more than this is damage, not data


def journal_entries(f: IO[bytes], path: str, wanted: frozenset[bytes]) -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """``(first line number, {field: value})`` of each entry of a Journal Export stream, with
    only the ``wanted`` fields kept.

    https://systemd.io/JOURNAL_EXPORT_FORMATS/: an entry is ``KEY=value`` lines ended by an empty
    line; a value with a newline or binary data is written as ``KEY``, a newline, its length as
    a little-endian 64-bit integer, the bytes and a newline. TruncatedInput when a binary value
    is cut short (after the entries before it were yielded)."""
    lineno = first = offset = 0
    fields: dict[bytes, bytes] = {}
    while raw := f.readline():
        lineno += 1
        offset += len(raw)
        if raw in (b"\n", b"\r\n"):
            if first:
                yield first, fields
            first, fields = 0, {}
            continue
        first = first or lineno
        name, eq, value = raw.rstrip(b"\n").partition(b"=")
        if eq:
            if name in wanted:
                fields[name] = value
            continue
        size_bytes = f.read(8)
        size = int.from_bytes(size_bytes, "little")
        if len(size_bytes) < 8 or size > MAX_FIELD:
            raise TruncatedInput(path, offset, f"journal field {name[:40]!r} has no usable length")
        data = f.read(size)
        if len(data) < size or f.read(1) != b"\n":
            raise TruncatedInput(path, offset, f"journal field {name[:40]!r} cut short")
        offset += 9 + size
        lineno += data.count(b"\n") + 1
        if name in wanted:
            fields[name] = data
    if first:
        yield first, fields
