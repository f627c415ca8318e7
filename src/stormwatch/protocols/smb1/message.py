"""Decode one SMB1 message (a complete frame payload) into its header and the decoded body of
every command in its AndX chain.

Requests and responses are told apart by the header's REPLY flag. A command without a decoder
here becomes :class:`UnknownCommand` (raw words and bytes), never an error; a response with a
non-success status and WordCount 0 becomes :class:`ErrorResponse`. Only ProtocolError escapes
(always MalformedMessage: the input is a whole frame, so nothing is "incomplete")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stormwatch.protocols.errors import MalformedMessage, NeedMoreData
from stormwatch.protocols.ntstatus import NtStatus
from stormwatch.protocols.smb1 import files, session, trans
from stormwatch.protocols.smb1.andx import DEFAULT_MAX_ANDX_DEPTH, walk_chain
from stormwatch.protocols.smb1.constants import Command, Flags
from stormwatch.protocols.smb1.header import (
    CommandBlock,
    ErrorResponse,
    Header,
    Smb1Body,
    UnknownCommand,
    parse_header,
)

Decoder = Callable[[CommandBlock, Header, bytes], Smb1Body]
_REPLY = int(Flags.REPLY)

REQUEST_DECODERS: dict[int, Decoder] = {
    Command.NEGOTIATE: session.decode_negotiate_request,
    Command.SESSION_SETUP_ANDX: session.decode_session_setup_request,
    Command.TREE_CONNECT_ANDX: session.decode_tree_connect_request,
    Command.LOGOFF_ANDX: session.decode_logoff,
    Command.TREE_DISCONNECT: session.decode_tree_disconnect,
    Command.ECHO: session.decode_echo_request,
    Command.NT_CREATE_ANDX: files.decode_nt_create_request,
    Command.READ_ANDX: files.decode_read_request,
    Command.WRITE_ANDX: files.decode_write_request,
    Command.CLOSE: files.decode_close_request,
    Command.TRANSACTION: trans.decode_trans_request,
    Command.TRANSACTION2: trans.decode_trans_request,
    Command.NT_TRANSACT: trans.decode_nt_trans_request,
    Command.TRANSACTION_SECONDARY: trans.decode_trans_secondary,
    Command.TRANSACTION2_SECONDARY: trans.decode_trans_secondary,
    Command.NT_TRANSACT_SECONDARY: trans.decode_trans_secondary,
}

RESPONSE_DECODERS: dict[int, Decoder] = {
    Command.NEGOTIATE: session.decode_negotiate_response,
    Command.SESSION_SETUP_ANDX: session.decode_session_setup_response,
    Command.TREE_CONNECT_ANDX: session.decode_tree_connect_response,
    Command.LOGOFF_ANDX: session.decode_logoff,
    Command.TREE_DISCONNECT: session.decode_tree_disconnect,
    Command.ECHO: session.decode_echo_response,
    Command.NT_CREATE_ANDX: files.decode_nt_create_response,
    Command.READ_ANDX: files.decode_read_response,
    Command.WRITE_ANDX: files.decode_write_response,
    Command.CLOSE: files.decode_close_response,
    Command.TRANSACTION: trans.decode_trans_response,
    Command.TRANSACTION2: trans.decode_trans_response,
    Command.NT_TRANSACT: trans.decode_trans_response,
}


@dataclass(frozen=True, slots=True)
class Smb1Message:
    """One SMB1 message: ``commands[i]`` is the decoded ``blocks[i]``; ``commands[0]`` is the
    header's command, the rest its AndX followers."""

    header: Header
    commands: tuple[Smb1Body, ...]
    blocks: tuple[CommandBlock, ...]

    @property
    def body(self) -> Smb1Body:
        """The first command's decoded body."""
        return self.commands[0]


def decode_body(block: CommandBlock, header: Header, msg: bytes) -> Smb1Body:
    """One command block, decoded by direction and command code."""
    if header.flags & _REPLY:
        if not block.words and header.status not in (NtStatus.SUCCESS, NtStatus.MORE_PROCESSING_REQUIRED):
            return ErrorResponse(block.command, header.status, block.data)
        decoder = RESPONSE_DECODERS.get(block.command)
    else:
        decoder = REQUEST_DECODERS.get(block.command)
    if decoder is None:
        return UnknownCommand(block.command, block.words, block.data)
    return decoder(block, header, msg)


def _decode_request(block: CommandBlock, header: Header, msg: bytes) -> Smb1Body:
    decoder = REQUEST_DECODERS.get(block.command)
    if decoder is None:
        return UnknownCommand(block.command, block.words, block.data)
    return decoder(block, header, msg)


def decode_smb1(msg: bytes, *, max_andx_depth: int = DEFAULT_MAX_ANDX_DEPTH) -> Smb1Message:
    """Decode a complete SMB1 message. Raises MalformedMessage (a ProtocolError) and nothing else;
    :func:`parse_header` alone still works on a message whose body is malformed, so a server can
    answer it with an error status."""
    msg = bytes(msg)
    try:
        header = parse_header(msg)
        blocks = walk_chain(msg, header, max_andx_depth)
        if header.flags & _REPLY:
            commands = tuple([decode_body(b, header, msg) for b in blocks])
        else:  # a request (all a server reads): straight to its decoder
            commands = tuple([_decode_request(b, header, msg) for b in blocks])
    except NeedMoreData as exc:  # a fixed structure ran past the end of a complete frame
        raise MalformedMessage(exc.what, "length", len(msg), str(exc)) from None
    return Smb1Message(header, commands, blocks)
