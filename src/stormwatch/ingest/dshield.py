"""DShield submissions: the classic tab-separated report and the JSON firewall submission.

Sources (see ``shared/research/early-warning-anchors.md`` section 1.1):

- **Tab-separated report** (format ``dshield``), as written by the reference client DShield.py
  v4.0 (``eilandert/DShield.py``, function ``report()``)::

      YYYY-MM-DD HH:MM:SS +TZ \\t userid \\t count \\t src_ip \\t src_port \\t dst_ip \\t dst_port \\t proto \\t flags

  The offset is ``+HH:MM`` as DShield.py writes it (``-HHMM`` and ``+H`` are accepted too); times
  are converted to UTC. ``count`` is how many identical consecutive log lines the client collapsed
  into this one. ICMP carries its type and code in the port columns (→ ``icmp_type``/``icmp_code``,
  no ports); other protocols without ports write ``???``. ``proto`` is a name (``TCP``) or an IANA
  number (ipchains lines); flags are letters (``S``, ``SA``…; DShield.py drops CWR and ECE, ``W``/
  ``E`` are accepted). Lines starting with ``#`` are comments. The report holds what the client's
  firewall blocked (DShield.py skips lines carrying the ``ACCEPT`` log prefix), so ``action`` is
  ``drop``.

  *Identical lines are added up.* DShield's server acknowledges a report with "identical lines
  are added up on import" (``DShield-ISC/dshield`` issues #48, #124). This reader does the same
  within one input: all lines with the same text become one event whose ``count`` is the sum of
  their counts, keyed by that text, emitted when the input has been read (in order of first
  appearance). Re-reading the file therefore offers the same keys and adds nothing. The cost of
  following the server: if a growing report gains another copy of an already stored line, the
  re-read offers the same key with a larger count and the store keeps the first sum.

- **JSON firewall submission** (format ``dshield-json``), the body the DShield sensor's
  ``fwlogparser.py`` (``DShield-ISC/dshield``, ``srv/dshield/fwlogparser.py``, 2019-11-17) posts::

      {"type": "firewall", "logs": [{"time": 1700000000, "sip": "...", "dip": "...", "proto": 6,
                                     "sport": "51234", "dport": "445", "flags": "S", "version": 4}]}

  ``time`` is epoch seconds; ``proto`` an IANA number; ``sport``/``dport`` are text (ICMP type and
  code for ICMP); ``flags`` are ``1`` (CWR), ``2`` (ECE), then ``UAPRSF`` letters. The input may be
  one document (over one or many lines), a JSON array of records, or one JSON value per line (a
  submission or a single record). fwlogparser reads the sensor's PREROUTING log, which records every
  new inbound connection *before* any verdict, so ``action`` is ``log``.

  Rejects are numbered as follows. For a single document, a record that lacks a field or holds a
  bad value is rejected alone and its "line" is its 1-based position in ``logs`` (record 1, 2, …),
  since a pretty-printed document's line numbers say nothing about records. For one JSON value per
  line, the line number is the file's line and a bad record is named by its 1-based position in the
  reason; the other records of that line are kept. ``key`` is the record dumped as canonical JSON
  (sorted keys, no spaces), so the same record read from either layout is the same event.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from stormwatch.errors import InputError, TruncatedInput
from stormwatch.events import EventBatchBuilder, Reject
from stormwatch.ingest.base import CHUNK_ROWS, HEAD_BYTES, Chunk, LineReader, RecordError, Source
from stormwatch.ingest.normalize import (
    canonical_ip,
    checked_micros,
    epoch_micros,
    flags_from_letters,
    port,
    proto_name,
)

EVENT = "fw.connection"
# A single-document submission is read whole (fwlogparser caps one at 100,000 records, a few MB).
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
MAX_COUNT = 1_000_000_000  # per line; the store's count column is a 32-bit integer
_MAX_REASONS = 5  # bad records named in one line's reject reason

_TIME = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d\d):(\d\d) ([+-])(\d{1,2})(?::?(\d\d))?")
_TSV_SNIFF = re.compile(r"\d{4}-\d{1,2}-\d{1,2} \d{1,2}:\d\d:\d\d [+-]\d{1,2}(?::?\d\d)?\t[^\t]*\t\d+\t")
_FLAG_LETTERS = frozenset("CEUAPRSFW")
_ICMP = ("icmp", "icmp6")
_EPOCH = date(1970, 1, 1)


def _complete_lines(head: bytes) -> list[str]:
    """The lines of a sniffed head without a last line the head may have cut short."""
    lines = head.decode("utf-8", "replace").splitlines()
    if len(lines) > 1 and not head.endswith((b"\n", b"\r")):
        lines.pop()
    return lines


# -- tab-separated report ----------------------------------------------------------------------


@dataclass
class _Row:
    """One parsed report line; ``count`` grows as identical lines are added up."""

    ts: int
    fields: dict[str, Any]
    count: int


def _tsv_micros(text: str) -> int:
    m = _TIME.fullmatch(text.strip())
    if m is None:
        raise RecordError(f"not a DShield time 'YYYY-MM-DD HH:MM:SS +TZ': {text[:40]!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    off = (int(m.group(8)) * 60 + int(m.group(9) or 0)) * 60
    if off > 14 * 3600:
        raise RecordError(f"time zone offset out of range: {text[:40]!r}")
    try:
        days = _days(y, mo, d)
    except ValueError:
        raise RecordError(f"not a date: {text[:40]!r}") from None
    if h > 23 or mi > 59 or s > 60:
        raise RecordError(f"not a time of day: {text[:40]!r}")
    seconds = days * 86_400 + h * 3600 + mi * 60 + s
    # Local time = UTC + offset, so UTC = local - offset.
    seconds += -off if m.group(7) == "+" else off
    return checked_micros(seconds * 1_000_000, text)


def _days(y: int, mo: int, d: int) -> int:
    """Days since 1970-01-01 (proleptic Gregorian); ValueError for an impossible date."""
    return (date(y, mo, d) - _EPOCH).days


def _tsv_port(value: str) -> int | None:
    return None if value in ("???", "") else port(value)


def _small_int(value: str, what: str) -> int | None:
    if value in ("???", "", "-"):
        return None
    if not value.isdecimal() or int(value) > 255:
        raise RecordError(f"not an ICMP {what}: {value[:16]!r}")
    return int(value)


def parse_tsv(line: str) -> _Row:
    """One report line → its event fields (RecordError for a malformed line)."""
    parts = line.split("\t")
    if len(parts) == 8:  # flags column absent rather than empty
        parts.append("")
    if len(parts) != 9:
        raise RecordError(f"{len(parts)} tab-separated fields, a DShield line has 9")
    when, _userid, count, src, spt, dst, dpt, proto, flags = (p.strip() for p in parts)
    ts = _tsv_micros(when)
    if not count.isdecimal() or not 1 <= int(count) <= MAX_COUNT:
        raise RecordError(f"count is not a number from 1 to {MAX_COUNT}: {count[:16]!r}")
    p = proto_name(proto)
    fields: dict[str, Any] = {"src_ip": canonical_ip(src), "dst_ip": canonical_ip(dst), "proto": p,
                              "action": "drop", "format": "dshield"}
    if p in _ICMP:
        fields["icmp_type"] = _small_int(spt, "type")
        fields["icmp_code"] = _small_int(dpt, "code")
    else:
        fields["src_port"] = _tsv_port(spt)
        fields["dst_port"] = _tsv_port(dpt)
    if flags:
        bad = set(flags.upper()) - _FLAG_LETTERS
        if bad:
            raise RecordError(f"not TCP flag letters: {flags[:16]!r}")
        if p == "tcp":
            fields["tcp_flags"] = flags_from_letters(flags)
    return _Row(ts, fields, int(count))


class _Summing(LineReader):
    """One pass over a report that adds identical lines up into ``totals`` (see module doc)."""

    name = "dshield"
    description = "DShield tab-separated report (summing pass)"

    def __init__(self, totals: dict[str, _Row]) -> None:
        self.totals = totals

    def sniff(self, head: bytes) -> bool:
        return False

    def start(self, src: Source) -> dict[str, _Row]:
        return self.totals

    def parse_line(self, line: str, state: dict[str, _Row], out: EventBatchBuilder) -> bool:
        if line.startswith("#"):
            return False
        row = state.get(line)
        if row is not None:
            # Clamped to what the store's 32-bit count holds; no real report comes near it.
            row.count = min(row.count + _line_count(line), 2**31 - 1)
            return True
        state[line] = parse_tsv(line)
        return True


def _line_count(line: str) -> int:
    """The count column of a line already parsed once (so known to be well formed)."""
    return int(line.split("\t")[2].strip())


class DshieldTsvReader(LineReader):
    """DShield tab-separated report → ``fw.connection``, identical lines added up."""

    name = "dshield"
    description = "DShield tab-separated report (DShield.py: time, userid, count, addresses, ports, proto, flags)"

    def sniff(self, head: bytes) -> bool:
        data = [ln for ln in _complete_lines(head) if ln.strip() and not ln.startswith("#")][:5]
        return bool(data) and all(_TSV_SNIFF.match(ln) for ln in data)

    def parse_line(self, line: str, state: Any, out: EventBatchBuilder) -> bool:
        """One line on its own (no adding up): used when a caller feeds single lines."""
        if line.startswith("#"):
            return False
        row = parse_tsv(line)
        out.add(EVENT, row.ts, line, count=row.count, **row.fields)
        return True

    def read(self, src: Source) -> Iterator[Chunk]:
        totals: dict[str, _Row] = {}
        try:
            # The pass yields chunks without events (its parse_line only adds up); they carry the
            # rejects and line counts. The events follow once every line has been seen.
            yield from _Summing(totals).read(src)
        except InputError:
            yield from _emit_totals(src, totals)
            raise
        yield from _emit_totals(src, totals)


def _emit_totals(src: Source, totals: dict[str, _Row]) -> Iterator[Chunk]:
    out = EventBatchBuilder(src.sensor)
    for line, row in totals.items():
        out.add(EVENT, row.ts, line, count=row.count, **row.fields)
        if len(out) >= CHUNK_ROWS:
            yield Chunk(out.take())
    if len(out):
        yield Chunk(out.take())


# -- JSON submission ---------------------------------------------------------------------------

_RECORD_KEYS = ("time", "sip", "dip", "proto")
_JSON_FLAGS = {"1": "C", "2": "E"}
_JSON_FLAG_CHARS = frozenset("12UAPRSF")
_LOGS_ARRAY = re.compile(r'"logs"\s*:\s*\[')


def _key(rec: dict[str, Any]) -> str:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"))


def _text(rec: dict[str, Any], name: str) -> str:
    v = rec.get(name)
    if v is None:
        raise RecordError(f"record lacks {name!r}")
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise RecordError(f"{name!r} is not text or a number: {str(v)[:32]!r}")
    return str(v).strip()


def add_record(rec: Any, out: EventBatchBuilder) -> None:
    """One fwlogparser record → one event (RecordError if it lacks a field or holds a bad value)."""
    if not isinstance(rec, dict):
        raise RecordError("record is not a JSON object")
    for name in _RECORD_KEYS:
        if rec.get(name) in (None, ""):
            raise RecordError(f"record lacks {name!r}")
    t = rec["time"]
    if isinstance(t, bool) or not isinstance(t, (int, float, str)):
        raise RecordError(f"'time' is not epoch seconds: {str(t)[:32]!r}")
    ts = epoch_micros(t)
    p = proto_name(_text(rec, "proto"))
    fields: dict[str, Any] = {"src_ip": canonical_ip(_text(rec, "sip")),
                              "dst_ip": canonical_ip(_text(rec, "dip")),
                              "proto": p, "action": "log", "format": "dshield-json"}
    if p in _ICMP:  # fwlogparser maps ICMP TYPE→sport and CODE→dport
        if rec.get("sport") is not None:
            fields["icmp_type"] = _small_int(_text(rec, "sport"), "type")
        if rec.get("dport") is not None:
            fields["icmp_code"] = _small_int(_text(rec, "dport"), "code")
    elif p in ("tcp", "udp", "sctp"):
        fields["src_port"] = port(_text(rec, "sport"))
        fields["dst_port"] = port(_text(rec, "dport"))
    flags = rec.get("flags")
    if flags:
        if not isinstance(flags, str) or set(flags.upper()) - _JSON_FLAG_CHARS:
            raise RecordError(f"not fwlogparser TCP flags: {str(flags)[:16]!r}")
        if p == "tcp":
            fields["tcp_flags"] = flags_from_letters("".join(_JSON_FLAGS.get(c, c) for c in flags))
    out.add(EVENT, ts, _key(rec), **fields)


def _records(doc: Any) -> list[Any] | None:
    """The records of a submission object or an array of records; None if ``doc`` is neither."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and "logs" in doc:
        kind = doc.get("type", "firewall")
        if kind != "firewall":
            raise RecordError(f"not a firewall submission: type {str(kind)[:32]!r}")
        logs = doc["logs"]
        if not isinstance(logs, list):
            raise RecordError("'logs' is not an array")
        return logs
    return None


