"""The threat layer: knowledge about what the sensors see. :mod:`stormwatch.threat.kb` holds the
vulnerability knowledge base (bulletins, ports, malware, detectors, mitigations) as data."""

from stormwatch.threat.kb import KBError, KnowledgeBase, Mitigation, Severity, Vuln, load_file, load_kb

__all__ = ["KBError", "KnowledgeBase", "Mitigation", "Severity", "Vuln", "load_file", "load_kb"]
