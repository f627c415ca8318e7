"""SMB1 numbers: command codes, NT status codes, header flags, capabilities and transaction
subcommands ([MS-CIFS] 2.2.2, [MS-SMB] 2.2.2, [MS-ERREF] 2.3)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

PROTOCOL = b"\xffSMB"  # [MS-CIFS] 2.2.3.1 Protocol
SMB2_PROTOCOL = b"\xfeSMB"  # [MS-SMB2] 2.2.1: a different codec
NO_ANDX_COMMAND = 0xFF  # [MS-CIFS] 2.2.3.4: the end of an AndX chain
NT_LM_012 = "NT LM 0.12"  # the dialect every NT-era client offers


class Command(IntEnum):
    """[MS-CIFS] 2.2.2.1 SMB_COM codes (the obsolete ones are kept so logs can name them)."""

    CREATE_DIRECTORY = 0x00
    DELETE_DIRECTORY = 0x01
    OPEN = 0x02
    CREATE = 0x03
    CLOSE = 0x04
    FLUSH = 0x05
    DELETE = 0x06
    RENAME = 0x07
    QUERY_INFORMATION = 0x08
    SET_INFORMATION = 0x09
    READ = 0x0A
    WRITE = 0x0B
    LOCK_BYTE_RANGE = 0x0C
    UNLOCK_BYTE_RANGE = 0x0D
    CREATE_TEMPORARY = 0x0E
    CREATE_NEW = 0x0F
    CHECK_DIRECTORY = 0x10
    PROCESS_EXIT = 0x11
    SEEK = 0x12
    LOCK_AND_READ = 0x13
    WRITE_AND_UNLOCK = 0x14
    READ_RAW = 0x1A
    READ_MPX = 0x1B
    READ_MPX_SECONDARY = 0x1C
    WRITE_RAW = 0x1D
    WRITE_MPX = 0x1E
    WRITE_MPX_SECONDARY = 0x1F
    WRITE_COMPLETE = 0x20
    QUERY_SERVER = 0x21
    SET_INFORMATION2 = 0x22
    QUERY_INFORMATION2 = 0x23
    LOCKING_ANDX = 0x24
    TRANSACTION = 0x25
    TRANSACTION_SECONDARY = 0x26
    IOCTL = 0x27
    IOCTL_SECONDARY = 0x28
    COPY = 0x29
    MOVE = 0x2A
    ECHO = 0x2B
    WRITE_AND_CLOSE = 0x2C
    OPEN_ANDX = 0x2D
    READ_ANDX = 0x2E
    WRITE_ANDX = 0x2F
    NEW_FILE_SIZE = 0x30
    CLOSE_AND_TREE_DISC = 0x31
    TRANSACTION2 = 0x32
    TRANSACTION2_SECONDARY = 0x33
    FIND_CLOSE2 = 0x34
    FIND_NOTIFY_CLOSE = 0x35
    TREE_CONNECT = 0x70
    TREE_DISCONNECT = 0x71
    NEGOTIATE = 0x72
    SESSION_SETUP_ANDX = 0x73
    LOGOFF_ANDX = 0x74
    TREE_CONNECT_ANDX = 0x75
    SECURITY_PACKAGE_ANDX = 0x7E
    QUERY_INFORMATION_DISK = 0x80
    SEARCH = 0x81
    FIND = 0x82
    FIND_UNIQUE = 0x83
    FIND_CLOSE = 0x84
    NT_TRANSACT = 0xA0
    NT_TRANSACT_SECONDARY = 0xA1
    NT_CREATE_ANDX = 0xA2
    NT_CANCEL = 0xA4
    NT_RENAME = 0xA5
    OPEN_PRINT_FILE = 0xC0
    WRITE_PRINT_FILE = 0xC1
    CLOSE_PRINT_FILE = 0xC2
    GET_PRINT_QUEUE = 0xC3
    READ_BULK = 0xD8
    WRITE_BULK = 0xD9
    WRITE_BULK_DATA = 0xDA
    INVALID = 0xFE


#: Commands whose parameter words begin with the AndX block ([MS-CIFS] 2.2.3.4).
ANDX_COMMANDS = frozenset({
    Command.LOCKING_ANDX, Command.OPEN_ANDX, Command.READ_ANDX, Command.WRITE_ANDX,
    Command.SESSION_SETUP_ANDX, Command.LOGOFF_ANDX, Command.TREE_CONNECT_ANDX,
    Command.SECURITY_PACKAGE_ANDX, Command.NT_CREATE_ANDX,
})


def command_name(code: int) -> str:
    """``SMB_COM_NEGOTIATE`` for 0x72; ``SMB_COM_0x9C`` for a code the spec does not define."""
    try:
        return "SMB_COM_" + Command(code).name
    except ValueError:
        return f"SMB_COM_0x{code:02X}"


class Flags(IntFlag):
    """[MS-CIFS] 2.2.3.1 Flags."""

    LOCK_AND_READ_OK = 0x01
    BUF_AVAIL = 0x02
    CASE_INSENSITIVE = 0x08
    CANONICALIZED_PATHS = 0x10
    OPLOCK = 0x20
    OPBATCH = 0x40
    REPLY = 0x80


class Flags2(IntFlag):
    """[MS-CIFS] 2.2.3.1 Flags2 (and [MS-SMB] 2.2.3.1 additions)."""

    LONG_NAMES = 0x0001
    EAS = 0x0002
    SECURITY_SIGNATURE = 0x0004
    COMPRESSED = 0x0008
    SECURITY_SIGNATURE_REQUIRED = 0x0010
    IS_LONG_NAME = 0x0040
    REPARSE_PATH = 0x0400
    EXTENDED_SECURITY = 0x0800
    DFS = 0x1000
    PAGING_IO = 0x2000
    NT_STATUS = 0x4000
    UNICODE = 0x8000


class Capabilities(IntFlag):
    """[MS-CIFS] 2.2.4.52.2 / [MS-SMB] 2.2.4.5.2 server and client capabilities."""

    RAW_MODE = 0x00000001
    MPX_MODE = 0x00000002
    UNICODE = 0x00000004
    LARGE_FILES = 0x00000008
    NT_SMBS = 0x00000010
    RPC_REMOTE_APIS = 0x00000020
    STATUS32 = 0x00000040
    LEVEL_II_OPLOCKS = 0x00000080
    LOCK_AND_READ = 0x00000100
    NT_FIND = 0x00000200
    DFS = 0x00001000
    INFOLEVEL_PASSTHRU = 0x00002000
    LARGE_READX = 0x00004000
    LARGE_WRITEX = 0x00008000
    LWIO = 0x00010000
    UNIX = 0x00800000
    COMPRESSED_DATA = 0x02000000
    DYNAMIC_REAUTH = 0x20000000
    EXTENDED_SECURITY = 0x80000000


class SecurityMode(IntFlag):
    """[MS-CIFS] 2.2.4.52.2 SecurityMode of a negotiate response."""

    USER_SECURITY = 0x01
    ENCRYPT_PASSWORDS = 0x02
    SECURITY_SIGNATURES_ENABLED = 0x04
    SECURITY_SIGNATURES_REQUIRED = 0x08


class TransSubcommand(IntEnum):
    """[MS-CIFS] 2.2.5 SMB_COM_TRANSACTION subcommands on named pipes (Setup[0])."""

    SET_NMPIPE_STATE = 0x0001
    RAW_READ_NMPIPE = 0x0011
    QUERY_NMPIPE_STATE = 0x0021
    QUERY_NMPIPE_INFO = 0x0022
    PEEK_NMPIPE = 0x0023
    TRANSACT_NMPIPE = 0x0026
    RAW_WRITE_NMPIPE = 0x0031
    READ_NMPIPE = 0x0036
    WRITE_NMPIPE = 0x0037
    WAIT_NMPIPE = 0x0053
    CALL_NMPIPE = 0x0054


class Trans2Subcommand(IntEnum):
    """[MS-CIFS] 2.2.6 SMB_COM_TRANSACTION2 subcommands (Setup[0]). SESSION_SETUP (0x0E) is
    reserved and unimplemented by Windows: DoublePulsar uses it as its control channel."""

    OPEN2 = 0x00
    FIND_FIRST2 = 0x01
    FIND_NEXT2 = 0x02
    QUERY_FS_INFORMATION = 0x03
    SET_FS_INFORMATION = 0x04
    QUERY_PATH_INFORMATION = 0x05
    SET_PATH_INFORMATION = 0x06
    QUERY_FILE_INFORMATION = 0x07
    SET_FILE_INFORMATION = 0x08
    FSCTL = 0x09
    IOCTL2 = 0x0A
    FIND_NOTIFY_FIRST = 0x0B
    FIND_NOTIFY_NEXT = 0x0C
    CREATE_DIRECTORY = 0x0D
    SESSION_SETUP = 0x0E
    GET_DFS_REFERRAL = 0x10
    REPORT_DFS_INCONSISTENCY = 0x11


class NtTransactFunction(IntEnum):
    """[MS-CIFS] 2.2.7 SMB_COM_NT_TRANSACT functions. RENAME (0x05) is unimplemented by Windows:
    EternalChampion and EternalBlue send it."""

    CREATE = 0x0001
    IOCTL = 0x0002
    SET_SECURITY_DESC = 0x0003
    NOTIFY_CHANGE = 0x0004
    RENAME = 0x0005
    QUERY_SECURITY_DESC = 0x0006
    QUERY_QUOTA = 0x0007
    SET_QUOTA = 0x0008


class FileType(IntEnum):
    """[MS-CIFS] 2.2.4.64.2 ResourceType of an NT_CREATE_ANDX response."""

    DISK = 0x0000
    BYTE_MODE_PIPE = 0x0001
    MESSAGE_MODE_PIPE = 0x0002
    PRINTER = 0x0003


#: [MS-CIFS] 2.2.4.64.2 NMPipeStatus of a message-mode pipe opened for reading: ICount 0xFF,
#: ReadMode and NamedPipeType = message (0x0100 | 0x0400), endpoint = server (0x4000). Windows
#: answers 0x05FF for \PIPE\srvsvc and friends.
NMPIPE_STATUS_MESSAGE_MODE = 0x05FF

FILE_ATTRIBUTE_NORMAL = 0x00000080
FILE_ATTRIBUTE_DIRECTORY = 0x00000010
FILE_OPEN = 0x00000001  # CreateDisposition / CreateAction "opened"
