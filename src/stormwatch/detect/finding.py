"""What a detector reports: one ``exploit.attempt`` in the making."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["exploit", "probe"]


@dataclass(frozen=True)
class Finding:
    """A recognised exploit or vulnerability probe, with the evidence that decided it.

    ``payload`` is the attacker-controlled argument that carries the overflow (shellcode
    included); the sensor stores it by SHA-256 and never executes or interprets it."""

    vuln: str  # bulletin id, e.g. "MS06-040"
    cve: str
    kind: Kind
    detector: str
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict)
    payload: bytes | None = None

    def event_fields(self) -> dict[str, Any]:
        """The ``exploit.attempt`` fields (the sensor adds the payload hash and size)."""
        return {"vuln": self.vuln, "cve": self.cve, "kind": self.kind, "detector": self.detector,
                "evidence": self.evidence, "confidence": self.confidence}
