"""`hybridnas launch`, `worker` and `export`: define and run a search, then take its result out.

Each command parses its flags, calls the study service (`hybridnas.objectives.study.service`) or the
workers, and prints. `launch`'s study flags are derived from `StudyDefinition`'s fields.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from hybridnas.cli._console import make_console
from hybridnas.cli._options import (
    ArtifactsOpt,
    CpusPerWorkerOpt,
    GpusPerWorkerOpt,
    GraceOpt,
    HeartbeatOpt,
    MaxMacsOpt,
    MaxParamsOpt,
    RayAddressOpt,
    StorageOpt,
    StudyOpt,
    ThreadsOpt,
    WorkersOpt,
    keyword,
    model_options,
    output_file,
    with_parameters,
)
from hybridnas.cli._progress import LaunchProgress
from hybridnas.objectives.study.definition import (
    DEFINITION_FLAGS, MAX_IMAGES, MAX_TRIALS, TRAINING_FLAGS, StudyDefinition,
)
from hybridnas.objectives.study.records import TrialRecord
from hybridnas.training.settings import MAX_EPOCHS, TrainSettings
from hybridnas.workers.placement import MAX_THREADS, PLACEMENT_FIELDS

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial
    from rich.console import Console

console = make_console(soft_wrap=True)

class _Progress:
    """Makes each launch's live progress and takes it down when the workers are done."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.made: list[LaunchProgress] = []

    def __call__(self, study: optuna.Study) -> LaunchProgress:
        self.made.append(LaunchProgress(study, self.out))
        return self.made[-1]

    def close(self) -> None:
        for progress in self.made:
            progress.close()


def _summary(study: optuna.Study) -> None:
    from hybridnas import search

    status = search.status(study)
    states = ", ".join(f"{n} {s}" for s, n in status["trials"].items() if n)
    console.print(f"study '{study.study_name}': {status['done']}/{status['budget_trials'] or '?'} distinct "
                  f"architectures trained ({states or 'no trials'})")
    if "pareto_front_size" in status:
        console.print(f"Pareto front: trials {', '.join(str(t.number) for t in study.best_trials)}")
    elif "best_trial" in status:
        best = study.best_trial
        console.print(f"best: trial {best.number}, val_top1 {best.value:.4f}, "
                      f"params {TrialRecord(best).params or 0:,}")


def _print_export(trial: FrozenTrial, out: Path) -> None:
    value = f", val_top1 {trial.values[0]:.4f}" if trial.values else ""
    record = TrialRecord(trial)
    console.print(
        f"wrote {out}: trial {trial.number} ({trial.state.name}{value}, "
        f"params {record.params or 0:,}, MACs {record.macs or 0:,})"
    )


def _given_fields(config: Optional[Path], options: dict[str, Any]) -> dict[str, Any]:
    """The study YAML (if any) overridden by the flags that were given."""
    from hybridnas.objectives.study.definition import absolutize_paths, read_definition_file

    data = read_definition_file(config) if config is not None else {}
    flags = {k: v for k, v in options.items() if k in DEFINITION_FLAGS and v is not None}
    data.update(absolutize_paths(flags, Path.cwd()))
    training = {k: v for k, v in options.items() if k in TRAINING_FLAGS and v is not None}
    if training:
        data["training"] = {**data.get("training", {}), **training}
    return data


def launch_cmd(**options: Any) -> None:
    """Create a study (or resume the one with this name) and run its trials on Ray workers."""
    from hybridnas import search
    from hybridnas.common import UsageError
    from hybridnas.storage import mask_url, resolve_url

    study_name, storage = options["study_name"], options["storage"]
    url = mask_url(resolve_url(storage))
    progress = _Progress(console)
    if options["workers"] != 0:
        console.print("Ctrl-C stops the workers; launching again resumes the study")
    try:
        study = search.launch(_given_fields(options["config"], options), study=study_name, storage=storage,
                              say=console.print, progress=progress, source="--config/flags",
                              **{k: options[k] for k in _RAY_FLAGS})
    except KeyboardInterrupt:
        progress.close()
        console.print("interrupted: workers stopped, their running trials marked FAIL (interrupted)")
        _summary(search.load(study_name, storage))
        raise
    finally:
        progress.close()
    if options["workers"] == 0:
        console.print(f"start workers with: hybridnas worker --study {shlex.quote(study_name)} --storage '{url}'")

    _summary(study)
    if options["export"] is not None:
        try:
            trial = search.best_trial(study)
        except UsageError as err:
            console.print(f"nothing exported: {err}")
        else:
            search.export(study, options["export"], trial)
            _print_export(trial, options["export"])
    console.print(f"browse it: hybridnas dashboard --storage '{url}'")


