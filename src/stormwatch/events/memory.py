"""The Arrow memory pool for bulk event buffers: allocated and freed by the hundred megabytes
while a large input is ingested.

pyarrow's default pool (mimalloc) gives each large buffer pages of its own and hands them back
to the system when it is freed, so every new batch pays for fresh pages (the kernel zeroes
them: a third of all CPU time of an iptables ingest, measured with perf). jemalloc keeps freed
memory for a while and hands it out again. Pools that this pyarrow build lacks fall back to
the default one.
"""

from __future__ import annotations

import functools

import pyarrow as pa

# Rows per chunk of a bulk reader: DuckDB's row group size. The store hands DuckDB chunks that
# are whole row groups as they are and copies others into one (stormwatch.store.writer).
BULK_ROWS = 122_880


@functools.cache
def bulk_pool() -> pa.MemoryPool:
    """jemalloc when this pyarrow has it, else the default pool."""
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()
