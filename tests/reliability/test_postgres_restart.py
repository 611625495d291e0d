"""The PostgreSQL server restarts mid-study while two workers run: they carry on, and no trial
is lost or duplicated."""

from __future__ import annotations

from helpers import tiny_study_args
from faults import PgStudy, pg_cluster, pg_running, wait_for
from optuna.trial import TrialState

TRIALS = 6


def test_workers_survive_a_postgres_restart(hybridnas, pg_study: PgStudy) -> None:
    s = pg_study
    code, out = hybridnas("launch", "--study", s.name, "--storage", s.url, *tiny_study_args(TRIALS), "--workers", "0")
    assert code == 0, out
    workers = [s.worker(f"w{i}", "--heartbeat-interval", "1") for i in range(2)]
    try:
        # Mid-study: something finished, and both workers are inside a trial.
        wait_for(lambda: s.done() >= 1 and len(s.by_state(TrialState.RUNNING)) >= 1, "the study to be under way")
        pg_cluster("restart")
        for proc in workers:
            assert s.wait(proc) == 0, s.log(proc)
    finally:
        if not pg_running():
            pg_cluster("start")

    trials = s.trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # contiguous, none twice
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert s.done() == TRIALS
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.values is not None and len(t.values) == 1, t.number
            if "duplicate_of" in t.user_attrs:  # a repeat reports its original's result, untrained
                assert t.values == trials[t.user_attrs["duplicate_of"]].values
            else:
                assert t.user_attrs["epochs_run"] == 3
    # a trial in flight during the restart may have failed, but it names why and was not lost
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get("fail_reason"), t.number
