"""The last step of a search: retrain the best distinct architectures longer and score them on test.

A search ranks architectures by a short-budget validation score, a proxy. `retrain` takes
the top K distinct architectures, each by its best trial (or the Pareto front), trains each with its own training settings
for more epochs and with one or more seeds, scores it on the validation split and, with
`test`, on the dataset's test split (or the images the study held out as `test_subset`), and
keeps the weights as artifacts. The jobs are the WAITING trials of a companion study,
`NAME/retrain`, so Ray workers run them with the same heartbeats, retries and resumption as
a search; a rerun enqueues only the jobs that have not finished.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from hybridnas.common import UsageError, validate_model
from hybridnas.models.presets import PRESETS
from hybridnas.training.settings import MAX_SEED
from hybridnas.objectives.study.definition import StudyDefinition, kind_in_words, study_kind
from hybridnas.objectives.study.records import (
    DEVICE, EPOCHS_RUN, KIND_ATTR, LATENCY_MS_BATCH1, LATENCY_MS_BATCH256, MACS, PARAMS, PRECISION, PRESET, RETRAIN,
    RETRAIN_ATTR, SEED, SOURCE_PRESET, SOURCE_TRIAL, TEST_IMAGES, TEST_TOP1, TRAIN_SECONDS, TRAINING, TUNED,
    TrialRecord,
)

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hybridnas.models.config import ArchConfig

    from hybridnas.objectives.objective import WorkerContext
    from hybridnas.training.data import DataSplits


def companion_name(study_name: str) -> str:
    """The one place a search's retrain companion is named."""
    return f"{study_name}/retrain"


def check_companion(companion: optuna.Study, source: str) -> None:
    """Refuse to retrain `source` into an existing study that is not its retrain companion (a
    search someone named `NAME/retrain`, say): its trials and attributes are not ours to add to.
    An empty study with no hybridnas attributes is a companion whose creation was cut short."""
    plan = companion.user_attrs.get(RETRAIN_ATTR)
    ours = study_kind(companion) == RETRAIN and isinstance(plan, dict) and plan.get("source") == source
    cut_short = (study_kind(companion) is None and not companion.get_trials(deepcopy=False)
                 and [d.name for d in companion.directions] == ["MAXIMIZE"])
    if not (ours or cut_short):
        raise UsageError(f"study {companion.study_name!r} is {kind_in_words(companion)}, not the retrain companion "
                         f"of {source!r}; retrain keeps its results under that name, so it must be free")


