"""The README's Python API example, run as it is written (real CIFAR-10 images, two Ray workers,
a retrain), and the API's names, which load without torch or Ray until used."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ARCHIVE, REPO, TEST_CACHE


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.integration  # two Ray workers of its own, a search and a retrain
@pytest.mark.usefixtures("study_env")
def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    env = {**os.environ, "HYBRIDNAS_DATA": str(ARCHIVE.parent), "HYBRIDNAS_CACHE": str(TEST_CACHE)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", _readme_example()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "1,228,234 parameters"
    assert lines[1] == "4 architectures trained"
    rows = [line.split() for line in lines[2:]]
    assert len(rows) == 2 and all(0.0 <= float(r[2]) <= 1.0 and 0.0 <= float(r[3]) <= 1.0 for r in rows), lines
    from hybridnas.models import load_config

    assert load_config(tmp_path / "api-best.yaml").name.startswith("api-demo-trial")


def test_the_api_names_load_on_first_use() -> None:
    code = ("import sys, hybridnas; heavy = lambda: sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules)\n"
            "before = heavy(); hybridnas.presets.preset('samc'); hybridnas.search.StudyDefinition\n"
            "print(before, heavy(), sorted(hybridnas.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ("[] [] ['ArchConfig', 'build', 'load_config', 'parse_config', 'presets', "
                                   "'profile', 'search']")
