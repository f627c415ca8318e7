"""AndX chains ([MS-CIFS] 2.2.3.4): one SMB1 message carrying several commands, each AndX block
naming the next command and the offset (from the header start) of its WordCount.

Two limits, with the names Zeek gives the same anomalies in weird.log (its SMB analyzer's
``max_andx_depth`` and its traces smb1-long-andx-chain / smb1-non-advancing-andx-offset):

* ``smb_andx_offset_not_advancing``: an AndXOffset at or before the command that holds it would
  loop (or re-read) the chain; Zeek's test is ``andx.offset <= offset of the current command``.
* ``smb_andx_depth_exceeded``: more than ``max_depth`` AndX links (default 8, so at most nine
  commands in one message; real clients chain two or three, e.g. SESSION_SETUP + TREE_CONNECT).

Both are MalformedMessage whose ``detail`` starts with the Zeek name, so the sensor's anomaly
event can carry it.
"""

from __future__ import annotations

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.smb1.constants import NO_ANDX_COMMAND
from stormwatch.protocols.smb1.header import HEADER_SIZE, CommandBlock, Header, parse_block

DEFAULT_MAX_ANDX_DEPTH = 8
WEIRD_ANDX_NOT_ADVANCING = "smb_andx_offset_not_advancing"
WEIRD_ANDX_DEPTH = "smb_andx_depth_exceeded"


def walk_chain(msg: bytes, header: Header, max_depth: int = DEFAULT_MAX_ANDX_DEPTH) -> tuple[CommandBlock, ...]:
    """The raw blocks of every command in the message, first (``header.command``) to last."""
    blocks: list[CommandBlock] = []
    command, offset = header.command, HEADER_SIZE
    while True:
        block = parse_block(msg, offset, command)
        blocks.append(block)
        link = block.andx
        if link is None or link[0] == NO_ANDX_COMMAND:
            return tuple(blocks)
        next_command, next_offset = link
        if next_offset <= offset:
            raise MalformedMessage("SMB1 AndX chain", "AndXOffset", offset + 3,
                                   f"{WEIRD_ANDX_NOT_ADVANCING}: AndXOffset {next_offset} does not advance past "
                                   f"the command at {offset}")
        if len(blocks) > max_depth:
            raise MalformedMessage("SMB1 AndX chain", "AndXCommand", offset + 1,
                                   f"{WEIRD_ANDX_DEPTH}: more than {max_depth} chained commands after the first")
        command, offset = next_command, next_offset
