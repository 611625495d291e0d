"""Paths and helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The real CIFAR-10 training images (JPEG, ImageFolder layout) in shared/ beside the clone.
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
CIFAR = f"folder:{ARCHIVE}"
# One decode of the archive per machine, shared by every test module and run.
TEST_CACHE = Path(tempfile.gettempdir()) / "hybridnas-test-cache"
TINY_SPACE = REPO / "tests" / "data" / "tiny-space.yaml"
# The tiny space's largest architecture: 53,002 parameters, over a max_params of 8,000.
TINY_SPACE_TOO_BIG = {"c1": 32, "c2": 64, "k2": 5, "attention": None}
SMALL_SPACE = REPO / "tests" / "data" / "small-space.yaml"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The id of a worker a test runs by hand: its sampler's seed comes from it, so with a fixed id a
# test samples the same trials on every run (the default, HOST-PID, changes with each process).
TEST_WORKER = "test-worker"
# Two small conv stages, the second with Luong attention: trains in a second on CIFAR-10 images.
TINY_CONFIG = {
    "name": "tiny",
    "input": {"image_size": 32, "num_classes": 10},
    "stages": [
        {"block": "conv", "channels": 16, "pool": {"kind": "max", "size": 2}},
        {"block": "conv", "channels": 32, "pool": {"kind": "max", "size": 2}, "attention": {"kind": "luong"}},
    ],
    "head": {"kind": "avgpool"},
}

# The training settings that fix the precision a trial or job recorded, one per choice of amp
# "auto" on the CPU: a rerun with them is that run again on any CPU, busy or not.
PRECISION_SETTINGS = {"fp32, NCHW": {"amp": "off", "channels_last": False},
                      "bf16, channels_last": {"amp": "bf16", "channels_last": True}}


def precision_flags(precision: str) -> list[str]:
    """PRECISION_SETTINGS of a recorded `precision` as `hybridnas train` flags."""
    settings = PRECISION_SETTINGS[precision]
    return ["--amp", settings["amp"], "--channels-last" if settings["channels_last"] else "--no-channels-last"]


def json_in(out: str) -> Any:
    """The first JSON document in a command's output (stdout comes before stderr's log lines)."""
    start = min(i for i in (out.find("{"), out.find("[")) if i >= 0)
    return json.JSONDecoder().raw_decode(out[start:])[0]


def tiny_study_args(trials: int, epochs: int = 3, seed: int = 0, train_subset: int = 256) -> list[str]:
    """Launch flags for a small real-data study: 256 train / 128 val CIFAR-10 images, tiny models."""
    return [
        "--dataset", CIFAR, "--train-subset", str(train_subset), "--val-subset", "128",
        "--epochs", str(epochs), "--space", str(TINY_SPACE), "--trials", str(trials),
        "--seed", str(seed), "--batch-size", "64",
    ]


def check_finished_study(url: str, study_name: str, trials: int) -> list:
    """What every finished study must show; returns its trials."""
    import optuna
    from optuna.artifacts import get_all_artifact_meta
    from optuna.trial import TrialState

    from hybridnas.objectives.study.records import TrialRecord
    from hybridnas.storage import open_storage

    storage = open_storage(url, heartbeat_interval=None)
    study = optuna.load_study(study_name=study_name, storage=storage)
    got = study.get_trials()
    states = [t.state for t in got]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    trained = [t for t in got if TrialRecord(t).counts_toward_budget]
    assert len(trained) == trials  # no overshoot: workers ask the budget before each trial
    assert len({t.user_attrs["arch_key"] for t in trained}) == trials  # none trained twice
    assert any(t.state == TrialState.PRUNED for t in trained), "Hyperband pruned nothing"
    assert study.user_attrs["hybridnas"]["trials"] == trials
    workers = set()
    for t in got:
        if t.state == TrialState.FAIL:
            continue
        for key in ("config", "params", "macs", "device", "wall_seconds", "worker"):
            assert key in t.user_attrs, (t.number, key)
        workers.add(t.user_attrs["worker"])
        # Feasible trials are also described for optuna-dashboard: a note and the architecture diagram.
        expected = [f"trial-{t.number}-config.yaml"]
        if "constraint_violation" not in t.user_attrs:
            expected.append(f"trial-{t.number}-architecture.svg")
        assert sorted(m.filename for m in get_all_artifact_meta(t, storage=storage)) == sorted(expected)
        if "duplicate_of" in t.user_attrs:
            assert t.values == got[t.user_attrs["duplicate_of"]].values
        elif t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [1, 2, 3]
            assert t.user_attrs["epochs_run"] == 3
            assert t.value == t.intermediate_values[3]
        elif "constraint_violation" not in t.user_attrs:
            assert len(t.intermediate_values) >= 1
    assert len(workers) >= 2, workers  # two per launch

    # A client nobody here wrote: Optuna's own CLI must list the same trials and states.
    listed = subprocess.run(
        [shutil.which("optuna", path=str(Path(sys.executable).parent)) or "optuna", "trials", "--study-name",
         study_name, "--storage", url, "-f", "json"],
        capture_output=True, text=True, check=True,
    )
    by_number = {row["number"]: row["state"] for row in json.loads(listed.stdout)}
    assert by_number == {t.number: t.state.name for t in got}
    return got


# Where the page tests leave their screenshots, to be looked at.
SCREENS = Path("/tmp/hybridnas-screens")


def chromium(*args: str, timeout: int = 120) -> str:
    """Headless Chromium's stdout (`--dump-dom`, `--screenshot=`). A missing browser fails the
    test: the test command installs Debian's package, so a page test never silently skips.

    Chromium's new headless mode at times hangs on its way out after it wrote the screenshot
    (cypress-io/cypress#27264): a screenshot it reported written counts, and the browser, renderers
    included, is killed. Any other hang fails with the end of what Chromium printed."""
    browser = shutil.which("chromium")
    assert browser, "needs Debian's chromium on PATH; the README's test command installs it (apt-get install chromium)"
    with subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
            shot = next((arg.removeprefix("--screenshot=") for arg in args if arg.startswith("--screenshot=")), None)
            if shot is not None and f"bytes written to file {shot}" in err:
                return out
            printed = [line for line in err.splitlines() if "dbus" not in line]
            raise AssertionError(f"headless Chromium was still running after {timeout} s; the end of what it printed:\n"
                                 + "\n".join(printed[-20:])) from None
    assert proc.returncode == 0, err
    return out


@contextmanager
def no_hang(seconds: int) -> Iterator[None]:
    """Turn an endless loop into a failure (SIGALRM interrupts Python code in the main thread)."""

    def _raise(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)



@contextmanager
def ctrl_c_when(ready: Any) -> Iterator[list[bool]]:
    """Within the block, Ctrl-C (SIGINT to this process, as a terminal sends it) at the first
    progress poll of a launch or retrain where `ready(progress)` holds; yields a list that gets
    one entry when it was sent.

    The supervisor polls every 0.2 s instead of its usual 2 s, so the signal lands within a
    fraction of a second of `ready`, also on a machine fast enough to finish a tiny study between
    two 2 s polls."""
    import functools

    import pytest

    from hybridnas.cli._progress import LaunchProgress
    from hybridnas.workers import ray_workers

    real_progress = LaunchProgress.__call__
    sent: list[bool] = []

    def progress_then_ctrl_c(self: LaunchProgress) -> None:
        real_progress(self)
        if not sent and ready(self):
            sent.append(True)
            signal.raise_signal(signal.SIGINT)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LaunchProgress, "__call__", progress_then_ctrl_c)
        mp.setattr(ray_workers, "run_ray_workers", functools.partial(ray_workers.run_ray_workers, poll_s=0.2))
        yield sent
