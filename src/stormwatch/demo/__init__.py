"""The demo data set: August 2006, background scanning and the MS06-040 surge on 139/445."""

from stormwatch.demo.generate import DemoPlan, generate

__all__ = ["DemoPlan", "generate"]
