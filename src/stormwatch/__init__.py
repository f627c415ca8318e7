"""stormwatch: a self-hosted Internet threat early-warning system.

Layers (imports point down only): events → protocols → detect → sensor / ingest → store →
analytics → threat → notify / export → web / cli. See docs/architecture.md.
"""

__version__ = "0.1.0"
