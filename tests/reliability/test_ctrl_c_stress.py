"""Ctrl-C at seeded random moments of a real `launch`, `worker` and `retrain`, on a busy machine.

Each command runs as a CI runner starts a background job (SIGINT ignored until hybridnas takes
it over) while two other processes keep both cores busy. Once the process handles SIGINT, it
gets one after a seeded random delay that spans its start-up, Ray coming up, actors starting
and trials training. Every run must exit 130 within the grace period (a hang guard), leave
nothing RUNNING, mark what it interrupted FAIL "interrupted", keep every finished trial as it
was, and the next run of the same command must resume the study.

Marked slow (about 25 minutes on 2 cores): `.venv/bin/python -m pytest -m slow
tests/reliability/test_ctrl_c_stress.py`; HYBRIDNAS_STRESS_RUNS sets the moments per command
(default 20).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from faults import PgStudy, sigint, snapshot, wait_for
from helpers import TEST_WORKER, tiny_study_args
from optuna.trial import TrialState

from hybridnas.objectives.retrain import companion_name

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("HYBRIDNAS_STRESS_RUNS", "20"))
# The launcher waits up to 30 s for its actors to stop, then kills them; a hang guard past that.
EXIT_GUARD_S = 30 + 90


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Two processes that keep both cores busy for the whole test."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for proc in spinners:
        proc.kill()
        proc.wait()


def _handles_sigint(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process has installed its SIGINT handler (bit 2 of /proc's SigCgt mask)."""
    if proc.poll() is not None:
        raise AssertionError(f"{proc.args} exited with {proc.returncode} before it was interrupted")
    status = Path(f"/proc/{proc.pid}/status").read_text()
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & 0b10)


def _interrupt_at_random(s: PgStudy, proc: subprocess.Popen[bytes], rng: random.Random, spread_s: float) -> str:
    """SIGINT `proc` a random moment after it took SIGINT over; its log once it exited (130)."""
    wait_for(lambda: _handles_sigint(proc), "the process to handle SIGINT", every=0.05)
    time.sleep(rng.uniform(0, spread_s))
    if proc.poll() is not None:
        raise AssertionError(f"{proc.args} ended with {proc.returncode} before its SIGINT:\n{s.log(proc)[-3000:]}")
    sigint(proc)
    code = s.wait(proc, timeout=EXIT_GUARD_S)
    log = s.log(proc)
    assert code == 130, log[-3000:]
    return log


def _check_after_interrupt(trials: list[optuna.trial.FrozenTrial], finished_before: dict[int, object]) -> dict[int, object]:
    """Nothing RUNNING, failures are interruptions, finished trials untouched; the finished ones now."""
    table = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == [], table
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get("fail_reason") == "interrupted", table
    now = snapshot(trials)
    for number, was in finished_before.items():
        assert now[number] == was, (number, table)
    return {n: v for n, v in now.items() if v[0] in (TrialState.COMPLETE, TrialState.PRUNED)}


def _study_args(s: PgStudy) -> list[str]:
    # 10 epochs of 1,024 images per trial, no pruner: trials run for seconds, the budget for hours
    return [*tiny_study_args(500, epochs=10, train_subset=1024), "--pruner", "none"]


@pytest.mark.usefixtures("busy_cores")
def test_launch_interrupted_at_random_moments_exits_130_and_resumes(pg_study: PgStudy) -> None:
    s = pg_study
    rng = random.Random(25)
    finished: dict[int, object] = {}
    for run in range(RUNS):
        launch = s.spawn("launch", "--study", s.name, "--storage", s.url, *_study_args(s), "--workers", "2",
                         log=f"launch-{run}", new_session=True, sigint_ignored=True)
        log = _interrupt_at_random(s, launch, rng, spread_s=30)
        if run:
            assert f"resuming study '{s.name}'" in log, log[-3000:]
        finished = _check_after_interrupt(s.trials(), finished)


@pytest.mark.usefixtures("busy_cores")
def test_worker_interrupted_at_random_moments_exits_130_and_resumes(pg_study: PgStudy) -> None:
    s = pg_study
    define = s.spawn("launch", "--study", s.name, "--storage", s.url, *_study_args(s), "--workers", "0", log="define")
    assert s.wait(define) == 0, s.log(define)
    rng = random.Random(26)
    finished: dict[int, object] = {}
    for run in range(RUNS):
        worker = s.spawn("worker", "--study", s.name, "--storage", s.url, "--worker-id", TEST_WORKER,
                         "--device", "cpu", "--threads", "1", log=f"worker-{run}", new_session=True,
                         sigint_ignored=True)
        log = _interrupt_at_random(s, worker, rng, spread_s=20)
        assert "interrupted: the running trial marked FAIL" in log, log[-3000:]
        finished = _check_after_interrupt(s.trials(), finished)
    assert finished, "no trial finished between the interruptions: the moments did not reach training"


@pytest.mark.usefixtures("busy_cores")
def test_retrain_interrupted_at_random_moments_exits_130_and_resumes(pg_study: PgStudy) -> None:
    s = pg_study
    define = s.spawn("launch", "--study", s.name, "--storage", s.url, *tiny_study_args(3, epochs=1), "--workers", "0",
                     log="define")
    assert s.wait(define) == 0, s.log(define)
    search = s.worker(TEST_WORKER)
    assert s.wait(search, timeout=600) == 0, s.log(search)
    companion = PgStudy(s.url, s.logs)
    companion.name = companion_name(s.name)
    rng = random.Random(27)
    finished: dict[int, object] = {}
    try:
        for run in range(RUNS):
            retrain = s.spawn("retrain", "--study", s.name, "--storage", s.url, "--top", "3", "--seeds", "30",
                              "--epochs", "10", "--train-subset", "1024", "--workers", "2",
                              log=f"retrain-{run}", new_session=True, sigint_ignored=True)
            log = _interrupt_at_random(s, retrain, rng, spread_s=30)
            if run:
                assert f"retraining in study '{companion.name}'" in log, log[-3000:]
            finished = _check_after_interrupt(companion.trials(), finished)
    finally:
        companion.cleanup()
