"""Linux netfilter ``LOG`` target lines (iptables, nftables ``log``, ufw) → ``fw.connection``.

The kernel writes one line per logged packet (``net/netfilter/nf_log_syslog.c``)::

    <prefix>IN=eth0 OUT= MAC=... SRC=198.51.100.7 DST=192.0.2.10 LEN=40 TOS=0x00 PREC=0x00
    TTL=240 ID=54321 PROTO=TCP SPT=12345 DPT=445 WINDOW=1024 RES=0x00 SYN URGP=0

IPv6 has ``TC=`` ``HOPLIMIT=`` ``FLOWLBL=`` instead of ``TOS``..``ID`` and prints addresses in
full (``%pI6``); ICMP has ``TYPE=`` ``CODE=`` and may quote the offending packet in ``[...]``.
The line reaches a file behind a syslog header (:mod:`stormwatch.ingest.syslog`), usually as
``host kernel: [uptime] <prefix>IN=...``; ``<prefix>`` is the rule's ``--log-prefix``.

Two readers:

- :class:`IptablesReader` (``iptables``): syslog files. Vectorised — DuckDB reads the file and
  extracts the fields in SQL (``strpos``/``substr`` guesses checked against the kernel's layout);
  a line the SQL cannot decide with certainty (unusual framing, malformed, non-ASCII) goes to
  :func:`parse_syslog_line`, the per-line reference parser, so both give the same events.
- :class:`IptablesJournalReader` (``iptables-journal``): ``journalctl -o export`` output
  (systemd's Journal Export Format: ``KEY=value`` lines, binary-safe fields, a blank line after
  each entry); ``journalctl -o short-iso`` output is a syslog file for :class:`IptablesReader`.

Fields: the prefix → ``rule`` (and ``action``: ``drop`` when it says DROP/BLOCK/DENY, ``reject``
for REJECT, ``accept`` for ACCEPT/ALLOW/PERMIT, else ``log``); IN/OUT → ``in_iface``/``out_iface``;
SRC/DST; PROTO; SPT/DPT; ICMP TYPE/CODE; LEN → ``length``; TTL or HOPLIMIT → ``ttl``; the TCP
flag words → ``tcp_flags``. The key is the raw line; identical lines (same uptime stamp and IP
ID: the same log line twice) get EventBatchBuilder's occurrence suffix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

import duckdb
import numpy as np
import pyarrow as pa

from stormwatch.errors import InputError, TruncatedInput
from stormwatch.events import EventBatchBuilder, Reject, arrow_schema
from stormwatch.ingest.base import CHUNK_ROWS, Chunk, Reader, RecordError, Source
from stormwatch.ingest.normalize import action, canonical_ip, flags_from_words, port, proto_name
from stormwatch.ingest.syslog import (
    BATCH_ROWS,
    Clock,
    Occurrences,
    locate_lines,
    parse_header,
    sql_header_stage1,
    sql_header_stage2,
    sql_header_stage3,
    sql_lines,
)

FORMAT = "iptables"
MARKER = re.compile(r"IN=([^ =]*) OUT=([^ ]*)")
KERNEL_TIME_SHAPE = r"\[ {0,9}\d{1,12}\.\d{1,9}\]"  # printk's "[%5lu.%06lu]" uptime stamp
KERNEL_TIME = re.compile(KERNEL_TIME_SHAPE + " ?")
_MARKER_BYTES = re.compile(rb"IN=[^ =\n]* OUT=[^\n]*SRC=")
# Verdict words looked for in the prefix, strongest first (`[UFW BLOCK]`, `DROP-IN`, `fw-accept`).
_VERDICTS = (("reject",), ("drop", "block", "deny", "denied"), ("accept", "allow", "permit"))


def rule_action(rule: str | None) -> str:
    """The verdict a log prefix names (case-insensitive substring), else ``log``."""
    low = (rule or "").lower()
    for words in _VERDICTS:
        for w in words:
            if w in low:
                return action(w)
    return "log"


def parse_message(line: str, m: re.Match[str], msg_at: int) -> dict[str, Any]:
    """The ``fw.connection`` fields of a kernel LOG message.

    ``m`` is :data:`MARKER` matched in ``line``; ``msg_at`` is where the syslog message starts
    (it may begin with the ``kernel:`` tag and the ``[uptime]`` stamp). RecordError if the
    packet part is unusable (no SRC, bad address or port)."""
    if m.start() < msg_at:
        raise RecordError("IN= inside the syslog header")
    i = msg_at
    if line.startswith("kernel:", i):
        i += 8 if line.startswith(" ", i + 7) else 7
    k = KERNEL_TIME.match(line, i)
    if k:
        i = k.end()
    rule = line[i:m.start()].strip(" ") or None
    tokens = line[m.start():].split(" ")
    kv: dict[str, str] = {}
    seen_proto = False
    for tok in tokens:
        if seen_proto and tok.startswith("["):  # the packet an ICMP error quotes: not ours
            break
        key, eq, val = tok.partition("=")
        if eq and key not in kv:
            kv[key] = val
            seen_proto = seen_proto or key == "PROTO"
    if "SRC" not in kv or "DST" not in kv:
        raise RecordError("no SRC=/DST= in the LOG line (not an IP packet)")
    if "PROTO" not in kv:
        raise RecordError("no PROTO= in the LOG line")
    proto = proto_name(kv["PROTO"])
    fields: dict[str, Any] = {
        "src_ip": canonical_ip(kv["SRC"]), "dst_ip": canonical_ip(kv["DST"]), "proto": proto,
        "format": FORMAT, "rule": rule, "action": rule_action(rule),
        "in_iface": m.group(1) or None, "out_iface": m.group(2) or None,
        "length": _number(kv, "LEN"), "ttl": _number(kv, "TTL") if "TTL" in kv else _number(kv, "HOPLIMIT"),
    }
    if proto in ("icmp", "icmp6"):
        fields["icmp_type"] = _number(kv, "TYPE")
        fields["icmp_code"] = _number(kv, "CODE")
    else:
        fields["src_port"] = port(kv.get("SPT"))
        fields["dst_port"] = port(kv.get("DPT"))
    if proto == "tcp":
        fields["tcp_flags"] = _flags(tokens)
    return fields


def _number(kv: dict[str, str], key: str) -> int | None:
    v = kv.get(key)
    if v is None:
        return None
    if not (v.isascii() and v.isdigit()):
        raise RecordError(f"{key}= is not a number: {v[:20]!r}")
    return int(v)


def _flags(tokens: list[str]) -> str | None:
    """The flag words the kernel prints between ``RES=0x..`` and ``URGP=``; None without them."""
    res = next((i for i, t in enumerate(tokens) if t.startswith("RES=")), None)
    if res is None:
        return None
    urgp = next((i for i in range(res + 1, len(tokens)) if tokens[i].startswith("URGP=")), None)
    return None if urgp is None else flags_from_words(tokens[res + 1:urgp])


def parse_syslog_line(line: str, clock: Clock) -> tuple[int, dict[str, Any]] | None:
    """The reference parse of one syslog line: ``(ts micros, fields)``, None for a line that is
    not a LOG line (no ``IN=.. OUT=``); RecordError for a LOG line that cannot be used."""
    m = MARKER.search(line)
    if m is None:
        return None
    ts, msg_at = parse_header(line, clock)
    return ts, parse_message(line, m, msg_at)


def is_blank(line: str) -> bool:
    return not line.strip(" \t")


class IptablesReader(Reader):
    """iptables/nftables/ufw LOG lines in syslog files (BSD, RFC 5424, ISO or epoch headers)."""

    name: ClassVar[str] = "iptables"
    description: ClassVar[str] = "Linux netfilter LOG lines (iptables/ufw) in syslog files"

    def sniff(self, head: bytes) -> bool:
        return _MARKER_BYTES.search(head) is not None and b"\n__REALTIME_TIMESTAMP=" not in head

    def read(self, src: Source) -> Iterator[Chunk]:
        clock = Clock.for_source(src)
        con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                     "autoload_known_extensions": False})
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield from self._read(con, src, clock)
        finally:
            con.close()

    def _read(self, con: duckdb.DuckDBPyConnection, src: Source, clock: Clock) -> Iterator[Chunk]:
        names = arrow_schema().names
        occurrences = Occurrences()
        slow = EventBatchBuilder(src.sensor)  # lines the SQL left to the reference parser
        pending: list[tuple[str, str]] = []  # (line, reason) of rejects, in file order
        try:
            batches = con.sql(build_query(src, clock)).to_arrow_reader(BATCH_ROWS)
            for batch in batches:
                yield self._chunk(batch, names, occurrences, slow, clock, pending)
            csv_rejects = [int(r[0]) for r in con.execute(
                "SELECT line FROM reject_errors ORDER BY line").fetchall()]
        except duckdb.Error as exc:
            raise InputError(f"{src.path}: unreadable: {str(exc).splitlines()[0]}") from exc
        if pending or csv_rejects:
            yield self._leftovers(src, clock, pending, csv_rejects)

    def _chunk(self, batch: pa.RecordBatch, names: list[str], occurrences: Occurrences,
               slow: EventBatchBuilder, clock: Clock, pending: list[tuple[str, str]]) -> Chunk:
        st = batch.column("st").to_numpy(zero_copy_only=False)
        fast = pa.Table.from_batches([batch])
        if not (st == 0).all():
            fast = fast.filter(pa.array(st == 0))
        skipped = int((st == 1).sum())
        events = occurrences.apply(fast.select(names), fast.column("h").to_numpy())
        for i in np.flatnonzero(st == 2).tolist():
            line = batch.column("key")[i].as_py()
            try:
                got = parse_syslog_line(line, clock)
            except RecordError as exc:
                pending.append((line, str(exc)))
                continue
            if got is None:
                skipped += 1
            else:
                slow.add("fw.connection", got[0], line, **got[1])
        if len(slow):
            events = pa.concat_tables([events, slow.take()])
        return Chunk(events, [], read=len(st), skipped=skipped)

    def _leftovers(self, src: Source, clock: Clock, pending: list[tuple[str, str]],
                   csv_rejects: list[int]) -> Chunk:
        """Rejects with their line numbers, and the lines DuckDB's CSV reader refused (invalid
        UTF-8, a 0x01 byte, over 2 MB) parsed by the reference parser: one more pass over the
        file, only when there are any."""
        out = EventBatchBuilder(src.sensor)
        chunk = Chunk(out.take())
        found = locate_lines(src, [line for line, _ in pending], csv_rejects)
        for (line, reason), lineno in zip(pending, found.positions, strict=True):
            chunk.rejects.append(Reject.make(src.path, lineno, reason, line, FORMAT))
        for lineno, raw in found.raw_lines:
            line = raw.decode("utf-8", "backslashreplace")
            if is_blank(line):
                continue
            chunk.read += 1
            try:
                got = parse_syslog_line(line, clock)
            except RecordError as exc:
                chunk.rejects.append(Reject.make(src.path, lineno, str(exc), line, FORMAT))
                continue
            if got is None:
                chunk.skipped += 1
            else:
                out.add("fw.connection", got[0], line, **got[1])
        chunk.events = out.take()
        return chunk


# --- the same parse as DuckDB SQL -----------------------------------------------------------------
# Every position is a guess from strpos (the first occurrence in the line) that `ok` checks
# against the kernel's layout: each key starts a token, in the kernel's order, directly after the
# one before it where the kernel prints it so. A row with `ok` not true goes to
# parse_syslog_line (st = 2), so the SQL never has to be right about an unusual line.

_V4 = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
_V6_FULL = r"[0-9a-f]{4}(?::[0-9a-f]{4}){7}"  # %pI6: eight groups of four, lower case
_JSON_SAFE = r"[ !#-\[\]-~]*"  # printable ASCII but '"' and '\': copied into JSON as is
_FLAG_LETTERS = (("CWR", "C"), ("ECE", "E"), ("URG", "U"), ("ACK", "A"), ("PSH", "P"), ("RST", "R"),
                 ("SYN", "S"), ("FIN", "F"))
_COMMON_FLAGS = ("SYN", "ACK", "ACK SYN", "RST", "ACK RST", "ACK FIN", "ACK PSH", "ACK PSH FIN", "FIN",
                 "")


def _v6_stages(col: str) -> tuple[str, str, str]:
    """Three SQL stages (each reading the previous one's column) turning the full ``%pI6`` text
    in ``col`` into canonical compressed form (RFC 5952 §4, as Python's ``ipaddress``): leading
    zeros dropped, the longest run (leftmost on a tie) of two or more zero groups → ``::``."""
    groups = " || ':' || ".join(
        f"coalesce(nullif(ltrim(substr({col}, {5 * i + 1}, 4), '0'), ''), '0')" for i in range(8))
    j, r = f"{col}_j", f"{col}_r"
    runs = " ".join(f"WHEN contains({j}, '{':0' * n}:') THEN regexp_replace({j}, '{':0' * n}:', '::')"
                    for n in range(8, 1, -1))
    last = (f"CASE WHEN {r} = '::' THEN {r} WHEN prefix({r}, '::') THEN left({r}, -1) "
            f"WHEN suffix({r}, '::') THEN substr({r}, 2) ELSE substr({r}, 2, length({r}) - 2) END")
    return f"':' || {groups} || ':'", f"CASE {runs} ELSE {j} END", last


def _flags_sql(seg: str) -> str:
    common = " ".join(
        f"WHEN '{words}' THEN '{flags_from_words(words.split(' '))}'" for words in _COMMON_FLAGS)
    generic = ", ".join(f"CASE WHEN contains(' ' || {seg} || ' ', ' {w} ') THEN '{c}' END"
                        for w, c in _FLAG_LETTERS)
    return f"CASE {seg} {common} ELSE concat({generic}) END"


def _action_sql(rule: str) -> str:
    whens = " ".join(
        "WHEN " + " OR ".join(f"contains(lower({rule}), '{w}')" for w in words) + f" THEN '{action(words[0])}'"
        for words in _VERDICTS)
    return f"CASE {whens} ELSE 'log' END"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build_query(src: Source, clock: Clock) -> str:
    """The DuckDB query reading ``src``: one row per non-blank line, in file order, with ``st``
    (0 event, 1 not a LOG line, 2 for the reference parser), ``h`` (hash of the line) and the
    columns of :func:`~stormwatch.events.arrow_schema`."""
    g = "CASE WHEN po > 0 THEN {} END"  # computed for candidate lines only
    v6 = "(strpos(src, ':') > 0)"
    ttl_key = f"CASE WHEN {v6} THEN strpos(line, 'HOPLIMIT=') ELSE pt END"
    ttl_val = f"CASE WHEN {v6} THEN strpos(line, 'HOPLIMIT=') + 9 ELSE pt + 4 END"
    icmp = "proto_raw IN ('ICMP', 'ICMPv6')"
    k1, k2 = (f"CASE WHEN {icmp} THEN '{a}' ELSE '{b}' END" for a, b in (("TYPE=", "SPT="), ("CODE=", "DPT=")))
    ok = rf"""ascii AND substr(line, po - 2, 2) = ' O' AND pi > 0 AND pi <= po - 5
      AND strpos(ifin, ' ') = 0 AND strpos(ifin, '=') = 0
      AND (strpos(ifout_w, ' ') > 0 OR po + 2 + length(ifout_w) = length(line))
      AND ps > po AND substr(line, ps - 1, 1) = ' '
      AND pd > ps + 4 AND substr(line, pd - 1, 1) = ' ' AND strpos(src, ' ') = 0
      AND pl > pd + 4 AND substr(line, pl - 1, 1) = ' ' AND strpos(dst, ' ') = 0
      AND tk > pl AND substr(line, tk - 1, 1) = ' ' AND ({v6} = (pt = 0))
      AND pp > tk AND substr(line, pp - 3, 3) = ' PR'
      AND ts IS NOT NULL AND msg_at IS NOT NULL AND msg_at <= pi AND r2 <= pi
      AND regexp_full_match(concat(rule, ifin, ifout), '{_JSON_SAFE}')
      AND CASE WHEN {v6} THEN regexp_full_match(src || ' ' || dst, '{_V6_FULL} {_V6_FULL}')
               ELSE regexp_full_match(src || ' ' || dst, '{_V4} {_V4}') END
      AND proto_raw IN ('TCP', 'UDP', 'ICMP', 'ICMPv6')
      AND prefix(x1, {k1}) AND prefix(x2, {k2})
      AND strpos(line, {k1}) = q AND strpos(line, {k2}) = q + length(x1) + 1
      AND CASE WHEN {icmp} THEN regexp_full_match(nums, '\d{{1,9}} \d{{1,9}} \d{{1,9}} \d{{1,9}}')
               ELSE regexp_full_match(nums, '\d{{1,9}} \d{{1,9}} \d{{1,5}} \d{{1,5}}') END
      AND (proto_raw <> 'TCP' OR (pr > q AND substr(line, pr - 1, 1) = ' ' AND substr(line, pr, 6) = 'RES=0x'
                                  AND substr(line, pr + 8, 1) = ' ' AND pu >= pr + 9
                                  AND substr(line, pu - 1, 1) = ' '))"""
    port1, port2 = (f"CASE WHEN NOT {icmp} THEN try_cast(split_part({x}, '=', 2) AS INTEGER) END" for x in ("x1", "x2"))
    icmp1, icmp2 = (f"CASE WHEN {icmp} THEN try_cast(split_part({x}, '=', 2) AS INTEGER) END" for x in ("x1", "x2"))
    data = f"""concat('{{"format":"{FORMAT}"',
        CASE WHEN {icmp} THEN ',"icmp_code":' || {icmp2} || ',"icmp_type":' || {icmp1} END,
        CASE WHEN ifin <> '' THEN ',"in_iface":"' || ifin || '"' END,
        ',"length":', try_cast(len_t AS INTEGER),
        CASE WHEN ifout <> '' THEN ',"out_iface":"' || ifout || '"' END,
        CASE WHEN rule <> '' THEN ',"rule":"' || rule || '"' END,
        ',"ttl":', try_cast(ttl_t AS INTEGER), '}}')"""
    seg = "substr(line, pr + 9, greatest(pu - pr - 10, 0))"
    v6s, v6d = _v6_stages("src"), _v6_stages("dst")
    return f"""
WITH raw AS (
  SELECT line, strpos(line, 'UT=') AS po FROM {sql_lines(src)}
  WHERE line IS NOT NULL AND (left(line, 1) NOT IN (' ', chr(9)) OR trim(line, ' ' || chr(9)) <> '')
), l1 AS (
  SELECT line, po, {g.format("hash(line)")} AS h, {g.format("strlen(line) = length(line)")} AS ascii,
    {g.format("strpos(line, 'IN=')")} AS pi, {g.format("strpos(line, 'SRC=')")} AS ps,
    {g.format("strpos(line, 'DST=')")} AS pd, {g.format("strpos(line, 'LEN=')")} AS pl,
    {g.format("strpos(line, 'TTL=')")} AS pt, {g.format("strpos(line, 'OTO=')")} AS pp,
    {sql_header_stage1()}
  FROM raw
), l2 AS (
  SELECT *, {sql_header_stage2(clock)},
    substr(line, pi + 3, po - pi - 5) AS ifin, substr(line, po + 3, 17) AS ifout_w,
    substr(line, ps + 4, pd - ps - 5) AS src, substr(line, pd + 4, pl - pd - 5) AS dst,
    split_part(substr(line, pl + 4, 11), ' ', 1) AS len_t, split_part(substr(line, pp + 4, 10), ' ', 1) AS proto_raw
  FROM l1
), l3 AS (
  SELECT *, {sql_header_stage3(clock)}, {ttl_key} AS tk, split_part(substr(line, {ttl_val}, 11), ' ', 1) AS ttl_t,
    pp + 5 + length(proto_raw) AS q,
    split_part(substr(line, pp + 5 + length(proto_raw), 11), ' ', 1) AS x1,
    CASE WHEN strpos(ifout_w, ' ') > 0 THEN left(ifout_w, strpos(ifout_w, ' ') - 1) ELSE ifout_w END AS ifout,
    msg_at + CASE WHEN substr(line, msg_at, 7) <> 'kernel:' THEN 0
                  WHEN substr(line, msg_at + 7, 1) = ' ' THEN 8 ELSE 7 END AS r1,
    CASE WHEN proto_raw = 'TCP' THEN strpos(line, 'RES=') END AS pr,
    CASE WHEN proto_raw = 'TCP' THEN strpos(line, 'URGP=') END AS pu
  FROM l2
), l4 AS (
  SELECT *, split_part(substr(line, q + length(x1) + 1, 11), ' ', 1) AS x2,
    CASE WHEN substr(line, r1, 1) = '['
              AND regexp_full_match(substr(line, r1, strpos(substr(line, r1, 34), ']')), '{KERNEL_TIME_SHAPE}')
         THEN strpos(substr(line, r1, 34), ']') ELSE 0 END AS kl
  FROM l3
), l5 AS (
  SELECT *, r1 + kl + CASE WHEN kl > 0 AND substr(line, r1 + kl, 1) = ' ' THEN 1 ELSE 0 END AS r2
  FROM l4
), l6 AS (
  SELECT *, trim(substr(line, r2, pi - r2), ' ') AS rule,
    len_t || ' ' || ttl_t || ' ' || split_part(x1, '=', 2) || ' ' || split_part(x2, '=', 2) AS nums
  FROM l5
), l7 AS (
  SELECT *, CASE WHEN po = 0 THEN 1 WHEN {ok} THEN 0 ELSE 2 END AS st FROM l6
), l8 AS (
  SELECT *, CASE WHEN st = 0 AND {v6} THEN {v6s[0]} END AS src_j,
    CASE WHEN st = 0 AND {v6} THEN {v6d[0]} END AS dst_j FROM l7
), l9 AS (
  SELECT *, {v6s[1]} AS src_r, {v6d[1]} AS dst_r FROM l8
)
SELECT st, h, 'fw.connection' AS event, ts, {_literal(src.sensor)} AS sensor, NULL::VARCHAR AS session,
  CASE WHEN {v6} THEN {v6s[2]} ELSE src END AS src_ip, {port1} AS src_port,
  CASE WHEN {v6} THEN {v6d[2]} ELSE dst END AS dst_ip, {port2} AS dst_port,
  CASE proto_raw WHEN 'TCP' THEN 'tcp' WHEN 'UDP' THEN 'udp' WHEN 'ICMP' THEN 'icmp' ELSE 'icmp6' END AS proto,
  CASE WHEN proto_raw = 'TCP' THEN {_flags_sql(seg)} END AS tcp_flags,
  {_action_sql("rule")} AS action, NULL::VARCHAR AS outcome, 1::BIGINT AS count,
  1::SMALLINT AS schema_version, {data} AS data, CASE WHEN po > 0 THEN line END AS key
FROM l9
"""


# --- journald export --------------------------------------------------------------------------

MAX_FIELD = 16 * 1024 * 1024  # a binary journal field larger than this is damage, not data
_WANTED = (b"MESSAGE", b"__REALTIME_TIMESTAMP")


class IptablesJournalReader(Reader):
    """Kernel LOG messages in ``journalctl -o export`` output.

    Format: https://systemd.io/JOURNAL_EXPORT_FORMATS/ — each entry is ``KEY=value`` lines (or,
    for values with newlines or binary data, ``KEY``, a little-endian 64-bit length, the bytes
    and a newline) ended by an empty line. ``__REALTIME_TIMESTAMP`` (µs since the epoch, UTC)
    is the time; ``MESSAGE`` is the kernel's text (``<prefix>IN=...``, no syslog header). The
    key is ``"<__REALTIME_TIMESTAMP> <MESSAGE>"``; a reject's line is the entry's first line.
    """

    name: ClassVar[str] = "iptables-journal"
    description: ClassVar[str] = "Linux netfilter LOG messages in journalctl -o export output"

    def sniff(self, head: bytes) -> bool:
        return (head.startswith((b"__CURSOR=", b"__REALTIME_TIMESTAMP="))
                or b"\n__REALTIME_TIMESTAMP=" in head) and b"MESSAGE" in head

    def read(self, src: Source) -> Iterator[Chunk]:
        out = EventBatchBuilder(src.sensor)
        chunk = Chunk(out.take())
        with src.open() as f:
            lineno = 0
            try:
                for first, fields in _journal_entries(f, src.path):
                    lineno = first
                    chunk.read += 1
                    self._entry(src, first, fields, out, chunk)
                    if len(out) >= CHUNK_ROWS:
                        chunk.events = out.take()
                        yield chunk
                        chunk = Chunk(out.take())
            except (OSError, EOFError) as exc:  # a damaged gzip stream: keep what was read
                chunk.events = out.take()
                yield chunk
                raise InputError(f"{src.path}: unreadable after line {lineno}: {exc}") from exc
            except TruncatedInput:
                chunk.events = out.take()
                yield chunk
                raise
        chunk.events = out.take()
        yield chunk

    @staticmethod
    def _entry(src: Source, first: int, fields: dict[bytes, bytes], out: EventBatchBuilder,
               chunk: Chunk) -> None:
        msg = fields.get(b"MESSAGE", b"").decode("utf-8", "backslashreplace")
        m = MARKER.search(msg)
        if m is None:
            chunk.skipped += 1
            return
        stamp = fields.get(b"__REALTIME_TIMESTAMP", b"")
        try:
            if not (stamp.isdigit() and len(stamp) <= 19):
                raise RecordError(f"no usable __REALTIME_TIMESTAMP: {stamp[:24]!r}")
            got = parse_message(msg, m, 0)
        except RecordError as exc:
            chunk.rejects.append(Reject.make(src.path, first, str(exc), msg, IptablesJournalReader.name))
            return
        out.add("fw.connection", int(stamp), f"{stamp.decode()} {msg}", **got)


def _journal_entries(f: Any, path: str) -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """``(first line number, wanted fields)`` of each entry of a Journal Export stream."""
    lineno = 0
    first = 0
    fields: dict[bytes, bytes] = {}
    offset = 0
    while True:
        raw = f.readline()
        if not raw:
            break
        lineno += 1
        offset += len(raw)
        if raw in (b"\n", b"\r\n"):
            if first:
                yield first, fields
            first, fields = 0, {}
            continue
        if not first:
            first = lineno
        body = raw.rstrip(b"\n")
        name, eq, value = body.partition(b"=")
        if eq:
            if name in _WANTED:
                fields[name] = value
            continue
        # A binary-safe field: the name alone, then a little-endian uint64 length and the data.
        size_bytes = f.read(8)
        if len(size_bytes) < 8:
            raise TruncatedInput(path, offset, f"journal field {name[:40]!r} cut short")
        size = int.from_bytes(size_bytes, "little")
        if size > MAX_FIELD:
            raise TruncatedInput(path, offset, f"journal field {name[:40]!r} claims {size} bytes")
        data = f.read(size)
        end = f.read(1)
        if len(data) < size or end != b"\n":
            raise TruncatedInput(path, offset, f"journal field {name[:40]!r} cut short")
        offset += 9 + size
        lineno += data.count(b"\n") + 1
        if name in _WANTED:
            fields[name] = data
    if first:
        yield first, fields
