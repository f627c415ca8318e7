"""Shared fixtures: the real data set in ../shared/data, temporary stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