class RetrainPlan(BaseModel):
    """How the companion study retrains: stored in it, so its workers need only its name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    epochs: Annotated[int, Field(ge=1)]
    test: bool
    train_subset: Annotated[int, Field(ge=1)] | None

    def differences(self, other: RetrainPlan) -> list[str]:
        mine, theirs = self.model_dump(), other.model_dump()
        return [k for k in mine if mine[k] != theirs[k]]


def pick_trials(study: optuna.Study, top: int, *, pareto: bool = False) -> list[FrozenTrial]:
    """The `top` best distinct architectures (single objective), or the Pareto front.

    Distinct: one trial per architecture, its best-scoring one, never a duplicate or an
    infeasible sample. The search's own key (`arch_key`) also tells training settings apart, so
    a search whose local-search moves tried three learning rates on its best model has three
    distinct trials of one architecture; a top-3 of them would retrain one model three times.
    `top` 0 picks none (a retrain of the baselines alone): the search need not have finished a
    trial."""
    from optuna.trial import TrialState

    from hybridnas.models.canonical import architecture_key
    from hybridnas.objectives.study.results import trial_config

    multi = len(study.directions) > 1
    if top == 0 and not pareto:
        return []
    if pareto != multi:
        raise UsageError(f"study '{study.study_name}' has {'two objectives' if multi else 'one objective'}: "
                         f"{'retrain its Pareto front' if multi else 'retrain its top trials'}")
    candidates = study.best_trials if pareto else study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    picked: dict[str, FrozenTrial] = {}
    for trial in sorted(candidates, key=lambda t: (-t.values[0], t.number)):
        record = TrialRecord(trial)
        if not record.trained or record.config is None:
            continue
        picked.setdefault(architecture_key(trial_config(trial)), trial)
    chosen = list(picked.values())
    if not chosen:
        raise UsageError(f"study '{study.study_name}' has no completed trial to retrain yet")
    return chosen if pareto else chosen[:top]


class RetrainQueue(NamedTuple):
    """What `plan_retrain` set up: the companion study, its plan, how many jobs it queued, and
    the presets left out because a retrained search trial is that preset (name: trial number)."""

    companion: optuna.Study
    plan: RetrainPlan
    queued: int
    presets_as_trials: dict[str, int]


def plan_retrain(
    source: optuna.Study,
    *,
    top: int,
    epochs: int,
    test: bool,
    seeds: int,
    pareto: bool = False,
    train_subset: int | None = None,
    presets: tuple[str, ...] = (),
    tuned: dict[str, dict[str, Any]] | None = None,
) -> RetrainQueue:
    """Create or resume the companion `NAME/retrain` of the search `source` (in its storage) and
    enqueue the jobs not done yet.

    `presets` (papers' models by name) are retrained beside the trials, at the study's input
    size and with its fixed training settings, so the retrained table measures the search
    against the documented designs; a preset that one of the retrained trials already is (queued
    by `enqueue_presets` and trained the same way) is not retrained twice. `train_subset`
    defaults to the search's own; a resumed plan must keep its epochs, test and train subset
    (more trials, presets or seeds only add jobs). `tuned` gives, by preset name, the job
    attributes of its tuned recipe (`preset_tuning.tuned_recipe`): that preset retrains with it,
    in a job of its own beside any untuned one.
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState

    from hybridnas.objectives.study.definition import stored_definition

    study_name, storage = source.study_name, source._storage
    companion, plan = check_retrainable(source, epochs=epochs, test=test, train_subset=train_subset)
    definition = stored_definition(source)
    preset_configs = _preset_configs(presets, definition)
    trials = pick_trials(source, top, pareto=pareto)
    if companion is None:
        companion = optuna.create_study(study_name=companion_name(study_name), direction="maximize", storage=storage)
    if companion.user_attrs.get(RETRAIN_ATTR) is None:
        companion.set_user_attr(RETRAIN_ATTR, plan.model_dump())
        companion.set_user_attr(KIND_ATTR, RETRAIN)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            companion.set_metric_names(["val_top1"])
    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    have = {_job(t.user_attrs) for t in companion.get_trials(deepcopy=False, states=live)}
    records = [TrialRecord(t) for t in trials]
    jobs = [{SOURCE_TRIAL: r.trial.number, **({SOURCE_PRESET: r.preset} if r.preset is not None else {})}
            for r in records]
    tuned = tuned or {}
    as_trials = {name: t.number for name, cfg in preset_configs.items() if name not in tuned for t in trials
                 if _is_that_preset(t, name, cfg, definition)}
    jobs += [{PRESET: name, **tuned.get(name, {})} for name in preset_configs if name not in as_trials]
    queued = 0
    for job in jobs:
        for seed in retrain_seeds(definition.seed, seeds):
            if _job({**job, SEED: seed}) not in have:
                companion.enqueue_trial({}, user_attrs={**job, SEED: seed})
                queued += 1
    return RetrainQueue(companion, plan, queued, as_trials)


def retrain_seeds(first: int, count: int) -> list[int]:
    """The training seeds of a job's runs: `count` from the study's seed on, wrapping past
    2**32 - 1 to 0 (a study seeded at the top of the range retrains with seeds a trainer takes)."""
    return [(first + i) % (MAX_SEED + 1) for i in range(count)]


def check_retrainable(
    source: optuna.Study, *, epochs: int, test: bool, train_subset: int | None,
) -> tuple[optuna.Study | None, RetrainPlan]:
    """Refuse a retrain that could not run, before anything is stored or trained: of a retrain
    companion, into a study of that name that is not its companion, `test` without test images,
    or a plan other than the companion's own. Returns the companion, if it exists, and the plan."""
    import optuna

    from hybridnas.objectives.study.definition import stored_definition

    if study_kind(source) == RETRAIN:
        raise UsageError(f"study {source.study_name!r} is {kind_in_words(source)}; retrain the search study itself")
    try:
        companion = optuna.load_study(study_name=companion_name(source.study_name), storage=source._storage)
    except KeyError:
        companion = None
    if companion is not None:
        check_companion(companion, source.study_name)
    definition = stored_definition(source)
    if test and definition.test_subset is None and not _has_test_split(definition):
        raise UsageError(f"study '{source.study_name}': {definition.dataset} has no test split and the study held "
                         "no images out (test_subset); its search already saw every training image")
    plan = RetrainPlan(source=source.study_name, epochs=epochs, test=test,
                       train_subset=train_subset if train_subset is not None else definition.train_subset)
    stored = None if companion is None else stored_plan(companion)
    changed = [] if stored is None else plan.differences(stored)
    if changed:
        raise UsageError(f"'{companion_name(source.study_name)}' exists with a different {', '.join(changed)}; rerun "
                         "with the same settings to resume it")
    return companion, plan


def check_presets(names: Sequence[str]) -> None:
    """Refuse, before anything is stored, a name that is no preset."""
    unknown = sorted(set(names) - set(PRESETS))
    if unknown:
        raise UsageError(f"--presets: no preset named {', '.join(unknown)}; choose from {', '.join(PRESETS)}")


def _preset_configs(names: tuple[str, ...], definition: StudyDefinition) -> dict[str, ArchConfig]:
    """Each preset at the study's input size; fails before anything is stored when a name is no
    preset or the preset cannot take that input (only the dataset's shape is read)."""
    from hybridnas.models.presets import preset
    from hybridnas.training.data import dataset_shape

    check_presets(names)
    if not names:
        return {}
    shape = dataset_shape(definition.dataset, data_dir=definition.data_dir)
    return {name: preset(name, num_classes=shape.num_classes, image_size=shape.image_size) for name in names}


def _is_that_preset(trial: FrozenTrial, name: str, cfg: ArchConfig, definition: StudyDefinition) -> bool:
    """Whether a search trial queued as preset `name` (`enqueue_presets`) would retrain exactly as
    the preset's own job: the same model with the same effective training settings. Its row then
    stands for the preset (`0 (chae)`), and the preset is not retrained a second time."""
    from hybridnas.models.canonical import architecture_key
    from hybridnas.objectives.study.results import trial_config, trial_training

    if TrialRecord(trial).preset != name:
        return False
    same_model = architecture_key(trial_config(trial)) == architecture_key(cfg)
    trial_settings = definition.train_settings("cpu", trial_training(trial)).resolved()
    return same_model and trial_settings == definition.train_settings("cpu").resolved()


def _job(attrs: dict[str, Any]) -> tuple[Any, ...]:
    """What a retrain job retrains: (source trial or preset, its tuned recipe if any, seed)."""
    return (*_row(attrs), attrs.get(SEED))


def _row(attrs: dict[str, Any]) -> tuple[Any, ...]:
    """What a row of the retrained table stands for: a source trial, or a preset with its recipe
    (the untuned one, or a recipe search's best trial)."""
    tuned = attrs.get(TUNED) or {}
    return attrs.get(SOURCE_TRIAL), attrs.get(PRESET), tuned.get("study"), tuned.get("trial")


def row_label(row: dict[str, Any]) -> str:
    """How the table and the report name a retrained row: its trial number (with the preset it
    was queued as), or the preset's name (tuned where it trained with its recipe search's best)."""
    label = row.get("preset") or str(row["trial"])
    if row.get("source_preset"):
        label += f" ({row['source_preset']})"
    if row.get("tuned"):
        label += " (tuned)"
    return label


def _has_test_split(definition: StudyDefinition) -> bool:
    from hybridnas.training.data import has_test_split

    return has_test_split(definition.dataset, data_dir=definition.data_dir)


def stored_plan(study: optuna.Study) -> RetrainPlan | None:
    data = study.user_attrs.get(RETRAIN_ATTR)
    return None if data is None else validate_model(RetrainPlan, data, f"study '{study.study_name}'")


def retrain_results(companion: optuna.Study) -> list[dict[str, Any]]:
    """One row per retrained trial or preset, best first: the means over its finished seeds
    (`latency_ms_batch1` None where none was measured). A trial's row has `trial`, its number in
    the search (and `source_preset` where the search queued it as a preset); a preset's has
    `trial` None and `preset`, its name, and where its recipe was tuned, `tuned` (the recipe
    search, its best trial and how many recipes it trained)."""
    from optuna.trial import TrialState

    rows: dict[tuple[Any, ...], list[TrialRecord]] = {}
    for t in companion.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rows.setdefault(_row(t.user_attrs), []).append(TrialRecord(t))
    out = []
    for (number, preset_name, *_), runs in rows.items():
        val = [r.trial.value for r in runs]
        test = [r.test_top1 for r in runs if r.test_top1 is not None]
        first = runs[0]
        out.append({
            "trial": number,
            **({"preset": preset_name} if preset_name else {}),
            **({"source_preset": first.source_preset} if first.source_preset else {}),
            **({"tuned": first.tuned} if first.tuned else {}),
            "params": first.params,
            "macs": first.macs,
            "epochs": first.epochs_run,
            "seeds": sorted(r.seed for r in runs),
            "val_top1": statistics.fmean(val),
            "val_top1_std": statistics.pstdev(val),
            "test_top1": statistics.fmean(test) if test else None,
            "test_top1_std": statistics.pstdev(test) if test else None,
            "test_images": first.test_images,
            "test_top1_ci95": wilson_interval(statistics.fmean(test), first.test_images)
            if test and first.test_images else None,
            "latency_ms_batch1": statistics.fmean(latency) if (latency := [
                r.latency_ms_batch1 for r in runs if isinstance(r.latency_ms_batch1, (int, float))]) else None,
            "retrain_trials": sorted(r.trial.number for r in runs),
        })
    return sorted(out, key=lambda r: (-(r["test_top1"] if r["test_top1"] is not None else r["val_top1"]),
                                      r["trial"] if r["trial"] is not None else -1))


def wilson_interval(accuracy: float, images: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on `images` test images.

    A retrained table at a CPU budget scores on about a thousand images, where two points of
    accuracy are inside the interval: this says which differences between rows the test split
    can tell apart (over seeds the mean is on the same images, so the interval is the same one).
    """
    centre = (accuracy + z * z / (2 * images)) / (1 + z * z / images)
    half = z * math.sqrt(accuracy * (1 - accuracy) / images + z * z / (4 * images * images)) / (1 + z * z / images)
    return (max(0.0, centre - half), min(1.0, centre + half))


class RetrainObjective:
    """Callable for `study.optimize` on the companion study: one job, a (source trial, seed)."""

    def __init__(
        self, plan: RetrainPlan, source: optuna.Study, definition: StudyDefinition, data: DataSplits,
        context: WorkerContext,
    ) -> None:
        self.plan = plan
        self.source = source
        self.definition = definition
        self.data = data
        self.context = context

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from hybridnas.objectives.objective import guarded

        self.context.start(trial)
        if SOURCE_TRIAL not in trial.user_attrs and PRESET not in trial.user_attrs:
            # Two workers saw the last job; the other one took it.
            raise optuna.TrialPruned("no retrain job left")
        return guarded(trial, self.context.device_label, lambda: self._run(trial))

    def _run(self, trial: optuna.Trial) -> float:
        from hybridnas.objectives.objective import failed
        from hybridnas.training.loop import EpochReport, train_model

        cfg, training = self._job(trial.user_attrs)
        settings = self.definition.train_settings(self.context.device, {**training, "measure_latency": True})
        settings = settings.model_copy(update={"epochs": self.plan.epochs, "seed": trial.user_attrs[SEED]})

        def on_epoch(report: EpochReport) -> None:
            trial.report(report.val_top1, report.epoch)
            trial.set_user_attr(EPOCHS_RUN, report.epoch)
            self.context.check_stop(f"after epoch {report.epoch}")

        start = time.perf_counter()
        result = train_model(cfg, self.data, settings, on_epoch=on_epoch,
                             on_step=self.context.on_step)
        if result.status != "ok":
            raise failed(trial, result.reason or result.status)
        for key, value in {
            PARAMS: result.params, MACS: result.macs, EPOCHS_RUN: result.epochs_run,
            TEST_TOP1: result.test_top1, TEST_IMAGES: None if result.test_top1 is None else len(self.data.test_y),
            LATENCY_MS_BATCH1: result.latency_ms_batch1,
            LATENCY_MS_BATCH256: result.latency_ms_batch256, DEVICE: result.device, PRECISION: result.precision,
            TRAIN_SECONDS: round(time.perf_counter() - start, 1),
        }.items():
            trial.set_user_attr(key, value)
        self._upload_weights(trial, result.model)
        return result.val_top1

    def _job(self, attrs: dict[str, Any]) -> tuple[ArchConfig, dict[str, Any]]:
        """The job's architecture and training settings: a search trial's own, or a paper preset
        at the data's input size with its tuned recipe, else the study's fixed settings."""
        from hybridnas.models.presets import preset
        from hybridnas.objectives.study.results import trial_config, trial_training

        if PRESET in attrs:
            cfg = preset(attrs[PRESET], num_classes=self.data.num_classes, image_size=self.data.image_size)
            return cfg, dict(attrs.get(TRAINING, self.definition.training))
        source_trial = self.source.get_trials(deepcopy=False)[attrs[SOURCE_TRIAL]]
        return trial_config(source_trial), trial_training(source_trial)

    def _upload_weights(self, trial: optuna.Trial, model: Any) -> None:
        """The state dict as an artifact (loads with torch.load(weights_only=True))."""
        import torch
        from optuna.artifacts import upload_artifact

        if self.context.artifacts is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            what = trial.user_attrs.get(PRESET) or f"trial{trial.user_attrs.get(SOURCE_TRIAL)}"
            path = Path(tmp) / f"retrain-{trial.number}-{what}-model.pt"
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
            upload_artifact(artifact_store=self.context.artifacts, file_path=str(path), study_or_trial=trial,
                            mimetype="application/octet-stream")
