"""The define-by-run objective a worker runs for every trial.

A trial samples an architecture (and, if the space searches them, training settings) from
the study's space, declares what it will train (see `hybridnas.objectives.study.dedup`), records
it (the canonical config as a user attr and as a YAML artifact, parameters, MACs), checks the
study's constraints, describes a feasible one for optuna-dashboard (a note with its summary
and per-stage table, its diagram as an SVG artifact), and trains it with `train_model` on the
worker's device, reporting validation top-1 after every epoch so the pruner can stop it early.
How a trial ends:

* COMPLETE -- trained for all epochs; the value is the last epoch's val top-1 (plus params,
  MACs or batch-1 latency for the multi-objective studies).
* PRUNED -- the pruner stopped it after some epoch.
* PRUNED, infeasible -- it breaks max_params / max_macs / max_latency_ms, so it is never
  trained (latency is measured on the worker's device before training, only where the study
  has a latency objective or limit, and only for samples within the size limits): the reason
  is in `constraint_violation`, and `Trial.set_constraint` values let Optuna 5's TPE and
  NSGA-II steer away from the region (TPE ranks such trials below every feasible one) and
  `study.best_trial(s)` skip it. PRUNED rather than FAIL: samplers ignore FAIL trials, so they
  would keep proposing the region. It does not use up the budget; profiling it costs
  milliseconds (no weights are allocated), timing it a few forward passes.
* COMPLETE or PRUNED, duplicate -- an earlier trial trains or trained the same architecture
  with the same settings: `duplicate_of` names it and this trial reports its result (so the
  sampler sees the point with its true value) without training. It does not use up the budget.
* FAIL -- it crashed (invalid config, non-finite loss, out of memory, any other error) or
  was interrupted; `fail_reason` says why, and the worker goes on with the next trial.
* FAIL, not started -- two workers asked the budget for room at the same moment and the
  earlier trial filled it: the later one samples nothing and trains nothing, and
  `fail_reason` says so (see `BudgetGate.admit`).
"""

from __future__ import annotations

import gc
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
import torch
from optuna.artifacts import upload_artifact

from hybridnas.common import ConfigError, first_line
from hybridnas.models.canonical import architecture_key, canonical_config
from hybridnas.models.config import ArchConfig
from hybridnas.models.profile import ModelProfile, profile
from hybridnas.objectives.study.dedup import Stopped, declare, reuse_or_train
from hybridnas.objectives.study.definition import LIMITS, StudyDefinition
from hybridnas.objectives.study.records import (
    CONFIG, CONSTRAINT_VIOLATION, DEVICE, EPOCHS_RUN, FAIL_REASON, IMAGES_PER_S, LATENCY_MS_BATCH1, MACS, PARAMS,
    PEAK_MEMORY_BYTES, PRECISION, SECONDS_PER_EPOCH, TRAINING, VAL_TOP1_PER_EPOCH, WALL_SECONDS, WORKER,
)
from hybridnas.training.data import DataSplits
from hybridnas.training.documents import export_document, write_document
from hybridnas.training.loop import EpochReport, train_model
from hybridnas.training.measure import latency_before_training

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

_logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
# The cost a two-objective study minimises beside accuracy, by the objective's second name.
_SECOND_OBJECTIVE_COST = {"params": "max_params", "macs": "max_macs", "latency": "max_latency_ms"}
T = TypeVar("T")


class TrialFailed(Exception):
    """A trial that could not produce a result; the worker records it as FAIL and goes on."""


class WorkerStopped(Exception):
    """The worker was told to stop; the running trial ends as FAIL 'interrupted'."""


@dataclass(frozen=True)
class WorkerContext:
    """Where a trial runs: the worker's device and name, its artifact store, its stop switch."""

    device: str
    worker_id: str
    device_label: str
    artifacts: ArtifactStore | None = None
    stop: threading.Event | None = None

    def start(self, trial: optuna.Trial) -> None:
        """Record on the trial which worker and device run it."""
        trial.set_user_attr(WORKER, self.worker_id)
        trial.set_user_attr(DEVICE, self.device_label)

    def check_stop(self, where: str) -> None:
        """Raise WorkerStopped if the worker was told to stop (by its launcher, or Ctrl-C of
        `hybridnas worker`)."""
        if self.stop is not None and self.stop.is_set():
            raise WorkerStopped(f"stopped {where}")

    def on_step(self, done: int, total: int) -> None:
        """`train_model`'s step callback, so that a stop ends a trial within one training step."""
        self.check_stop(f"at step {done} of {total}")


