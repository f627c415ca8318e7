"""Exploit classifiers over decoded protocol messages (no I/O), shared by the live sensor and the
replay of captures. See :mod:`stormwatch.detect.rpc` for the DCE/RPC detectors and
:mod:`stormwatch.detect.rules` for their thresholds, each with its reason."""

from stormwatch.detect.finding import Finding
from stormwatch.detect.rpc import detect_rpc_call

__all__ = ["Finding", "detect_rpc_call"]
