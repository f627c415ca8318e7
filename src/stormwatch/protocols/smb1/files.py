"""SMB1 file and pipe commands, requests and responses decoded: NT_CREATE_ANDX ([MS-CIFS]
2.2.4.64, [MS-SMB] 2.2.4.9), READ_ANDX ([MS-CIFS] 2.2.4.42, [MS-SMB] 2.2.4.2), WRITE_ANDX
([MS-CIFS] 2.2.4.43, [MS-SMB] 2.2.4.3), CLOSE ([MS-CIFS] 2.2.4.5).

READ_ANDX and WRITE_ANDX place their data by DataOffset, counted from the header start, not by
ByteCount: a large write (CAP_LARGE_WRITEX, DataLengthHigh) carries more data than a 16-bit
ByteCount can declare, so the data is taken from the whole message."""

from __future__ import annotations

from dataclasses import dataclass

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.smb1.header import (
    ANDX_FIELDS,
    CommandBlock,
    Header,
    Smb1Body,
    read_string,
    require_complete,
    section,
    unpack_words,
)
from stormwatch.protocols.wire import Layout

#: [MS-CIFS] 2.2.4.64.1 NT_CREATE_ANDX request words (WordCount 24).
NT_CREATE_WORDS = Layout("NT_CREATE_ANDX request", "<", (*ANDX_FIELDS,
    ("reserved", "B"), ("name_length", "H"), ("flags", "I"), ("root_directory_fid", "I"),
    ("desired_access", "I"), ("allocation_size", "Q"), ("ext_file_attributes", "I"), ("share_access", "I"),
    ("create_disposition", "I"), ("create_options", "I"), ("impersonation_level", "I"), ("security_flags", "B")))
#: [MS-CIFS] 2.2.4.64.2 NT_CREATE_ANDX response words (WordCount 34).
NT_CREATE_RESPONSE_WORDS = Layout("NT_CREATE_ANDX response", "<", (*ANDX_FIELDS,
    ("oplock_level", "B"), ("fid", "H"), ("create_disposition", "I"), ("create_time", "Q"),
    ("last_access_time", "Q"), ("last_write_time", "Q"), ("last_change_time", "Q"),
    ("ext_file_attributes", "I"), ("allocation_size", "Q"), ("end_of_file", "Q"), ("resource_type", "H"),
    ("nm_pipe_status", "H"), ("directory", "B")))


@dataclass(frozen=True, slots=True)
class NtCreateAndXRequest(Smb1Body):
    """Open a file or, on IPC$, a named pipe (``file_name`` like ``\\srvsvc`` or ``\\browser``)."""

    flags: int
    root_directory_fid: int
    desired_access: int
    allocation_size: int
    ext_file_attributes: int
    share_access: int
    create_disposition: int
    create_options: int
    impersonation_level: int
    security_flags: int
    name_length: int
    file_name: str


def decode_nt_create_request(block: CommandBlock, header: Header, msg: bytes) -> NtCreateAndXRequest:
    what = "NT_CREATE_ANDX request"
    require_complete(block, what)
    (_, _, _, _, name_len, flags, root, access, alloc, attrs, share, disp, opts, imp, sec) = unpack_words(
        block, NT_CREATE_WORDS, what)
    data, pos = block.data, 0
    if header.unicode and block.data_offset & 1:
        pos = 1
    if 0 < name_len <= len(data) - pos:
        # NameLength counts bytes (with or without the terminator, clients differ): cut at a NUL.
        raw = data[pos:pos + name_len]
        name, _ = read_string(raw + (b"\x00\x00" if header.unicode else b"\x00"), 0, 0, header.unicode)
    else:  # NameLength missing or lying: fall back to the terminator rather than fail the open
        name, _ = read_string(data, 0, block.data_offset, header.unicode)
    return NtCreateAndXRequest(flags, root, access, alloc, attrs, share, disp, opts, imp, sec, name_len, name)


