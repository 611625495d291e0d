"""The CLI starts light: importing it (what `hybridnas --help` does) loads neither torch nor
Ray, nor Optuna and SQLAlchemy, which only the commands that open a study need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "ray", "optuna", "sqlalchemy", "torchvision")


@pytest.mark.parametrize("module", ["hybridnas.cli", "hybridnas.cli.main"])
def test_importing_the_cli_loads_no_heavy_library(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_runs_without_loading_them() -> None:
    code = ("import sys\nfrom hybridnas.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "launch" in done.stdout and "retrain" in done.stdout


def test_opening_storage_leaves_boto3_for_artifact_stores(tmp_path: Path) -> None:
    """`status` and `export` import the storage package; boto3 (pulled in by optuna.artifacts
    when installed, a quarter of a second) waits until an artifact store is made."""
    code = ("import sys\nfrom hybridnas.storage import artifact_store, open_storage\nbefore = 'boto3' in sys.modules\n"
            "artifact_store(None, sys.argv[1])\nprint(before, 'boto3' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "artifacts")], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


def test_opening_a_current_database_leaves_alembic_unimported(tmp_path: Path) -> None:
    """A new database is created and stamped by Optuna (which imports alembic); opening it again,
    as `status` and `export` do, reads its revision without alembic, a quarter of a second."""
    code = "import sys\nfrom hybridnas.storage import open_storage\nopen_storage(sys.argv[1])\nprint('alembic' in sys.modules)"
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    opens = [subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, check=True).stdout.split()
             for _ in range(2)]
    assert opens == [["True"], ["False"]]
