"""Event types of payload analysis (:mod:`stormwatch.detect.shellcode`) and of the multi-stage attack
follower (:mod:`stormwatch.collector.multistage`).

``payload.file`` is a file an attack retrieved, rebuilt from a capture's data connection and kept
by SHA-256 in the payload store. Its identity fields are those of the data connection (the side
that opened it is ``src``); ``attack`` holds the exploit session's id, which the ``payload.offer``
events of the same attack carry too, so the stages join to the ``exploit.attempt`` they follow.
The file name is what the attacker asked for: data, never a path.

Both are emitted by whoever runs the analysis on a kept exploit payload (the sensor, off its event
loop, or a capture replay) and carry the ``session`` and addresses of the session that delivered
the payload, bound by that producer; everything else comes from the analysis of attacker bytes and
is data, never identity.
"""

from __future__ import annotations

from stormwatch.events.fields import EventType, Field, FieldType

_S, _I, _B, _J = FieldType.STRING, FieldType.INT, FieldType.BOOL, FieldType.JSON

PAYLOAD_SHELLCODE = EventType("payload.shellcode", 1, "Shellcode found in an exploit payload: how it is "
                              "encoded and what it did when emulated.", (
    Field("payload_sha256", _S, "SHA-256 of the whole payload (the name it is kept under)."),
    Field("payload_md5", _S, "MD5 of the whole payload."),
    Field("size", _I, "Payload size in bytes."),
    Field("offset", _I, "Where the shellcode starts in the payload (decoder stub, GetPC or end of the sled)."),
    Field("decoder", _S, "Decoder loop, e.g. `xor8`, `xor32`, `add8`, `xor32-additive`; empty when not encoded."),
    Field("decoder_key", _S, "Decoder key in hex (memory order); empty when none."),
    Field("decoded_size", _I, "Bytes the decoder rewrote."),
    Field("decoded_sha256", _S, "SHA-256 of the decoded body, when there is one."),
    Field("getpc", _S, "GetPC technique: `call-pop`, `call4-pop`, `fnstenv`, `jmp-call-pop`, `call-back`."),
    Field("api_profile", _S, "API names in call order, repeats collapsed, comma-separated "
          "(e.g. `WSASocketA,bind,listen,accept,CreateProcessA,ExitThread`)."),
    Field("api_calls", _J, "The API calls as `[name, arguments summary]` pairs, in order."),
    Field("binds", _J, "TCP ports a bind shell listens on."),
    Field("connects", _J, "`[host, port]` of connect-backs."),
    Field("commands", _J, "Command lines it runs (WinExec, CreateProcess, system, ShellExecute)."),
    Field("stop_reason", _S, "Why emulation ended: `exit_api`, `returned`, `instruction_limit`, `memory_limit`, "
          "`time_limit`, `api_call_limit`, `self_modifying_limit`, `invalid_memory`, `invalid_instruction`, "
          "`interrupt`, `unsupported_api`, `emulator_error` or `not_emulated`."),
    Field("stop_detail", _S, "Detail of the stop: the exit API, the limit, or the faulting address."),
    Field("instructions", _I, "Instructions emulated."),
))

PAYLOAD_OFFER = EventType("payload.offer", 1, "Where a payload fetches its next stage from (a download "
                          "URL, a tftp or an echo-built FTP script), one event per offer.", (
    Field("payload_sha256", _S, "SHA-256 of the payload the offer came from."),
    Field("protocol", _S, "`http`, `https`, `ftp` or `tftp`."),
    Field("host", _S, "Host name or address as written by the attacker (not resolved)."),
    Field("port", _I, "Port (the protocol's default when not written)."),
    Field("path", _S, "Remote path or file name."),
    Field("url", _S, "The URL, as given or built as `protocol://host:port/path`."),
    Field("endpoint", _S, "`host:port:protocol`."),
    Field("filename", _S, "Base name of the file fetched (what the victim runs)."),
    Field("attack", _S, "Attack id, when the offer was seen in a followed multi-stage attack: the session id of "
          "its `exploit.attempt`."),
    Field("source", _S, "Where the offer was read: `shellcode` (emulation) or `shell` (commands sent to a shell)."),
    Field("user", _S, "User name of an FTP script, as written by the attacker."),
    Field("password", _S, "Password of an FTP script, as written by the attacker."),
))

PAYLOAD_FILE = EventType("payload.file", 1, "A file an attack retrieved (e.g. over FTP), rebuilt from a "
                         "capture and kept by SHA-256.", (
    Field("attack", _S, "Attack id: the session id of the `exploit.attempt` the download followed."),
    Field("stage", _S, "How it came: `ftp-data` (rebuilt from an FTP data connection of a capture) or "
          "`download` (fetched by the sensor, when the operator enabled downloads)."),
    Field("name", _S, "File name as the attacker asked for it (data, never a path)."),
    Field("url", _S, "Where it came from, e.g. `ftp://98.114.205.102:8884/ssms.exe`."),
    Field("protocol", _S, "`ftp`, `http`, `https` or `tftp`."),
    Field("source_host", _S, "Address of the server the file came from (the FTP control connection's)."),
    Field("source_port", _I, "Its port."),
    Field("sha256", _S, "SHA-256 of the rebuilt bytes: the name of the stored file."),
    Field("md5", _S, "MD5 of the rebuilt bytes (for look-ups in older malware lists)."),
    Field("size", _I, "Bytes rebuilt (holes zero-filled)."),
    Field("expected_size", _I, "Size the transfer announced, when known."),
    Field("expected_from", _S, "Where that size comes from: `tcp_fin`, `ftp_reply`, `pe_sections` "
          "or `content_length`."),
    Field("complete", _B, "True when no byte is missing and every size check agrees."),
    Field("missing_bytes", _I, "Bytes the capture lacked (zero-filled in the stored copy)."),
    Field("file_type", _S, "`pe` for a Windows PE image, `mz` for another MZ executable, else empty."),
    Field("stored", _B, "Whether the payload store kept it."),
    Field("notes", _J, "Why it is incomplete, or what could not be checked."),
))

PAYLOAD_TYPES: tuple[EventType, ...] = (PAYLOAD_SHELLCODE, PAYLOAD_OFFER, PAYLOAD_FILE)