# What launch and retrain pass on to the API: where the workers run, and how they run.
_RAY_FLAGS = (*PLACEMENT_FIELDS, "heartbeat_interval", "grace_period", "artifacts")


_RAY_PARAMS = [
    ("workers", WorkersOpt, None), ("threads", ThreadsOpt, None), ("gpus_per_worker", GpusPerWorkerOpt, 1.0),
    ("cpus_per_worker", CpusPerWorkerOpt, None), ("ray_address", RayAddressOpt, None),
    ("heartbeat_interval", HeartbeatOpt, 60), ("grace_period", GraceOpt, None), ("artifacts", ArtifactsOpt, None),
]


with_parameters(launch_cmd, [
    keyword("study_name", StudyOpt),
    keyword("storage", StorageOpt, None),
    keyword("config", Annotated[Optional[Path], typer.Option("--config", help="Study YAML; flags override its fields.")],
           None),
    *model_options(StudyDefinition, list(DEFINITION_FLAGS), flag_types={"space": str}),
    *model_options(TrainSettings, list(TRAINING_FLAGS)),
    *(keyword(name, annotation, default) for name, annotation, default in _RAY_PARAMS),
    keyword("export", Annotated[Optional[Path], typer.Option("--export", callback=output_file, help="Write the best config (highest accuracy on the Pareto front for two objectives) here at the end.")], None),
])


