"""One grammar for a space file (search_space/grammar.py): a list is a choice in `knobs:` and
`training:`, `{choices: [...]}` a choice anywhere, `{low, high, step, log}` a range, a scalar a
fixed value; the old `{int: ...}`, `{float: ...}`, `{choice: ...}` spelling loads to the same
Optuna distributions, and studies stored with it resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from helpers import CIFAR, REPO, TEST_WORKER
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hybridnas.common import ConfigError, load_document
from hybridnas.search_space import BUILTIN_SPACES, SearchSpace, format_space, load_space, space_from_document
from hybridnas.storage import open_storage

# The commit before the one grammar: its built-in spaces are in the old spelling.
# The built-in spaces as they were written before the one grammar (commit 4d0490e).
OLD_SPELLING_DIR = REPO / "tests" / "data" / "old-spelling"

OLD_SPACE = """
kind: template
name: two-stages
template:
  stages:
    - block: conv
      channels: {choice: [8, 16], name: c1}
      kernel_sizes: {choice: [[3], [5]]}
      pool: {kind: max, size: 2}
    - block: conv
      channels: {int: [8, 16], step: 8}
      dropout: {float: [0, 0.5], step: 0.25}
      pool: {kind: max, size: 2}
  head: {kind: avgpool}
training:
  optimizer: {choice: [sgd, adamw]}
  lr: {float: [0.001, 0.1], log: true}
  label_smoothing: 0.1
"""
NEW_SPACE = """
kind: template
name: two-stages
template:
  stages:
    - block: conv
      channels: {choices: [8, 16], name: c1}
      kernel_sizes: {choices: [[3], [5]]}
      pool: {kind: max, size: 2}
    - block: conv
      channels: {low: 8, high: 16, step: 8}
      dropout: {low: 0.0, high: 0.5, step: 0.25}
      pool: {kind: max, size: 2}
  head: {kind: avgpool}
training:
  optimizer: [sgd, adamw]
  lr: {low: 0.001, high: 0.1, log: true}
  label_smoothing: 0.1
"""
EXPECTED = {
    "c1": CategoricalDistribution((8, 16)),
    "stages.0.kernel_sizes": CategoricalDistribution(("[3]", "[5]")),
    "stages.1.channels": IntDistribution(8, 16, step=8),
    "stages.1.dropout": FloatDistribution(0.0, 0.5, step=0.25),
    "training.optimizer": CategoricalDistribution(("sgd", "adamw")),
    "training.lr": FloatDistribution(0.001, 0.1, log=True),
}


def _space(text: str) -> SearchSpace:
    return space_from_document(yaml.safe_load(text))


def _sampled(space: SearchSpace, n: int = 30) -> list[tuple[dict[str, BaseDistribution], dict[str, Any]]]:
    """(distributions, params) of n trials that RandomSampler(seed 0) draws from the space."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(n):
        trial = study.ask()
        space.suggest(trial, num_classes=10, image_size=32)
        space.suggest_training(trial)
        drawn.append((trial.distributions, trial.params))
        study.tell(trial, 0.0)
    return drawn


def test_both_spellings_give_the_same_optuna_distributions() -> None:
    old, new = _space(OLD_SPACE), _space(NEW_SPACE)
    assert old.document == new.document
    assert _sampled(old) == _sampled(new)
    distributions, _ = _sampled(new, 1)[0]
    assert distributions == EXPECTED


def test_a_list_means_a_choice_in_knobs_and_in_training() -> None:
    union = ("kind: union\nname: u\nknobs:\n  stems: {stems}\n  stages: {{low: 1, high: 1}}\n"
             "training:\n  optimizer: {optimizer}\n")
    for stems, optimizer in (("[none, conv]", "[sgd, adamw]"), ("{choices: [none, conv]}", "{choices: [sgd, adamw]}"),
                             ("{choice: [none, conv]}", "{choice: [sgd, adamw]}")):
        distributions, _ = _sampled(_space(union.format(stems=stems, optimizer=optimizer)), 1)[0]
        assert distributions["stem"] == CategoricalDistribution(("none", "conv"))
        assert distributions["training.optimizer"] == CategoricalDistribution(("sgd", "adamw"))


@pytest.mark.parametrize(
    ("field", "entry", "expected"),
    [
        ("cutout", "{low: 1, high: 4}", IntDistribution(1, 4)),
        ("cutout", "{low: 2, high: 64, log: true}", IntDistribution(2, 64, log=True)),
        ("cutout", "{int: [1, 4], step: 3}", IntDistribution(1, 4, step=3)),
        ("rotation", "{low: 1.0, high: 4}", FloatDistribution(1.0, 4.0)),
        ("rotation", "{low: 0, high: 1, step: 0.25}", FloatDistribution(0.0, 1.0, step=0.25)),
        ("rotation", "{float: [1, 4]}", FloatDistribution(1.0, 4.0)),
    ],
)
def test_a_range_is_int_when_its_bounds_and_step_are_written_as_integers(
    field: str, entry: str, expected: BaseDistribution
) -> None:
    space = _space(f"kind: union\nname: u\nknobs: {{stages: {{low: 1, high: 1}}}}\ntraining:\n  {field}: {entry}\n")
    distributions, _ = _sampled(space, 1)[0]
    assert distributions[f"training.{field}"] == expected


def test_one_value_of_a_knob_is_a_one_option_choice_or_a_one_point_range() -> None:
    one = _space("kind: union\nname: u\nknobs: {stems: conv, stages: 2, pool_sizes: 2}\n")
    listed = _space("kind: union\nname: u\nknobs: {stems: [conv], stages: {low: 2, high: 2}, pool_sizes: [2]}\n")
    assert _sampled(one) == _sampled(listed)
    distributions, _ = _sampled(one, 1)[0]
    assert distributions["stem"] == CategoricalDistribution(("conv",))
    assert distributions["n_stages"] == IntDistribution(2, 2)


