"""Where a launch's workers run: how many, what each asks Ray for, on which cluster.

One value that the CLI's flags, the Python API's keywords and the Ray supervisor share. It
imports neither torch nor Ray, so the CLI can build it cheaply.

Each worker asks Ray for `gpus_per_worker` GPUs on a cluster that has GPUs (fractional values
pack several workers on one GPU; Ray sets CUDA_VISIBLE_DEVICES but does not split its memory),
or for `threads` CPUs on a CPU-only one; torch's CPU threads are limited to that share either
way. Without `workers` there is one worker per GPU share of the cluster, or one per `threads` CPUs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from hybridnas.common import UsageError

# Far more than any machine or cluster here has: a typo is refused before Ray or torch sees it.
MAX_WORKERS = 4096
MAX_THREADS = 1024
MAX_GPUS_PER_WORKER = 64


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers a launch runs and what each asks Ray for."""

    count: int
    options: dict[str, float]
    threads: int
    reason: str


@dataclass(frozen=True)
class Placement:
    """workers: how many (None: one per share of the cluster; 0: none, only define the study).
    threads: torch CPU threads per worker (default its CPU share). gpus_per_worker: each
    worker's GPU share on a GPU cluster. cpus_per_worker: each worker's CPU reservation (default
    1 with GPUs, else `threads`). ray_address: the cluster to join (None: $RAY_ADDRESS, else an
    embedded local Ray)."""

    workers: int | None = None
    threads: int | None = None
    gpus_per_worker: float = 1.0
    cpus_per_worker: int | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        """The CLI's flag limits, for the Python API's keywords too: refused before Ray starts."""
        for name, low, high in (("workers", 0, MAX_WORKERS), ("threads", 1, MAX_THREADS),
                                ("cpus_per_worker", 1, MAX_THREADS)):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not low <= value <= high):
                raise UsageError(f"{name}: {value!r} is not a whole number from {low} to {high}")
        gpus = self.gpus_per_worker
        if type(gpus) not in (int, float) or not 0 < gpus <= MAX_GPUS_PER_WORKER:
            raise UsageError(f"gpus_per_worker: {gpus!r} is not a number above 0 and at most {MAX_GPUS_PER_WORKER}")

    @property
    def address(self) -> str | None:
        """The cluster to join; None starts an embedded local Ray."""
        return self.ray_address or os.environ.get("RAY_ADDRESS") or None

    def local_cpus(self) -> int:
        """The CPUs an embedded local Ray declares: the machine's, or what the workers ask for."""
        asked = (self.workers or 0) * (self.cpus_per_worker or self.threads or 1)
        return max(os.cpu_count() or 1, asked)

    def plan(self, resources: dict[str, float]) -> WorkerPlan:
        """The workers for a cluster with these total `resources` (Ray's names: "CPU", "GPU")."""
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
        if gpus > 0:
            per_cpu = self.cpus_per_worker or 1
            options = {"num_gpus": self.gpus_per_worker, "num_cpus": per_cpu}
            fit = max(1, math.floor(gpus / self.gpus_per_worker + 1e-9))
            share = f"{self.gpus_per_worker:g} GPU each, {gpus:g} GPU(s) in the cluster"
        else:
            per_cpu = self.cpus_per_worker or self.threads or 1
            options = {"num_cpus": per_cpu}
            fit = max(1, math.floor(cpus / per_cpu))
            share = f"{per_cpu} CPU(s) each, {cpus:g} CPU(s) in the cluster, no GPU"
        count = self.workers if self.workers is not None else fit
        how = "as asked" if self.workers is not None else "one per share"
        waiting = f"; {count - fit} wait for room" if count > fit else ""
        return WorkerPlan(count, options, self.threads or per_cpu, f"{count} worker(s), {how} ({share}{waiting})")


# The keyword and flag names of a placement, for the API and the CLI that pass them on.
PLACEMENT_FIELDS = tuple(field.name for field in fields(Placement))
