"""SMB1 / CIFS codec ([MS-CIFS], [MS-SMB]): decode any SMB1 message (requests and responses,
AndX chains), build a server's responses. Pure: bytes in, frozen dataclasses out.

    msg = decode_smb1(frame.payload)            # Smb1Message(header, commands, blocks)
    if isinstance(msg.body, NegotiateRequest): ...
    out = build_reply(msg.header, negotiate_extended_response(...))

Modules: constants (numbers), header (header, blocks, strings), andx (chains), session
(NEGOTIATE, SESSION_SETUP, TREE_CONNECT, LOGOFF, TREE_DISCONNECT, ECHO), files (NT_CREATE,
READ, WRITE, CLOSE), trans (the transaction family), message (dispatch), responses (builders).
"""

from stormwatch.protocols.ntstatus import NtStatus, status_name
from stormwatch.protocols.smb1.andx import (
    DEFAULT_MAX_ANDX_DEPTH,
    WEIRD_ANDX_DEPTH,
    WEIRD_ANDX_NOT_ADVANCING,
    walk_chain,
)
from stormwatch.protocols.smb1.constants import (
    Capabilities,
    Command,
    FileType,
    Flags,
    Flags2,
    NtTransactFunction,
    SecurityMode,
    Trans2Subcommand,
    TransSubcommand,
    command_name,
)
from stormwatch.protocols.smb1.files import (
    CloseRequest,
    CloseResponse,
    NtCreateAndXRequest,
    NtCreateAndXResponse,
    ReadAndXRequest,
    ReadAndXResponse,
    WriteAndXRequest,
    WriteAndXResponse,
)
from stormwatch.protocols.smb1.header import (
    CommandBlock,
    ErrorResponse,
    Header,
    Smb1Body,
    UnknownCommand,
    is_smb1,
    parse_header,
)
from stormwatch.protocols.smb1.message import Smb1Message, decode_smb1
from stormwatch.protocols.smb1.responses import (
    ReplyPart,
    build_error,
    build_reply,
    close_response,
    echo_response,
    logoff_response,
    negotiate_extended_response,
    negotiate_no_dialect,
    negotiate_response,
    nt_create_response,
    read_response,
    session_setup_extended_response,
    session_setup_response,
    to_filetime,
    transaction_interim_response,
    transaction_response,
    tree_connect_response,
    tree_disconnect_response,
    write_response,
)
from stormwatch.protocols.smb1.session import (
    EchoRequest,
    EchoResponse,
    LogoffAndX,
    NegotiateRequest,
    NegotiateResponse,
    NegotiateResponseCore,
    NegotiateResponseLanman,
    SessionSetupAndXExtendedRequest,
    SessionSetupAndXRequest,
    SessionSetupAndXResponse,
    TreeConnectAndXRequest,
    TreeConnectAndXResponse,
    TreeDisconnect,
)
from stormwatch.protocols.smb1.trans import (
    NtTransactRequest,
    Transaction2Request,
    TransactionRequest,
    TransactionResponse,
    TransactionSecondaryRequest,
)

__all__ = [
    "DEFAULT_MAX_ANDX_DEPTH", "WEIRD_ANDX_DEPTH", "WEIRD_ANDX_NOT_ADVANCING",
    "Capabilities", "CloseRequest", "CloseResponse", "Command", "CommandBlock", "EchoRequest", "EchoResponse",
    "ErrorResponse", "FileType", "Flags", "Flags2", "Header", "LogoffAndX", "NegotiateRequest", "NegotiateResponse",
    "NegotiateResponseCore", "NegotiateResponseLanman", "NtCreateAndXRequest", "NtCreateAndXResponse", "NtStatus",
    "NtTransactFunction", "NtTransactRequest", "ReadAndXRequest", "ReadAndXResponse", "ReplyPart", "SecurityMode",
    "SessionSetupAndXExtendedRequest", "SessionSetupAndXRequest", "SessionSetupAndXResponse", "Smb1Body",
    "Smb1Message", "Trans2Subcommand", "TransSubcommand", "Transaction2Request", "TransactionRequest",
    "TransactionResponse", "TransactionSecondaryRequest", "TreeConnectAndXRequest", "TreeConnectAndXResponse",
    "TreeDisconnect", "UnknownCommand", "WriteAndXRequest", "WriteAndXResponse",
    "build_error", "build_reply", "close_response", "command_name", "decode_smb1", "echo_response", "is_smb1",
    "logoff_response", "negotiate_extended_response", "negotiate_no_dialect", "negotiate_response",
    "nt_create_response", "parse_header", "read_response", "session_setup_extended_response",
    "session_setup_response", "status_name", "to_filetime", "transaction_interim_response", "transaction_response",
    "tree_connect_response", "tree_disconnect_response", "walk_chain", "write_response",
]
