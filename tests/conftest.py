"""Shared fixtures: the real data set in ../shared/data, temporary stores."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stormwatch.analytics import local_spark_session
from stormwatch.store import Store

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the project's real captures and logs); skips when it is absent."""
    if not (SHARED_DATA / "SOURCES.md").exists():
        pytest.skip(f"real data set not present at {SHARED_DATA} (../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store(tmp_path / "test.duckdb")
    yield st
    st.close()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local-mode Spark session shared by the whole test session (it takes seconds to start)."""
    if shutil.which("java") is None:
        pytest.skip("Spark tests need a Java runtime (java not on PATH)")
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("Spark tests need pyspark (pip install 'stormwatch[spark]')")
    session = local_spark_session(tmp_path_factory.mktemp("spark"))
    yield session
    session.stop()