def worker_cmd(
    study_name: StudyOpt,
    storage: StorageOpt = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    worker_id: Annotated[Optional[str], typer.Option("--worker-id", help="Name recorded on its trials (default HOST-PID).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, max=MAX_THREADS, help="torch CPU threads.")] = None,
    heartbeat_interval: HeartbeatOpt = 60,
    grace_period: GraceOpt = None,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Run one worker of an existing study until its budget is reached (Ctrl-C stops cleanly)."""
    from hybridnas import search

    try:
        result = search.work(study_name, storage, device=device, threads=threads, worker_id=worker_id,
                             artifacts=artifacts, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    except KeyboardInterrupt:
        console.print("interrupted: the running trial marked FAIL (interrupted)")
        raise
    ran = ", ".join(f"{n} {s}" for s, n in result["trials"].items()) or "no trials"
    console.print(f"worker {result['worker']} on {result['device']}: {ran}; stopped: {result['stopped']}")


def export_cmd(
    study_name: StudyOpt,
    out: Annotated[Path, typer.Option("-o", "--output", callback=output_file, help="YAML (or .json) file to write.")],
    storage: StorageOpt = None,
    trial: Annotated[Optional[int], typer.Option("--trial", min=0, help="Export this trial number.")] = None,
    best: Annotated[bool, typer.Option("--best", help="The best COMPLETE trial (single objective).")] = False,
    pareto: Annotated[bool, typer.Option("--pareto", help="The most accurate Pareto-front trial (two objectives).")] = False,
    max_params: MaxParamsOpt = None,
    max_macs: MaxMacsOpt = None,
) -> None:
    """Write a trial's architecture as a config that rebuilds the exact model (`summary`, `train`)."""
    from hybridnas import search
    from hybridnas.common import UsageError

    if sum((trial is not None, best, pareto)) != 1:
        raise UsageError("choose exactly one of --trial N, --best and --pareto")
    study = search.load(study_name, storage)
    picked = search.select(study, number=trial, best=best, pareto=pareto, max_params=max_params, max_macs=max_macs)
    search.export(study, out, picked)
    _print_export(picked, out)


def retrain_cmd(**options: Any) -> None:
    """Retrain the best distinct trials longer, score them on validation (and test), keep the weights."""
    import json

    from hybridnas import search

    out = make_console(stderr=True) if options["json_out"] else console
    progress = _Progress(out)
    try:
        results = search.retrain(
            options["study_name"], options["storage"], top=options["top"], epochs=options["epochs"],
            test=options["test"], seeds=options["seeds"], pareto=options["pareto"],
            train_subset=options["train_subset"], presets=_names(options["presets"]),
            tune_presets=options["tune_presets"], say=out.print,
            progress=progress, **{k: options[k] for k in _RAY_FLAGS},
        )
    except KeyboardInterrupt:
        progress.close()
        out.print("interrupted: workers stopped, their running jobs marked FAIL (interrupted); rerun to resume")
        raise
    finally:
        progress.close()
    if options["json_out"]:
        print(json.dumps(results, indent=2))
    else:
        _print_retrain(results)


with_parameters(retrain_cmd, [
    keyword("study_name", StudyOpt),
    keyword("storage", StorageOpt, None),
    keyword("top", Annotated[int, typer.Option("--top", min=0, max=1000, help="Retrain the K best distinct architectures (each by its best trial); 0: only the --presets.")], 3),
    keyword("epochs", Annotated[int, typer.Option("--epochs", min=1, max=MAX_EPOCHS, help="Epochs of each retraining (the longer budget).")], 30),
    keyword("test", Annotated[bool, typer.Option("--test", help="Also score on the test split (or the study's held-out images).")], False),
    keyword("seeds", Annotated[int, typer.Option("--seeds", min=1, max=100, help="Retrain each trial with this many seeds.")], 1),
    keyword("pareto", Annotated[bool, typer.Option("--pareto", help="Retrain the Pareto front (two-objective studies).")], False),
    keyword("train_subset", Annotated[Optional[int], typer.Option("--train-subset", min=1, max=MAX_IMAGES, help="Training images (default: the search's).")], None),
    keyword("presets", Annotated[str, typer.Option("--presets", metavar="NAME,...", help="Also retrain these papers' models (see `hybridnas presets`) under the same budget, at the study's input size, as baselines.")], ""),
    keyword("tune_presets", Annotated[int, typer.Option("--tune-presets", metavar="N", min=0, max=MAX_TRIALS, help="Give each of --presets the search's recipe search first: N distinct recipes from the space's training: section at the search's fidelity (study NAME/tune/PRESET); retrain the best. 0: the study's fixed recipe.")], 0),
    *(keyword(name, annotation, default) for name, annotation, default in _RAY_PARAMS),
    keyword("json_out", Annotated[bool, typer.Option("--json", help="Print the results as a JSON list.")], False),
])


def _names(value: str) -> list[str]:
    """A comma-separated flag as its names."""
    return [name.strip() for name in value.split(",") if name.strip()]


def _print_retrain(results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from hybridnas.objectives.retrain import row_label

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def test_score(r: dict[str, Any]) -> str:
        low_high = r.get("test_top1_ci95")
        return pct(r["test_top1"]) + (f" ±{50 * (low_high[1] - low_high[0]):.1f}" if low_high else "")

    images = next((r["test_images"] for r in results if r.get("test_top1_ci95")), None)
    captions = [f"test top-1 ±: half its 95% interval over the {images:,} test images" if images else "",
                *{f"tuned: retrained with the best of {r['tuned']['recipes']} recipes of its own recipe search "
                  f"({r['tuned']['study']})" for r in results if r.get("tuned")}]
    caption = "\n".join(c for c in captions if c) or None
    table = Table(title="retrained", caption=caption)
    for column in ("trial", "params", "MACs", "epochs", "seeds", "val top-1", "test top-1"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in results:
        table.add_row(row_label(r), f"{r['params']:,}", f"{r['macs']:,}", str(r["epochs"]), str(len(r["seeds"])),
                      pct(r["val_top1"]), test_score(r))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("launch")(launch_cmd)
    app.command("worker")(worker_cmd)
    app.command("export")(export_cmd)
    app.command("retrain")(retrain_cmd)