@pytest.mark.parametrize("name", BUILTIN_SPACES)
def test_each_builtin_space_keeps_the_distributions_of_its_old_spelling(name: str) -> None:
    old = space_from_document(load_document((OLD_SPELLING_DIR / f"{name}.yaml").read_bytes(), name))
    new = load_space(name)
    assert old.document == new.document
    assert _sampled(old) == _sampled(new)


@pytest.mark.parametrize("name", BUILTIN_SPACES)
def test_a_printed_space_loads_to_the_same_space(name: str, tmp_path: Path) -> None:
    printed = tmp_path / "printed.yaml"
    printed.write_text(format_space(load_space(name)))
    assert load_space(printed).document == load_space(name).document


def test_print_space_rewrites_the_old_spelling(hybridnas, tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(OLD_SPACE)
    code, out = hybridnas("sample", "--space", old, "--print-space")
    assert code == 0, out
    assert "optimizer: [sgd, adamw]" in out and "lr: {low: 0.001, high: 0.1, log: true}" in out
    assert "channels: {low: 8, high: 16, step: 8}" in out and "kernel_sizes: {choices: [[3], [5]]}" in out
    assert not any(f"{{{key}:" in out for key in ("choice", "int", "float")), out
    assert yaml.safe_load(out) == _space(NEW_SPACE).document


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("kind: union\nname: u\ntraining:\n  lr: {min: 0.1, max: 0.2}\n", "training.lr: {min, max} is neither"),
        ("kind: union\nname: u\ntraining:\n  lr: {low: 0.1, high: 0.2, scale: log}\n", "training.lr: a range takes"),
        ("kind: union\nname: u\ntraining:\n  optimizer: {choices: []}\n", "training.optimizer: a choice needs"),
        ("kind: union\nname: u\nknobs:\n  stages: {low: 1}\n", "knobs.stages: {low} is neither"),
        ("kind: union\nname: u\nknobs:\n  aux_dropout: [0.5, 0.7]\n", "knobs.aux_dropout: takes a value"),
        ("kind: union\nname: u\ntraining:\n  lr: {low: x, high: 0.2}\n", "training.lr: a range needs numbers"),
        ("kind: template\nname: t\ntemplate:\n  stages:\n    - {block: conv, channels: {low: 8, hi: 16}}\n",
         "template.stages.0.channels: {low, hi} is neither"),
        ("kind: template\nname: t\ntemplate:\n  stages:\n    - {block: conv, channels: {int: [8.5, 16]}}\n",
         "template.stages.0.channels: int needs [low, high] of ints"),
    ],
)
def test_a_malformed_entry_error_names_it_and_shows_the_accepted_forms(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as raised:
        space_from_document(yaml.safe_load(text), source="s.yaml")
    message = str(raised.value)
    assert message.startswith(f"s.yaml: {where}") and "\n" not in message, message
    assert "accepted forms" in message and "(a range)" in message and "(a choice)" in message, message


def test_a_range_knob_refuses_a_choice_and_a_choice_knob_a_range() -> None:
    with pytest.raises(ConfigError, match=r"knobs\.stages: takes a range \{low: L, high: H, step: S\} or a value"):
        _space("kind: union\nname: u\nknobs: {stages: [1, 2]}\n")
    with pytest.raises(ConfigError, match=r"knobs\.widths: takes a choice \[a, b, \.\.\.\] or a value, not a range"):
        _space("kind: union\nname: u\nknobs: {widths: {low: 8, high: 16}}\n")


@pytest.mark.integration  # a resumed study and a worker training its trials
@pytest.mark.usefixtures("study_env")
def test_a_study_stored_with_the_old_spelling_resumes_and_samples_the_same_distributions(
    hybridnas, tmp_path: Path
) -> None:
    from hybridnas.objectives.study.definition import validate_definition
    from hybridnas.objectives.study.records import DEFINITION_ATTR, KIND_ATTR, SEARCH

    new_file, old_file = tmp_path / "new.yaml", tmp_path / "old.yaml"
    new_file.write_text(NEW_SPACE)
    old_file.write_text(OLD_SPACE)
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    # What `launch` stored before the one grammar: the definition with the space document as written.
    stored = validate_definition({"dataset": CIFAR, "space": str(new_file), "train_subset": 256, "val_subset": 128,
                                  "epochs": 1, "trials": 2, "seed": 0}).to_document()
    stored["space"] = yaml.safe_load(OLD_SPACE)
    storage = open_storage(url, heartbeat_interval=None)
    study = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    study.set_user_attr(DEFINITION_ATTR, stored)
    study.set_user_attr(KIND_ATTR, SEARCH)

    for space in (new_file, old_file):
        code, out = hybridnas("launch", "--study", "old", "--storage", url, "--space", space, "--workers", "0")
        assert code == 0, out
    changed = tmp_path / "changed.yaml"
    changed.write_text(NEW_SPACE.replace("high: 0.1, log", "high: 0.2, log"))
    code, out = hybridnas("launch", "--study", "old", "--storage", url, "--space", changed, "--workers", "0")
    assert code == 2 and "exists with a different space" in out, out

    code, out = hybridnas("worker", "--study", "old", "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out
    trials = optuna.load_study(study_name="old", storage=open_storage(url, heartbeat_interval=None)).get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials), trials
    for t in trials:
        assert t.distributions == EXPECTED
        assert t.user_attrs["training"]["optimizer"] == t.params["training.optimizer"]
        assert t.user_attrs["config"]["stages"][0]["channels"] == t.params["c1"]
