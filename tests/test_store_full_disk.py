"""A full disk: the write fails with a clear StoreError (and `stormwatch ingest` exits non-zero),
nothing half-written is kept, and once space is back the store opens with every committed event.

Runs on a small tmpfs of its own, so it needs root (CI runs as root); skips with the reason
otherwise."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from stormwatch.cli.main import cli
from stormwatch.errors import StoreError
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=False,
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _batch(k: int) -> EventBatchBuilder:
    b = EventBatchBuilder("s1")
    for i in range(5000):
        b.add("fw.connection", datetime(2006, 8, 1) + timedelta(seconds=k * 5000 + i), f"line {k} {i} " + "x" * 100,
              src_ip="198.51.100.1", dst_port=445, proto="tcp", rule="R" * 50)
    return b


def test_full_disk_is_a_store_error_and_the_store_stays_consistent(small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 3_000_000)
    committed = 0
    with Store(small_disk / "t.duckdb") as st:
        with pytest.raises(StoreError, match="No space left on device"):
            for k in range(500):
                committed += st.write_events(_batch(k).take()).inserted
        assert committed > 0
        n = st.query("SELECT count(*) AS n FROM events").column("n")[0].as_py()
        assert n == committed  # the failed batch left nothing behind
    filler.unlink()
    with Store(small_disk / "t.duckdb") as st:
        assert st.query("SELECT count(*) AS n FROM events").column("n")[0].as_py() == committed
        assert st.write_events(_batch(10_000).take()).inserted == 5000


def test_ingest_on_a_full_disk_exits_non_zero(small_disk: Path, tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    with open(log, "w") as f:
        for i in range(60_000):
            f.write(f"Aug 14 10:{i // 3600 % 60:02d}:{i % 60:02d} fw kernel: [{i}.000001] DSHIELDINPUT IN=eth0 OUT= "
                    f"SRC=198.51.{i // 250 % 250}.{i % 250} DST=192.0.2.10 LEN=48 TOS=0x00 PREC=0x00 TTL=112 "
                    f"ID={i % 65536} DF PROTO=TCP SPT={1024 + i % 60000} DPT=445 WINDOW=64240 RES=0x00 SYN URGP=0\n")
    (small_disk / "filler").write_bytes(b"\0" * 6_000_000)
    res = CliRunner().invoke(cli, ["ingest", str(log), "--db", str(small_disk / "t.duckdb")])
    assert res.exit_code != 0
    assert "No space left on device" in res.output
