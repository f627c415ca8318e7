"""A downloaded file rebuilt from a data connection: its bytes, hashes, how sure we are it is whole,
and its copy in the payload store.

A file is *complete* when nothing says otherwise: no hole in the stream, not cut by a limit, the
sender's FIN captured with the length it implies matched, and — when they are known — the size
the FTP server announced ("``150 ... (N bytes)``") and the size a PE image's section table
declares (the end of its last section's raw data, [MS-PE] "Section Table"; a PE may carry an
overlay beyond it, so only a file *shorter* than that is flagged). Each check that fails or could
not be made leaves a note. The file is stored by SHA-256 with the sensor's
:class:`~stormwatch.sensor.payloads.PayloadStore` — complete or not: a partial file is evidence
too, and its hash differs from the whole one's.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from stormwatch.collector.attack_model import Connection, RetrievedFile
from stormwatch.collector.capture_flows import Assembled
from stormwatch.sensor.payloads import PayloadStore


def pe_extent(data: bytes) -> int | None:
    """The file size a PE image's headers imply (end of the furthest section's raw data), or None
    when ``data`` is not a PE with a readable section table. [MS-PE]: the DOS header's ``e_lfanew``
    at 0x3C points to ``PE\\0\\0``; the COFF header follows (NumberOfSections at +2,
    SizeOfOptionalHeader at +16); 40-byte section headers follow the optional header, with
    SizeOfRawData at +16 and PointerToRawData at +20."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        return None
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if lfanew + 24 > len(data) or data[lfanew:lfanew + 4] != b"PE\0\0":
        return None
    nsect, = struct.unpack_from("<H", data, lfanew + 6)
    (opt_size,) = struct.unpack_from("<H", data, lfanew + 20)
    table = lfanew + 24 + opt_size
    if nsect == 0 or nsect > 96 or table + 40 * nsect > len(data):
        return None
    end = 0
    for i in range(nsect):
        raw_size, raw_ptr = struct.unpack_from("<II", data, table + 40 * i + 16)
        if raw_size:
            end = max(end, raw_ptr + raw_size)
    return end or None


def rebuild(part: Assembled, *, name: str, protocol: str, url: str, source_host: str, source_port: int | None,
            connection: Connection, announced: int | None, transfer_ok: bool | None,
            store: PayloadStore | None) -> RetrievedFile:
    """The :class:`RetrievedFile` of one direction of a data connection (see the module docstring).
    ``transfer_ok``: what the control connection's final reply said (None: not seen)."""
    data = part.data
    notes: list[str] = []
    complete = True
    if part.holes:
        complete = False
        notes.append(f"{part.missing} bytes missing from the capture in {len(part.holes)} hole(s), "
                     f"zero-filled: {', '.join(f'{a}-{b}' for a, b in part.holes[:5])}")
    if part.truncated:
        complete = False
        notes.append("cut at the size limit: the file is longer than what was kept")
    expected, expected_from = None, ""
    if part.fin_length is not None:
        expected, expected_from = part.fin_length, "tcp_fin"
    else:
        complete = False
        notes.append("the sender's FIN is not in the capture: the end of the file is not known")
    if announced is not None:
        if expected is None:
            expected, expected_from = announced, "ftp_reply"
        if announced != len(data):
            complete = False
            notes.append(f"the server announced {announced} bytes, {len(data)} were rebuilt")
    file_type = ""
    pe = pe_extent(data)
    if pe is not None:
        file_type = "pe"
        if expected is None:
            expected, expected_from = pe, "pe_sections"
        if len(data) < pe:
            complete = False
            notes.append(f"the PE section table reaches byte {pe}, the file has {len(data)}")
    elif data[:2] == b"MZ":
        file_type = "mz"
    if transfer_ok is False:
        notes.append("the server's final reply to the transfer was not a success")
    sha = hashlib.sha256(data).hexdigest()
    stored, path = False, None
    if store is not None:
        kept = store.keep(data)
        stored = kept.stored
        path = str(store.path_for(sha)) if kept.stored else None
        if not kept.stored:
            notes.append(f"not stored: {kept.why}")
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return RetrievedFile(name, protocol, url, source_host, source_port, connection, len(data), sha, md5, complete,
                         part.missing, list(part.holes), expected, expected_from, file_type, stored, path, notes)


def open_store(payload_dir: Path | str | None, max_file: int) -> PayloadStore | None:
    """The payload store under ``payload_dir`` taking files up to ``max_file`` bytes (None: no store)."""
    if payload_dir is None:
        return None
    return PayloadStore(payload_dir, max_payload=max_file)