def _is_record(obj: Any) -> bool:
    return isinstance(obj, dict) and "sip" in obj and "dip" in obj


class DshieldJsonReader(LineReader):
    """DShield JSON firewall submission (fwlogparser.py body) → ``fw.connection``."""

    name = "dshield-json"
    description = 'DShield JSON firewall submission ({"type":"firewall","logs":[...]}), one document or one per line'

    def sniff(self, head: bytes) -> bool:
        text = head.decode("utf-8", "replace").lstrip()
        if not text.startswith(("{", "[")):
            return False
        if re.search(r'"type"\s*:\s*"firewall"', text[:4096]) and _LOGS_ARRAY.search(text):
            return True
        for line in _complete_lines(head)[:3]:
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, list):
                obj = obj[0] if obj else None
            if _is_record(obj) and "time" in obj:
                return True
        return False

    def parse_line(self, line: str, state: Any, out: EventBatchBuilder) -> bool:
        """One JSON value on one line: a submission, an array of records, or one record."""
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"broken JSON: {exc}") from None
        records = _records(doc)
        if records is None:
            add_record(doc, out)
            return True
        bad: list[str] = []
        for i, rec in enumerate(records, 1):
            try:
                add_record(rec, out)
            except RecordError as exc:
                bad.append(f"record {i}: {exc}")
        if bad:
            more = f"; and {len(bad) - _MAX_REASONS} more" if len(bad) > _MAX_REASONS else ""
            raise RecordError(f"{len(bad)} of {len(records)} records rejected: "
                              + "; ".join(bad[:_MAX_REASONS]) + more)
        return True

    def read(self, src: Source) -> Iterator[Chunk]:
        if _one_value_per_line(src.head(HEAD_BYTES)):
            yield from super().read(src)
        else:
            yield from _read_document(self.name, src)


