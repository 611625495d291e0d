"""Ray actors that each own a share of a node and run `run_worker` on it, and their supervisor.

How many actors and what each asks Ray for is the launch's `Placement` (placement.py).
The launcher supervises its actors: one that dies (its process killed, its node lost) is
recorded in the study with the reason, its RUNNING trials are failed and re-queued at once
(Ray has told us the worker is gone; no need to wait for its heartbeat to go stale), and a
replacement actor is asked for, which Ray places as soon as the cluster has room again. The
launch ends when the study's budget is reached and no trial runs, whatever became of the actors.

Stopping is cooperative: Ray cannot interrupt a running actor method, so the actor is threaded
(`max_concurrency=2`) and `stop()` sets an event the running trial checks after each epoch.
Whatever is still RUNNING after the grace period is killed and its trials marked FAIL
"interrupted" by the launcher.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from sqlalchemy.engine import make_url

from hybridnas.common import CHECK_EVERY_S, HybridNASError, UsageError, first_line, raise_if_interrupted
from hybridnas.objectives.objective import INTERRUPTED
from hybridnas.objectives.study.service import budget_reached, study_status
from hybridnas.objectives.study.definition import StudyDefinition
from hybridnas.objectives.study.records import ARTIFACTS_ATTR, WORKERS_ATTR
from hybridnas.storage import is_shared_location, mask_url, resolve_url
from hybridnas.workers.placement import Placement, WorkerPlan
from hybridnas.workers.worker import fail_and_retry, fail_running_trials, prepare_data, run_worker



class TrialWorker:
    """The actor body: one share of a node, one worker loop, a stop switch."""

    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)
        # The launcher prints every finished trial with its reason; Optuna would repeat each
        # failure with a traceback from every actor.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self._stop = threading.Event()

    def where(self) -> dict[str, Any]:
        """Where this actor landed (answers once Ray placed it): its node, host and process, and
        the accelerators Ray gave it."""
        context = ray.get_runtime_context()
        return {"node": context.get_node_id()[:12], "host": socket.gethostname(), "pid": os.getpid(),
                "gpu_ids": [str(i) for i in ray.get_gpu_ids()]}

    def run(self, study_name: str, storage_url: str, worker_id: str, seed_offset: int,
            worker_options: dict[str, Any]) -> dict[str, Any]:
        return run_worker(study_name, storage_url, worker_id, "auto", seed_offset=seed_offset, stop=self._stop,
                          **worker_options)

    def stop(self) -> None:
        self._stop.set()


_AUTH_HINT = (
    "Ray clusters use token authentication: run every node and this launch with RAY_AUTH_MODE=token and the "
    "cluster's token (the head's ~/.ray/auth_token, or RAY_AUTH_TOKEN)"
)


def start_ray(address: str | None, num_cpus: int | None = None) -> str:
    """Connect to `address`, or start an embedded local Ray when it is None; says which.

    Without an address a new local Ray is always started (`address="local"`): a cluster that
    ran on this machine earlier and died leaves its address file behind, and a plain
    `ray.init()` would try to join it and fail. Its workers run at normal priority, not Ray's
    nice 15: they are the job, and at nice 15 any other busy process on the machine starves
    them until their actors miss Ray's registration timeout.
    """
    common = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    if not address:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, _system_config={"worker_niceness": 0},
                 **common)
        return f"started a local Ray ({num_cpus or os.cpu_count()} CPUs); join a cluster with --ray-address"
    try:
        _join(address, common)
    except ray.exceptions.AuthenticationError:
        raise UsageError(f"the Ray cluster at {address} refused this launch's token. {_AUTH_HINT}") from None
    except ConnectionAbortedError as err:
        raise UsageError(f"the Ray cluster at {address} answered but could not start a client session "
                         f"{CLIENT_SESSION_TRIES} times ({_server_reason(err)}); its head's logs "
                         "ray_client_server*.err say why") from None
    except ConnectionError:
        # A wrong token shows up as a connection that never succeeds, like a wrong address.
        raise UsageError(f"cannot join the Ray cluster at {address}: nothing answers there, or it refused this "
                         f"launch's token. {_AUTH_HINT}") from None
    nodes = sum(1 for node in ray.nodes() if node["Alive"])
    return f"joined the Ray cluster at {address} ({nodes} node(s))"


# A Ray client address's head forks a session server for each connection, and that fork
# sometimes dies at once (a gRPC race, ray-project/ray#63202: a few percent of connections,
# more on a busy head); the next connection forks a new one.
CLIENT_SESSION_TRIES = 4


def _join(address: str, common: dict[str, Any]) -> None:
    """`ray.init(address)`, connecting again when a Ray client session fails to start."""
    for attempt in range(1, CLIENT_SESSION_TRIES + 1):
        try:
            ray.init(address=address, **common)
            return
        except ConnectionAbortedError:
            if attempt == CLIENT_SESSION_TRIES:
                raise


def _server_reason(err: ConnectionAbortedError) -> str:
    """The last line of the head's answer (Ray puts a traceback under a generic first line)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def launch_workers(
    study: optuna.Study,
    storage_url: str | None,
    definition: StudyDefinition,
    placement: Placement,
    *,
    worker_options: dict[str, Any] | None = None,
    on_poll: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run workers of `study` (a search, or a retrain's jobs) on Ray until it is done; their summaries.

    Without a cluster address the embedded local Ray is started here (and shut down after) and
    the dataset is decoded once into this machine's cache before the actors start, instead of
    by every actor at once (a bad data path fails here, in one line). `worker_options` go to
    every `run_worker` (artifacts, heartbeat interval, grace period). Ctrl-C: see run_ray_workers.
    """
    if placement.address is None:
        prepare_data(definition)
        raise_if_interrupted()
    ray_was_up = ray.is_initialized()
    try:
        if not ray_was_up:
            say(start_ray(placement.address, num_cpus=placement.local_cpus()))
            raise_if_interrupted()
        _check_artifacts_reach_every_node((worker_options or {}).get("artifacts"))
        plan = placement.plan(ray.cluster_resources())
        say(f"running {plan.reason}")
        return run_ray_workers(study, storage_url, plan, launch_id=uuid.uuid4().hex[:6],
                               worker_options=worker_options or {}, on_poll=on_poll, say=say)
    except ray.exceptions.RayTaskError as err:
        # A worker's own error (unreachable storage, a dataset it cannot read), without Ray's traceback.
        if isinstance(err.cause, HybridNASError):
            raise err.cause from None
        raise
    finally:
        # Also after a Ctrl-C inside ray.init: shut down whatever part of our own Ray came up.
        if not ray_was_up and ray.is_initialized():
            ray.shutdown()


def _check_artifacts_reach_every_node(location: str | None) -> None:
    """Refuse a multi-node launch whose trial files would land on the launcher's disk alone."""
    nodes = sum(1 for node in ray.nodes() if node["Alive"])
    if location is not None and nodes > 1 and not is_shared_location(location):
        raise UsageError(
            f"artifacts would go to {mask_url(location)} on this machine, which the cluster's other "
            f"{nodes - 1} node(s) cannot reach; pass --artifacts with a directory every node sees, "
            "or s3://bucket/prefix"
        )


def absolute_storage_url(url: str | None) -> str:
    """A SQLite URL with an absolute path: actors may not share the launcher's working directory."""
    url = resolve_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


@dataclass
class _Worker:
    worker_id: str
    actor: Any
    run: Any
    placed: Any
    where: dict[str, Any] | None = None


class _Fleet:
    """The launch's actors: started, placed, finished or dead, and replaced when they die."""

    def __init__(self, study: optuna.Study, url: str, plan: WorkerPlan, launch_id: str,
                 worker_options: dict[str, Any], say: Callable[[str], None]) -> None:
        self.study = study
        self.storage = study._storage
        self.study_name = study.study_name
        self.url = url
        self.plan = plan
        self.launch_id = launch_id
        self.worker_options = worker_options
        self.say = say
        self.actor_cls = ray.remote(TrialWorker)
        self.live: list[_Worker] = []
        self.started = 0
        if worker_options.get("artifacts"):
            # so that workers started later by hand, and retraining, find the same files
            self.study.set_user_attr(ARTIFACTS_ATTR, worker_options["artifacts"])

    def start(self) -> None:
        worker_id = f"{self.launch_id}-w{self.started}"
        actor = self.actor_cls.options(max_concurrency=2, **self.plan.options).remote(self.plan.threads)
        run = actor.run.remote(self.study_name, self.url, worker_id, self.started, self.worker_options)
        self.live.append(_Worker(worker_id, actor, run, actor.where.remote()))
        self.record(worker_id, state="starting")
        self.started += 1

    def record(self, worker_id: str, **fields: Any) -> None:
        """Keep what is known of a worker in the study, for `status` (one user attr per study)."""
        workers = dict(self.study.user_attrs.get(WORKERS_ATTR) or {})
        workers[worker_id] = {**workers.get(worker_id, {}), **fields, "launch": self.launch_id,
                              "at": datetime.now().isoformat(timespec="seconds")}
        self.study.set_user_attr(WORKERS_ATTR, workers)

    def note_placements(self) -> None:
        for w in self.live:
            if w.where is None and ray.wait([w.placed], timeout=0)[0]:
                w.where = ray.get(w.placed)
                self.record(w.worker_id, state="running", **w.where)

    def collect(self, timeout: float) -> list[dict[str, Any]]:
        """Summaries of the workers that finished; a dead one is recorded, its trials failed and
        re-queued, and replaced while the study still has work."""
        done, _ = ray.wait([w.run for w in self.live], num_returns=len(self.live), timeout=timeout)
        finished = []
        for w in [w for w in self.live if w.run in done]:
            self.live.remove(w)
            try:
                result = ray.get(w.run)
            except ray.exceptions.RayActorError as err:
                self.bury(w, first_line(err))
                continue
            # a worker that found the study over may finish before a poll noted where it ran
            self.record(w.worker_id, state="stopped", reason=result["stopped"], **(w.where or ray.get(w.placed)))
            finished.append(result)
        return finished

    def bury(self, w: _Worker, reason: str) -> None:
        failed = fail_and_retry(self.study, self.storage, [w.worker_id], f"worker {w.worker_id} died: {reason}")
        self.record(w.worker_id, state="died", reason=reason)
        lost = f"; its trial(s) {', '.join(map(str, failed))} failed and re-queued" if failed else ""
        self.say(f"worker {w.worker_id} died ({reason}){lost}")
        if not self.study_over():
            self.start()
            self.say(f"asked Ray for a replacement, worker {self.launch_id}-w{self.started - 1}; it starts when "
                     "the cluster has room")

    def study_over(self) -> bool:
        return budget_reached(study_status(self.study))

    def idle_over(self) -> bool:
        """The study is over and no trial runs: workers still waiting for a node are not needed."""
        return self.study_over() and not self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def run_ray_workers(
    study: optuna.Study,
    storage_url: str | None,
    plan: WorkerPlan,
    *,
    launch_id: str,
    worker_options: dict[str, Any],
    grace_s: float = 30.0,
    poll_s: float = 2.0,
    on_poll: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Start the plan's actors on the connected Ray cluster and supervise them until the study is over.

    On Ctrl-C (a stop request, seen within `CHECK_EVERY_S`; see common/_interrupt.py): tell
    every actor to stop, wait up to `grace_s` (a second Ctrl-C cuts it short), kill what is
    left, mark this launch's RUNNING trials FAIL "interrupted", and raise KeyboardInterrupt.
    Every `poll_s` seconds while the workers run it notes where they landed, asks whether the
    study is over and runs `on_poll` (progress output).
    """
    fleet = _Fleet(study, absolute_storage_url(storage_url), plan, launch_id, worker_options, say)
    results: list[dict[str, Any]] = []
    try:
        # Inside the try: a Ctrl-C while actors start must not leave the ones already started.
        for _ in range(plan.count):
            raise_if_interrupted()
            fleet.start()
        next_poll = time.monotonic()
        while fleet.live:
            raise_if_interrupted()
            results += fleet.collect(timeout=CHECK_EVERY_S)
            if time.monotonic() < next_poll:
                continue
            next_poll = time.monotonic() + poll_s
            fleet.note_placements()
            if on_poll is not None:
                on_poll()
            if fleet.live and all(w.where is None for w in fleet.live) and fleet.idle_over():
                break
        return results
    except KeyboardInterrupt:
        _stop_actors([w.actor for w in fleet.live], [w.run for w in fleet.live], grace_s)
        fail_running_trials(fleet.storage, study.study_name, [f"{launch_id}-w{i}" for i in range(fleet.started)],
                            INTERRUPTED)
        raise
    finally:
        for w in fleet.live:
            ray.kill(w.actor)


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
