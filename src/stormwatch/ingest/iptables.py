"""Linux netfilter ``LOG`` lines (iptables, nftables ``log``, ufw) → ``fw.connection``.

The kernel writes one line per logged packet (``net/netfilter/nf_log_syslog.c``)::

    <prefix>IN=eth0 OUT= MAC=... SRC=198.51.100.7 DST=192.0.2.10 LEN=40 TOS=0x00 PREC=0x00
    TTL=240 ID=54321 PROTO=TCP SPT=12345 DPT=445 WINDOW=1024 RES=0x00 SYN URGP=0

IPv6 has ``TC=`` ``HOPLIMIT=`` ``FLOWLBL=`` instead of ``TOS``..``ID`` and prints addresses in
full (``%pI6``); ICMP has ``TYPE=`` ``CODE=`` and may quote the offending packet in ``[...]``.
Syslog puts a header before it (:mod:`stormwatch.ingest.syslog`), usually as
``host kernel: [uptime] <prefix>IN=...``; ``<prefix>`` is the rule's ``--log-prefix``.

Fields: the prefix → ``rule`` (and ``action``: ``reject`` if it says REJECT, ``drop`` for
DROP/BLOCK/DENY, ``accept`` for ACCEPT/ALLOW/PERMIT — case-insensitive, e.g. ufw's
``[UFW BLOCK]`` — else ``log``); IN/OUT → ``in_iface``/``out_iface``; SRC/DST; PROTO; SPT/DPT;
ICMP TYPE/CODE; LEN → ``length``; TTL, or HOPLIMIT for IPv6 → ``ttl``; the TCP flag words →
``tcp_flags``. The key is the raw line; a repeated identical line (same uptime stamp and IP ID:
the same log line twice) gets EventBatchBuilder's occurrence suffix.

Two readers:

- :class:`IptablesReader` (``iptables``): syslog files, vectorised. The compiled scanner
  (:mod:`stormwatch.ingest.netfilter_fast`) reads them; without it (no C compiler at install)
  DuckDB reads the file and extracts the fields in SQL (:func:`build_query`). Either way every
  line the fast path cannot decide with certainty (another framing, a malformed packet part,
  non-ASCII text) goes to :func:`parse_syslog_line`, the per-line reference parser, so all give
  the same events.
- :class:`IptablesJournalReader` (``iptables-journal``): ``journalctl -o export`` output.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import duckdb
import numpy as np
import pyarrow as pa

from stormwatch.errors import InputError, TruncatedInput
from stormwatch.events import EventBatchBuilder, Reject, arrow_schema
from stormwatch.ingest import netfilter_fast
from stormwatch.ingest.base import CHUNK_ROWS, Chunk, Reader, RecordError, Source
from stormwatch.ingest.normalize import action, canonical_ip, flags_from_words, port, proto_name
from stormwatch.ingest.syslog import (
    BATCH_ROWS,
    MONTHS,
    SQL_BSD_SHAPE,
    SQL_NOT_BLANK,
    Clock,
    Occurrences,
    journal_entries,
    locate_lines,
    parse_header,
    sql_bsd_this_year,
    sql_lines,
    sql_time,
)

FORMAT = "iptables"
MARKER = re.compile(r"IN=([^ =]*) OUT=([^ ]*)")
KERNEL_TIME_SHAPE = r"\[ {0,9}\d{1,12}\.\d{1,9}\]"  # printk's "[%5lu.%06lu]" uptime stamp
_KERNEL_TIME = re.compile(KERNEL_TIME_SHAPE + " ?")
_MARKER_BYTES = re.compile(rb"IN=[^ =\n]* OUT=[^\n]*SRC=")
# Verdict words looked for in the prefix, strongest first.
_VERDICTS = (("reject",), ("drop", "block", "deny", "denied"), ("accept", "allow", "permit"))


# --- the reference parser ----------------------------------------------------------------------


def rule_action(rule: str | None) -> str:
    """The verdict a log prefix names (case-insensitive substring), else ``log``."""
    low = (rule or "").lower()
    for words in _VERDICTS:
        for w in words:
            if w in low:
                return action(w)
    return "log"


def parse_message(line: str, m: re.Match[str], msg_at: int, fmt: str = FORMAT) -> dict[str, Any]:
    """The ``fw.connection`` fields of a kernel LOG message (``format`` = ``fmt``).

    ``m`` is :data:`MARKER` found in ``line``; ``msg_at`` is where the syslog message starts (it
    may begin with the ``kernel:`` tag and the ``[uptime]`` stamp). Keys count at their first
    ``KEY=value`` token; after PROTO= a token starting with ``[`` (the packet an ICMP error
    quotes) ends the search. RecordError if the packet part is unusable."""
    if m.start() < msg_at:
        raise RecordError("IN= inside the syslog header")
    i = msg_at
    if line.startswith("kernel:", i):
        i += 8 if line.startswith(" ", i + 7) else 7
    k = _KERNEL_TIME.match(line, i)
    if k:
        i = k.end()
    rule = line[i:m.start()].strip(" ") or None
    tokens = line[m.start():].split(" ")
    kv: dict[str, str] = {}
    for tok in tokens:
        if tok.startswith("[") and "PROTO" in kv:
            break
        key, eq, val = tok.partition("=")
        if eq and key not in kv:
            kv[key] = val
    if "SRC" not in kv or "DST" not in kv:
        raise RecordError("no SRC=/DST= in the LOG line (not an IP packet)")
    if "PROTO" not in kv:
        raise RecordError("no PROTO= in the LOG line")
    proto = proto_name(kv["PROTO"])
    fields: dict[str, Any] = {
        "src_ip": canonical_ip(kv["SRC"]), "dst_ip": canonical_ip(kv["DST"]), "proto": proto,
        "format": fmt, "rule": rule, "action": rule_action(rule),
        "in_iface": m.group(1) or None, "out_iface": m.group(2) or None,
        "length": _number(kv, "LEN"), "ttl": _number(kv, "HOPLIMIT" if ":" in kv["SRC"] else "TTL"),
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


# --- the same parse as DuckDB SQL --------------------------------------------------------------
# The packet part (from IN=) is split into tokens once; each field is the token at its place in
# the kernel's layout, checked by its KEY= prefix, and one regular expression checks the text of
# every value copied out. A row that fails a check goes to parse_syslog_line (st = 2): the SQL
# only has to be right about the lines it accepts, and tests hold it to the reference on those.

_V4 = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
_V6_FULL = r"[0-9a-f]{4}(?::[0-9a-f]{4}){7}"  # %pI6: eight groups of four, lower case
_JSON_SAFE = r"[ !#-\[\]-~]*"  # printable ASCII but '"' and '\': copied into JSON as they are
_CHECK = (rf"(?:{SQL_BSD_SHAPE})?\|{_JSON_SAFE}\|@ip @ip"
          r" (?:0|[1-9]\d{0,8}) (?:0|[1-9]\d{0,8}) (?:0|[1-9]\d{0,8}) (?:0|[1-9]\d{0,8})")
# What precedes the prefix (up to IN=): the syslog header, the `kernel:` tag (RFC 5424: APP-NAME
# `kernel` and no PROCID, MSGID or structured data) and the uptime stamp. RE2 finds the end of
# this match with its DFA, cheaper here than locating the pieces with string functions.
_HEAD = (r"^(?:<\d>1 \S+ [^ =]+ kernel - - - (?:kernel: ?)?|\S+(?: +\d+ \S+)? [^ =]+ kernel: ?)"
         rf"(?:{KERNEL_TIME_SHAPE} ?)?")
_FLAG_LETTERS = (("CWR", "C"), ("ECE", "E"), ("URG", "U"), ("ACK", "A"), ("PSH", "P"), ("RST", "R"),
                 ("SYN", "S"), ("FIN", "F"))
_COMMON_FLAGS = ("SYN", "ACK", "ACK SYN", "RST", "ACK RST", "ACK FIN", "ACK PSH", "ACK PSH FIN", "")


def _v6_stages(col: str) -> tuple[str, str, str]:
    """Three SQL stages (each reads the column ``<col>_j``/``<col>_r`` the one before made)
    turning the full ``%pI6`` text in ``col`` into its canonical form (RFC 5952 §4, as Python's
    ``ipaddress``): leading zeros dropped, the longest run (leftmost on a tie) of two or more
    zero groups written ``::``."""
    groups = " || ':' || ".join(
        f"coalesce(nullif(ltrim(substr({col}, {5 * i + 1}, 4), '0'), ''), '0')" for i in range(8))
    j, r = f"{col}_j", f"{col}_r"
    runs = " ".join(f"WHEN contains({j}, '{':0' * n}:') THEN regexp_replace({j}, '{':0' * n}:', '::')"
                    for n in range(8, 1, -1))
    last = (f"CASE WHEN {r} = '::' THEN {r} WHEN prefix({r}, '::') THEN left({r}, -1) "
            f"WHEN suffix({r}, '::') THEN substr({r}, 2) ELSE substr({r}, 2, length({r}) - 2) END")
    return f"':' || {groups} || ':'", f"CASE {runs} ELSE {j} END", last


def _flags_sql(seg: str) -> str:
    """SQL: the letters of the flag words in ``seg`` (kernel order is already CEUAPRSF)."""
    common = " ".join(f"WHEN '{w}' THEN '{flags_from_words(w.split(' '))}'" for w in _COMMON_FLAGS)
    generic = ", ".join(f"CASE WHEN contains(' ' || {seg} || ' ', ' {w} ') THEN '{c}' END"
                        for w, c in _FLAG_LETTERS)
    return f"CASE {seg} {common} ELSE concat({generic}) END"


def _action_sql(low: str) -> str:
    """SQL: :func:`rule_action` of a lower-cased prefix."""
    whens = " ".join("WHEN " + " OR ".join(f"contains({low}, '{w}')" for w in words)
                     + f" THEN '{action(words[0])}'" for words in _VERDICTS)
    return f"CASE {whens} ELSE 'log' END"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build_query(src: Source, clock: Clock, *, candidates_only: bool = False) -> str:
    """The DuckDB query reading ``src``: one row per non-blank line, in file order, with ``st``
    (0 event, 1 not a LOG line, 2 for the reference parser), ``h`` (hash of the line) and the
    columns of :func:`~stormwatch.events.arrow_schema`. With ``candidates_only`` the lines that
    are certainly not LOG lines (no ``IN=``; they would get ``st`` 1) are left out."""
    icmp = "proto_raw IN ('ICMP', 'ICMPv6')"
    mid = "('CE', 'DF', 'MF')"  # IPv4 flag words the kernel may print between ID= and PROTO=
    months = ", ".join(f"'{m}'" for m in MONTHS)
    ok = f"""prefix(b[2], 'OUT=') AND strpos(ifin, '=') = 0 AND length(rest) < length(hd) AND ts IS NOT NULL
      AND prefix(t_src, 'SRC=') AND prefix(t_dst, 'DST=') AND prefix(t_len, 'LEN=') AND k IS NOT NULL
      AND CASE WHEN v6 THEN prefix(u4, 'HOPLIMIT=') AND prefix(u5, 'FLOWLBL=')
                            AND regexp_full_match(chk, '{_CHECK.replace("@ip", _V6_FULL)}')
               ELSE prefix(u3, 'TOS=') AND prefix(u4, 'PREC=') AND prefix(u5, 'TTL=') AND prefix(u6, 'ID=')
                    AND regexp_full_match(chk, '{_CHECK.replace("@ip", _V4)}') END
      AND CASE proto_raw
            WHEN 'TCP' THEN prefix(x1, 'SPT=') AND prefix(x2, 'DPT=') AND prefix(b[w], 'WINDOW=')
                            AND prefix(b[w + 1], 'RES=0x') AND length(b[w + 1]) = 8 AND seg IS NOT NULL
                            AND (w = k + 3 OR prefix(b[k + 4], 'ACK='))
            WHEN 'UDP' THEN prefix(x1, 'SPT=') AND prefix(x2, 'DPT=')
            WHEN 'ICMP' THEN prefix(x1, 'TYPE=') AND prefix(x2, 'CODE=')
            WHEN 'ICMPv6' THEN prefix(x1, 'TYPE=') AND prefix(x2, 'CODE=')
            ELSE false END
      AND ({icmp} OR (p1 <= 65535 AND p2 <= 65535))"""
    data = f"""concat('{{"format":"{FORMAT}"',
        CASE WHEN {icmp} THEN ',"icmp_code":' || p2 || ',"icmp_type":' || p1 END,
        CASE WHEN ifin <> '' THEN ',"in_iface":"' || ifin || '"' END, ',"length":', len_t,
        CASE WHEN ifout <> '' THEN ',"out_iface":"' || ifout || '"' END,
        CASE WHEN rule <> '' THEN ',"rule":"' || rule || '"' END, ',"ttl":', ttl_t, '}}')"""
    # The flag words between RES=0x.. and URGP=: usually one (SYN), else joined and cut at URGP=.
    more = "array_to_string(b[w + 2:w + 10], ' ')"
    seg = f"""CASE WHEN prefix(b[w + 2], 'URGP=') THEN '' WHEN prefix(b[w + 3], 'URGP=') THEN b[w + 2]
                   WHEN strpos({more}, ' URGP=') > 0 THEN left({more}, strpos({more}, ' URGP=') - 1) END"""
    v6s, v6d = _v6_stages("src"), _v6_stages("dst")
    return f"""
WITH raw AS (
  SELECT line, strpos(line, 'IN=') AS pi FROM {sql_lines(src)} WHERE {SQL_NOT_BLANK}
), l1 AS (
  SELECT line, pi, CASE WHEN pi > 0 THEN hash(line) END AS h FROM raw {"WHERE pi > 0" if candidates_only else ""}
), l2 AS (
  SELECT *, CASE WHEN pi > 0 THEN string_split(substr(line, pi), ' ') END AS b,
    CASE WHEN pi > 0 THEN left(line, pi - 1) END AS hd,
    CASE WHEN pi > 0 AND left(line, 3) IN ({months}) THEN {sql_bsd_this_year(clock)} END AS bsd,
    CASE WHEN pi > 0 AND left(line, 1) BETWEEN '0' AND '9' THEN split_part(left(line, 40), ' ', 1) END AS tok1,
    CASE WHEN pi > 0 AND left(line, 1) = '<' AND substr(line, 3, 3) = '>1 '
         THEN split_part(substr(line, 6, 40), ' ', 1) ELSE '' END AS tok5424
  FROM l1
), l3 AS (
  SELECT *, regexp_replace(hd, '{_HEAD}', '') AS rest, {sql_time(clock, "bsd", "tok5424", "tok1")} AS ts,
    CASE WHEN prefix(b[3], 'MAC=') THEN 4 ELSE 3 END AS s, substr(b[1], 4) AS ifin, substr(b[2], 5) AS ifout
  FROM l2
), l4 AS (
  SELECT *, trim(rest, ' ') AS rule, b[s] AS t_src, b[s + 1] AS t_dst, b[s + 2] AS t_len,
    b[s + 3] AS u3, prefix(b[s + 3], 'TC=') AS v6, b[s + 4] AS u4, b[s + 5] AS u5, b[s + 6] AS u6,
    b[s + 7] AS u7, b[s + 8] AS u8
  FROM l3
), l5 AS (
  SELECT *, substr(t_src, 5) AS src, substr(t_dst, 5) AS dst, substr(t_len, 5) AS len_t,
    CASE WHEN v6 THEN substr(u4, 10) ELSE substr(u5, 5) END AS ttl_t,
    CASE WHEN v6 THEN CASE WHEN prefix(u6, 'PROTO=') THEN s + 6 END
         WHEN prefix(u7, 'PROTO=') THEN s + 7
         WHEN u7 IN {mid} AND prefix(u8, 'PROTO=') THEN s + 8
         WHEN u7 IN {mid} AND u8 IN {mid} AND prefix(b[s + 9], 'PROTO=') THEN s + 9 END AS k
  FROM l4
), l6 AS (
  SELECT *, substr(b[k], 7) AS proto_raw, b[k + 1] AS x1, b[k + 2] AS x2 FROM l5
), l7 AS (
  SELECT *, split_part(x1, '=', 2) AS n1, split_part(x2, '=', 2) AS n2,
    CASE WHEN proto_raw = 'TCP' THEN CASE WHEN prefix(b[k + 3], 'SEQ=') THEN k + 5 ELSE k + 3 END END AS w
  FROM l6
), l8 AS (
  SELECT *, try_cast(n1 AS INTEGER) AS p1, try_cast(n2 AS INTEGER) AS p2,
    concat(CASE WHEN left(line, 3) IN ({months}) THEN left(line, 16) END, '|', rule, ifin, ifout, '|',
           src, ' ', dst, ' ', len_t, ' ', ttl_t, ' ', n1, ' ', n2) AS chk,
    CASE WHEN w IS NOT NULL THEN {seg} END AS seg
  FROM l7
), l9 AS (
  SELECT *, CASE WHEN pi = 0 THEN 1 WHEN {ok} THEN 0 ELSE 2 END AS st FROM l8
), l10 AS (
  SELECT *, CASE WHEN st = 0 AND v6 THEN {v6s[0]} END AS src_j,
    CASE WHEN st = 0 AND v6 THEN {v6d[0]} END AS dst_j FROM l9
), l11 AS (
  SELECT *, CASE WHEN src_j IS NOT NULL THEN {v6s[1]} END AS src_r,
    CASE WHEN dst_j IS NOT NULL THEN {v6d[1]} END AS dst_r, lower(rule) AS low FROM l10
)
SELECT st, h, 'fw.connection' AS event, ts, {_literal(src.sensor)} AS sensor, NULL::VARCHAR AS session,
  CASE WHEN v6 THEN {v6s[2]} ELSE src END AS src_ip, CASE WHEN NOT {icmp} THEN p1 END AS src_port,
  CASE WHEN v6 THEN {v6d[2]} ELSE dst END AS dst_ip, CASE WHEN NOT {icmp} THEN p2 END AS dst_port,
  CASE proto_raw WHEN 'TCP' THEN 'tcp' WHEN 'UDP' THEN 'udp' WHEN 'ICMP' THEN 'icmp' ELSE 'icmp6' END AS proto,
  CASE WHEN proto_raw = 'TCP' THEN {_flags_sql("seg")} END AS tcp_flags, {_action_sql("low")} AS action,
  NULL::VARCHAR AS outcome, 1::BIGINT AS count, 1::SMALLINT AS schema_version, {data} AS data,
  CASE WHEN pi > 0 THEN line END AS key
FROM l11
"""


# --- the readers -------------------------------------------------------------------------------


class IptablesReader(Reader):
    """iptables/nftables/ufw LOG lines in syslog files (BSD, RFC 5424, ISO or epoch headers)."""

    name: ClassVar[str] = "iptables"
    description: ClassVar[str] = "Linux netfilter LOG lines (iptables/ufw) in syslog files"

    def sniff(self, head: bytes) -> bool:
        return _MARKER_BYTES.search(head) is not None and b"\n__REALTIME_TIMESTAMP=" not in head

    use_compiled: bool = True  # False: always the SQL path (tests compare the two)

    def read(self, src: Source) -> Iterator[Chunk]:
        clock = Clock.for_source(src)
        if self.use_compiled and netfilter_fast.available():
            yield from netfilter_fast.read_fast(src, clock, parse_syslog_line, FORMAT)
            return
        # An in-memory DuckDB as a compute engine; nothing is stored, no extension is loaded.
        con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                     "autoload_known_extensions": False})
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET enable_progress_bar = false")
            yield from self._read(con, src, clock)
        finally:
            con.close()

    def _read(self, con: duckdb.DuckDBPyConnection, src: Source, clock: Clock) -> Iterator[Chunk]:
        names = arrow_schema().names
        occurrences = Occurrences()
        slow = EventBatchBuilder(src.sensor)  # lines the SQL left to the reference parser
        pending: list[tuple[str, str]] = []  # (line, reason) of each reject, in file order
        done = 0  # non-blank lines handed out so far
        # Dropping other programs' lines in DuckDB saves copying the events around them in Arrow;
        # they are counted by a second scan, cheap for a plain file but not for a gzip stream.
        plain = src.compression != "gzip"
        try:
            query = build_query(src, clock, candidates_only=plain)
            for batch in con.sql(query).to_arrow_reader(BATCH_ROWS):
                chunk = self._chunk(batch, names, occurrences, slow, clock, pending)
                done += chunk.read
                yield chunk
            refused = [int(r[0]) for r in con.execute("SELECT line FROM reject_errors ORDER BY line").fetchall()]
            others = con.execute(f"SELECT count(*) FROM {sql_lines(src, keep_refused=False)} "
                                 f"WHERE {SQL_NOT_BLANK} AND strpos(line, 'IN=') = 0").fetchall()[0][0] if plain else 0
        except (duckdb.IOException, duckdb.InvalidInputException) as exc:
            reason = str(exc).splitlines()[0]
            if plain and done:  # the lines handed out so far are not all the lines read
                raise InputError(f"{src.path}: unreadable after {done} LOG lines: {reason}") from exc
            # A damaged gzip stream: read on line by line in Python, which yields what is
            # readable and then names the damage.
            yield from _python_read(src, clock, skip=done, reason=reason)
            return
        chunk = self._leftovers(src, clock, pending, refused) if pending or refused else Chunk(slow.take())
        chunk.read += others
        chunk.skipped += others
        if chunk.read or chunk.rejects:
            yield chunk

    @staticmethod
    def _chunk(batch: pa.RecordBatch, names: list[str], occurrences: Occurrences,
               slow: EventBatchBuilder, clock: Clock, pending: list[tuple[str, str]]) -> Chunk:
        st = batch.column("st").to_numpy(zero_copy_only=False)
        table = pa.Table.from_batches([batch])
        events, hashes = table.select(names), table.column("h")
        if not (st == 0).all():  # other programs' lines, or lines for the reference parser
            keep = pa.array(st == 0)
            events, hashes = events.filter(keep), hashes.filter(keep)
        events = occurrences.apply(events, hashes.to_numpy())
        skipped = int((st == 1).sum())
        keys = batch.column("key")
        for i in np.flatnonzero(st == 2).tolist():
            line = keys[i].as_py()
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
            events = pa.concat_tables([events.cast(arrow_schema()), slow.take()])
        return Chunk(events, [], read=len(st), skipped=skipped)

    @staticmethod
    def _leftovers(src: Source, clock: Clock, pending: list[tuple[str, str]], refused: list[int]) -> Chunk:
        """The rejects with their line numbers, and the lines DuckDB refused to read (invalid
        UTF-8, a 0x01 byte, over 2 MB) parsed by the reference parser: one more pass over the
        file, made only when there are any."""
        out = EventBatchBuilder(src.sensor)
        chunk = Chunk(out.take())
        found = locate_lines(src, [line for line, _ in pending], refused)
        for (line, reason), lineno in zip(pending, found.positions, strict=True):
            chunk.rejects.append(Reject.make(src.path, lineno, reason, line, FORMAT))
        for lineno, raw in found.raw_lines:
            _parse_into(raw.decode("utf-8", "backslashreplace"), lineno, src, clock, out, chunk)
        chunk.events = out.take()
        return chunk


def _parse_into(line: str, lineno: int, src: Source, clock: Clock, out: EventBatchBuilder,
                chunk: Chunk) -> None:
    """Parse one line with the reference parser into ``out`` and ``chunk``'s counts/rejects."""
    if is_blank(line):
        return
    chunk.read += 1
    try:
        got = parse_syslog_line(line, clock)
    except RecordError as exc:
        chunk.rejects.append(Reject.make(src.path, lineno, str(exc), line, FORMAT))
        return
    if got is None:
        chunk.skipped += 1
    else:
        out.add("fw.connection", got[0], line, **got[1])


def _python_read(src: Source, clock: Clock, skip: int, reason: str) -> Iterator[Chunk]:
    """The reference parser over ``src`` after its first ``skip`` non-blank lines; InputError at
    the end when the damage DuckDB met (``reason``) stops Python too."""
    out = EventBatchBuilder(src.sensor)
    chunk = Chunk(out.take())
    lineno = 0
    with src.open() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        try:
            for lineno, line in enumerate(text, 1):
                body = line.rstrip("\r\n")
                if skip and not is_blank(body):
                    skip -= 1
                    continue
                safe = body.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                _parse_into(safe, lineno, src, clock, out, chunk)
                if len(out) >= CHUNK_ROWS:
                    chunk.events = out.take()
                    yield chunk
                    chunk = Chunk(out.take())
        except (OSError, EOFError) as exc:
            chunk.events = out.take()
            yield chunk
            raise InputError(f"{src.path}: unreadable after line {lineno}: {exc} ({reason})") from exc
    chunk.events = out.take()
    yield chunk


_JOURNAL_FIELDS = frozenset((b"MESSAGE", b"__REALTIME_TIMESTAMP"))


class IptablesJournalReader(Reader):
    """Kernel LOG messages in ``journalctl -o export`` output.

    ``__REALTIME_TIMESTAMP`` (µs since the epoch, UTC) is the time and ``MESSAGE`` the kernel's
    text (``<prefix>IN=...``, no syslog header). The key is ``"<__REALTIME_TIMESTAMP> <MESSAGE>"``;
    a reject's line number is the entry's first line. Entries without a LOG message (the rest
    of the journal) are skipped."""

    name: ClassVar[str] = "iptables-journal"
    description: ClassVar[str] = "Linux netfilter LOG messages in journalctl -o export output"

    def sniff(self, head: bytes) -> bool:
        return (head.startswith((b"__CURSOR=", b"__REALTIME_TIMESTAMP="))
                or b"\n__REALTIME_TIMESTAMP=" in head) and b"\nMESSAGE" in head

    def read(self, src: Source) -> Iterator[Chunk]:
        out = EventBatchBuilder(src.sensor)
        chunk = Chunk(out.take())
        first = 0
        with src.open() as f:
            try:
                for first, fields in journal_entries(f, src.path, _JOURNAL_FIELDS):
                    chunk.read += 1
                    self._entry(src, first, fields, out, chunk)
                    if len(out) >= CHUNK_ROWS:
                        chunk.events = out.take()
                        yield chunk
                        chunk = Chunk(out.take())
            except (OSError, EOFError, TruncatedInput) as exc:
                chunk.events = out.take()
                yield chunk
                if isinstance(exc, TruncatedInput):
                    raise
                raise InputError(f"{src.path}: unreadable after the entry at line {first}: {exc}") from exc
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
            if not (stamp.isdigit() and len(stamp) <= 18):
                raise RecordError(f"no usable __REALTIME_TIMESTAMP: {stamp[:24]!r}")
            got = parse_message(msg, m, 0, IptablesJournalReader.name)
        except RecordError as exc:
            chunk.rejects.append(Reject.make(src.path, first, str(exc), msg, IptablesJournalReader.name))
            return
        out.add("fw.connection", int(stamp), f"{stamp.decode()} {msg}", **got)
