"""The payload store: exploit arguments (shellcode included) kept as files named by their SHA-256.

Safety rules (DESIGN.md, "Safety rules of the sensor"):

* a payload is data: it is hashed and written, never executed, emulated or interpreted here;
* the file name is the hex SHA-256 of the content and nothing else, under a two-character fan-out
  directory (``ab/ab12…``); no attacker-supplied string (pipe names, paths, file names) ever
  becomes part of a path;
* files are created ``0o600`` and directories ``0o700``: no execute bit, no other reader; run the
  sensor with the payload directory on a ``noexec`` mount for a second line of defence;
* every payload has a size cap and the directory a total quota; what does not fit is still
  hashed (the event keeps ``payload_sha256`` and ``payload_size``) but not written.

Writes go to a temporary file in the same directory and are renamed into place, so a reader never
sees half a payload, and the same payload seen twice is written once. The hashes of the payloads
known to be stored are remembered (up to :data:`KNOWN_MAX`), so a worm sending the same shellcode
a thousand times a second costs one hash each time, not a file-system look-up: a payload file
deleted while the sensor runs is therefore written again only once that memory has been reset.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD = 4 << 20  # bytes of one payload (the session keeps at most 4 MiB anyway)
DEFAULT_MAX_TOTAL = 1 << 30  # bytes of the whole store
KNOWN_MAX = 1 << 16  # hashes of stored payloads remembered (64 hex digits each: a few MiB at most)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Kept:
    """What became of one payload."""

    sha256: str
    size: int
    stored: bool  # False: over a limit, or the disk refused; the hash is still right
    why: str = ""  # why it was not stored


class PayloadStore:
    """Content-addressed payload files under ``directory``."""

    def __init__(self, directory: Path | str, *, max_payload: int = DEFAULT_MAX_PAYLOAD,
                 max_total: int = DEFAULT_MAX_TOTAL) -> None:
        self.directory = Path(directory)
        self.max_payload = max_payload
        self.max_total = max_total
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.total = self._measure()
        self._known: set[str] = set()  # hashes whose file is known to be in place

    def path_for(self, sha256: str) -> Path:
        """Where the payload with this hash lives (``sha256`` must be 64 lower-case hex digits)."""
        if _SHA256_HEX.fullmatch(sha256) is None:
            raise ValueError(f"not a SHA-256 hex digest: {sha256[:80]!r}")
        return self.directory / sha256[:2] / sha256

    def keep(self, data: bytes) -> Kept:
        """Hash ``data`` and store it unless a limit says no."""
        digest = hashlib.sha256(data).hexdigest()
        size = len(data)
        if digest in self._known:
            return Kept(digest, size, True)
        path = self.path_for(digest)
        if path.exists():
            self._remember(digest)
            return Kept(digest, size, True)
        if size > self.max_payload:
            return Kept(digest, size, False, f"larger than max_payload ({self.max_payload})")
        if self.total + size > self.max_total:
            log.warning("payload store %s full (%d of %d bytes): %s not kept", self.directory, self.total,
                        self.max_total, digest)
            return Kept(digest, size, False, "payload store quota reached")
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            tmp = path.parent / f".{digest}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("payload store %s: cannot write %s: %s", self.directory, digest, exc)
            return Kept(digest, size, False, f"write failed: {exc.strerror or exc}")
        self.total += size
        self._remember(digest)
        return Kept(digest, size, True)

    def _remember(self, digest: str) -> None:
        if len(self._known) >= KNOWN_MAX:
            self._known.clear()  # forgetting costs a stat per payload, never a wrong answer
        self._known.add(digest)

    def _measure(self) -> int:
        total = 0
        for sub in self.directory.iterdir():
            if sub.is_dir() and not sub.is_symlink():
                total += sum(f.stat().st_size for f in sub.iterdir() if f.is_file() and not f.is_symlink())
        return total
