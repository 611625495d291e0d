"""Ctrl-C of a real `hybridnas launch --workers 2`: it exits 130 promptly and leaves no trial
RUNNING; the interrupted ones are FAIL "interrupted"."""

from __future__ import annotations

import time

from conftest import tiny_study_args
from faults import PgStudy, pg_study, sigint, wait_for  # noqa: F401 -- pg_study is a fixture
from optuna.trial import TrialState

# The launcher waits up to 30 s for its actors to finish their epoch, then kills them.
LAUNCH_GRACE_S = 30


def test_ctrl_c_of_launch_exits_130_and_leaves_nothing_running(pg_study: PgStudy) -> None:
    s = pg_study
    # Long enough that Ctrl-C lands mid-study, with trials in flight: 10 epochs, so a trial seen
    # at epoch 1 still has seconds to go when the signal arrives (with 3 it could finish first).
    launch = s.spawn(
        "launch", "--study", s.name, "--storage", s.url, *tiny_study_args(30, epochs=10), "--pruner", "none", "--workers", "2",
        log="launch", new_session=True,
    )

    def mid_study() -> bool:
        # one trial finished, and one has reported epoch 1 of 10, so (no pruner) it is still training
        trials = s.trials()
        finished = any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        return finished and any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials)

    wait_for(mid_study, "the launch to be mid-study", every=0.1)
    started = time.monotonic()
    sigint(launch)
    code = s.wait(launch, timeout=LAUNCH_GRACE_S + 60)
    log = s.log(launch)
    print(f"launch exited {time.monotonic() - started:.1f}s after SIGINT")
    assert code == 130, log
    assert "interrupted: workers stopped" in log, log

    trials = s.trials()
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed, [(t.number, t.state.name) for t in trials]
    for t in failed:
        assert t.user_attrs["fail_reason"] == "interrupted", (t.number, t.user_attrs)
    assert s.done() < 30
