"""`hybridnas launch`, `worker` and `export`: define and run a search, then take its result out.

`launch` writes the study definition into the study (so a worker anywhere needs only the
storage URL and the study name), then runs N workers as Ray actors. `worker` runs one worker
by hand on any machine. `export` writes a trial's config as YAML that rebuilds the exact model.
"""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import optuna
import typer
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from hybridnas.cli.errors import UserError
from hybridnas.models.config import ConfigError, dump_config
from hybridnas.objectives.results import select_trial, trial_config
from hybridnas.objectives.study_definition import (
    USER_ATTR,
    StudyDefinition,
    absolutize_paths,
    read_definition_file,
    stored_definition,
    validate_definition,
)
from hybridnas.storage import StorageError, load_study, mask_url, open_storage, resolve_url
from hybridnas.training.data import DataError

console = Console(soft_wrap=True)

StudyOpt = Annotated[str, typer.Option("--study", help="Study name.")]
StorageOpt = Annotated[
    Optional[str],
    typer.Option("--storage", help="Storage URL (default: $HYBRIDNAS_STORAGE, else sqlite:///hybridnas.db)."),
]
MaxParamsOpt = Annotated[Optional[int], typer.Option("--max-params", min=1, help="Parameter limit.")]
MaxMacsOpt = Annotated[Optional[int], typer.Option("--max-macs", min=1, help="MAC limit (one image).")]

_STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


def _ray_user_error(err: Exception) -> Exception:
    """A worker's user-facing error (bad data path, unreachable storage) without Ray's traceback."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, (ConfigError, DataError, StorageError)):
        return UserError(str(cause))
    return err


def _definition_input(config: Optional[Path], flags: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """The study YAML (if any) overridden by the flags that were given."""
    data = read_definition_file(config) if config is not None else {}
    given = {k: v for k, v in flags.items() if v is not None}
    data.update(absolutize_paths(given, Path.cwd()))
    given_training = {k: v for k, v in training.items() if v is not None}
    if given_training:
        data["training"] = {**data.get("training", {}), **given_training}
    return data


def _open_or_create(study_name: str, storage_url: Optional[str], given: dict[str, Any]) -> tuple[optuna.Study, StudyDefinition, bool]:
    """(study, definition, created). A resume may change the budget, nothing else."""
    storage = open_storage(storage_url, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        study = None
    if study is not None and USER_ATTR in study.user_attrs:
        stored = stored_definition(study)
        if not given:
            return study, stored, False
        requested = validate_definition({**stored.to_document(), **given}, "--config/flags")
        changed = requested.differences(stored)
        if changed:
            raise UserError(
                f"study '{study_name}' exists with a different {', '.join(changed)}; "
                "resume it without those options, or pick another --study name"
            )
        if requested != stored:
            study.set_user_attr(USER_ATTR, requested.to_document())
        return study, requested, False
    if "dataset" not in given:
        raise UserError("a new study needs --dataset (or dataset: in the --config file)")
    definition = validate_definition(given, "--config/flags")
    if study is None:
        study = optuna.create_study(study_name=study_name, storage=storage, directions=definition.directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(definition.metric_names)
    study.set_user_attr(USER_ATTR, definition.to_document())
    return study, definition, True


def _enqueue_presets(study: optuna.Study, definition: StudyDefinition) -> list[str]:
    """Queue the paper presets this space can express, at the dataset's input size and classes."""
    from hybridnas.workers.worker import worker_data

    data = worker_data(definition, "cpu")
    found = definition.search_space().warm_start(num_classes=data.num_classes, image_size=data.image_size)
    for name, params in found:
        study.enqueue_trial(params, user_attrs={"preset": name}, skip_if_exists=True)
    return [name for name, _ in found]


def _trial_line(t: FrozenTrial) -> str:
    attrs = t.user_attrs
    state = t.state.name
    parts = [f"trial {t.number:>3}", f"[{_STATE_STYLE.get(state, 'white')}]{state:<8}[/]"]
    if t.state == TrialState.COMPLETE:
        parts.append(f"val_top1 {t.values[0]:.4f}")
    elif "constraint_violation" in attrs:
        parts.append(attrs["constraint_violation"])
    elif t.state == TrialState.PRUNED:
        parts.append(f"after epoch {max(t.intermediate_values, default=0)}")
    elif state == "FAIL":
        parts.append(str(attrs.get("fail_reason", "unknown reason")))
    if "params" in attrs:
        parts.append(f"params {attrs['params']:,}  MACs {attrs['macs']:,}")
    if "preset" in attrs:
        parts.append(f"preset {attrs['preset']}")
    parts.append(f"{attrs.get('wall_seconds', 0):.1f}s  {attrs.get('worker', '')}")
    return "  ".join(parts)


