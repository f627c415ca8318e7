"""Syslog line headers: where the timestamp is, what it means in UTC, and where the message starts.

Four framings are recognised, by their first characters:

- **BSD** (RFC 3164 §4.1.2, the classic ``/var/log/*`` format):
  ``Nov 26 10:00:01 host message`` — optionally after a ``<PRI>`` when received raw from the
  network. The timestamp has no year and no zone (see :class:`Clock`).
- **RFC 5424** (§6): ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG``; the message
  starts after the structured data (``-`` or ``[...]`` elements).
- **ISO** (rsyslog's ``RSYSLOG_FileFormat``, ``journalctl -o short-iso``/``short-iso-precise``):
  ``2026-11-26T10:00:01.123456+01:00 host message``; converted to UTC, a zone-less time is UTC.
- **Epoch** (the DShield pi/AWS sensor's ``/var/log/dshield.log``, written by its rsyslog
  template ``%timegenerated:::date-unixtimestamp%``): ``1764151201 host message``.

:func:`parse_header` is the reference implementation; :func:`sql_header_stage1` and
:func:`sql_header_stage2` are the same rules as DuckDB expressions for the vectorised reader
(``ingest/iptables.py``), which hands every line they leave undecided to :func:`parse_header`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stormwatch.events.batch import to_micros
from stormwatch.ingest.base import RecordError, Source
from stormwatch.ingest.normalize import epoch_micros, iso_micros

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = {m: i for i, m in enumerate(MONTHS, 1)}

_PRI = re.compile(r"<(\d{1,3})>")
_BSD = re.compile(r"([A-Z][a-z]{2}) ([ 0-3]\d) (\d\d):(\d\d):(\d\d) ")
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
        mon, day, hh, mi, ss = m.groups()
        ts = clock.bsd_micros(_MONTH.get(mon, 0) or _bad_month(mon), int(day), int(hh), int(mi), int(ss))
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
# Two SELECT-list stages over a column `line`. Every expression is NULL where the line needs the
# Python path (parse_header): an unusual framing, a bad date, a long host name. The vectorised
# reader sends such lines to parse_header, so both paths always agree (tests check this).

SQL_BSD_SHAPE = r"[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d "


def sql_header_stage1() -> str:
    """``c1`` (first character), ``tok1`` (first token: ISO/epoch time) and ``tok5424`` (the
    time of a ``<P>1 `` line; one-digit PRI only, as the kernel facility always has)."""
    return ("left(line, 1) AS c1, CASE WHEN po > 0 THEN split_part(left(line, 40), ' ', 1) END AS tok1, "
            "CASE WHEN po > 0 AND left(line, 1) = '<' THEN split_part(substr(line, 6, 40), ' ', 1) END AS tok5424")


def sql_header_stage2(clock: Clock) -> str:
    """``ts0`` (the time, for BSD lines in :attr:`Clock.year`) and ``msg_at`` (1-based index
    where the message starts), for candidate lines (``po > 0``) only."""
    months = ", ".join(f"'{m}'" for m in MONTHS)
    ts0 = f"""CASE
      WHEN po = 0 THEN NULL
      WHEN c1 BETWEEN 'A' AND 'Z' THEN
        CASE WHEN left(line, 3) IN ({months}) AND regexp_full_match(left(line, 16), '{SQL_BSD_SHAPE}')
             THEN try_strptime('{clock.year} ' || left(line, 15), '%Y %b %d %H:%M:%S') END
      WHEN c1 BETWEEN '0' AND '9' AND substr(line, 5, 1) = '-' THEN
        CASE WHEN regexp_full_match(tok1, '{ISO_PATTERN}')
             THEN make_timestamp(epoch_us(try_cast(tok1 AS TIMESTAMPTZ))) END
      WHEN c1 BETWEEN '0' AND '9' THEN
        CASE WHEN regexp_full_match(tok1, '{EPOCH_PATTERN}')
             THEN make_timestamp(CAST(round_even(CAST(tok1 AS DOUBLE) * 1000000, 0) AS BIGINT)) END
      WHEN c1 = '<' AND substr(line, 3, 3) = '>1 ' THEN
        CASE WHEN regexp_full_match(tok5424, '{ISO_PATTERN}')
             THEN make_timestamp(epoch_us(try_cast(tok5424 AS TIMESTAMPTZ))) END
    END"""
    # BSD/ISO/epoch: the message follows the host name (the token after the time). RFC 5424:
    # only `HOST APP - - - MSG` (no PROCID, MSGID or structured data) is decided here.
    hs = "CASE WHEN c1 BETWEEN 'A' AND 'Z' THEN 17 ELSE length(tok1) + 2 END"
    rest = "substr(line, 7 + length(tok5424), 80)"
    dash = f"strpos({rest}, ' - - - ')"
    msg_at = f"""CASE
      WHEN po = 0 THEN NULL
      WHEN c1 = '<' THEN
        CASE WHEN substr(line, 3, 3) = '>1 ' AND {dash} > 3 AND left({rest}, 1) <> ' '
                  AND substr({rest}, {dash} - 1, 1) <> ' '
                  AND length(replace(left({rest}, {dash} - 1), ' ', '')) = {dash} - 2
             THEN 13 + length(tok5424) + {dash} END
      ELSE CASE WHEN strpos(substr(line, {hs}, 64), ' ') > 1
                THEN ({hs}) + strpos(substr(line, {hs}, 64), ' ') END
    END"""
    return f"{ts0} AS ts0, {msg_at} AS msg_at"


def sql_header_stage3(clock: Clock) -> str:
    """``ts`` (TIMESTAMP, UTC): ``ts0``, or for a BSD line the year before when ``ts0`` is not a
    date or lies after :attr:`Clock.latest` — the rule of :meth:`Clock.bsd_micros`."""
    late = f"ts0 > TIMESTAMP '{clock.latest.isoformat(sep=' ')}'" if clock.latest else "false"
    last_year = f"try_strptime('{clock.year - 1} ' || left(line, 15), '%Y %b %d %H:%M:%S')"
    return (f"CASE WHEN c1 BETWEEN 'A' AND 'Z' AND (ts0 IS NULL OR {late}) "
            f"AND left(line, 3) IN ({', '.join(repr(m) for m in MONTHS)}) "
            f"AND regexp_full_match(left(line, 16), '{SQL_BSD_SHAPE}') THEN {last_year} ELSE ts0 END AS ts")


# --- reading syslog files column-wise ------------------------------------------------------------

BATCH_ROWS = 262_144  # lines per Arrow batch out of DuckDB (and per Chunk)


def sql_lines(src: Source) -> str:
    """DuckDB table expression with one VARCHAR column ``line`` per line of ``src``.

    A CSV read with a 0x01 delimiter and no quoting is DuckDB's fastest way to split text into
    lines. Lines it refuses (invalid UTF-8, a 0x01 byte, over 2 MB) are left out and listed with
    their line numbers in the connection's ``reject_errors`` table (``store_rejects``); an empty
    line is a NULL ``line``. ``\\r\\n`` and a lone ``\\r`` end lines too."""
    path = src.path.replace("'", "''")
    compression = "gzip" if src.compression == "gzip" else "none"
    return (f"read_csv('{path}', columns = {{'line': 'VARCHAR'}}, delim = chr(1), quote = '', "
            f"escape = '', header = false, auto_detect = false, compression = '{compression}', "
            f"store_rejects = true)")


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
    still adds nothing. Repeats are found by DuckDB's 64-bit ``hash`` of the line within a batch
    and against the batch before; identical lines further apart (a log concatenated to itself)
    are left to the store's de-duplication. Identical syslog lines carry the same second, so
    they sit next to each other in a time-ordered log."""

    def __init__(self) -> None:
        self._keys = np.empty(0, np.uint64)  # sorted distinct hashes of the previous batch
        self._totals = np.empty(0, np.int64)  # times each was seen so far

    def apply(self, table: pa.Table, hashes: np.ndarray) -> pa.Table:
        """``table`` (with a ``key`` column) with suffixes on repeated keys."""
        if len(hashes) == 0:
            return table
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        starts = np.ones(len(ordered), bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        firsts = np.flatnonzero(starts)
        distinct = ordered[firsts]
        base = np.zeros(len(distinct), np.int64)
        if len(self._keys):
            at = np.minimum(np.searchsorted(self._keys, distinct), len(self._keys) - 1)
            hit = self._keys[at] == distinct
            base[hit] = self._totals[at[hit]]
        self._keys = distinct
        self._totals = base + np.diff(np.append(firsts, len(ordered)))
        if len(firsts) == len(ordered) and not base.any():
            return table  # the common case: no line repeated
        group = np.cumsum(starts) - 1
        n_sorted = base[group] + (np.arange(len(ordered)) - firsts[group])
        n = np.empty_like(n_sorted)
        n[order] = n_sorted
        rows = np.flatnonzero(n)
        column = table.column("key").combine_chunks()
        repeats = pa.array([f"{column[i].as_py()}\x00{n[i]}" for i in rows.tolist()], pa.string())
        idx = table.schema.get_field_index("key")
        keys = pc.replace_with_mask(column, pa.array(n > 0), repeats)
        return table.set_column(idx, table.schema.field(idx), keys)
