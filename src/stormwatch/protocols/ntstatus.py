"""NTSTATUS codes ([MS-ERREF] 2.3.1) shared by the SMB1 and SMB2 codecs."""

from __future__ import annotations

from enum import IntEnum


class NtStatus(IntEnum):
    """[MS-ERREF] 2.3.1 NTSTATUS values the sensor sends over SMB1 and SMB2 ([MS-SMB2] 3.3.5 names)."""

    SUCCESS = 0x00000000
    PENDING = 0x00000103
    BUFFER_OVERFLOW = 0x80000005
    NO_MORE_FILES = 0x80000006
    NOT_IMPLEMENTED = 0xC0000002
    INVALID_INFO_CLASS = 0xC0000003
    INVALID_HANDLE = 0xC0000008
    INVALID_PARAMETER = 0xC000000D
    NO_SUCH_FILE = 0xC000000F
    INVALID_DEVICE_REQUEST = 0xC0000010
    END_OF_FILE = 0xC0000011
    MORE_PROCESSING_REQUIRED = 0xC0000016
    ACCESS_DENIED = 0xC0000022
    OBJECT_NAME_INVALID = 0xC0000033
    OBJECT_NAME_NOT_FOUND = 0xC0000034
    OBJECT_NAME_COLLISION = 0xC0000035
    OBJECT_PATH_NOT_FOUND = 0xC000003A
    LOGON_FAILURE = 0xC000006D
    ACCOUNT_DISABLED = 0xC0000072
    INSUFFICIENT_RESOURCES = 0xC000009A
    PIPE_NOT_AVAILABLE = 0xC00000AC
    PIPE_DISCONNECTED = 0xC00000B0
    NOT_SUPPORTED = 0xC00000BB
    BAD_NETWORK_PATH = 0xC00000BE
    NETWORK_NAME_DELETED = 0xC00000C9
    BAD_DEVICE_TYPE = 0xC00000CB
    BAD_NETWORK_NAME = 0xC00000CC
    FILE_CLOSED = 0xC0000128
    PIPE_BROKEN = 0xC000014B
    USER_SESSION_DELETED = 0xC0000203
    #: What an *unpatched* Windows returns to a TRANSACTION PeekNmPipe (setup 0x23) on FID 0 of
    #: IPC$; patched MS17-010 hosts answer STATUS_ACCESS_DENIED or STATUS_INVALID_HANDLE. nmap's
    #: smb-vuln-ms17-010 and Metasploit's auxiliary/scanner/smb/smb_ms17_010 test for this value, so
    #: a honeypot that wants to attract EternalBlue answers the probe with it.
    INSUFF_SERVER_RESOURCES = 0xC0000205
    # DOS-class errors packed as NTSTATUS ([MS-CIFS] 2.2.2.4: class ERRSRV=0x02 in the low byte).
    SMB_BAD_TID = 0x00050002
    SMB_BAD_COMMAND = 0x00160002
    SMB_BAD_UID = 0x005B0002
    BUFFER_TOO_SMALL = 0xC0000023
    REQUEST_NOT_ACCEPTED = 0xC00000D0
    SMB_NO_PREAUTH_INTEGRITY_HASH_OVERLAP = 0xC05D0000


def status_name(code: int) -> str:
    try:
        return "STATUS_" + NtStatus(code).name
    except ValueError:
        return f"0x{code:08X}"
