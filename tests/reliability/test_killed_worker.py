"""A worker killed with SIGKILL mid-trial: its trial is failed by the heartbeat check of the
surviving workers, re-queued (RetryFailedTrialCallback link) and re-run; the study finishes."""

from __future__ import annotations

import os
import signal

from conftest import tiny_study_args
from faults import HANG_GUARD_S, PgStudy, pg_study, snapshot, wait_for  # noqa: F401 -- pg_study is a fixture
from optuna.trial import TrialState

from hybridnas.storage import retried_from

TRIALS = 8
HEARTBEAT_S, GRACE_S = 1, 3


def test_sigkilled_worker_trial_fails_and_is_retried(hybridnas, pg_study: PgStudy) -> None:
    s = pg_study
    code, out = hybridnas("launch", "--study", s.name, "--storage", s.url, *tiny_study_args(TRIALS),
                          "--pruner", "none", "--workers", "0")
    assert code == 0, out
    beat = ("--heartbeat-interval", str(HEARTBEAT_S), "--grace-period", str(GRACE_S))
    workers = {f"w{i}": s.worker(f"w{i}", *beat) for i in range(3)}

    def victim_mid_training():
        # With no pruner, a trial that has reported epoch 1 of 3 still has two epochs to go.
        for t in s.by_state(TrialState.RUNNING):
            if t.user_attrs.get("worker") in workers and t.intermediate_values:
                return t
        return None

    victim = wait_for(victim_mid_training, "a worker's trial to report its first epoch")
    os.kill(workers[victim.user_attrs["worker"]].pid, signal.SIGKILL)
    killed = workers.pop(victim.user_attrs["worker"])
    killed.wait(timeout=30)
    before = {n: v for n, v in snapshot(s.trials()).items() if v[0] == TrialState.COMPLETE}
    (killed_trial,) = [t for t in s.trials() if t.number == victim.number]
    assert killed_trial.state == TrialState.RUNNING  # killed mid-trial, not after it ended

    failed = wait_for(
        lambda: [t for t in s.by_state(TrialState.FAIL) if t.number == victim.number],
        f"trial {victim.number} of the killed worker to be failed by the heartbeat check",
        # the check runs when a surviving worker starts its next trial: grace + one trial
        timeout=GRACE_S + 60,
    )
    assert failed
    for name, proc in workers.items():
        assert s.wait(proc) == 0, s.log(proc)

    trials = s.trials()
    retries = [t for t in trials if retried_from(t) == victim.number]
    assert len(retries) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == victim.params  # the same architecture, run again
    assert retries[0].user_attrs["worker"] in workers  # by a survivor

    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert s.done() >= TRIALS
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [victim.number]
    after = snapshot(trials)
    for number, was in before.items():
        assert after[number] == was, number
    assert sorted(after) == list(range(len(trials)))
