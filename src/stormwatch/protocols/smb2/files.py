"""SMB2 CREATE, CLOSE, READ, WRITE and IOCTL ([MS-SMB2] 2.2.13 - 2.2.16, 2.2.19 - 2.2.22,
2.2.31, 2.2.32): enough to open a named pipe on IPC$ (``srvsvc``, ``browser``, ``lsarpc``) and run
DCE/RPC over it, either with WRITE then READ or with one IOCTL FSCTL_PIPE_TRANSCEIVE.

A FileId is 16 bytes (Persistent 8 + Volatile 8, [MS-SMB2] 2.2.14.1), kept as bytes: the server
picks it, the client only echoes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.smb2.constants import FILE_ATTRIBUTE_NORMAL, FILE_OPENED, HEADER_SIZE, MAX_CREATE_CONTEXTS
from stormwatch.protocols.smb2.util import check_size, field, utf16
from stormwatch.protocols.wire import Layout, take

_BODY = HEADER_SIZE

#: [MS-SMB2] 2.2.13 CREATE request, fixed part (Buffer: the name, then the create contexts).
CREATE_REQUEST = Layout("SMB2 CREATE request", "<", (
    ("structure_size", "H"),  # 57
    ("security_flags", "B"),
    ("oplock_level", "B"),
    ("impersonation_level", "I"),
    ("create_flags", "Q"),
    ("reserved", "Q"),
    ("desired_access", "I"),
    ("file_attributes", "I"),
    ("share_access", "I"),
    ("create_disposition", "I"),
    ("create_options", "I"),
    ("name_offset", "H"),
    ("name_length", "H"),
    ("contexts_offset", "I"),
    ("contexts_length", "I"),
))
#: [MS-SMB2] 2.2.13.2 SMB2_CREATE_CONTEXT header; chained by Next (0 on the last).
CREATE_CONTEXT = Layout("SMB2 CREATE_CONTEXT", "<", (
    ("next", "I"), ("name_offset", "H"), ("name_length", "H"), ("reserved", "H"),
    ("data_offset", "H"), ("data_length", "I")))
#: [MS-SMB2] 2.2.14 CREATE response, fixed part.
CREATE_RESPONSE = Layout("SMB2 CREATE response", "<", (
    ("structure_size", "H"),  # 89
    ("oplock_level", "B"),
    ("flags", "B"),
    ("create_action", "I"),
    ("creation_time", "Q"),
    ("last_access_time", "Q"),
    ("last_write_time", "Q"),
    ("change_time", "Q"),
    ("allocation_size", "Q"),
    ("end_of_file", "Q"),
    ("file_attributes", "I"),
    ("reserved2", "I"),
    ("file_id", "16s"),
    ("contexts_offset", "I"),
    ("contexts_length", "I"),
))
#: [MS-SMB2] 2.2.15 CLOSE request.
CLOSE_REQUEST = Layout("SMB2 CLOSE request", "<", (
    ("structure_size", "H"), ("flags", "H"), ("reserved", "I"), ("file_id", "16s")))  # 24
#: [MS-SMB2] 2.2.16 CLOSE response.
CLOSE_RESPONSE = Layout("SMB2 CLOSE response", "<", (
    ("structure_size", "H"),  # 60
    ("flags", "H"),
    ("reserved", "I"),
    ("creation_time", "Q"),
    ("last_access_time", "Q"),
    ("last_write_time", "Q"),
    ("change_time", "Q"),
    ("allocation_size", "Q"),
    ("end_of_file", "Q"),
    ("file_attributes", "I"),
))
#: [MS-SMB2] 2.2.19 READ request, fixed part (then a Buffer of at least one byte).
READ_REQUEST = Layout("SMB2 READ request", "<", (
    ("structure_size", "H"),  # 49
    ("padding", "B"),
    ("flags", "B"),
    ("length", "I"),
    ("offset", "Q"),
    ("file_id", "16s"),
    ("minimum_count", "I"),
    ("channel", "I"),
    ("remaining_bytes", "I"),
    ("channel_info_offset", "H"),
    ("channel_info_length", "H"),
))
#: [MS-SMB2] 2.2.20 READ response, fixed part; the data follow at 80.
READ_RESPONSE = Layout("SMB2 READ response", "<", (
    ("structure_size", "H"),  # 17
    ("data_offset", "B"),
    ("reserved", "B"),
    ("data_length", "I"),
    ("data_remaining", "I"),
    ("reserved2", "I"),
))
#: [MS-SMB2] 2.2.21 WRITE request, fixed part.
WRITE_REQUEST = Layout("SMB2 WRITE request", "<", (
    ("structure_size", "H"),  # 49
    ("data_offset", "H"),
    ("length", "I"),
    ("offset", "Q"),
    ("file_id", "16s"),
    ("channel", "I"),
    ("remaining_bytes", "I"),
    ("channel_info_offset", "H"),
    ("channel_info_length", "H"),
    ("flags", "I"),
))
#: [MS-SMB2] 2.2.22 WRITE response.
WRITE_RESPONSE = Layout("SMB2 WRITE response", "<", (
    ("structure_size", "H"),  # 17
    ("reserved", "H"),
    ("count", "I"),
    ("remaining", "I"),
    ("channel_info_offset", "H"),
    ("channel_info_length", "H"),
))
#: [MS-SMB2] 2.2.31 IOCTL request, fixed part.
IOCTL_REQUEST = Layout("SMB2 IOCTL request", "<", (
    ("structure_size", "H"),  # 57
    ("reserved", "H"),
    ("ctl_code", "I"),
    ("file_id", "16s"),
    ("input_offset", "I"),
    ("input_count", "I"),
    ("max_input_response", "I"),
    ("output_offset", "I"),
    ("output_count", "I"),
    ("max_output_response", "I"),
    ("flags", "I"),
    ("reserved2", "I"),
))
#: [MS-SMB2] 2.2.32 IOCTL response, fixed part; output follows at 112.
IOCTL_RESPONSE = Layout("SMB2 IOCTL response", "<", (
    ("structure_size", "H"),  # 49
    ("reserved", "H"),
    ("ctl_code", "I"),
    ("file_id", "16s"),
    ("input_offset", "I"),
    ("input_count", "I"),
    ("output_offset", "I"),
    ("output_count", "I"),
    ("flags", "I"),
    ("reserved2", "I"),
))


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """[MS-SMB2] 2.2.13. ``name`` is relative to the share, without a leading backslash (a pipe
    open on IPC$ names the pipe: ``srvsvc``); ``contexts`` are (tag, data) pairs such as
    (b"MxAc", b"") that fingerprint the client."""

    oplock_level: int
    impersonation_level: int
    desired_access: int
    file_attributes: int
    share_access: int
    create_disposition: int
    create_options: int
    name: str
    contexts: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def pipe_name(self) -> str:
        """The name as a pipe name: lower case, without ``\\`` or a ``PIPE\\`` prefix."""
        name = self.name.lstrip("\\").lower()
        return name.removeprefix("pipe\\")


@dataclass(frozen=True, slots=True)
class CreateResponse:
    """[MS-SMB2] 2.2.14."""

    oplock_level: int
    create_action: int
    file_attributes: int
    end_of_file: int
    file_id: bytes


@dataclass(frozen=True, slots=True)
class CloseRequest:
    flags: int
    file_id: bytes


@dataclass(frozen=True, slots=True)
class CloseResponse:
    flags: int
    file_attributes: int
    end_of_file: int


@dataclass(frozen=True, slots=True)
class ReadRequest:
    length: int
    offset: int
    file_id: bytes
    minimum_count: int


@dataclass(frozen=True, slots=True)
class ReadResponse:
    data: bytes
    data_remaining: int


@dataclass(frozen=True, slots=True)
class WriteRequest:
    offset: int
    file_id: bytes
    flags: int
    data: bytes


@dataclass(frozen=True, slots=True)
class WriteResponse:
    count: int


@dataclass(frozen=True, slots=True)
class IoctlRequest:
    """[MS-SMB2] 2.2.31; for FSCTL_PIPE_TRANSCEIVE ``input`` is one DCE/RPC PDU."""

    ctl_code: int
    file_id: bytes
    input: bytes
    max_input_response: int
    max_output_response: int
    flags: int


@dataclass(frozen=True, slots=True)
class IoctlResponse:
    ctl_code: int
    file_id: bytes
    output: bytes


def _create_contexts(msg: bytes, offset: int, length: int, what: str) -> tuple[tuple[bytes, bytes], ...]:
    """[MS-SMB2] 2.2.13.2: a chain inside [offset, offset+length); each Next is relative to the
    context, names and data relative to it too."""
    if not length:
        return ()
    area = take(msg, offset, length, what)
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while True:
        if len(out) >= MAX_CREATE_CONTEXTS:
            raise MalformedMessage(what, "CreateContexts", offset + pos, f"more than {MAX_CREATE_CONTEXTS}")
        if pos + CREATE_CONTEXT.size > len(area):
            raise MalformedMessage(what, "CreateContexts", offset + pos, "context header cut short")
        nxt, n_off, n_len, _res, d_off, d_len = CREATE_CONTEXT.unpack(area, pos)
        name = take(area, pos + n_off, n_len, what)
        data = take(area, pos + d_off, d_len, what) if d_len else b""
        out.append((name, data))
        if nxt == 0:
            return tuple(out)
        if nxt < CREATE_CONTEXT.size or pos + nxt >= len(area):
            raise MalformedMessage(what, "Next", offset + pos, f"{nxt} does not lead to a next context")
        pos += nxt


def parse_create_request(msg: bytes) -> CreateRequest:
    what = "SMB2 CREATE request"
    msg = bytes(msg)
    f = CREATE_REQUEST.unpack_dict(msg, _BODY)
    check_size(f["structure_size"], 57, what, _BODY)
    name = utf16(field(msg, f["name_offset"], f["name_length"], what), what, "Name", f["name_offset"])
    contexts = _create_contexts(msg, f["contexts_offset"], f["contexts_length"], what)
    return CreateRequest(f["oplock_level"], f["impersonation_level"], f["desired_access"], f["file_attributes"],
                         f["share_access"], f["create_disposition"], f["create_options"], name, contexts)


def build_create_response(file_id: bytes, *, create_action: int = FILE_OPENED,
                          file_attributes: int = FILE_ATTRIBUTE_NORMAL, times: tuple[int, int, int, int] = (0, 0, 0, 0),
                          allocation_size: int = 4096, end_of_file: int = 0, oplock_level: int = 0) -> bytes:
    """[MS-SMB2] 2.2.14 body without create contexts. For a pipe Windows answers all four times 0,
    AllocationSize 4096, EndOfFile 0, FILE_ATTRIBUTE_NORMAL, CreateAction FILE_OPENED."""
    if len(file_id) != 16:
        raise ValueError("file_id must be 16 bytes")
    return CREATE_RESPONSE.pack(89, oplock_level, 0, create_action, *times, allocation_size, end_of_file,
                                file_attributes, 0, file_id, 0, 0)


def parse_create_response(msg: bytes) -> CreateResponse:
    what = "SMB2 CREATE response"
    f = CREATE_RESPONSE.unpack_dict(bytes(msg), _BODY)
    check_size(f["structure_size"], 89, what, _BODY)
    return CreateResponse(f["oplock_level"], f["create_action"], f["file_attributes"], f["end_of_file"],
                          f["file_id"])


def parse_close_request(msg: bytes) -> CloseRequest:
    size, flags, _reserved, file_id = CLOSE_REQUEST.unpack(bytes(msg), _BODY)
    check_size(size, 24, "SMB2 CLOSE request", _BODY)
    return CloseRequest(flags, file_id)


def build_close_response(flags: int = 0, *, times: tuple[int, int, int, int] = (0, 0, 0, 0),
                         allocation_size: int = 0, end_of_file: int = 0, file_attributes: int = 0) -> bytes:
    """[MS-SMB2] 2.2.16 body; attributes are only meaningful when the request asked for them
    (SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB), zeros otherwise."""
    return CLOSE_RESPONSE.pack(60, flags, 0, *times, allocation_size, end_of_file, file_attributes)


def parse_close_response(msg: bytes) -> CloseResponse:
    """[MS-SMB2] 2.2.16 (there is no FileId in a CLOSE response)."""
    f = CLOSE_RESPONSE.unpack_dict(bytes(msg), _BODY)
    check_size(f["structure_size"], 60, "SMB2 CLOSE response", _BODY)
    return CloseResponse(f["flags"], f["file_attributes"], f["end_of_file"])


def parse_read_request(msg: bytes) -> ReadRequest:
    f = READ_REQUEST.unpack_dict(bytes(msg), _BODY)
    check_size(f["structure_size"], 49, "SMB2 READ request", _BODY)
    return ReadRequest(f["length"], f["offset"], f["file_id"], f["minimum_count"])


def build_read_response(data: bytes, data_remaining: int = 0) -> bytes:
    """[MS-SMB2] 2.2.20 body, data at offset 80. A pipe read whose message is longer than the
    request's Length goes with STATUS_BUFFER_OVERFLOW and ``data_remaining`` left over."""
    offset = _BODY + READ_RESPONSE.size
    return READ_RESPONSE.pack(17, offset, 0, len(data), data_remaining, 0) + (data or b"\x00")


