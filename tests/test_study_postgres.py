"""The same search on the real PostgreSQL server of this machine (fails, never skips, without it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from helpers import check_finished_study, tiny_study_args

from hybridnas.storage import open_storage


@pytest.fixture
def pg_study(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh study name, deleted afterwards; artifacts go to a temporary folder."""
    monkeypatch.setenv("HYBRIDNAS_ARTIFACTS", str(tmp_path / "artifacts"))
    name = f"test-study-{uuid.uuid4().hex[:10]}"
    yield name
    optuna.delete_study(study_name=name, storage=open_storage(postgres_url, heartbeat_interval=None))


@pytest.mark.usefixtures("ray_cluster")
def test_postgres_study_with_two_ray_workers(hybridnas, postgres_url: str, pg_study: str, tmp_path: Path) -> None:
    code, out = hybridnas("launch", "--study", pg_study, "--storage", postgres_url, *tiny_study_args(10, seed=1),
                          "--workers", "2")
    assert code == 0, out
    check_finished_study(postgres_url, pg_study, 10)
    assert any((tmp_path / "artifacts").iterdir())
