"""SMB2/3 codec ([MS-SMB2]): enough of the protocol for a honeypot to answer SMB2-only clients
and scanners (nmap smb-protocols, smb2-security-mode, smb2-time; smbclient -m SMB2 -L) and to
carry DCE/RPC over named pipes. Pure: bytes in, frozen dataclasses out; bodies out of builders.

    messages = parse_frame(frame)                 # one NBSS / direct-TCP payload, compound or not
    for m in messages:
        m.header, m.body                          # Header, NegotiateRequest / CreateRequest / ...
    reply = build_message(response_header(m.header, status=..., credits=...), build_xxx_response(...))
    frame_out = build_compound([reply1, reply2])  # when answering a compound

Modules: :mod:`.constants` (commands, flags, dialects, NTSTATUS), :mod:`.header` (header,
compounding), :mod:`.negotiate` (NEGOTIATE, 3.1.1 contexts, SMB1 multi-protocol answer),
:mod:`.session` (SESSION_SETUP, LOGOFF, TREE_CONNECT, TREE_DISCONNECT, ECHO, ERROR),
:mod:`.files` (CREATE, CLOSE, READ, WRITE, IOCTL), :mod:`.messages` (dispatch by command).

Not here: signing and encryption (the sensor never learns a session key: it accepts every NTLM
logon without knowing the password), compression, leases, durable handles, credit accounting
(the sensor's session grants credits; the header only carries them).
"""

from stormwatch.protocols.ntstatus import NtStatus, status_name
from stormwatch.protocols.smb2.constants import (
    Capabilities,
    Cipher,
    Command,
    ContextType,
    Dialect,
    HeaderFlags,
    SecurityMode,
    SessionFlags,
    ShareType,
    SigningAlgorithm,
    command_name,
)
from stormwatch.protocols.smb2.files import (
    CloseRequest,
    CloseResponse,
    CreateRequest,
    CreateResponse,
    IoctlRequest,
    IoctlResponse,
    ReadRequest,
    ReadResponse,
    WriteRequest,
    WriteResponse,
    build_close_response,
    build_create_response,
    build_ioctl_response,
    build_read_response,
    build_write_response,
)
from stormwatch.protocols.smb2.header import (
    Header,
    build_compound,
    build_message,
    parse_header,
    response_header,
    split_compound,
)
from stormwatch.protocols.smb2.messages import Message, Unparsed, parse_frame, parse_message
from stormwatch.protocols.smb2.negotiate import (
    NegotiateContext,
    NegotiateRequest,
    NegotiateResponse,
    build_negotiate_response,
    multiprotocol_dialect,
    response_contexts,
    select_dialect,
)
from stormwatch.protocols.smb2.session import (
    EmptyBody,
    ErrorResponse,
    SessionSetupRequest,
    SessionSetupResponse,
    TreeConnectRequest,
    TreeConnectResponse,
    build_empty,
    build_error,
    build_session_setup_response,
    build_tree_connect_response,
)

__all__ = [
    "Capabilities", "Cipher", "CloseRequest", "CloseResponse", "Command", "ContextType", "CreateRequest",
    "CreateResponse", "Dialect", "EmptyBody", "ErrorResponse", "Header", "HeaderFlags", "IoctlRequest",
    "IoctlResponse", "Message", "NegotiateContext", "NegotiateRequest", "NegotiateResponse", "NtStatus",
    "ReadRequest", "ReadResponse", "SecurityMode", "SessionFlags", "SessionSetupRequest", "SessionSetupResponse",
    "ShareType", "SigningAlgorithm", "TreeConnectRequest", "TreeConnectResponse", "Unparsed", "WriteRequest",
    "WriteResponse", "build_close_response", "build_compound", "build_create_response", "build_empty",
    "build_error", "build_ioctl_response", "build_message", "build_negotiate_response", "build_read_response",
    "build_session_setup_response", "build_tree_connect_response", "build_write_response", "command_name",
    "multiprotocol_dialect", "parse_frame", "parse_header", "parse_message", "response_contexts", "response_header",
    "select_dialect", "split_compound", "status_name",
]
