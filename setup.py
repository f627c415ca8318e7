"""Build of the one compiled module, the iptables reader's fast path (all metadata is in pyproject.toml).

``optional=True``: without a C compiler the install still succeeds and the reader uses its DuckDB
SQL path (stormwatch.ingest.netfilter_fast.available() is then False).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "stormwatch.ingest._netfilter",
            sources=["src/stormwatch/ingest/_netfilter.c"],
            depends=["src/stormwatch/ingest/_md5.h", "src/stormwatch/ingest/_md5x.h",
                     "src/stormwatch/ingest/_syslog_time.h"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
