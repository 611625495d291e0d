"""A launch on a real two-node Ray cluster (`ray start --head` + `ray start --address`, token
authentication) runs one worker per node without --workers; the second node dies mid-trial
(SIGKILL of its raylet and its workers): its trial is failed and re-queued, the launcher records the dead
worker and asks for a replacement, which starts when a node joins again; the study ends with
its full count and nothing RUNNING, and `status` says which worker died and why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import PgStudy, wait_for
from helpers import json_in, tiny_study_args
from optuna.trial import TrialState
from ray_nodes import RayCluster, children

from hybridnas.objectives.study.records import WORKERS_ATTR
from hybridnas.storage import retried_from

# Enough work that the survivor cannot finish the study alone before the replacement has started
# on the node that joins (trials take ~3 s here; a node and a worker take 20-40 s to start on a busy
# machine).
TRIALS = 24


@pytest.fixture
def cluster(pg_study: PgStudy, tmp_path: Path) -> Iterator[RayCluster]:
    cluster = RayCluster(pg_study.env, tmp_path)
    try:
        cluster.start_head(num_cpus=1)
        cluster.wait_for_nodes(1)
        yield cluster
    finally:
        cluster.stop()


def _workers(s: PgStudy) -> dict[str, dict]:
    import optuna

    try:
        study = optuna.load_study(study_name=s.name, storage=s.storage)
    except KeyError:
        return {}
    return study.user_attrs.get(WORKERS_ATTR) or {}


def test_a_lost_node_is_replaced_and_the_study_still_completes(pg_study: PgStudy, cluster: RayCluster,
                                                                tmp_path: Path) -> None:
    s = pg_study
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes(2)
    s.env.update({k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")})
    launch = s.spawn(
        "launch", "--study", s.name, "--storage", s.url, *tiny_study_args(TRIALS, epochs=4, train_subset=1024),
        "--pruner", "none", "--ray-address", cluster.address, "--artifacts", str(tmp_path / "shared-artifacts"),
        "--heartbeat-interval", "1", "--grace-period", "5", log="launch",
    )

    def second_nodes_worker_mid_trial() -> str | None:
        on_second = {str(p) for p in children(second.pid)}
        for worker_id, record in _workers(s).items():
            if str(record.get("pid")) in on_second:
                running = [t for t in s.by_state(TrialState.RUNNING)
                           if t.user_attrs.get("worker") == worker_id and t.intermediate_values]
                if running:
                    return worker_id
        return None

    victim = wait_for(second_nodes_worker_mid_trial, "a worker on the second node to be mid-trial", timeout=240)
    workers = _workers(s)
    assert len({w["node"] for w in workers.values() if "node" in w}) == 2, workers  # one worker per node
    (victim_trial,) = [t for t in s.by_state(TrialState.RUNNING) if t.user_attrs.get("worker") == victim]
    cluster.kill_node(second)
    cluster.add_node(num_cpus=1)  # room again, joining while Ray notices the loss: the replacement starts here

    wait_for(lambda: _workers(s).get(victim, {}).get("state") == "died", "the launcher to see the worker die",
             timeout=120)
    failed = [t for t in s.trials() if t.number == victim_trial.number][0]
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"].startswith(f"worker {victim} died")

    assert s.wait(launch, timeout=420) == 0, s.log(launch)
    log = s.log(launch)
    assert "running 2 worker(s), one per share (1 CPU(s) each, 2 CPU(s) in the cluster, no GPU)" in log, log
    assert f"worker {victim} died" in log and "asked Ray for a replacement" in log, log

    trials = s.trials()
    assert [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    assert s.done() == TRIALS
    retries = [t for t in trials if retried_from(t) == victim_trial.number]
    assert len(retries) == 1 and retries[0].params == victim_trial.params
    workers = _workers(s)
    assert workers[victim]["state"] == "died"
    replacements = [w for w, r in workers.items() if w not in (victim,) and r.get("state") in ("running", "stopped")]
    assert len(replacements) >= 2  # the survivor and the replacement
    assert {t.user_attrs["worker"] for t in trials if t.state == TrialState.COMPLETE} - {victim}

    code = s.spawn("status", "--study", s.name, "--storage", s.url, "--json", log="status")
    assert s.wait(code, timeout=60) == 0
    status = json_in(s.log(code))
    died = [w for w in status["workers"] if w["state"] == "died"]
    assert [w["worker"] for w in died] == [victim] and died[0]["reason"], status["workers"]
    assert any((tmp_path / "shared-artifacts").iterdir())


def test_a_launch_without_the_clusters_token_is_refused_in_one_line(pg_study: PgStudy, cluster: RayCluster) -> None:
    s = pg_study
    s.env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64})
    launch = s.spawn("launch", "--study", s.name, "--storage", s.url, *tiny_study_args(2),
                     "--ray-address", cluster.address, log="launch")
    assert s.wait(launch, timeout=120) == 2
    last = s.log(launch).strip().splitlines()[-1]
    assert last.startswith(f"error: cannot join the Ray cluster at {cluster.address}: nothing answers there, or "
                           "it refused this launch's token") and "RAY_AUTH_MODE=token" in last, s.log(launch)
