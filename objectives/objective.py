"""The define-by-run objective a worker runs for every trial.

A trial samples an architecture from the study's space, records it (config as a user attr
and as a YAML artifact, parameters, MACs), checks the study's constraints, trains it with
`train_model` on the worker's device and reports validation top-1 after every epoch so the
pruner can stop it early. How a trial ends:

* COMPLETE -- trained for all epochs; the value is the last epoch's val top-1 (plus params
  or MACs for the multi-objective studies).
* PRUNED -- the pruner stopped it after some epoch, or it violates a constraint
  (max_params / max_macs). A violating config is never trained: it is recorded with the
  reason in `constraint_violation` and with `Trial.set_constraint` values, which Optuna
  5's TPE and NSGA-II samplers read to steer away from infeasible regions (TPE ranks such
  trials below every feasible one), and which `study.best_trial(s)` skip. PRUNED rather
  than FAIL: the trial did not crash, and samplers ignore FAIL trials entirely, so they
  would keep proposing the same infeasible region. It counts towards the trial budget
  (MaxTrialsCallback counts COMPLETE and PRUNED), which keeps a mostly-infeasible space
  from running forever; each such trial costs only a profile, never training.
* FAIL -- it crashed (invalid config, non-finite loss, out of memory, any other error) or
  was interrupted; `fail_reason` says why, and the worker goes on with the next trial.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import torch
from optuna.artifacts import upload_artifact

from hybridnas.models.config import ArchConfig, ConfigError, dump_config
from hybridnas.models.profile import profile
from hybridnas.objectives.study_definition import StudyDefinition
from hybridnas.training.data import DataSplits
from hybridnas.training.engine import EpochReport, train_model

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

_logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted"


class TrialFailed(Exception):
    """A trial that could not produce a result; the worker records it as FAIL and goes on."""


class WorkerStopped(Exception):
    """The worker was told to stop; the running trial ends as FAIL 'interrupted'."""


class Objective:
    """Callable for `study.optimize`: one trial on this worker's data and device."""

    def __init__(
        self,
        definition: StudyDefinition,
        data: DataSplits,
        *,
        device: str,
        worker_id: str,
        device_label: str,
        artifacts: ArtifactStore | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.definition = definition
        self.space = definition.search_space()
        self.data = data
        self.device = device
        self.worker_id = worker_id
        self.device_label = device_label
        self.artifacts = artifacts
        self.stop = stop

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        trial.set_user_attr("worker", self.worker_id)
        trial.set_user_attr("device", self.device_label)
        start = time.perf_counter()
        try:
            return self._run(trial)
        except (optuna.TrialPruned, TrialFailed):
            raise
        except (WorkerStopped, KeyboardInterrupt):
            trial.set_user_attr("fail_reason", INTERRUPTED)
            raise
        except torch.OutOfMemoryError as err:
            free_memory()
            raise _failed(trial, f"out of memory on {self.device_label}: {_first_line(err)}") from None
        except ConfigError as err:
            raise _failed(trial, f"invalid config: {err}") from None
        except Exception as err:
            # A sampled architecture that breaks the model code must not stop the search.
            _logger.exception("trial %d crashed", trial.number)
            raise _failed(trial, f"{type(err).__name__}: {_first_line(err)}") from err
        finally:
            trial.set_user_attr("wall_seconds", round(time.perf_counter() - start, 3))

    def _run(self, trial: optuna.Trial) -> float | tuple[float, float]:
        cfg = self.space.suggest(trial, num_classes=self.data.num_classes, image_size=self.data.image_size)
        trial.set_user_attr("config", cfg.model_dump(mode="json"))
        self._upload_config(trial, cfg)
        prof = profile(cfg)
        trial.set_user_attr("params", prof.params)
        trial.set_user_attr("macs", prof.macs)
        self._check_constraints(trial, prof.params, prof.macs)

        multi = self.definition.multi_objective
        history: list[float] = []

        def on_epoch(report: EpochReport) -> None:
            history.append(report.val_top1)
            trial.set_user_attr("epochs_run", report.epoch)
            if not multi:
                trial.report(report.val_top1, report.epoch)
            if self.stop is not None and self.stop.is_set():
                raise WorkerStopped(f"stopped after epoch {report.epoch}")
            if not multi and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {report.epoch} at val_top1 {report.val_top1:.4f}")

        try:
            result = train_model(cfg, self.data, self.definition.train_settings(self.device), on_epoch=on_epoch)
        finally:
            trial.set_user_attr("val_top1_per_epoch", history)
        if result.status != "ok":
            raise _failed(trial, result.reason or result.status)
        trial.set_user_attr("device", result.device)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("images_per_s", round(result.images_per_s, 1))
        trial.set_user_attr("seconds_per_epoch", round(result.seconds_per_epoch, 3))
        trial.set_user_attr("peak_memory_bytes", result.peak_memory_bytes)
        if not multi:
            return result.val_top1
        return result.val_top1, float(prof.params if self.definition.objective.endswith("params") else prof.macs)

    def _check_constraints(self, trial: optuna.Trial, params: int, macs: int) -> None:
        """Record every limit with set_constraint; prune a violating config before it trains."""
        violations = self.definition.constraint_violations(params, macs)
        for key, excess in violations.items():
            trial.set_constraint(key, excess)
        actual = {"max_params": ("params", params), "max_macs": ("MACs", macs)}
        broken = [
            f"{actual[key][0]} {actual[key][1]:,} > {key} {getattr(self.definition, key):,}"
            for key, excess in violations.items()
            if excess > 0
        ]
        if broken:
            reason = "constraint violated: " + "; ".join(broken)
            trial.set_user_attr("constraint_violation", reason)
            raise optuna.TrialPruned(reason)

    def _upload_config(self, trial: optuna.Trial, cfg: ArchConfig) -> None:
        """The config as a YAML artifact, so optuna-dashboard shows and serves the file."""
        if self.artifacts is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial-{trial.number}-config.yaml"
            dump_config(cfg, path)
            upload_artifact(
                artifact_store=self.artifacts, file_path=str(path), study_or_trial=trial, mimetype="application/yaml"
            )


def _failed(trial: optuna.Trial, reason: str) -> TrialFailed:
    trial.set_user_attr("fail_reason", reason)
    return TrialFailed(reason)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def free_memory() -> None:
    """Release what a failed trial left behind, so the next trial on this device has room."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
