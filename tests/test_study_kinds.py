"""A study is a search or a retrain companion, and each command writes only into its own kind.

`launch` resumes only a search study (or adopts an empty plain Optuna study of the right shape);
`retrain NAME` writes only into `NAME/retrain` when that is NAME's companion. Every refusal is one
`error:` line with exit 2, and the refused study is left exactly as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from helpers import TINY_CONFIG, tiny_study_args
from optuna.distributions import FloatDistribution

from hybridnas.objectives.retrain import companion_name
from hybridnas.objectives.study.definition import study_kind
from hybridnas.objectives.study.records import DEFINITION_ATTR, KIND_ATTR, RETRAIN, RETRAIN_ATTR, SEARCH
from hybridnas.storage import open_storage


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nas.db'}"


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))


def _launch(hybridnas, url: str, name: str, *extra: str) -> tuple[int, str]:
    return hybridnas("launch", "--study", name, "--storage", url, *tiny_study_args(2), *extra, "--workers", "0")


def _snapshot(url: str, name: str) -> dict[str, Any]:
    """Everything a command could have written into a study."""
    storage = open_storage(url, heartbeat_interval=None)
    study_id = storage.get_study_id_from_name(name)
    return {
        "directions": storage.get_study_directions(study_id),
        "user_attrs": storage.get_study_user_attrs(study_id),
        "system_attrs": storage.get_study_system_attrs(study_id),
        "trials": [(t.number, t.state, t.params, t.values, t.user_attrs, t.system_attrs)
                   for t in storage.get_all_trials(study_id)],
    }


def _one_error_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def _add_trained_trial(study: optuna.Study) -> None:
    """A finished search trial with a recorded config, as a worker leaves it (without training)."""
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)}, value=0.5,
        user_attrs={"config": TINY_CONFIG, "params": 1000, "macs": 1000},
    ))


@pytest.fixture
def searched(hybridnas, tmp_path: Path) -> str:
    """Storage URL of a search study 'a' with one trained trial."""
    url = _url(tmp_path)
    code, out = _launch(hybridnas, url, "a")
    assert code == 0, out
    _add_trained_trial(_load(url, "a"))
    return url


def test_new_studies_record_their_kind(hybridnas, searched: str) -> None:
    code, out = hybridnas("retrain", "--study", "a", "--storage", searched, "--top", "1", "--epochs", "1",
                          "--workers", "0")
    assert code == 0, out
    assert _load(searched, "a").user_attrs[KIND_ATTR] == SEARCH
    assert _load(searched, companion_name("a")).user_attrs[KIND_ATTR] == RETRAIN


def test_retrain_refuses_a_search_study_named_as_its_companion(hybridnas, searched: str) -> None:
    code, out = _launch(hybridnas, searched, "a/retrain")
    assert code == 0, out
    before = _snapshot(searched, "a/retrain")

    code, out = hybridnas("retrain", "--study", "a", "--storage", searched, "--top", "1", "--epochs", "1",
                          "--workers", "0")
    assert code == 2, out
    line = _one_error_line(out)
    assert "'a/retrain'" in line and "search study" in line and "not the retrain companion of 'a'" in line
    assert _snapshot(searched, "a/retrain") == before


def test_launch_refuses_a_retrain_companion(hybridnas, searched: str) -> None:
    code, out = hybridnas("retrain", "--study", "a", "--storage", searched, "--top", "1", "--epochs", "1",
                          "--workers", "0")
    assert code == 0, out
    before = _snapshot(searched, "a/retrain")

    code, out = _launch(hybridnas, searched, "a/retrain")
    assert code == 2, out
    line = _one_error_line(out)
    assert "'a/retrain' is the retrain companion of study 'a'" in line
    assert _snapshot(searched, "a/retrain") == before


def test_retrain_refuses_a_companion_as_its_source(hybridnas, searched: str) -> None:
    code, out = hybridnas("retrain", "--study", "a", "--storage", searched, "--top", "1", "--epochs", "1",
                          "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("retrain", "--study", "a/retrain", "--storage", searched, "--top", "1", "--epochs", "1",
                          "--workers", "0")
    assert code == 2, out
    assert "'a/retrain' is the retrain companion of study 'a'" in _one_error_line(out)
    with pytest.raises(KeyError):
        _load(searched, "a/retrain/retrain")


def test_launch_refuses_a_plain_study_with_other_directions(hybridnas, tmp_path: Path) -> None:
    url = _url(tmp_path)
    optuna.create_study(study_name="p", storage=open_storage(url, heartbeat_interval=None),
                        directions=["maximize", "minimize"])
    before = _snapshot(url, "p")

    code, out = _launch(hybridnas, url, "p")
    assert code == 2, out
    line = _one_error_line(out)
    assert "'p' has 2 direction(s) (maximize, minimize)" in line and "needs 1" in line
    assert _snapshot(url, "p") == before


def test_launch_refuses_a_plain_study_with_trials(hybridnas, tmp_path: Path) -> None:
    url = _url(tmp_path)
    plain = optuna.create_study(study_name="p", storage=open_storage(url, heartbeat_interval=None),
                                direction="maximize")
    plain.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    before = _snapshot(url, "p")

    code, out = _launch(hybridnas, url, "p")
    assert code == 2, out
    assert "'p' is an Optuna study with 2 trial(s) and no hybridnas definition" in _one_error_line(out)
    assert _snapshot(url, "p") == before


def test_launch_adopts_an_empty_plain_study_of_its_shape(hybridnas, tmp_path: Path) -> None:
    url = _url(tmp_path)
    optuna.create_study(study_name="p", storage=open_storage(url, heartbeat_interval=None), direction="maximize")
    code, out = _launch(hybridnas, url, "p")
    assert code == 0, out
    study = _load(url, "p")
    assert study_kind(study) == SEARCH and study.user_attrs[DEFINITION_ATTR]["trials"] == 2


def test_resume_refuses_another_number_of_objectives(hybridnas, searched: str) -> None:
    before = _snapshot(searched, "a")
    code, out = _launch(hybridnas, searched, "a", "--objective", "accuracy,params", "--pruner", "none")
    assert code == 2, out
    assert "'a' exists with a different objective" in _one_error_line(out)
    assert _snapshot(searched, "a") == before


def test_old_studies_without_a_kind_are_known_by_what_they_hold(hybridnas, searched: str) -> None:
    """Studies made before the kind was recorded: a definition makes a search, a plan a companion."""
    storage = open_storage(searched, heartbeat_interval=None)
    definition = _load(searched, "a").user_attrs[DEFINITION_ATTR]
    old_search = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    old_search.set_user_attr(DEFINITION_ATTR, definition)
    _add_trained_trial(old_search)
    old_companion = optuna.create_study(study_name=companion_name("old"), storage=storage, direction="maximize")
    old_companion.set_user_attr(RETRAIN_ATTR, {"source": "old", "epochs": 1, "test": False, "train_subset": 256})
    assert (study_kind(old_search), study_kind(old_companion)) == (SEARCH, RETRAIN)

    code, out = _launch(hybridnas, searched, "old", "--trials", "3")
    assert code == 0, out
    code, out = hybridnas("retrain", "--study", "old", "--storage", searched, "--top", "1", "--epochs", "1",
                          "--workers", "0")
    assert code == 0, out
    assert len(_load(searched, companion_name("old")).get_trials()) == 1
    code, out = _launch(hybridnas, searched, companion_name("old"))
    assert code == 2, out
    assert "the retrain companion of study 'old'" in _one_error_line(out)
