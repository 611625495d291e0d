"""Run a search from Python: define a study, launch its workers, read and export its results.

The `hybridnas` command is a thin layer over these functions; a notebook calls them directly:

    from hybridnas import search

    definition = search.StudyDefinition(dataset="folder:cifar10.tar.gz", space="demo", trials=30,
                                        train_subset=2000, val_subset=500, test_subset=1000)
    study = search.launch(definition, study="demo", storage="sqlite:///nas.db", workers=2)
    search.status(study)["done"]                       # 30 distinct architectures trained
    search.export(study, "best.yaml")                  # the best trial's config and training settings
    search.retrain("demo", "sqlite:///nas.db", top=3, epochs=15, test=True)  # [{"trial": ..., ...}]

`launch` runs Ray workers (a local Ray of its own, or a cluster with `ray_address`);
`work` runs one worker in this process instead, without Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridnas.common import UsageError, ctrl_c_as_request
from hybridnas.objectives.study.definition import StudyDefinition, check_study_name
from hybridnas.objectives.study.records import ARTIFACTS_ATTR, TRAINING, TUNED
from hybridnas.workers.placement import PLACEMENT_FIELDS, Placement

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["RayRun", "StudyDefinition", "best_trial", "export", "launch", "load", "retrain", "select", "status", "work"]


def _quiet(message: str) -> None:
    """Where a launch's progress lines go by default from Python: nowhere."""


@dataclass(frozen=True)
class RayRun:
    """How `launch` and `retrain` run their Ray workers, from the keywords both take: where they
    run (`placement`), where trial files go (`artifacts`; default where the search recorded
    them), their heartbeat (`heartbeat_interval`, `grace_period`), and what they report: `say`
    receives the lines the CLI prints; `progress`, given a study, makes what runs every few
    seconds while the workers run."""

    placement: Placement
    artifacts: str | None = None
    heartbeat_interval: int = 60
    grace_period: int | None = None
    say: Callable[[str], None] = _quiet
    progress: Callable[[optuna.Study], Callable[[], None]] | None = None

    def __post_init__(self) -> None:
        from hybridnas.workers.heartbeat import check_heartbeat

        check_heartbeat(self.heartbeat_interval, self.grace_period)

    @classmethod
    def of(cls, **keywords: Any) -> RayRun:
        """Placement's fields (`workers`, `threads`, `gpus_per_worker`, `cpus_per_worker`,
        `ray_address`) and this class's others, checked before anything is stored; a misspelled
        keyword is a TypeError, as in any signature."""
        placement = Placement(**{name: keywords.pop(name) for name in PLACEMENT_FIELDS if name in keywords})
        return cls(placement, **keywords)

    def until_done(self, study: optuna.Study, storage: str | None, definition: StudyDefinition,
                   recorded_in: optuna.Study) -> None:
        """Ray workers on `study` (a search, a recipe search or the jobs of a retrain) until it is
        done, unless the placement asks for no workers; trial files go to `artifacts`, else where
        `recorded_in` (the search) recorded them, else the default."""
        from hybridnas.storage import artifacts_location, mask_url
        from hybridnas.workers.ray_workers import launch_workers

        if self.placement.workers == 0:
            return
        location = artifacts_location(storage, self.artifacts or recorded_in.user_attrs.get(ARTIFACTS_ATTR))
        self.say(f"artifacts in {mask_url(location)}")
        launch_workers(study, storage, definition, self.placement, say=self.say,
                       on_poll=self.progress(study) if self.progress else None,
                       worker_options={"heartbeat_interval": self.heartbeat_interval,
                                       "grace_period": self.grace_period, "artifacts": location})


@ctrl_c_as_request()
def launch(
    definition: StudyDefinition | dict[str, Any],
    *,
    study: str,
    storage: str | None = None,
    source: str = "study definition",
    **ray: Any,
) -> optuna.Study:
    """Create the study (or resume the one named `study`) and run Ray workers until its budget
    is reached; returns the study. `ray` holds `RayRun.of`'s keywords (`workers=2`, ...);
    `workers=0` only defines the study (start workers elsewhere, or call `work`). A resume may
    change only the budget; `definition` may be a StudyDefinition or the fields to set (a resumed
    study keeps the rest; `source` names them in errors). Ctrl-C stops the workers, fails their
    running trials as "interrupted" and then raises KeyboardInterrupt; launching again resumes."""
    from hybridnas.objectives.study.service import create_or_resume, enqueue_presets
    from hybridnas.storage import mask_url, resolve_url
    from hybridnas.training.datasets import check_dataset

    check_study_name(study)
    run = RayRun.of(**ray)
    given = definition.to_document() if isinstance(definition, StudyDefinition) else dict(definition)
    if "dataset" in given:
        check_dataset(given["dataset"], given.get("data_dir"))
    # Local workers' data is loaded here anyway: for a new study, before it is stored, so a split
    # the dataset cannot give (more validation images than it has) leaves the name free.
    local_workers = run.placement.address is None and run.placement.workers != 0
    if local_workers:
        from hybridnas.workers.worker import check_split
    optuna_study, stored, created = create_or_resume(study, storage, given, source=source,
                                                      check=check_split if local_workers else None)
    run.say(f"{'created' if created else 'resuming'} study '{study}' in {mask_url(resolve_url(storage))}")
    if created and stored.enqueue_presets:
        names = enqueue_presets(optuna_study, stored)
        run.say(f"queued presets first: {', '.join(names) if names else 'none fits this space'}")
    for line in stored.describe():
        run.say(line)
    run.until_done(optuna_study, storage, stored, optuna_study)
    return optuna_study


