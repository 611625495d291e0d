"""A worker behind `hybridnas storage-proxy` (grpc://) killed with SIGKILL mid-trial: its trial
beat through the proxy, so the surviving workers fail it once its beats stop, re-queue it and
re-run it, as they do on PostgreSQL directly (test_killed_worker.py)."""

from __future__ import annotations

from faults import PgStudy, kill_mid_trial_and_check_retry
from helpers import tiny_study_args

from hybridnas.storage._proxy import HEARTBEAT_ATTR

TRIALS = 8
HEARTBEAT_S, GRACE_S = 1, 3


def test_sigkilled_proxy_worker_trial_fails_and_is_retried(hybridnas, pg_study: PgStudy) -> None:
    s = pg_study
    code, out = hybridnas("launch", "--study", s.name, "--storage", s.url, *tiny_study_args(TRIALS),
                          "--pruner", "none", "--workers", "0")
    assert code == 0, out
    proxy_url = s.storage_proxy()
    beat = ("--heartbeat-interval", str(HEARTBEAT_S), "--grace-period", str(GRACE_S))
    workers = {
        f"w{i}": s.spawn("worker", "--study", s.name, "--storage", proxy_url, "--worker-id", f"w{i}",
                         "--device", "cpu", "--threads", "1", *beat, log=f"w{i}")
        for i in range(3)
    }
    kill_mid_trial_and_check_retry(s, workers, TRIALS, GRACE_S)
    assert all(HEARTBEAT_ATTR in t.system_attrs for t in s.trials())  # every trial beat through the proxy
