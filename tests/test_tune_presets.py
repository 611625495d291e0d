"""`retrain --presets NAME --tune-presets N`: each paper preset gets the recipe search the searched
trials got (N recipes from the space's `training:` section, at the search's fidelity, in study
`NAME/tune/PRESET`), and is retrained with the best recipe it found."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from helpers import TEST_WORKER, TINY_SPACE, json_in, tiny_study_args
from optuna.trial import TrialState

from hybridnas.models.canonical import architecture_key
from hybridnas.models.presets import preset
from hybridnas.objectives.preset_tuning import tuning_name
from hybridnas.objectives.retrain import companion_name
from hybridnas.objectives.study.records import PRESET, TRAINING, TUNED, TUNES_ATTR, TrialRecord
from hybridnas.objectives.study.results import trial_config
from hybridnas.storage import open_storage

# The sgd default lr (0.05) lies outside this range, so every recipe the tuning trains is tuned.
TRAINING_SECTION = {"lr": {"low": 0.002, "high": 0.02, "log": True}}
RECIPES = 3


def _space_with_recipes(tmp_path: Path) -> Path:
    document = yaml.safe_load(TINY_SPACE.read_text())
    path = tmp_path / "tiny-with-recipes.yaml"
    path.write_text(yaml.safe_dump({**document, "training": TRAINING_SECTION}))
    return path


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))


def _worker(hybridnas, url: str, name: str) -> None:
    code, out = hybridnas("worker", "--study", name, "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out


@pytest.mark.usefixtures("study_env")
def test_a_tuned_preset_is_retrained_with_the_best_recipe_of_its_own_search(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    args = [*tiny_study_args(3, epochs=2), "--space", _space_with_recipes(tmp_path), "--pruner", "none"]
    code, out = hybridnas("launch", "--study", "s", "--storage", url, *args, "--workers", "0")
    assert code == 0, out
    _worker(hybridnas, url, "s")
    # The retrain's epochs and training images are the search's, so the tuned preset's job with
    # the study's seed trains exactly as the recipe search's best trial did.
    retrain = ("retrain", "--study", "s", "--storage", url, "--top", "1", "--epochs", "2", "--presets", "chae",
               "--tune-presets", str(RECIPES), "--workers", "0", "--json")

    code, out = hybridnas(*retrain)
    assert code == 2 and "the recipe search 's/tune/chae' has 0 of its 3 recipes" in out, out
    tuning = _study(url, tuning_name("s", "chae"))
    assert tuning.user_attrs[TUNES_ATTR] == {"source": "s", "preset": "chae"}
    (queued,) = tuning.get_trials()
    assert queued.state == TrialState.WAITING and queued.user_attrs[PRESET] == "chae"
    assert not [t for t in _study(url, "s").get_trials() if t.user_attrs.get(PRESET)]  # the search is untouched

    _worker(hybridnas, url, tuning.study_name)
    recipes = [TrialRecord(t) for t in _study(url, tuning.study_name).get_trials()]
    chae = architecture_key(preset("chae", num_classes=10, image_size=32))
    assert len(recipes) == RECIPES and all(r.trial.state == TrialState.COMPLETE for r in recipes)
    assert {architecture_key(trial_config(r.trial)) for r in recipes} == {chae}
    assert len({r.training["lr"] for r in recipes}) == RECIPES
    assert all(0.002 <= r.training["lr"] <= 0.02 for r in recipes)
    best = max(recipes, key=lambda r: r.trial.value)

    code, out = hybridnas(*retrain)
    assert code == 0 and "2 job(s) queued" in out and "chae: tuned recipe, trial" in out, out
    companion = _study(url, companion_name("s"))
    (job,) = [t for t in companion.get_trials() if t.user_attrs.get(PRESET) == "chae"]
    assert job.user_attrs[TUNED] == {"study": "s/tune/chae", "trial": best.trial.number, "recipes": RECIPES}
    assert job.user_attrs[TRAINING] == best.training
    _worker(hybridnas, url, companion.study_name)

    code, out = hybridnas(*retrain)
    assert code == 0, out
    (row,) = [r for r in json_in(out) if r.get("preset") == "chae"]
    assert row["tuned"] == job.user_attrs[TUNED]
    assert row["val_top1"] == best.trial.value  # trained with the tuned recipe, to the last bit

    code, out = hybridnas("retrain", "--study", "s", "--storage", url, "--top", "1", "--epochs", "2", "--presets",
                          "chae", "--tune-presets", str(RECIPES), "--workers", "0")
    assert code == 0 and "chae (tuned)" in out and "best of 3 recipes of its own recipe search" in out, out
    code, out = hybridnas("report", "--study", "s", "--storage", url, "-o", tmp_path / "report.html")
    assert code == 0, out
    assert "chae (tuned)" in (tmp_path / "report.html").read_text()


@pytest.mark.usefixtures("study_env")
def test_tuning_is_refused_where_it_could_not_mean_anything(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    for name, space in (("plain", TINY_SPACE), ("recipes", _space_with_recipes(tmp_path))):
        code, out = hybridnas("launch", "--study", name, "--storage", url, *tiny_study_args(1, epochs=1),
                              "--space", space, "--workers", "0")
        assert code == 0, out
        _worker(hybridnas, url, name)

    def retrain(name: str, *flags: str) -> tuple[int, str]:
        return hybridnas("retrain", "--study", name, "--storage", url, "--epochs", "1", "--workers", "0", *flags)

    code, out = retrain("recipes", "--tune-presets", "2")
    assert code == 2 and "name the presets to tune with --presets" in out, out
    code, out = retrain("plain", "--presets", "chae", "--tune-presets", "2")
    assert code == 2 and "searches no training settings" in out, out
    # A search of its own under the recipe search's name is not adopted, and keeps its trials.
    code, out = hybridnas("launch", "--study", tuning_name("recipes", "chae"), "--storage", url,
                          *tiny_study_args(1, epochs=1), "--workers", "0")
    assert code == 0, out
    _worker(hybridnas, url, tuning_name("recipes", "chae"))
    before = _study(url, tuning_name("recipes", "chae")).get_trials()
    code, out = retrain("recipes", "--presets", "chae", "--tune-presets", "2")
    assert code == 2 and "is not the recipe search of chae for 'recipes'" in out, out
    assert _study(url, tuning_name("recipes", "chae")).get_trials() == before
    assert companion_name("recipes") not in [s.study_name for s in optuna.get_all_study_summaries(
        open_storage(url, heartbeat_interval=None))]

    # A retrain that would be refused for its plan is refused before any recipe search starts.
    code, out = retrain("recipes")
    assert code == 0, out
    code, out = hybridnas("retrain", "--study", "recipes", "--storage", url, "--epochs", "2", "--presets", "samc",
                          "--tune-presets", "2", "--workers", "0")
    assert code == 2 and "'recipes/retrain' exists with a different epochs" in out, out
    assert tuning_name("recipes", "samc") not in [s.study_name for s in optuna.get_all_study_summaries(
        open_storage(url, heartbeat_interval=None))]
