"""Thresholds of the exploit detectors, each with the reason it has that value.

They are data, not code: the detectors in :mod:`stormwatch.detect.rpc` read them from here, and
``docs/detectors.md`` explains them to the operator.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    name: str
    value: int
    reason: str


MAX_PATH = Threshold(
    "max_path_units", 260,
    "Windows' MAX_PATH. NetpwPathCanonicalize copies PathName and Prefix into MAX_PATH-sized stack "
    "buffers; a legitimate client never sends longer paths, and every MS06-040 exploit does "
    "(Metasploit: 355, 403 or 533 UTF-16 units).")

PROBE_MAX_UNITS = Threshold(
    "probe_max_path_units", 100,
    "A path with directory traversal that is this short cannot hold shellcode: it is a vulnerability "
    "check (Metasploit's ms08_067 check sends 44 units, nmap's smb-vuln-ms08-067 about 30), not an "
    "exploit.")

FINGERPRINT_OUTBUF = Threshold(
    "fingerprint_outbuf_len", 64000,
    "NetprNameCanonicalize with OutbufLen above 64000 is Metasploit's ms08_067 service-pack fingerprint "
    "(64001: a fault means SP2 or later); the IDL range is 0..64000.")

DNS_NAME_MAX = Threshold(
    "dns_name_max_units", 255,
    "DsRolerUpgradeDownlevelServer's first argument is a DNS domain name, at most 255 characters; the "
    "MS04-011 LSASS exploits send about 1,000 (both real captures: 993 and 1004 UTF-16 units).")

COMPUTER_NAME_MAX = Threshold(
    "computer_name_max_units", 32,
    "RemoteActivation copies the server part of pwszObjectName (\\\\server\\...) into a 32-character "
    "buffer (MS03-026, the Blaster flaw); real names are at most 15 NetBIOS or 63 DNS characters, and "
    "the host part of a legitimate object name fits the buffer.")

SHELLCODE_BYTES = Threshold(
    "non_text_units", 8,
    "UTF-16 units outside the printable range: a path carrying shellcode or return addresses has "
    "dozens to hundreds; a genuine (even long) path has none.")
