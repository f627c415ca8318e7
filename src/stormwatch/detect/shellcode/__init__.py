"""Payload analysis: find the shellcode in an exploit argument, decode it, emulate it in a fake
Windows process (unicorn; never on the host CPU) and report what it does — API calls, bind ports,
connect-backs, download URLs, shell commands and the offers they make.

Public surface::

    analyze(data: bytes, *, limits: Limits | None = None) -> ShellcodeReport
    offers_from_command(command: str, files=None) -> list[Offer]   # also for a bind shell's session text
    offer_from_url(url: str, local: str = "") -> Offer | None

Pure functions over bytes (no I/O). See docs/payloads.md for the method and its limits.
"""

from stormwatch.detect.shellcode.analyze import analyze
from stormwatch.detect.shellcode.offers import ftp_script_offers, offer_from_url, offers_from_command
from stormwatch.detect.shellcode.report import Limits, Offer, ShellcodeReport, StopReason

__all__ = [
    "Limits",
    "Offer",
    "ShellcodeReport",
    "StopReason",
    "analyze",
    "ftp_script_offers",
    "offer_from_url",
    "offers_from_command",
]
