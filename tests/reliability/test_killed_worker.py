"""A worker killed with SIGKILL mid-trial: its trial is failed by the heartbeat check of the
surviving workers, re-queued (RetryHeartbeatStaleTrialCallback link) and re-run; the study
finishes with its full budget and nothing RUNNING or WAITING."""

from __future__ import annotations

from faults import PgStudy, kill_mid_trial_and_check_retry
from helpers import tiny_study_args

TRIALS = 8
HEARTBEAT_S, GRACE_S = 1, 3


def test_sigkilled_worker_trial_fails_and_is_retried(hybridnas, pg_study: PgStudy) -> None:
    s = pg_study
    code, out = hybridnas("launch", "--study", s.name, "--storage", s.url, *tiny_study_args(TRIALS),
                          "--pruner", "none", "--workers", "0")
    assert code == 0, out
    beat = ("--heartbeat-interval", str(HEARTBEAT_S), "--grace-period", str(GRACE_S))
    workers = {f"w{i}": s.worker(f"w{i}", *beat) for i in range(3)}
    kill_mid_trial_and_check_retry(s, workers, TRIALS, GRACE_S)