def work(
    study: str,
    storage: str | None = None,
    *,
    device: str = "auto",
    threads: int | None = None,
    worker_id: str | None = None,
    artifacts: str | None = None,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
) -> dict[str, Any]:
    """Run one worker of the study in this process (no Ray) until its budget is reached; what it
    did (`run_worker`). Ctrl-C ends the running trial as FAIL "interrupted" after its current
    training step, then raises KeyboardInterrupt."""
    import torch

    from hybridnas.workers.worker import run_worker

    check_study_name(study)
    Placement(threads=threads)  # the same limits as a launch's
    if threads:
        torch.set_num_threads(threads)
    with ctrl_c_as_request() as stop:
        return run_worker(study, storage, worker_id, device, stop=stop, artifacts=artifacts,
                          heartbeat_interval=heartbeat_interval, grace_period=grace_period)


def load(study: str, storage: str | None = None) -> optuna.Study:
    """An existing study, read-only use (status, export, retrain)."""
    from hybridnas.storage import load_study

    return load_study(check_study_name(study), storage, heartbeat_interval=None)


def status(study: optuna.Study) -> dict[str, Any]:
    """Counts, budget used, best result, throughput, ETA and workers (what `hybridnas status --json` prints)."""
    from hybridnas.objectives.study.service import study_status

    return study_status(study)


def best_trial(study: optuna.Study, *, max_params: int | None = None, max_macs: int | None = None) -> FrozenTrial:
    """The most accurate completed trial (of the Pareto front for two objectives), within the limits."""
    multi = len(study.directions) > 1
    return select(study, best=not multi, pareto=multi, max_params=max_params, max_macs=max_macs)


def select(
    study: optuna.Study, *, number: int | None = None, best: bool = False, pareto: bool = False,
    max_params: int | None = None, max_macs: int | None = None,
) -> FrozenTrial:
    """Exactly one of: trial `number`; the best COMPLETE trial; the most accurate Pareto-front
    trial; `best` and `pareto` within the size limits (what `hybridnas export` picks)."""
    from hybridnas.objectives.study.results import select_trial

    return select_trial(study, number=number, best=best, pareto=pareto, max_params=max_params, max_macs=max_macs)


def export(study: optuna.Study, path: str | Path, trial: FrozenTrial | None = None) -> Path:
    """Write a trial's config with its training settings (default: `best_trial`), as `export` does."""
    from hybridnas.objectives.study.results import export_trial

    export_trial(study, trial or best_trial(study), path)
    return Path(path)


@ctrl_c_as_request()
def retrain(
    study: str,
    storage: str | None = None,
    *,
    top: int = 3,
    epochs: int = 30,
    test: bool = False,
    seeds: int = 1,
    pareto: bool = False,
    train_subset: int | None = None,
    presets: Sequence[str] = (),
    tune_presets: int = 0,
    **ray: Any,
) -> list[dict[str, Any]]:
    """Retrain the best distinct architectures of study `study` (each by its best trial) longer on
    Ray workers (a rerun resumes) and return one row per trial (`trial`, `params`, `macs`,
    `epochs`, `val_top1`, `test_top1`, ...), as `hybridnas retrain --json` prints. `presets`
    names papers' models to retrain beside them under the same budget (their rows have `preset`
    and `trial` None; `top` 0 retrains them alone, on the study's data, split and recipe); with
    `tune_presets` N, each first gets a search of N recipes over the space's `training:` section
    (study `STUDY/tune/PRESET`, on the same workers; see objectives.preset_tuning) and retrains
    with the best. `ray`: as in `launch` (`progress` is made from each study the workers run).
    Ctrl-C: as in `launch`."""
    from hybridnas.objectives.preset_tuning import open_tuning, tuned_recipe
    from hybridnas.objectives.retrain import check_presets, check_retrainable, pick_trials, plan_retrain, retrain_results
    from hybridnas.objectives.study.definition import stored_definition

    run = RayRun.of(**ray)
    say = run.say
    if tune_presets and not presets:
        raise UsageError("--tune-presets: name the presets to tune with --presets")
    if top == 0 and (pareto or not presets):
        raise UsageError("--top 0 retrains the --presets alone: name them, and leave out --pareto")
    source = load(study, storage)
    check_retrainable(source, epochs=epochs, test=test, train_subset=train_subset)
    definition = stored_definition(source)
    check_presets(presets)
    pick_trials(source, top, pareto=pareto)
    tunings = [(name, *open_tuning(source, definition, name, tune_presets, storage))
               for name in (presets if tune_presets else ())]
    for name, tuning, tuning_definition in tunings:
        say(f"{name}: recipe search in study '{tuning.study_name}', {tune_presets} recipes")
        run.until_done(tuning, storage, tuning_definition, source)
    tuned = {name: tuned_recipe(tuning, searched=run.placement.workers != 0) for name, tuning, _ in tunings}
    for name, recipe in tuned.items():
        say(f"{name}: tuned recipe, trial {recipe[TUNED]['trial']} of {recipe[TUNED]['recipes']}: {recipe[TRAINING]}")
    companion, plan, queued, presets_as_trials = plan_retrain(
        source, top=top, epochs=epochs, test=test, seeds=seeds, pareto=pareto, train_subset=train_subset,
        presets=tuple(presets), tuned=tuned)
    for name, number in presets_as_trials.items():
        say(f"{name}: trial {number} of the search is that preset, trained the same way; retrained once, "
            f"as '{number} ({name})'")
    say(f"retraining in study '{companion.study_name}' for {plan.epochs} epochs: {queued} job(s) queued")
    run.until_done(companion, storage, definition, source)
    return retrain_results(companion)
