"""The fault tests' fixture: a throwaway study in the local PostgreSQL, cleaned up after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import PgStudy


@pytest.fixture
def pg_study(postgres_url: str, study_env: None, tmp_path: Path) -> Iterator[PgStudy]:
    study = PgStudy(postgres_url, tmp_path)
    yield study
    study.cleanup()
