"""The DuckDB store: migrations, idempotent writes, rejects, the batched writer, the lake."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stormwatch.errors import StoreError
from stormwatch.events import EventBatchBuilder, Reject, arrow_schema
from stormwatch.events.ids import ID_FIELDS, event_id, schema_with_ids, split_id
from stormwatch.store import BatchWriter, Store, export_lake, list_events, list_rejects
from stormwatch.store.migrations import MIGRATIONS
from stormwatch.store.writer import ROW_GROUP_ROWS

T0 = datetime(2006, 8, 12, 14, 0)


def _batch(lines: list[str], sensor: str = "s1", start: datetime = T0) -> pa.Table:
    b = EventBatchBuilder(sensor)
    for i, line in enumerate(lines):
        b.add("fw.connection", start + timedelta(seconds=i), line, src_ip=f"10.0.0.{i % 250}",
              dst_ip="2001:db8::1" if i % 2 else "192.0.2.1", src_port=1000 + i, dst_port=139,
              proto="tcp", tcp_flags="S", action="drop", format="test", rule="DSHIELDINPUT")
    return b.take()


def _count(store: Store) -> int:
    return int(store.query("SELECT count(*) AS n FROM events").column("n")[0].as_py())


def test_migrations_are_named_recorded_and_run_once(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    with Store(path) as st:
        assert [name for _, name, _ in st.migrations()] == [m.name for m in MIGRATIONS]
    with Store(path) as st:  # reopening applies nothing again
        assert st.migrate() == []
        assert len(st.migrations()) == len(MIGRATIONS)


def test_typed_columns(store: Store) -> None:
    types = dict(store.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'events'").fetchall())
    assert types["ts"] == "TIMESTAMP"
    assert types["src_port"] == types["dst_port"] == "INTEGER"
    assert types["count"] == "INTEGER"
    assert types["event_id"] == "UHUGEINT"


def test_same_batch_twice_adds_nothing(store: Store) -> None:
    batch = _batch([f"line {i}" for i in range(100)])
    first = store.write_events(batch)
    second = store.write_events(batch)
    assert (first.inserted, first.duplicates) == (100, 0)
    assert (second.inserted, second.duplicates) == (0, 100)
    assert _count(store) == 100


def test_overlapping_growing_log_adds_only_new_records(store: Store) -> None:
    lines = [f"line {i}" for i in range(300)]
    store.write_events(_batch(lines[:200]))
    # the rotated/grown copy re-reads lines 100..299: timestamps are those of the same records
    b = EventBatchBuilder("s1")
    for i in range(100, 300):
        b.add("fw.connection", T0 + timedelta(seconds=i), lines[i], src_ip=f"10.0.0.{i % 250}",
              dst_ip="2001:db8::1" if i % 2 else "192.0.2.1", src_port=1000 + i, dst_port=139,
              proto="tcp", tcp_flags="S", action="drop", format="test", rule="DSHIELDINPUT")
    res = store.write_events(b.take())
    assert (res.inserted, res.duplicates) == (100, 100)
    assert _count(store) == 300


def test_repeated_identical_records_are_kept_and_still_idempotent(store: Store) -> None:
    lines = ["same line"] * 3 + ["other"]
    assert store.write_events(_batch(lines)).inserted == 4
    assert store.write_events(_batch(lines)).inserted == 0


def test_same_record_from_two_sensors_is_two_events(store: Store) -> None:
    store.write_events(_batch(["a", "b"], sensor="s1"))
    store.write_events(_batch(["a", "b"], sensor="s2"))
    assert _count(store) == 4


def test_ipv4_and_ipv6_round_trip(store: Store) -> None:
    store.write_events(_batch(["x", "y"]))
    rows = list_events(store, limit=10)
    assert {r["dst_ip"] for r in rows} == {"192.0.2.1", "2001:db8::1"}
    assert rows[0]["data"] == {"format": "test", "rule": "DSHIELDINPUT"}


def test_list_events_filters(store: Store) -> None:
    store.write_events(_batch([f"l{i}" for i in range(20)]))
    assert len(list_events(store, src="10.0.0.3")) == 1
    assert len(list_events(store, since=T0 + timedelta(seconds=15))) == 5
    assert len(list_events(store, event="ids.alert")) == 0
    assert len(list_events(store, limit=7)) == 7


def test_rejects_kept_once(store: Store) -> None:
    rej = [Reject.make("/x.log", 3, "bad address", "SRC=999.1.1.1", "iptables"),
           Reject.make("/x.log", 9, "bad port", b"SPT=99999 \xff", "iptables")]
    assert store.write_rejects(rej) == 2
    assert store.write_rejects(rej) == 0
    rows = list_rejects(store)
    assert [(r["line"], r["reason"]) for r in rows] == [(3, "bad address"), (9, "bad port")]
    assert rows[1]["raw"] == "SPT=99999 \\xff"


def test_failed_write_leaves_store_consistent(store: Store) -> None:
    store.write_events(_batch(["a"]))
    bad = _batch(["b", "c"]).set_column(1, "ts", pa.array([None, None], pa.timestamp("us")))
    with pytest.raises(StoreError):
        store.write_events(bad)
    assert _count(store) == 1
    assert store.write_events(_batch(["d"])).inserted == 1


def test_batch_writer_groups_batches_and_reports_errors(store: Store) -> None:
    with BatchWriter(store, batch_rows=250) as w:
        for k in range(10):
            w.put(_batch([f"w{k}-{i}" for i in range(100)], start=T0 + timedelta(hours=k)))
        mid = w.flush()
        assert mid.inserted == 1000
    assert w.result.inserted == 1000
    assert _count(store) == 1000
    bad = _batch(["z"]).set_column(1, "ts", pa.array([None], pa.timestamp("us")))
    w2 = BatchWriter(store)
    w2.put(bad)
    with pytest.raises(StoreError):
        w2.close()


def _with_given_ids(table: pa.Table) -> pa.Table:
    """``table`` as a reader that hashes its own ids hands it over: ids added, keys dropped."""
    cols = (table.column(c).to_pylist() for c in ("event", "sensor", "key"))
    ids = [split_id(event_id(e, s, k)) for e, s, k in zip(*cols, strict=True)]
    table = table.set_column(table.schema.get_field_index("key"), "key", pa.nulls(table.num_rows, pa.string()))
    table = table.append_column(ID_FIELDS[0], pa.array([lo for lo, _ in ids], pa.uint64()))
    return table.append_column(ID_FIELDS[1], pa.array([hi for _, hi in ids], pa.uint64()))


def test_reader_made_ids_are_the_stores_own(store: Store) -> None:
    """Rows with ids handed over and rows hashed by the store are the same events: either way
    round, the second write adds nothing; a batch mixing both forms works through the writer."""
    plain = _batch([f"g{i}" for i in range(50)])
    given = _with_given_ids(plain)
    assert given.schema.equals(schema_with_ids())
    assert store.write_events(given).inserted == 50
    assert store.write_events(plain).inserted == 0
    more = _batch([f"h{i}" for i in range(40)], start=T0 + timedelta(hours=1))
    with BatchWriter(store) as w:
        w.put(more.slice(0, 20))
        w.put(_with_given_ids(more.slice(20)))
        w.put(_with_given_ids(more))  # the same 40 again, all with ids
    assert (w.result.inserted, w.result.duplicates) == (40, 40)
    stored = store.query("SELECT count(*) AS n FROM events WHERE ts = $ts AND event_id = md5_number("
                         "'fw.connection' || chr(0) || 's1' || chr(0) || 'h0')", {"ts": T0 + timedelta(hours=1)})
    assert stored.column("n")[0].as_py() == 1


def test_duplicate_ids_within_a_batch_are_stored_once(store: Store) -> None:
    given = _with_given_ids(_batch(["same", "other"]))
    twice = pa.concat_tables([given, given.slice(0, 1)])
    assert store.write_events(twice).inserted == 2


def test_batch_writer_writes_whole_row_groups(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches go to DuckDB in multiples of its row group size, the rest with the next batch or
    at the end."""
    sizes: list[int] = []
    write = store.write_events

    def spy(batch: pa.Table) -> Any:
        sizes.append(batch.num_rows)
        return write(batch)

    monkeypatch.setattr(store, "write_events", spy)
    part = 100_000
    base = _batch([f"r{i}" for i in range(part)])
    with BatchWriter(store, batch_rows=2 * ROW_GROUP_ROWS) as w:
        for k in range(3):
            w.put(base.set_column(base.schema.get_field_index("sensor"), "sensor", pa.repeat(f"s{k}", part)))
    # (how many row groups each write takes depends on whether the next batch already waits)
    assert all(n % ROW_GROUP_ROWS == 0 for n in sizes[:-1]) and sizes[-1] % ROW_GROUP_ROWS != 0
    assert sum(sizes) == _count(store) == 3 * part


def test_empty_batch_is_a_no_op(store: Store) -> None:
    empty = pa.Table.from_batches([], schema=arrow_schema())
    assert store.write_events(empty).offered == 0


def test_lake_is_partitioned_by_day_and_complete(store: Store, tmp_path: Path) -> None:
    store.write_events(_batch([f"a{i}" for i in range(10)], start=datetime(2006, 8, 11, 23, 59, 55)))
    out = tmp_path / "lake"
    assert export_lake(store, out) == 10
    days = sorted(p.name for p in out.iterdir())
    assert days == ["day=2006-08-11", "day=2006-08-12"]
    table = pq.read_table(out)
    assert table.num_rows == 10
    # a second export overwrites, it does not duplicate
    export_lake(store, out)
    assert pq.read_table(out).num_rows == 10
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/*/*.parquet')").fetchall()[0][0] == 10


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.duckdb").mkdir()
    with pytest.raises(StoreError):
        Store(tmp_path / "dir.duckdb")