@dataclass(frozen=True, slots=True)
class NtCreateAndXResponse(Smb1Body):
    """[MS-CIFS] 2.2.4.64.2 (WordCount 34, as Windows 2000 in mapi.pcap sends it); ``volume_guid``
    is set for the [MS-SMB] 2.2.4.9.2 extended form (WordCount 42, as later Windows sends it in
    the MS17-010 captures, or 50 as the spec counts it)."""

    oplock_level: int
    fid: int
    create_disposition: int
    create_time: int
    last_access_time: int
    last_write_time: int
    last_change_time: int
    ext_file_attributes: int
    allocation_size: int
    end_of_file: int
    resource_type: int
    nm_pipe_status: int
    directory: int
    volume_guid: bytes | None = None


def decode_nt_create_response(block: CommandBlock, header: Header, msg: bytes) -> NtCreateAndXResponse:
    what = "NT_CREATE_ANDX response"
    size = NT_CREATE_RESPONSE_WORDS.size
    guid: bytes | None = None
    if block.word_count in (42, 50):
        f = NT_CREATE_RESPONSE_WORDS.unpack(block.words)
        guid = block.words[size:size + 16]
    else:
        f = unpack_words(block, NT_CREATE_RESPONSE_WORDS, what)
    return NtCreateAndXResponse(f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13], f[14], f[15],
                                guid)


# -- READ_ANDX ---------------------------------------------------------------------------------

_READ_FIELDS = (*ANDX_FIELDS, ("fid", "H"), ("offset", "I"), ("max_count", "H"), ("min_count", "H"),
                ("timeout", "I"), ("remaining", "H"))
#: [MS-CIFS] 2.2.4.42.1 READ_ANDX request words: WordCount 10, or 12 with OffsetHigh.
READ_WORDS = Layout("READ_ANDX request", "<", _READ_FIELDS)
READ_WORDS_64 = Layout("READ_ANDX request (64-bit offset)", "<", (*_READ_FIELDS, ("offset_high", "I")))
#: [MS-SMB] 2.2.4.2.2 READ_ANDX response words (WordCount 12, DataLengthHigh).
READ_RESPONSE_WORDS = Layout("READ_ANDX response", "<", (*ANDX_FIELDS,
    ("available", "H"), ("data_compaction_mode", "H"), ("reserved1", "H"), ("data_length", "H"),
    ("data_offset", "H"), ("data_length_high", "H"), ("reserved2", "8s")))


@dataclass(frozen=True, slots=True)
class ReadAndXRequest(Smb1Body):
    """[MS-CIFS] 2.2.4.42.1; WordCount 12 adds ``offset_high`` (None for WordCount 10), folded into
    ``offset``. ``timeout`` is raw: [MS-SMB] 2.2.4.2.1 reuses its low 16 bits as MaxCountHigh."""

    fid: int
    offset: int
    max_count: int
    min_count: int
    timeout: int
    remaining: int
    offset_high: int | None


def decode_read_request(block: CommandBlock, header: Header, msg: bytes) -> ReadAndXRequest:
    what = "READ_ANDX request"
    if block.word_count == 12:
        (_, _, _, fid, low, maxc, minc, timeout, remaining, high) = unpack_words(block, READ_WORDS_64, what)
        return ReadAndXRequest(fid, high << 32 | low, maxc, minc, timeout, remaining, high)
    (_, _, _, fid, low, maxc, minc, timeout, remaining) = unpack_words(block, READ_WORDS, what)
    return ReadAndXRequest(fid, low, maxc, minc, timeout, remaining, None)


@dataclass(frozen=True, slots=True)
class ReadAndXResponse(Smb1Body):
    available: int
    data_offset: int
    data: bytes


def decode_read_response(block: CommandBlock, header: Header, msg: bytes) -> ReadAndXResponse:
    what = "READ_ANDX response"
    (_, _, _, available, _, _, low, data_offset, high, _) = unpack_words(block, READ_RESPONSE_WORDS, what)
    data = section(msg, data_offset, high << 16 | low, what, "DataLength", block.offset + 11)
    return ReadAndXResponse(available, data_offset, data)


