"""The single batched writer: one thread owns all event writes to a store.

Producers (readers, later the sensor's collector) ``put`` Arrow batches; the writer thread
concatenates them until ``batch_rows`` rows or ``max_delay`` seconds have gathered and writes them
in one transaction. Errors are kept and re-raised to the producer on the next ``put`` or on
``close``, so nothing fails silently.
"""

from __future__ import annotations

import queue
import threading
import time
from types import TracebackType

import pyarrow as pa

from stormwatch.errors import StoreError
from stormwatch.events.memory import BULK_ROWS, bulk_pool
from stormwatch.store.db import Store, WriteResult

_STOP = object()
# DuckDB's row group size: a write of whole row groups goes straight to the database file, a
# remainder is kept in memory and logged; so full batches are written in multiples of it and
# the rest waits for the next batch (bench/README.md: 262,144-row writes cost 45 % more CPU per
# row than 245,760-row ones).
ROW_GROUP_ROWS = BULK_ROWS


class BatchWriter:
    """Writes event batches to ``store`` from a thread of its own."""

    def __init__(self, store: Store, *, batch_rows: int = 4 * ROW_GROUP_ROWS, max_delay: float = 1.0,
                 max_pending: int = 8) -> None:
        self.store = store
        self.batch_rows = batch_rows
        self.max_delay = max_delay
        self.result = WriteResult()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stormwatch-writer", daemon=True)
        self._thread.start()

    def put(self, batch: pa.Table) -> None:
        """Queue a batch (blocks when ``max_pending`` batches wait: back-pressure)."""
        self._raise_pending()
        if batch.num_rows:
            self._queue.put(batch)

    def flush(self) -> WriteResult:
        """Wait until everything queued so far is written; returns the running totals."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        self._raise_pending()
        return self.result

    def close(self) -> WriteResult:
        self._queue.put(_STOP)
        self._thread.join()
        self._raise_pending()
        return self.result

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if et is None:
            self.close()
        else:  # the producer failed: still write what it handed over, keep its exception
            self._queue.put(_STOP)
            self._thread.join()

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, StoreError):
                raise err
            raise StoreError(f"writer failed: {err}") from err

    def _run(self) -> None:
        pending: list[pa.Table] = []
        rows = 0
        deadline = 0.0
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if pending else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, pa.Table):
                if not pending:
                    deadline = time.monotonic() + self.max_delay
                pending.append(item)
                rows += item.num_rows
                # a full batch, or whole row groups while nothing else waits (the writer would
                # idle otherwise, as at the start of a big input): whole row groups now, the
                # rest with the next batch
                if rows < self.batch_rows and (rows < ROW_GROUP_ROWS or not self._queue.empty()):
                    continue
                table = self._table(pending)
                whole = rows - rows % ROW_GROUP_ROWS if rows >= ROW_GROUP_ROWS else rows
                self._write(table.slice(0, whole))
                pending = [table.slice(whole)] if whole < rows else []
                rows -= whole
                continue
            # a timeout, a flush marker or the stop marker: write what we have
            if pending:
                self._write(self._table(pending))
                pending, rows = [], 0
            if isinstance(item, threading.Event):
                item.set()
            elif item is _STOP:
                return

    @staticmethod
    def _table(pending: list[pa.Table]) -> pa.Table:
        """The pending batches as one table (batches with and without reader-made event ids go
        together, the missing ids null). Chunks that are whole row groups go to DuckDB as they
        are; other chunkings are copied into one chunk first, which DuckDB inserts with less CPU
        (bench/README.md)."""
        table = pending[0] if len(pending) == 1 else pa.concat_tables(pending, promote_options="default")
        sizes = [len(c) for c in table.column(0).chunks]
        if all(n % ROW_GROUP_ROWS == 0 for n in sizes[:-1]):
            return table
        return table.combine_chunks(memory_pool=bulk_pool())

    def _write(self, table: pa.Table) -> None:
        if self._error is not None:
            return  # after a failure nothing more is written; the producer is told
        try:
            self.result.add(self.store.write_events(table))
        except Exception as exc:  # noqa: BLE001 - handed to the producer thread, never lost
            self._error = exc