@dataclass(frozen=True)
class TrialViews:
    """How optuna-dashboard shows a feasible trial: its note (Markdown, from the config, its
    profile and its sampled training settings) and its architecture diagram (SVG, from the
    config, its profile and a title). Passed in because the drawing lives in `hybridnas.reports`,
    a layer above this one; the worker wires it in."""

    note: Callable[[ArchConfig, ModelProfile, dict[str, Any]], str]
    diagram: Callable[[ArchConfig, ModelProfile, str], str]


class Objective:
    """Callable for `study.optimize`: one search trial on this worker's data and device."""

    def __init__(
        self,
        definition: StudyDefinition,
        data: DataSplits,
        context: WorkerContext,
        admit: Callable[[int], str | None] = lambda number: None,
        views: TrialViews | None = None,
    ) -> None:
        """`admit(trial number)` is asked before a trial samples anything: None lets it run, a
        reason ends it FAIL with that reason (the budget filled while it waited to start).
        `views` draw each feasible trial's note and diagram; without them it gets neither."""
        self.definition = definition
        self.space = definition.search_space()
        self.data = data
        self.context = context
        self.admit = admit
        self.views = views

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        self.context.start(trial)
        return guarded(trial, self.context.device_label, lambda: self._run(trial))

    def _run(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        refused = self.admit(trial.number)
        if refused is not None:
            raise failed(trial, refused)
        cfg = self.space.suggest(trial, num_classes=self.data.num_classes, image_size=self.data.image_size)
        training = {**self.definition.training, **self.space.suggest_training(trial)}
        key = architecture_key(cfg, training)
        declare(trial, key)
        trial.set_user_attr(CONFIG, canonical_config(cfg))
        if training:
            trial.set_user_attr(TRAINING, training)
        self._upload_config(trial, cfg, training)
        prof = profile(cfg)
        trial.set_user_attr(PARAMS, prof.params)
        trial.set_user_attr(MACS, prof.macs)
        costs: dict[str, float] = {"max_params": prof.params, "max_macs": prof.macs}
        self._check_constraints(trial, costs)
        if self.definition.needs_latency:
            costs["max_latency_ms"] = self._latency(trial, cfg, training)
            self._check_constraints(trial, {"max_latency_ms": costs["max_latency_ms"]})
        self._describe(trial, cfg, prof, training)
        try:
            return reuse_or_train(trial, key, lambda: self._train(trial, cfg, training, costs), stop=self.context.stop)
        except Stopped:
            raise WorkerStopped("stopped while waiting for an earlier trial of the same architecture") from None

    def _latency(self, trial: optuna.Trial, cfg: ArchConfig, training: dict[str, Any]) -> float:
        """Batch-1 latency on this worker's device, before training; recorded on the trial."""
        settings = self.definition.train_settings(self.context.device, training)
        latency = round(latency_before_training(cfg, settings), 3)
        trial.set_user_attr(LATENCY_MS_BATCH1, latency)
        return latency

    def _train(
        self, trial: optuna.Trial, cfg: ArchConfig, training: dict[str, Any], costs: dict[str, float]
    ) -> float | tuple[float, float]:
        multi = self.definition.multi_objective
        history: list[float] = []

        def on_epoch(report: EpochReport) -> None:
            history.append(report.val_top1)
            trial.set_user_attr(EPOCHS_RUN, report.epoch)
            if not multi:
                trial.report(report.val_top1, report.epoch)
            self.context.check_stop(f"after epoch {report.epoch}")
            if not multi and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {report.epoch} at val_top1 {report.val_top1:.4f}")

        try:
            result = train_model(cfg, self.data, self.definition.train_settings(self.context.device, training),
                                 on_epoch=on_epoch,
                                 on_step=self.context.on_step)
        finally:
            trial.set_user_attr(VAL_TOP1_PER_EPOCH, history)
        if result.status != "ok":
            raise failed(trial, result.reason or result.status)
        trial.set_user_attr(DEVICE, result.device)
        trial.set_user_attr(PRECISION, result.precision)
        trial.set_user_attr(EPOCHS_RUN, result.epochs_run)
        trial.set_user_attr(IMAGES_PER_S, round(result.images_per_s, 1))
        trial.set_user_attr(SECONDS_PER_EPOCH, round(result.seconds_per_epoch, 3))
        trial.set_user_attr(PEAK_MEMORY_BYTES, result.peak_memory_bytes)
        if not multi:
            return result.val_top1
        second = self.definition.objective.split(",")[1]
        return result.val_top1, float(costs[_SECOND_OBJECTIVE_COST[second]])

    def _check_constraints(self, trial: optuna.Trial, costs: dict[str, float]) -> None:
        """Record the limits on `costs` (each measured once) with set_constraint; prune a
        violating config before it trains."""
        violations = self.definition.constraint_violations(costs)
        for key, excess in violations.items():
            trial.set_constraint(key, excess)
        broken = [
            f"{LIMITS[key]} {costs[key]:,} > {key} {getattr(self.definition, key):,}"
            for key, excess in violations.items()
            if excess > 0
        ]
        if broken:
            reason = "constraint violated: " + "; ".join(broken)
            trial.set_user_attr(CONSTRAINT_VIOLATION, reason)
            raise optuna.TrialPruned(reason)

    def _upload_config(self, trial: optuna.Trial, cfg: ArchConfig, training: dict[str, Any]) -> None:
        """The config as a YAML artifact in export's form, so optuna-dashboard shows and serves it."""
        self._upload(trial, "config.yaml", "application/yaml",
                     lambda path: write_document(export_document(cfg, training), path))

    def _describe(self, trial: optuna.Trial, cfg: ArchConfig, prof: ModelProfile, training: dict[str, Any]) -> None:
        """What optuna-dashboard shows of a feasible trial, drawn by `self.views` (nothing without
        them): a note (summary, totals, per-stage table) and the architecture diagram as an SVG
        artifact, from the trial's one profile."""
        views = self.views
        if views is None:
            return
        from optuna_dashboard import save_note

        save_note(trial, views.note(cfg, prof, training))
        title = f"{trial.study.study_name} · trial {trial.number}"
        self._upload(trial, "architecture.svg", "image/svg+xml",
                     lambda path: path.write_text(views.diagram(cfg, prof, title)))

    def _upload(self, trial: optuna.Trial, suffix: str, mimetype: str, write: Callable[[Path], object]) -> None:
        """Write `trial-N-<suffix>` with `write` and upload it to the worker's artifact store, if any."""
        if self.context.artifacts is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial-{trial.number}-{suffix}"
            write(path)
            upload_artifact(artifact_store=self.context.artifacts, file_path=str(path), study_or_trial=trial,
                            mimetype=mimetype)


def guarded(trial: optuna.Trial, device_label: str, run: Callable[[], T]) -> T:
    """Run one trial's work; whatever goes wrong becomes FAIL with a one-line `fail_reason`
    (or propagates, for a stop or Ctrl-C, after marking the trial interrupted), never a crashed
    worker. Records the trial's wall time either way."""
    start = time.perf_counter()
    try:
        return run()
    except (optuna.TrialPruned, TrialFailed):
        raise
    except (WorkerStopped, KeyboardInterrupt):
        trial.set_user_attr(FAIL_REASON, INTERRUPTED)
        raise
    except torch.OutOfMemoryError as err:
        free_memory()
        raise failed(trial, f"out of memory on {device_label}: {first_line(err)}") from None
    except ConfigError as err:
        raise failed(trial, f"invalid config: {err}") from None
    except Exception as err:
        # A sampled architecture that breaks the model code must not stop the search.
        _logger.exception("trial %d crashed", trial.number)
        raise failed(trial, f"{type(err).__name__}: {first_line(err)}") from err
    finally:
        trial.set_user_attr(WALL_SECONDS, round(time.perf_counter() - start, 3))


def failed(trial: optuna.Trial, reason: str) -> TrialFailed:
    trial.set_user_attr(FAIL_REASON, reason)
    return TrialFailed(reason)


def free_memory() -> None:
    """Release what a failed trial left behind, so the next trial on this device has room."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
