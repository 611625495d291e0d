"""How many Ray workers a launch runs and what each asks for, checked against a real Ray that
places them (GPUs declared to Ray, as a CPU machine has none); and a launch never trips over the
address file a dead `ray start` cluster left behind."""

from __future__ import annotations

import re

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import tiny_study_args

from hybridnas.common import UsageError
from hybridnas.workers.placement import Placement


@pytest.mark.parametrize(
    ("resources", "kwargs", "count", "options", "threads"),
    [
        ({"CPU": 16.0, "GPU": 4.0}, {}, 4, {"num_gpus": 1.0, "num_cpus": 1}, 1),
        ({"CPU": 16.0, "GPU": 4.0}, {"gpus_per_worker": 0.5, "cpus_per_worker": 2}, 8, {"num_gpus": 0.5, "num_cpus": 2}, 2),
        ({"CPU": 16.0, "GPU": 1.0}, {"gpus_per_worker": 0.25, "threads": 3}, 4, {"num_gpus": 0.25, "num_cpus": 1}, 3),
        ({"CPU": 2.0}, {}, 2, {"num_cpus": 1}, 1),
        ({"CPU": 16.0}, {"threads": 4}, 4, {"num_cpus": 4}, 4),
        ({"CPU": 16.0}, {"threads": 4, "workers": 6}, 6, {"num_cpus": 4}, 4),
        ({"CPU": 1.0}, {"threads": 4}, 1, {"num_cpus": 4}, 4),
    ],
)
def test_default_workers_one_per_gpu_share_or_per_threads_cpus(
    resources: dict, kwargs: dict, count: int, options: dict, threads: int
) -> None:
    plan = Placement(**kwargs).plan(resources)
    assert (plan.count, plan.options, plan.threads) == (count, options, threads)


def test_more_workers_than_fit_are_said_to_wait() -> None:
    plan = Placement(workers=6, threads=1).plan({"CPU": 4.0})
    assert plan.reason == "6 worker(s), as asked (1 CPU(s) each, 4 CPU(s) in the cluster, no GPU; 2 wait for room)"
    with pytest.raises(UsageError, match="gpus_per_worker: 0 is not a number above 0"):
        Placement(gpus_per_worker=0)


@pytest.mark.parametrize(("keywords", "message"), [
    ({"workers": -1}, "workers: -1 is not a whole number from 0 to 4096"),
    ({"workers": 10**9}, "workers: 1000000000 is not a whole number from 0 to 4096"),
    ({"workers": True}, "workers: True is not a whole number"),
    ({"threads": 0}, "threads: 0 is not a whole number from 1 to 1024"),
    ({"cpus_per_worker": 2.5}, "cpus_per_worker: 2.5 is not a whole number"),
    ({"gpus_per_worker": 65}, "gpus_per_worker: 65 is not a number above 0 and at most 64"),
])
def test_the_python_api_refuses_what_the_cli_flags_refuse_before_storing_anything(
        keywords: dict, message: str, tmp_path: Path) -> None:
    import optuna

    from hybridnas import search
    from hybridnas.storage import open_storage

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with pytest.raises(UsageError, match=re.escape(message)):
        search.launch({"dataset": "cifar10"}, study="s", storage=url, **keywords)
    assert optuna.get_all_study_summaries(open_storage(url, heartbeat_interval=None)) == []


@pytest.mark.parametrize("call", ["launch", "retrain"])
def test_a_misspelled_worker_keyword_is_a_type_error_before_storing_anything(call: str, tmp_path: Path) -> None:
    import optuna

    from hybridnas import search
    from hybridnas.storage import open_storage

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with pytest.raises(TypeError, match="unexpected keyword argument 'worker'"):
        if call == "launch":
            search.launch({"dataset": "cifar10"}, study="s", storage=url, worker=2)
        else:
            search.retrain("s", url, worker=2)
    assert optuna.get_all_study_summaries(open_storage(url, heartbeat_interval=None)) == []


PLACEMENT = """
import collections, json, ray
from hybridnas.workers.placement import Placement
from hybridnas.workers.ray_workers import TrialWorker
ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, _system_config={"worker_niceness": 0})
plan = Placement(gpus_per_worker=0.5).plan(ray.cluster_resources())
actors = [ray.remote(TrialWorker).options(**plan.options).remote(plan.threads) for _ in range(plan.count)]
placed = ray.get([a.where.remote() for a in actors], timeout=120)
print(json.dumps({"count": plan.count, "per_gpu": collections.Counter(g for p in placed for g in p["gpu_ids"])}))
"""


@pytest.mark.integration  # a Ray of its own, in a subprocess
def test_half_a_gpu_each_packs_two_workers_on_every_gpu() -> None:
    import json

    done = subprocess.run([sys.executable, "-c", PLACEMENT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    placed = json.loads(done.stdout.strip().splitlines()[-1])
    assert placed == {"count": 4, "per_gpu": {"0": 2, "1": 2}}


@pytest.mark.integration  # starts its own local Ray
@pytest.mark.usefixtures("study_env")
def test_a_stale_cluster_address_file_does_not_stop_a_launch(tmp_path: Path) -> None:
    """`ray start` writes ray_current_cluster in Ray's temp dir; after that cluster died, a plain
    ray.init() would try to join the dead address and fail."""
    import os

    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    launch = subprocess.run(
        [str(Path(sys.executable).with_name("hybridnas")), "launch", "--study", "stale", "--storage",
         f"sqlite:///{tmp_path / 'nas.db'}", *tiny_study_args(1, epochs=1), "--workers", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    assert "started a local Ray" in launch.stdout and "1/1 distinct architectures trained" in launch.stdout, launch.stdout


@pytest.mark.usefixtures("ray_cluster")
def test_the_embedded_ray_runs_its_workers_at_this_process_priority() -> None:
    """Not Ray's default nice 15, at which a busy machine starves the workers of CPU."""
    import os

    import ray

    @ray.remote
    def niceness() -> int:
        return os.nice(0)

    assert ray.get(niceness.remote(), timeout=120) == os.nice(0)