def parse_read_response(msg: bytes) -> ReadResponse:
    what = "SMB2 READ response"
    msg = bytes(msg)
    size, offset, _res, length, remaining, _res2 = READ_RESPONSE.unpack(msg, _BODY)
    check_size(size, 17, what, _BODY)
    return ReadResponse(field(msg, offset, length, what), remaining)


def parse_write_request(msg: bytes) -> WriteRequest:
    what = "SMB2 WRITE request"
    msg = bytes(msg)
    f = WRITE_REQUEST.unpack_dict(msg, _BODY)
    check_size(f["structure_size"], 49, what, _BODY)
    return WriteRequest(f["offset"], f["file_id"], f["flags"], field(msg, f["data_offset"], f["length"], what))


def build_write_response(count: int) -> bytes:
    """[MS-SMB2] 2.2.22 body: ``count`` bytes written."""
    return WRITE_RESPONSE.pack(17, 0, count, 0, 0, 0)


def parse_write_response(msg: bytes) -> WriteResponse:
    size, _res, count, _rem, _off, _len = WRITE_RESPONSE.unpack(bytes(msg), _BODY)
    check_size(size, 17, "SMB2 WRITE response", _BODY)
    return WriteResponse(count)


def parse_ioctl_request(msg: bytes) -> IoctlRequest:
    what = "SMB2 IOCTL request"
    msg = bytes(msg)
    f = IOCTL_REQUEST.unpack_dict(msg, _BODY)
    check_size(f["structure_size"], 57, what, _BODY)
    return IoctlRequest(f["ctl_code"], f["file_id"], field(msg, f["input_offset"], f["input_count"], what),
                        f["max_input_response"], f["max_output_response"], f["flags"])


def build_ioctl_response(ctl_code: int, file_id: bytes, output: bytes, flags: int = 0) -> bytes:
    """[MS-SMB2] 2.2.32 body, output at offset 112 and no input echoed (as Windows answers
    FSCTL_PIPE_TRANSCEIVE). Output longer than the request's MaxOutputResponse is the caller's to
    cut, with STATUS_BUFFER_OVERFLOW."""
    if len(file_id) != 16:
        raise ValueError("file_id must be 16 bytes")
    offset = _BODY + IOCTL_RESPONSE.size
    return IOCTL_RESPONSE.pack(49, 0, ctl_code, file_id, offset, 0, offset, len(output), flags, 0) + (
        output or b"\x00")


def parse_ioctl_response(msg: bytes) -> IoctlResponse:
    what = "SMB2 IOCTL response"
    msg = bytes(msg)
    f = IOCTL_RESPONSE.unpack_dict(msg, _BODY)
    check_size(f["structure_size"], 49, what, _BODY)
    return IoctlResponse(f["ctl_code"], f["file_id"], field(msg, f["output_offset"], f["output_count"], what))
