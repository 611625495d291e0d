"""The CLI starts light: importing it (what `hybridnas --help` does) loads neither torch nor
Ray, nor Optuna and SQLAlchemy, which only the commands that open a study need."""

from __future__ import annotations

import subprocess
import sys

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