def _one_value_per_line(head: bytes) -> bool:
    """True if one of the first lines is a whole JSON object or array (JSON lines); False for a
    document spread over lines (its first line alone does not parse)."""
    lines = [ln for ln in _complete_lines(head) if ln.strip()][:3]
    for line in lines:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, (dict, list)):
            return True
    return False


def _read_document(fmt: str, src: Source) -> Iterator[Chunk]:
    with src.open() as raw:
        try:
            data = raw.read(MAX_DOCUMENT_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise InputError(f"{src.path}: unreadable: {exc}") from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError(f"{src.path}: a single JSON document over {MAX_DOCUMENT_BYTES} bytes; "
                         "split it into one submission per line")
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape").read()
    out = EventBatchBuilder(src.sensor)
    chunk = Chunk(out.take())
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        yield from _salvage(fmt, src, text, exc, out, chunk)
        return
    try:
        records = _records(doc)
    except RecordError as exc:
        raise InputError(f"{src.path}: {exc}") from None
    if records is None:
        records = [doc]  # a lone record
    yield from _add_all(fmt, src, records, out, chunk)


def _add_all(fmt: str, src: Source, records: list[Any], out: EventBatchBuilder,
             chunk: Chunk) -> Iterator[Chunk]:
    """The records as events, in chunks; a bad one is rejected under its 1-based position."""
    for i, rec in enumerate(records, 1):
        chunk.read += 1
        try:
            add_record(rec, out)
        except RecordError as exc:
            chunk.rejects.append(Reject.make(src.path, i, str(exc), json.dumps(rec)[:2048], fmt))
        if len(out) >= CHUNK_ROWS:
            chunk.events = out.take()
            yield chunk
            chunk = Chunk(out.take())
    chunk.events = out.take()
    yield chunk


def _salvage(fmt: str, src: Source, text: str, error: Exception, out: EventBatchBuilder,
             chunk: Chunk) -> Iterator[Chunk]:
    """A document that does not parse (cut short, damaged): keep the whole records of its
    ``logs`` array (or top-level array) before the damage, then raise TruncatedInput."""
    m = _LOGS_ARRAY.search(text)
    if m is not None:
        pos = m.end()
    elif text.lstrip().startswith("["):
        pos = text.index("[") + 1
    else:
        raise InputError(f"{src.path}: not a JSON document: {error}") from None
    decoder = json.JSONDecoder()
    records: list[Any] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            rec, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        records.append(rec)
    yield from _add_all(fmt, src, records, out, chunk)
    offset = len(text[:pos].encode("utf-8", "surrogateescape"))
    raise TruncatedInput(src.path, offset, f"JSON document cut short or damaged after {len(records)} "
                         f"records: {error}")
