"""Shared fixtures. Each block says who uses it; add new ones at the end."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# --- study tests (test_study_*, test_export, test_constraints, test_resume) ---------------

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
TINY_SPACE = Path(__file__).resolve().parent / "data" / "tiny-space.yaml"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def tiny_study_args(trials: int, epochs: int = 3, seed: int = 0) -> list[str]:
    """Launch flags for a small real-data study: 256 train / 128 val CIFAR-10 images, tiny models."""
    return [
        "--dataset", f"folder:{ARCHIVE}", "--train-subset", "256", "--val-subset", "128",
        "--epochs", str(epochs), "--space", str(TINY_SPACE), "--trials", str(trials),
        "--seed", str(seed), "--batch-size", "64",
    ]


@pytest.fixture(scope="session")
def study_env() -> Iterator[None]:
    """The decoded-data cache shared with test_data.py (one decode per machine), set before Ray
    starts so its worker processes inherit it."""
    if not ARCHIVE.exists():
        pytest.fail(f"real-data tests need {ARCHIVE} (clone the repo with shared/ beside it)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYBRIDNAS_CACHE", str(Path(tempfile.gettempdir()) / "hybridnas-test-cache"))
        yield


@pytest.fixture(scope="session")
def ray_cluster(study_env: None) -> Iterator[None]:
    """One local Ray for every study test; `hybridnas launch` reuses a running Ray."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture
def hybridnas(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """Run the CLI in-process: (exit code, stdout + stderr)."""
    from hybridnas.cli.main import main

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out = capsys.readouterr()
        return code, out.out + out.err

    return run


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The local PostgreSQL; the Postgres path must not be skipped, so absence fails."""
    from hybridnas.storage import StorageError, open_storage

    try:
        open_storage(POSTGRES_URL, heartbeat_interval=None).engine.dispose()
    except StorageError as err:
        pytest.fail(
            f"PostgreSQL is required at {POSTGRES_URL} ({err}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`",
            pytrace=False,
        )
    return POSTGRES_URL


def check_finished_study(url: str, study_name: str, trials: int) -> list:
    """What every finished study must show; returns its trials."""
    import json
    import shutil
    import subprocess
    import sys

    import optuna
    from optuna.artifacts import get_all_artifact_meta
    from optuna.trial import TrialState

    from hybridnas.storage import open_storage

    storage = open_storage(url, heartbeat_interval=None)
    study = optuna.load_study(study_name=study_name, storage=storage)
    got = study.get_trials()
    states = [t.state for t in got]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) >= trials
    assert TrialState.PRUNED in states, "Hyperband pruned nothing"
    assert study.user_attrs["hybridnas"]["trials"] == trials
    workers = set()
    for t in got:
        if t.state == TrialState.FAIL:
            continue
        for key in ("config", "params", "macs", "device", "wall_seconds", "worker"):
            assert key in t.user_attrs, (t.number, key)
        workers.add(t.user_attrs["worker"])
        assert [m.filename for m in get_all_artifact_meta(t, storage=storage)] == [
            f"trial-{t.number}-config.yaml"
        ]
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [1, 2, 3]
            assert t.user_attrs["epochs_run"] == 3
            assert t.value == t.intermediate_values[3]
        elif "constraint_violation" not in t.user_attrs:
            assert len(t.intermediate_values) >= 1
    assert len(workers) >= 2, workers  # two per launch

    # A client nobody here wrote: Optuna's own CLI must list the same trials and states.
    listed = subprocess.run(
        [shutil.which("optuna", path=str(Path(sys.executable).parent)) or "optuna", "trials", "--study-name", study_name, "--storage", url, "-f", "json"],
        capture_output=True, text=True, check=True,
    )
    by_number = {row["number"]: row["state"] for row in json.loads(listed.stdout)}
    assert by_number == {t.number: t.state.name for t in got}
    return got
