"""Ray actors that each own one device and run `run_worker` on it.

On a node with GPUs every actor asks Ray for one GPU (`num_gpus=1`, so Ray sets
CUDA_VISIBLE_DEVICES and N actors spread over N GPUs); elsewhere for a share of the CPUs.
Either way torch's CPU threads are limited to the actor's share of the CPUs. Stopping is
cooperative: Ray cannot interrupt a running actor method, so the actor is threaded
(`max_concurrency=2`) and `stop()` sets an event the running trial checks after each epoch.
Whatever is still RUNNING after the grace period is killed and its trials marked FAIL
"interrupted" by the launcher.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from sqlalchemy.engine import make_url

from hybridnas.objectives.objective import INTERRUPTED
from hybridnas.storage import artifacts_path, open_storage, resolve_url
from hybridnas.workers.worker import fail_running_trials, run_worker


class TrialWorker:
    """The actor body: one device, one worker loop, a stop switch."""

    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)
        # The launcher prints every finished trial with its reason; Optuna would repeat each
        # failure with a traceback from every actor.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self._stop = threading.Event()

    def run(
        self, study_name: str, storage_url: str, worker_id: str, device: str, seed_offset: int, artifacts_dir: str
    ) -> dict[str, Any]:
        return run_worker(
            study_name,
            storage_url,
            worker_id,
            device,
            seed_offset=seed_offset,
            stop=self._stop,
            artifacts_dir=artifacts_dir,
        )

    def stop(self) -> None:
        self._stop.set()


def start_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to `address` / $RAY_ADDRESS, or start the embedded local Ray; True if started here."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **common)
    return True


def absolute_storage_url(url: str | None) -> str:
    """A SQLite URL with an absolute path: actors may not share the launcher's working directory."""
    url = resolve_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


def run_ray_workers(
    study_name: str,
    storage_url: str | None,
    n_workers: int,
    *,
    launch_id: str,
    grace_s: float = 30.0,
    poll_s: float = 2.0,
    on_poll: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Start N actors on the connected Ray cluster and wait until all have stopped.

    On KeyboardInterrupt: tell every actor to stop, wait up to `grace_s` (a second Ctrl-C cuts
    it short), kill what is left, mark this launch's RUNNING trials FAIL "interrupted", and
    re-raise. `on_poll` runs every `poll_s` seconds while the workers run (progress output).
    """
    url = absolute_storage_url(storage_url)
    artifacts_dir = str(artifacts_path(url).resolve())
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    threads = max(1, cpus // n_workers)
    if gpus:
        options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
        device = "cuda"
    else:
        options = {"num_cpus": threads}
        device = "cpu"
    actor_cls = ray.remote(TrialWorker)
    worker_ids = [f"{launch_id}-w{i}" for i in range(n_workers)]
    actors = [actor_cls.options(max_concurrency=2, **options).remote(threads) for _ in worker_ids]
    refs = [
        actor.run.remote(study_name, url, worker_id, device, i, artifacts_dir)
        for i, (actor, worker_id) in enumerate(zip(actors, worker_ids))
    ]
    try:
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=poll_s)
            if on_poll is not None:
                on_poll()
        return [_result(ref, worker_id) for ref, worker_id in zip(refs, worker_ids)]
    except KeyboardInterrupt:
        _stop_actors(actors, refs, grace_s)
        fail_running_trials(open_storage(url, heartbeat_interval=None), study_name, worker_ids, INTERRUPTED)
        raise
    finally:
        for actor in actors:
            ray.kill(actor)


def _result(ref: Any, worker_id: str) -> dict[str, Any]:
    """A worker's summary; an actor that died (killed, out of host memory) leaves its trial
    RUNNING for the heartbeat check of the next worker to fail and re-queue."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return {"worker": worker_id, "device": "unknown", "trials": {}, "stopped": f"died ({reason})"}


def _stop_actors(actors: list[Any], refs: list[Any], grace_s: float) -> None:
    for actor in actors:
        actor.stop.remote()
    deadline = time.monotonic() + grace_s
    pending = list(refs)
    try:
        while pending and time.monotonic() < deadline:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=min(1.0, grace_s))
    except KeyboardInterrupt:
        return
