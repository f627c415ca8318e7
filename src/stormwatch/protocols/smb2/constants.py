"""SMB2/3 numbers ([MS-SMB2] 2.2) and the NTSTATUS values an SMB2 server answers with ([MS-ERREF] 2.3.1)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

PROTOCOL_ID = b"\xfeSMB"            # [MS-SMB2] 2.2.1
TRANSFORM_PROTOCOL_ID = b"\xfdSMB"  # [MS-SMB2] 2.2.41 encrypted message
COMPRESSION_PROTOCOL_ID = b"\xfcSMB"  # [MS-SMB2] 2.2.42 compressed message
HEADER_SIZE = 64

# Limits on attacker-controlled counts (STYLE.md: every loop has a named limit). Windows clients
# send at most 5 dialects, 6 negotiate contexts and a 5-message compound; the limits leave room.
MAX_COMPOUND = 32
MAX_DIALECTS = 64
MAX_NEGOTIATE_CONTEXTS = 32
MAX_CONTEXT_ITEMS = 64  # algorithms/ciphers inside one negotiate context
MAX_CREATE_CONTEXTS = 32


class Command(IntEnum):
    """[MS-SMB2] 2.2.1.2 Command."""

    NEGOTIATE = 0x0000
    SESSION_SETUP = 0x0001
    LOGOFF = 0x0002
    TREE_CONNECT = 0x0003
    TREE_DISCONNECT = 0x0004
    CREATE = 0x0005
    CLOSE = 0x0006
    FLUSH = 0x0007
    READ = 0x0008
    WRITE = 0x0009
    LOCK = 0x000A
    IOCTL = 0x000B
    CANCEL = 0x000C
    ECHO = 0x000D
    QUERY_DIRECTORY = 0x000E
    CHANGE_NOTIFY = 0x000F
    QUERY_INFO = 0x0010
    SET_INFO = 0x0011
    OPLOCK_BREAK = 0x0012


def command_name(code: int) -> str:
    """``SMB2_NEGOTIATE`` for 0, ``0x0099`` for a command the spec does not define."""
    try:
        return "SMB2_" + Command(code).name
    except ValueError:
        return f"0x{code:04x}"


class HeaderFlags(IntFlag):
    """[MS-SMB2] 2.2.1.2 Flags."""

    SERVER_TO_REDIR = 0x00000001
    ASYNC_COMMAND = 0x00000002
    RELATED_OPERATIONS = 0x00000004
    SIGNED = 0x00000008
    PRIORITY_MASK = 0x00000070
    DFS_OPERATIONS = 0x10000000
    REPLAY_OPERATION = 0x20000000


class Dialect(IntEnum):
    """[MS-SMB2] 2.2.3 Dialects; 0x02FF is the wildcard answer to an SMB1 multi-protocol negotiate."""

    SMB_2_0_2 = 0x0202
    SMB_2_1 = 0x0210
    SMB_3_0 = 0x0300
    SMB_3_0_2 = 0x0302
    SMB_3_1_1 = 0x0311
    WILDCARD = 0x02FF


class SecurityMode(IntFlag):
    """[MS-SMB2] 2.2.3 / 2.2.4 SecurityMode."""

    SIGNING_ENABLED = 0x0001
    SIGNING_REQUIRED = 0x0002


class Capabilities(IntFlag):
    """[MS-SMB2] 2.2.3 / 2.2.4 Capabilities."""

    DFS = 0x00000001
    LEASING = 0x00000002
    LARGE_MTU = 0x00000004
    MULTI_CHANNEL = 0x00000008
    PERSISTENT_HANDLES = 0x00000010
    DIRECTORY_LEASING = 0x00000020
    ENCRYPTION = 0x00000040
    NOTIFICATIONS = 0x00000080


class ContextType(IntEnum):
    """[MS-SMB2] 2.2.3.1 negotiate context types."""

    PREAUTH_INTEGRITY_CAPABILITIES = 0x0001
    ENCRYPTION_CAPABILITIES = 0x0002
    COMPRESSION_CAPABILITIES = 0x0003
    NETNAME_NEGOTIATE_CONTEXT_ID = 0x0005
    TRANSPORT_CAPABILITIES = 0x0006
    RDMA_TRANSFORM_CAPABILITIES = 0x0007
    SIGNING_CAPABILITIES = 0x0008


HASH_SHA512 = 0x0001  # [MS-SMB2] 2.2.3.1.1, the only preauth integrity hash defined


class Cipher(IntEnum):
    """[MS-SMB2] 2.2.3.1.2 encryption ciphers (0 = none in common, in a response)."""

    NONE = 0x0000
    AES_128_CCM = 0x0001
    AES_128_GCM = 0x0002
    AES_256_CCM = 0x0003
    AES_256_GCM = 0x0004


class SigningAlgorithm(IntEnum):
    """[MS-SMB2] 2.2.3.1.7 signing algorithms."""

    HMAC_SHA256 = 0x0000
    AES_CMAC = 0x0001
    AES_GMAC = 0x0002


class SessionFlags(IntFlag):
    """[MS-SMB2] 2.2.6 SessionFlags of a SESSION_SETUP response."""

    IS_GUEST = 0x0001
    IS_NULL = 0x0002
    ENCRYPT_DATA = 0x0004


class ShareType(IntEnum):
    """[MS-SMB2] 2.2.10 ShareType."""

    DISK = 0x01
    PIPE = 0x02
    PRINT = 0x03



# [MS-FSCC] 2.3 FSCTL codes a client sends in SMB2 IOCTL.
FSCTL_DFS_GET_REFERRALS = 0x00060194
FSCTL_PIPE_PEEK = 0x0011400C
FSCTL_PIPE_WAIT = 0x00110018
FSCTL_PIPE_TRANSCEIVE = 0x0011C017  # [MS-FSCC] 2.3.35: one DCE/RPC request in, its response out
FSCTL_VALIDATE_NEGOTIATE_INFO = 0x00140204  # [MS-SMB2] 2.2.31.4: Windows 8+ after TREE_CONNECT
FSCTL_QUERY_NETWORK_INTERFACE_INFO = 0x001401FC
IOCTL_IS_FSCTL = 0x00000001  # [MS-SMB2] 2.2.31 Flags

FILE_ATTRIBUTE_NORMAL = 0x00000080
FILE_OPENED = 0x00000001  # [MS-SMB2] 2.2.14 CreateAction
