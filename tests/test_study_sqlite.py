"""A real search on the embedded default: SQLite, two Ray workers, Hyperband, real CIFAR-10 images."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import check_finished_study, tiny_study_args


@pytest.mark.usefixtures("ray_cluster")
def test_sqlite_study_with_two_ray_workers(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "sq", "--storage", url, *tiny_study_args(12),
                          "--workers", "2", "--export", tmp_path / "best.yaml")
    assert code == 0, out
    assert "created study 'sq'" in out and "browse it: hybridnas dashboard" in out
    trials = check_finished_study(url, "sq", 12)
    assert (tmp_path / "nas-artifacts").is_dir()
    assert (tmp_path / "best.yaml").is_file()
    assert any(t.user_attrs["device"].startswith("cpu (1 threads)") for t in trials)

