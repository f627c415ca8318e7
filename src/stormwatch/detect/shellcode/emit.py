"""The ``payload.shellcode`` and ``payload.offer`` event fields of a report (catalogue:
:mod:`stormwatch.events.payload_types`). The producer adds the identity fields (sensor, session,
addresses) of the session that delivered the payload; nothing here is identity."""

from __future__ import annotations

from typing import Any

from stormwatch.detect.shellcode.report import ShellcodeReport


def event_fields(report: ShellcodeReport) -> list[tuple[str, dict[str, Any]]]:
    """``[(event type, fields), ...]``: one ``payload.shellcode`` when shellcode was found, then one
    ``payload.offer`` per offer. Nothing when the payload held no shellcode."""
    if not report.found:
        return []
    out: list[tuple[str, dict[str, Any]]] = [("payload.shellcode", {
        "payload_sha256": report.sha256, "payload_md5": report.md5, "size": report.size,
        "offset": report.offset, "decoder": report.decoder or "", "decoder_key": report.key or "",
        "decoded_size": report.decoded_size, "decoded_sha256": report.decoded_sha256 or "",
        "getpc": report.getpc or "", "api_profile": report.api_profile,
        "api_calls": [list(c) for c in report.api_calls], "binds": list(report.binds),
        "connects": [list(c) for c in report.connects], "commands": list(report.commands),
        "stop_reason": report.stop_reason, "stop_detail": report.stop_detail, "instructions": report.instructions,
    })]
    for o in report.offers:
        out.append(("payload.offer", {
            "payload_sha256": report.sha256, "protocol": o.protocol, "host": o.host, "port": o.port,
            "path": o.path, "url": o.url, "endpoint": o.endpoint, "filename": o.filename,
        }))
    return out