class _Progress:
    """Prints each trial once, when it finishes."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def __call__(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
            if t.number not in self.seen:
                self.seen.add(t.number)
                console.print(_trial_line(t))


def _summary(study: optuna.Study, definition: StudyDefinition) -> None:
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    done = counts["COMPLETE"] + counts["PRUNED"]
    states = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    console.print(f"study '{study.study_name}': {done}/{definition.trials} trials done ({states or 'no trials'})")
    if counts["COMPLETE"] == 0:
        return
    if definition.multi_objective:
        console.print(f"Pareto front: trials {', '.join(str(t.number) for t in study.best_trials)}")
        return
    try:
        best = study.best_trial
    except ValueError:
        return
    console.print(f"best: trial {best.number}, val_top1 {best.value:.4f}, params {best.user_attrs.get('params', 0):,}")


def _export(study: optuna.Study, trial: FrozenTrial, out: Path) -> None:
    cfg = trial_config(trial).model_copy(update={"name": f"{study.study_name}-trial{trial.number}"})
    out.parent.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out)
    value = f", val_top1 {trial.values[0]:.4f}" if trial.values else ""
    console.print(
        f"wrote {out}: trial {trial.number} ({trial.state.name}{value}, "
        f"params {trial.user_attrs.get('params', 0):,}, MACs {trial.user_attrs.get('macs', 0):,})"
    )


def launch_cmd(
    study_name: StudyOpt,
    storage: StorageOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Study YAML; flags override its fields.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="cifar10 | cifar100 | folder:PATH (.tar.gz ok).")] = None,
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Where cifar10/cifar100 live (default $HYBRIDNAS_DATA).")] = None,
    train_subset: Annotated[Optional[int], typer.Option("--train-subset", min=1, help="Train on the first N training images.")] = None,
    val_subset: Annotated[Optional[int], typer.Option("--val-subset", min=1, help="Validate on the first N validation images.")] = None,
    val_fraction: Annotated[Optional[float], typer.Option("--val-fraction", help="Share of the training split held out for validation.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Most epochs a trial may run (Hyperband's max resource).")] = None,
    space: Annotated[Optional[str], typer.Option("--space", help="A built-in space name or a space YAML file.")] = None,
    objective: Annotated[Optional[str], typer.Option("--objective", help="accuracy | accuracy,params | accuracy,macs.")] = None,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="tpe | random | nsga2 (default: tpe, nsga2 for two objectives).")] = None,
    pruner: Annotated[Optional[str], typer.Option("--pruner", help="hyperband | median | none (default: hyperband; none for two objectives).")] = None,
    trials: Annotated[Optional[int], typer.Option("--trials", min=1, help="Trial budget (COMPLETE + PRUNED trials).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds after which each worker starts no new trial.")] = None,
    max_params: MaxParamsOpt = None,
    max_macs: MaxMacsOpt = None,
    enqueue_presets: Annotated[Optional[bool], typer.Option("--enqueue-presets/--no-enqueue-presets", help="Run the paper presets that fit the space first.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the split, the samplers and training.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Training batch size.")] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="sgd | adam | adamw.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default depends on the optimizer).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Ray workers to start (0: only define the study).")] = 1,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Existing Ray cluster (default $RAY_ADDRESS, else a local Ray).")] = None,
    export: Annotated[Optional[Path], typer.Option("--export", help="Write the best config (highest accuracy on the Pareto front for two objectives) here at the end.")] = None,
) -> None:
    """Create a study (or resume the one with this name) and run its trials on Ray workers."""
    flags = {
        "dataset": dataset, "data_dir": data_dir, "train_subset": train_subset, "val_subset": val_subset,
        "val_fraction": val_fraction, "epochs": epochs, "space": space, "objective": objective, "sampler": sampler,
        "pruner": pruner, "trials": trials, "timeout": timeout, "max_params": max_params, "max_macs": max_macs,
        "enqueue_presets": enqueue_presets, "seed": seed,
    }
    given = _definition_input(config, flags, {"batch_size": batch_size, "optimizer": optimizer, "lr": lr})
    study, definition, created = _open_or_create(study_name, storage, given)
    url = mask_url(resolve_url(storage))
    console.print(f"{'created' if created else 'resuming'} study '{study_name}' in {url}")
    if created and definition.enqueue_presets:
        try:
            names = _enqueue_presets(study, definition)
        except DataError as err:
            raise UserError(str(err)) from None
        console.print(f"queued presets first: {', '.join(names) if names else 'none fits this space'}")

    if workers:
        _run_workers(study, definition, storage, workers, ray_address)
    else:
        console.print(f"start workers with: hybridnas worker --study {study_name} --storage '{url}'")

    _summary(study, definition)
    if export is not None:
        pick = {"pareto": True} if definition.multi_objective else {"best": True}
        try:
            _export(study, select_trial(study, **pick), export)
        except ConfigError as err:
            console.print(f"nothing exported: {err}")
    console.print(f"browse it: hybridnas dashboard --storage '{url}'")


def _run_workers(
    study: optuna.Study, definition: StudyDefinition, storage: Optional[str], n: int, ray_address: Optional[str]
) -> None:
    import ray

    from hybridnas.workers.ray_workers import run_ray_workers, start_ray
    from hybridnas.workers.worker import prepare_data

    if not (ray_address or os.environ.get("RAY_ADDRESS")):
        # Local workers share this machine's data cache: fetch and decode the dataset once here
        # (and fail fast on a bad path) instead of in every actor at the same time.
        try:
            prepare_data(definition)
        except DataError as err:
            raise UserError(str(err)) from None
    started = start_ray(ray_address, num_cpus=max(os.cpu_count() or 1, n))
    launch_id = uuid.uuid4().hex[:6]
    console.print(f"running {n} worker(s) on Ray until {definition.trials} trials are COMPLETE or PRUNED (Ctrl-C stops)")
    try:
        results = run_ray_workers(study.study_name, storage, n, launch_id=launch_id, on_poll=_Progress(study))
    except ray.exceptions.RayTaskError as err:
        raise _ray_user_error(err) from None
    except KeyboardInterrupt:
        console.print("interrupted: workers stopped, their running trials marked FAIL (interrupted)")
        _summary(study, definition)
        raise
    finally:
        if started:
            ray.shutdown()
    for r in results:
        ran = ", ".join(f"{n} {s}" for s, n in r["trials"].items()) or "no trials"
        console.print(f"worker {r['worker']} on {r['device']}: {ran}; stopped: {r['stopped']}")


def worker_cmd(
    study_name: StudyOpt,
    storage: StorageOpt = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    worker_id: Annotated[Optional[str], typer.Option("--worker-id", help="Name recorded on its trials (default HOST-PID).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads.")] = None,
    heartbeat_interval: Annotated[int, typer.Option("--heartbeat-interval", min=1, help="Seconds between heartbeats of the running trial.")] = 60,
    grace_period: Annotated[Optional[int], typer.Option("--grace-period", min=1, help="Fail and re-queue a trial whose last heartbeat is older than this (default: twice the interval).")] = None,
) -> None:
    """Run one worker of an existing study until its budget is reached (Ctrl-C stops cleanly)."""
    import torch

    from hybridnas.workers.worker import run_worker

    if threads:
        torch.set_num_threads(threads)
    try:
        result = run_worker(
            study_name, storage, worker_id, device, heartbeat_interval=heartbeat_interval, grace_period=grace_period
        )
    except DataError as err:
        raise UserError(str(err)) from None
    ran = ", ".join(f"{n} {s}" for s, n in result["trials"].items()) or "no trials"
    console.print(f"worker {result['worker']} on {result['device']}: {ran}; stopped: {result['stopped']}")


def export_cmd(
    study_name: StudyOpt,
    out: Annotated[Path, typer.Option("-o", "--output", help="YAML (or .json) file to write.")],
    storage: StorageOpt = None,
    trial: Annotated[Optional[int], typer.Option("--trial", min=0, help="Export this trial number.")] = None,
    best: Annotated[bool, typer.Option("--best", help="The best COMPLETE trial (single objective).")] = False,
    pareto: Annotated[bool, typer.Option("--pareto", help="The most accurate Pareto-front trial (two objectives).")] = False,
    max_params: MaxParamsOpt = None,
    max_macs: MaxMacsOpt = None,
) -> None:
    """Write a trial's architecture as a config that rebuilds the exact model (`summary`, `train`)."""
    study = load_study(study_name, storage, heartbeat_interval=None)
    picked = select_trial(study, number=trial, best=best, pareto=pareto, max_params=max_params, max_macs=max_macs)
    _export(study, picked, out)


def register(app: typer.Typer) -> None:
    app.command("launch")(launch_cmd)
    app.command("worker")(worker_cmd)
    app.command("export")(export_cmd)