# -- WRITE_ANDX --------------------------------------------------------------------------------

_WRITE_FIELDS = (*ANDX_FIELDS, ("fid", "H"), ("offset", "I"), ("timeout", "I"), ("write_mode", "H"),
                 ("remaining", "H"), ("data_length_high", "H"), ("data_length", "H"), ("data_offset", "H"))
#: [MS-CIFS] 2.2.4.43.1 / [MS-SMB] 2.2.4.3.1 WRITE_ANDX request words: WordCount 12, or 14.
WRITE_WORDS = Layout("WRITE_ANDX request", "<", _WRITE_FIELDS)
WRITE_WORDS_64 = Layout("WRITE_ANDX request (64-bit offset)", "<", (*_WRITE_FIELDS, ("offset_high", "I")))
#: [MS-SMB] 2.2.4.3.2 WRITE_ANDX response words (WordCount 6, CountHigh).
WRITE_RESPONSE_WORDS = Layout("WRITE_ANDX response", "<", (*ANDX_FIELDS,
    ("count", "H"), ("available", "H"), ("count_high", "H"), ("reserved", "H")))


@dataclass(frozen=True, slots=True)
class WriteAndXRequest(Smb1Body):
    """[MS-CIFS] 2.2.4.43.1 / [MS-SMB] 2.2.4.3.1. ``data_length`` folds in DataLengthHigh;
    ``data`` is taken at ``data_offset`` from the header start, wherever ByteCount says the byte
    block ends (``byte_count`` is kept raw so a detector can see the mismatch)."""

    fid: int
    offset: int
    timeout: int
    write_mode: int
    remaining: int
    data_length: int
    data_offset: int
    offset_high: int | None
    byte_count: int
    data: bytes


def decode_write_request(block: CommandBlock, header: Header, msg: bytes) -> WriteAndXRequest:
    what = "WRITE_ANDX request"
    high: int | None = None
    if block.word_count == 14:
        (_, _, _, fid, low, timeout, mode, remaining, len_high, len_low, data_off, high) = unpack_words(
            block, WRITE_WORDS_64, what)
    else:
        (_, _, _, fid, low, timeout, mode, remaining, len_high, len_low, data_off) = unpack_words(
            block, WRITE_WORDS, what)
    length = len_high << 16 | len_low
    data = section(msg, data_off, length, what, "DataLength", block.offset + 19)
    offset = (high or 0) << 32 | low
    return WriteAndXRequest(fid, offset, timeout, mode, remaining, length, data_off, high, block.byte_count, data)


@dataclass(frozen=True, slots=True)
class WriteAndXResponse(Smb1Body):
    count: int
    available: int


def decode_write_response(block: CommandBlock, header: Header, msg: bytes) -> WriteAndXResponse:
    (_, _, _, count, available, count_high, _) = unpack_words(block, WRITE_RESPONSE_WORDS, "WRITE_ANDX response")
    return WriteAndXResponse(count_high << 16 | count, available)


# -- CLOSE -------------------------------------------------------------------------------------

#: [MS-CIFS] 2.2.4.5.1 CLOSE request words (WordCount 3).
CLOSE_WORDS = Layout("CLOSE request", "<", (("fid", "H"), ("last_time_modified", "I")))


@dataclass(frozen=True, slots=True)
class CloseRequest(Smb1Body):
    fid: int
    last_time_modified: int


@dataclass(frozen=True, slots=True)
class CloseResponse(Smb1Body):
    """[MS-CIFS] 2.2.4.5.2: WordCount 0, ByteCount 0."""


def decode_close_request(block: CommandBlock, header: Header, msg: bytes) -> CloseRequest:
    (fid, mtime) = unpack_words(block, CLOSE_WORDS, "CLOSE request")
    return CloseRequest(fid, mtime)


def decode_close_response(block: CommandBlock, header: Header, msg: bytes) -> CloseResponse:
    if block.words:
        raise MalformedMessage("CLOSE response", "WordCount", block.offset, f"{block.word_count} words, expected 0")
    return CloseResponse()
