"""Tuned baselines: each paper preset gets the recipe search the searched architectures got.

A search samples each trial's training settings from its space's `training:` section, so a
preset retrained with the study's one fixed recipe would be compared at a disadvantage.
`retrain --presets chae --tune-presets N` first runs, for each preset, a search of N distinct
recipes over that same section with the architecture fixed to the preset, at the search's
fidelity (epochs, subsets, pruner, seed), in a study of its own, `NAME/tune/PRESET`. Its first
trial is the preset with the study's fixed recipe, so tuning never scores below not tuning on
validation. The best recipe is then retrained beside the winners.

A recipe search is a search study (workers, `status`, the report and the dashboard treat it as
one), marked with the study and preset it tunes, so that `retrain` never adopts an unrelated
study that happens to carry the name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridnas.common import UsageError
from hybridnas.objectives.study.definition import StudyDefinition, validate_definition
from hybridnas.objectives.study.records import TRAINING, TUNED, TUNES_ATTR, TrialRecord

if TYPE_CHECKING:
    import optuna


def tuning_name(study_name: str, preset_name: str) -> str:
    """The one place a preset's recipe search is named."""
    return f"{study_name}/tune/{preset_name}"


def tuning_definition(source: StudyDefinition, preset_name: str, recipes: int) -> StudyDefinition:
    """The search's definition with the architecture fixed to the preset at the study's input size.

    Kept: the data and its split, epochs, pruner, seed, the fixed training settings and the
    `training:` section. Changed: the budget (`recipes` distinct recipes, no timeout), accuracy
    as the only objective (a recipe changes neither size nor latency), and no size or latency
    limit (a preset is the baseline whatever its size, as `retrain --presets` trains it).
    """
    from hybridnas.models.presets import preset
    from hybridnas.training.data import dataset_shape

    space = source.search_space()
    if not space.training_fields:
        raise UsageError(f"--tune-presets: the study's space '{space.name}' searches no training settings (no "
                         "training: section), so its trials got no recipe search either; retrain the presets "
                         "without it")
    shape = dataset_shape(source.dataset, data_dir=source.data_dir)
    architecture = preset(preset_name, num_classes=shape.num_classes, image_size=shape.image_size)
    template = architecture.model_dump(mode="json", exclude={"name"})
    document = {
        "kind": "template", "name": f"{preset_name}-recipes",
        "description": f"{preset_name} with the recipe search of {space.name}'s training: section",
        "template": template, "training": space.document["training"],
    }
    return validate_definition({
        **source.to_document(), "space": document, "trials": recipes, "timeout": None, "objective": "accuracy",
        "sampler": source.sampler if source.sampler in ("tpe", "random") else None, "pruner": source.pruner_name,
        "max_params": None, "max_macs": None, "max_latency_ms": None, "enqueue_presets": True,
    }, f"--tune-presets for {preset_name}")


def open_tuning(
    source: optuna.Study, definition: StudyDefinition, preset_name: str, recipes: int, storage: str | None,
) -> tuple[optuna.Study, StudyDefinition]:
    """Create the preset's recipe search of `source` (its first trial the preset with the fixed
    recipe), or resume it with `recipes` as its budget."""
    import optuna

    from hybridnas.objectives.study.service import create_or_resume, enqueue_presets

    name = tuning_name(source.study_name, preset_name)
    mark = {"source": source.study_name, "preset": preset_name}
    try:
        found = optuna.load_study(study_name=name, storage=source._storage).user_attrs.get(TUNES_ATTR, False)
    except KeyError:
        found = None  # no study of that name
    not_ours = UsageError(f"study {name!r} exists and is not the recipe search of {preset_name} for "
                          f"{source.study_name!r}; retrain keeps that search under this name, so it must be free")
    if found not in (None, False, mark):
        raise not_ours
    wanted = tuning_definition(definition, preset_name, recipes).to_document()
    try:
        study, stored, _ = create_or_resume(name, storage, wanted, source=f"--tune-presets for {preset_name}")
    except UsageError as err:
        if found is False:  # unmarked: someone's own study, unless its definition is exactly ours
            raise UsageError(f"{not_ours} ({err})") from None
        raise
    if found != mark:  # new, or its creation was cut short: queue the preset (once), then mark it ours
        enqueue_presets(study, stored)
        study.set_user_attr(TUNES_ATTR, mark)
    return study, stored


def tuned_recipe(study: optuna.Study, *, searched: bool) -> dict[str, Any]:
    """The job attributes of the preset's retrain with the recipe search's best recipe: `TUNED`
    (the search, its best trial, how many recipes it trained) and `TRAINING` (that recipe).

    The search must have reached its budget, or have just had workers (`searched`: a space
    with fewer distinct recipes than the budget ends early); otherwise a UsageError says how
    to finish it.
    """
    from optuna.trial import TrialState

    from hybridnas.objectives.study.service import budget_reached, study_status

    records = [TrialRecord(t) for t in study.get_trials(deepcopy=False)]
    done = [r for r in records if r.trained and r.trial.state == TrialState.COMPLETE]
    status = study_status(study)
    if not done or not (searched or budget_reached(status)):
        raise UsageError(f"the recipe search '{study.study_name}' has {status['done']} of its "
                         f"{status['budget_trials']} recipes; run its workers (`hybridnas worker --study "
                         f"'{study.study_name}'`, or retrain without --workers 0) and retrain again")
    best = max(done, key=lambda r: (r.trial.value, -r.trial.number))
    return {TUNED: {"study": study.study_name, "trial": best.trial.number, "recipes": status["done"]},
            TRAINING: best.training}
