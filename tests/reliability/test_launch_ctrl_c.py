"""Ctrl-C of a real `hybridnas launch --workers 2` at any moment (before Ray is up, while its
actors start, mid-trial): it exits 130 promptly and leaves no trial RUNNING; the interrupted
ones are FAIL "interrupted". The launch is started as a CI runner starts a background job,
with SIGINT ignored, which is how a signal was once lost and the launch ran its whole budget."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from helpers import tiny_study_args
from faults import PgStudy, sigint, wait_for
from optuna.trial import TrialState

# The launcher waits up to 30 s for its actors to finish their epoch, then kills them.
LAUNCH_GRACE_S = 30
TRIALS = 30


def _study_created(s: PgStudy) -> Callable[[], bool]:
    return lambda: "created study" in s.log(s.procs[-1])


def _actors_starting(s: PgStudy) -> Callable[[], bool]:
    # Ray is up and the actors are being created, no trial has started yet
    return lambda: "running 2 worker(s)" in s.log(s.procs[-1]) and not s.trials()


def _mid_trial(s: PgStudy) -> Callable[[], bool]:
    def check() -> bool:
        # one trial finished, and one has reported epoch 1 of 10, so (no pruner) it is still training
        trials = s.trials()
        finished = any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        return finished and any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials)

    return check


@pytest.mark.parametrize("moment", [_study_created, _actors_starting, _mid_trial],
                         ids=["before-ray-is-up", "while-actors-start", "mid-trial"])
def test_ctrl_c_of_launch_exits_130_and_leaves_nothing_running(
    pg_study: PgStudy, moment: Callable[[PgStudy], Callable[[], bool]]
) -> None:
    s = pg_study
    # Long enough that Ctrl-C lands mid-study, with trials in flight: 10 epochs of 1,024 images,
    # so a trial seen at epoch 1 still has several seconds to go when the stop reaches its actor.
    launch = s.spawn(
        "launch", "--study", s.name, "--storage", s.url, *tiny_study_args(TRIALS, epochs=10, train_subset=1024),
        "--pruner", "none",
        "--workers", "2", log="launch", new_session=True, sigint_ignored=True,
    )
    wait_for(moment(s), f"the launch to reach moment {moment.__name__}", every=0.05)
    started = time.monotonic()
    sigint(launch)
    code = s.wait(launch, timeout=LAUNCH_GRACE_S + 60)
    log = s.log(launch)
    print(f"launch exited {time.monotonic() - started:.1f}s after SIGINT")
    assert code == 130, log

    trials = s.trials()
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    failed = [t for t in trials if t.state == TrialState.FAIL]
    for t in failed:
        assert t.user_attrs["fail_reason"] == "interrupted", (t.number, t.user_attrs)
    assert s.done() < TRIALS
    if moment is _mid_trial:
        assert "interrupted: workers stopped" in log, log
        assert failed, [(t.number, t.state.name) for t in trials]
