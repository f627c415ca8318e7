"""Event types emitted by the honeypot sensor (and by replaying captures through it).

One session is one TCP connection (or one UDP exchange for the name service); every event of it
carries the sensor-assigned ``session`` id and the connection's addresses, bound by the sensor.
Attacker-supplied strings (OS names, user names, paths) are data fields, never identity.
"""

from __future__ import annotations

from stormwatch.events.fields import EventType, Field, FieldType

_S, _I, _F, _B, _J = FieldType.STRING, FieldType.INT, FieldType.FLOAT, FieldType.BOOL, FieldType.JSON

SESSION_CONNECT = EventType("session.connect", 1, "A client connected to one of the sensor's services.", (
    Field("service", _S, "Service reached: `smb` (445), `netbios-ssn` (139), `dcerpc` (135), `nbns` (137/udp)."),
    Field("persona", _S, "Name of the persona the sensor presents (e.g. `win2000`)."),
))

SESSION_CLOSED = EventType("session.closed", 1, "A session ended; the last event of every session.", (
    Field("reason", _S, "Why: `client` (peer closed), `idle`, `lifetime`, `anomaly`, `limit`, `shutdown`; in "
          "capture replay also `server` (the captured server closed) and `capture_end`."),
    Field("duration", _F, "Seconds from connect to close."),
    Field("bytes_in", _I, "Bytes received from the client."),
    Field("bytes_out", _I, "Bytes sent to the client."),
))

SESSION_ANOMALY = EventType("session.anomaly", 1, "Input the codecs could not accept or a limit that was "
                            "hit (in the spirit of Zeek's weird.log); the session is closed after it.", (
    Field("kind", _S, "Named anomaly: `malformed_<protocol>` (e.g. `malformed_smb1`), `smb_protocol_order`, "
          "`smb2_unsupported`, `nbss_unexpected_type`, `capture_gap` (replay), `internal_error`, or the "
          "`max_*` limit that was hit."),
    Field("detail", _S, "Human-readable detail (field and offset when known)."),
    Field("field", _S, "Protocol field at fault, when known."),
    Field("offset", _I, "Byte offset of the fault within the message, when known."),
))

SMB_NEGOTIATE = EventType("smb.negotiate", 1, "The client's SMB NEGOTIATE and the dialect chosen.", (
    Field("dialects", _J, "Dialects offered by the client, in its order (SMB1 names or SMB2 hex codes)."),
    Field("dialect", _S, "Dialect the sensor chose, e.g. `NT LM 0.12` or `0x0210`; empty if none."),
    Field("smb_version", _I, "1 or 2 (SMB2/3)."),
    Field("extended_security", _B, "Whether extended security (SPNEGO/NTLMSSP) was negotiated."),
))

SMB_SESSION_SETUP = EventType("smb.session_setup", 1, "An SMB session set-up (login) leg with the client's "
                              "self-description.", (
    Field("auth", _S, "`anonymous`, `ntlmssp` or `legacy` (plain NT LM 0.12 passwords)."),
    Field("user", _S, "Account name (empty for anonymous)."),
    Field("domain", _S, "Primary domain the client named."),
    Field("workstation", _S, "Workstation name (NTLMSSP)."),
    Field("native_os", _S, "The client's NativeOS string."),
    Field("native_lanman", _S, "The client's NativeLanMan string."),
    Field("ntlm_flags", _I, "NTLMSSP negotiate flags of the client, as an integer."),
    Field("ntlm_version", _S, "`v1`, `v2` or empty, from the NT response length."),
))

SMB_TREE_CONNECT = EventType("smb.tree_connect", 1, "A TREE_CONNECT to a share.", (
    Field("path", _S, "Path as sent, e.g. `\\\\HOST\\IPC$`."),
    Field("share", _S, "Share name, upper-cased, e.g. `IPC$`."),
    Field("service", _S, "Service type requested or granted (`IPC`, `A:`, `?????`)."),
))

SMB_PIPE_OPEN = EventType("smb.pipe_open", 1, "A named pipe opened on IPC$.", (
    Field("pipe", _S, "Pipe name, lower-cased, without `\\PIPE\\` (e.g. `srvsvc`, `browser`, `lsarpc`)."),
    Field("fid", _I, "File id the sensor assigned."),
))

DCERPC_BIND = EventType("dcerpc.bind", 1, "A DCE/RPC bind or alter_context.", (
    Field("interface", _S, "Abstract syntax UUID."),
    Field("interface_name", _S, "Its name, e.g. `srvsvc`, if known."),
    Field("interface_version", _S, "Major.minor version."),
    Field("transport", _S, "`pipe:NAME` or `tcp`."),
    Field("accepted", _B, "Whether the sensor accepted the context."),
))

DCERPC_REQUEST = EventType("dcerpc.request", 1, "A complete (reassembled) DCE/RPC request.", (
    Field("interface", _S, "Abstract syntax UUID of the call's context."),
    Field("interface_name", _S, "Its name, if known."),
    Field("opnum", _I, "Operation number."),
    Field("operation", _S, "Operation name, e.g. `NetprPathCanonicalize`, if known."),
    Field("stub_len", _I, "Stub bytes after reassembly."),
    Field("fragments", _I, "Fragments it arrived in."),
    Field("transport", _S, "`pipe:NAME` or `tcp`."),
))

EXPLOIT_ATTEMPT = EventType("exploit.attempt", 1, "A detector recognised an exploit (or a vulnerability "
                            "probe) in the session.", (
    Field("vuln", _S, "Bulletin id, e.g. `MS06-040`."),
    Field("cve", _S, "CVE id, e.g. `CVE-2006-3439`."),
    Field("kind", _S, "`exploit` (an attack on the flaw) or `probe` (a scanner testing for it)."),
    Field("detector", _S, "Name of the detector that decided."),
    Field("evidence", _J, "The fields and values that decided, e.g. `{\"path_units\": 412}`."),
    Field("confidence", _F, "0-1: how sure the detector is."),
    Field("payload_sha256", _S, "SHA-256 of the kept exploit argument, if one was kept."),
    Field("payload_size", _I, "Its size in bytes."),
))

NBNS_QUERY = EventType("nbns.query", 1, "A NetBIOS name service query (UDP 137).", (
    Field("name", _S, "Queried name (decoded), with its suffix as `<XX>`."),
    Field("qtype", _S, "`NB` (name query) or `NBSTAT` (node status)."),
))

SENSOR_TYPES: tuple[EventType, ...] = (
    SESSION_CONNECT, SESSION_CLOSED, SESSION_ANOMALY, SMB_NEGOTIATE, SMB_SESSION_SETUP, SMB_TREE_CONNECT,
    SMB_PIPE_OPEN, DCERPC_BIND, DCERPC_REQUEST, EXPLOIT_ATTEMPT, NBNS_QUERY,
)
