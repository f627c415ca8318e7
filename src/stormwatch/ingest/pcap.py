"""Packet captures (classic pcap and pcapng, plain or gzip) as ``fw.connection`` events.

One event per connection attempt the capture shows — every TCP SYN without ACK, the first UDP
datagram of each flow, every ICMP/ICMPv6 message — with ``action`` ``log``, the packet number in
``frame``, its IP ``length`` and ``ttl``, and for TCP/UDP the ``outcome`` the capture shows
(``answered``, ``reset``, ``unanswered``; see :mod:`stormwatch.ingest.pcap_events` for the rules).

The reader is built for speed on large captures: the file is read in large blocks, the record
headers are walked in one tight loop (:mod:`~stormwatch.ingest.pcap_container`), the packet
headers of all packets of a block are decoded together with numpy
(:mod:`~stormwatch.ingest.pcap_decode`), and only the packets that can be or answer an attempt
are kept. Outcomes need the whole capture (a reply may come much later), so events are produced
once the file has been read; memory grows with the kept packets, not with the file.

Link types: Ethernet (with 802.1Q/802.1ad tags), raw IP (101, 228, 229), Linux cooked SLL and SLL2,
BSD loopback (0, 108); others are counted as skipped. A short or malformed packet is a reject
with its packet number; a file damaged or cut inside a record yields the events read before the
damage and then raises :class:`~stormwatch.errors.TruncatedInput`.

``key`` is ``ts|frame|proto|src|sport|dst|dport`` (ICMP: type and code in the port slots): the
same capture read again gives the same keys, and no two packets of one capture share one.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import IO, ClassVar

from stormwatch.errors import InputError, TruncatedInput
from stormwatch.events import Reject
from stormwatch.ingest.base import CHUNK_ROWS, Chunk, Reader, Source
from stormwatch.ingest.pcap_container import ClassicPcap, PcapNg, sniff_container
from stormwatch.ingest.pcap_decode import Packets, Quotes, decode
from stormwatch.ingest.pcap_events import attempts, table

# Read size: large enough that the per-block numpy overhead vanishes, small enough to stay in cache.
BLOCK_BYTES = 8 * 1024 * 1024
READ_PIECE = 4 * 1024 * 1024  # gzip is read in pieces of this size (see _read)


class _Damage(Exception):
    """Internal: reading stopped at ``offset`` for ``reason``."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _read(f: IO[bytes], n: int, offset: int) -> tuple[bytes, _Damage | None]:
    """Up to ``n`` bytes (fewer only at the end) and the damage that stopped reading, if any.

    Read in pieces with ``read1`` so that the bytes decompressed before a gzip stream breaks off
    are kept (``GzipFile.read`` discards them when it raises)."""
    parts: list[bytes] = []
    got = 0
    try:
        while got < n:
            piece = f.read1(min(n - got, READ_PIECE)) if hasattr(f, "read1") else f.read(n - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip stream, I/O error
        return b"".join(parts), _Damage(offset + got, f"cannot read further: {exc}")
    return (parts[0] if len(parts) == 1 else b"".join(parts)), None


class PcapReader(Reader):
    name: ClassVar[str] = "pcap"
    description: ClassVar[str] = ("packet captures (pcap, pcapng): TCP SYNs, first UDP datagram of each "
                                  "flow, ICMP messages, with outcomes")

    def sniff(self, head: bytes) -> bool:
        return sniff_container(head) is not None

    def read(self, src: Source) -> Iterator[Chunk]:
        with src.open() as f:
            yield from self._read(f, src)

    def _read(self, f: IO[bytes], src: Source) -> Iterator[Chunk]:
        head, broken = _read(f, 24, 0)
        if broken is not None and len(head) < 24:
            raise TruncatedInput(src.path, broken.offset, broken.reason)
        kind = sniff_container(head)
        if kind is None:
            raise InputError(f"{src.path}: not a pcap or pcapng capture" + ("" if head else " (empty)"))
        container: ClassicPcap | PcapNg
        if kind == "pcap":
            if len(head) < 24:
                raise TruncatedInput(src.path, len(head), "capture ends inside the file header")
            container, pending, base = ClassicPcap(head), b"", 24
        else:
            container, pending, base = PcapNg(), head, 0
        packets: list[Packets] = []
        quotes: list[Quotes] = []
        rejects: list[Reject] = []
        frame, damage = 1, broken
        while True:
            data = b""
            if damage is None:
                data, damage = _read(f, BLOCK_BYTES, base + len(pending))
            buf = pending + data if pending else data
            walk = container.walk(buf, 0, frame)
            frame += len(walk.records)
            decoded = decode(buf, walk.records)
            packets.append(decoded.packets)
            quotes.append(decoded.quotes)
            rejects += [Reject.make(src.path, fr, reason, raw.hex(), self.name) for fr, reason, raw in decoded.rejects]
            pending, base = buf[walk.used:], base + walk.used
            if walk.damage is not None:
                damage = _Damage(base, walk.damage)
                break
            if not data:
                if damage is None and pending:
                    damage = _Damage(base, f"capture ends inside a record ({len(pending)} bytes of it present)")
                break
        p = Packets.concat(packets)
        del packets
        rows, outcome = attempts(p, Quotes.concat(quotes))
        read = frame - 1
        # Tables are built chunk by chunk: smaller working sets, and the first chunk reaches the
        # store while the next is being built.
        for start in range(0, max(len(rows), 1), CHUNK_ROWS):
            first = start == 0
            events = table(p, rows[start:start + CHUNK_ROWS], outcome[start:start + CHUNK_ROWS], src.sensor)
            yield Chunk(events, rejects if first else [], read if first else 0,
                        read - len(rows) - len(rejects) if first else 0)
        if damage is not None:
            raise TruncatedInput(src.path, damage.offset, damage.reason)
