"""LocalSearchSampler: the one-parameter moves from the best trial that the study's TPE shares its
trials with. Small define-by-run spaces with a known objective, so every move can be checked
against the trials before it."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from hybridnas.objectives.samplers.local_search import LocalSearchSampler
from hybridnas.objectives.study.definition import StudyDefinition
from hybridnas.objectives.study.records import LOCAL_SEARCH_ATTR

OPS = ["none", "skip", "conv1x1", "conv3x3"]


def cell(trial: optuna.Trial) -> float:
    """Four edges of four ops; the score counts the conv3x3 edges, then the conv1x1 ones."""
    ops = [trial.suggest_categorical(f"edge{i}", OPS) for i in range(4)]
    return sum(OPS.index(op) for op in ops)


def lr_only(trial: optuna.Trial) -> float:
    """Best at lr 1e-3."""
    return -abs(math.log10(trial.suggest_float("lr", 1e-5, 1e-1, log=True)) + 3)


def moves_only(seed: int = 0, **kwargs: object) -> LocalSearchSampler:
    return LocalSearchSampler(optuna.samplers.RandomSampler(seed=seed), local_ratio=1.0, n_startup_trials=5,
                              seed=seed, **kwargs)


def moves(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.trials if LOCAL_SEARCH_ATTR in t.system_attrs]


def untried_neighbours(base: FrozenTrial, earlier: list[FrozenTrial]) -> list[dict[str, str]]:
    tried = [t.params for t in earlier]
    neighbours = [{**base.params, name: op} for name in base.params for op in OPS if op != base.params[name]]
    return [n for n in neighbours if n not in tried]


def test_a_move_changes_one_parameter_of_the_best_trial_to_an_untried_combination() -> None:
    study = optuna.create_study(direction="maximize", sampler=moves_only())
    study.optimize(cell, n_trials=40)

    trials = study.trials
    assert [t.number for t in moves(study)] == list(range(5, 40))
    for trial in trials[5:]:
        earlier = trials[:trial.number]
        move = trial.system_attrs[LOCAL_SEARCH_ATTR]
        base = trials[move["base"]]
        assert base.value == max(t.value for t in earlier if untried_neighbours(t, earlier))
        assert {k for k in trial.params if trial.params[k] != base.params[k]} == {move["param"]}
        assert trial.params in untried_neighbours(base, earlier)
    assert study.best_value == 12


def test_when_the_best_trial_has_no_untried_neighbour_a_move_starts_from_the_next_best() -> None:
    study = optuna.create_study(direction="maximize", sampler=moves_only())
    best = {f"edge{i}": "conv3x3" for i in range(4)}
    study.enqueue_trial(best)
    for neighbour in [{**best, f"edge{i}": op} for i in range(4) for op in OPS if op != "conv3x3"]:
        study.enqueue_trial(neighbour)
    study.optimize(cell, n_trials=14)

    move = study.trials[-1].system_attrs[LOCAL_SEARCH_ATTR]
    assert study.trials[move["base"]].value == 11


START_UP = [
    {f"edge{i}": "none" for i in range(4)},
    {"edge0": "conv3x3", "edge1": "none", "edge2": "none", "edge3": "none"},
    {"edge0": "none", "edge1": "conv1x1", "edge2": "none", "edge3": "none"},
    {"edge0": "none", "edge1": "none", "edge2": "skip", "edge3": "none"},
    {f"edge{i}": "skip" for i in range(4)},
]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize("seed", range(5))
def test_a_move_makes_the_edit_the_finished_trials_predict_best(direction: str, seed: int) -> None:
    """From the best start-up cell (all skip), the one trial that put conv3x3 on edge0 scored 3
    above the all-none cell: the move puts conv3x3 on edge0, of the twelve edits it could make
    (a random edit would be that one on all five seeds with probability 12**-5)."""
    sign = 1 if direction == "maximize" else -1
    study = optuna.create_study(direction=direction, sampler=moves_only(seed=seed))
    for params in START_UP:
        study.enqueue_trial(params)
    study.optimize(lambda trial: sign * cell(trial), n_trials=6)

    move = study.trials[5]
    assert move.system_attrs[LOCAL_SEARCH_ATTR] == {"base": 4, "param": "edge0"}
    assert move.params == {**START_UP[4], "edge0": "conv3x3"}


EDGES = {f"edge{i}": CategoricalDistribution(OPS) for i in range(4)}
NONE = {f"edge{i}": "none" for i in range(4)}


def score(params: dict[str, str]) -> int:
    return sum(OPS.index(op) for op in params.values())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("learn_from_pruned, edit", [(False, ("edge1", "conv1x1")), (True, ("edge0", "conv3x3"))])
def test_with_learn_from_pruned_the_move_model_reads_pruned_trials_at_their_rung(
        seed: int, learn_from_pruned: bool, edit: tuple[str, str]) -> None:
    """Three COMPLETE cells (all none, all skip, conv1x1 on edge1) and three pruned after epoch 1
    with values 5 below their cell's score (conv3x3 on edge0 the best of them). From the best
    cell (all skip), COMPLETE trials alone point at conv1x1 on edge1; with the pruned ones read
    at their rung (its column takes up the 5 points that epoch 1 is below the end), at conv3x3
    on edge0."""
    study = optuna.create_study(direction="maximize", sampler=moves_only(seed=seed, learn_from_pruned=learn_from_pruned))
    add_complete_and_pruned_cells(study)
    study.optimize(cell, n_trials=1)

    move = study.trials[-1]
    assert move.system_attrs[LOCAL_SEARCH_ATTR] == {"base": 1, "param": edit[0]}
    assert move.params == {**START_UP[4], edit[0]: edit[1]}


def add_complete_and_pruned_cells(study: optuna.Study) -> None:
    for params in (NONE, START_UP[4], {**NONE, "edge1": "conv1x1"}):
        study.add_trial(create_trial(params=params, distributions=EDGES, value=score(params),
                                     intermediate_values={1: score(params) - 5, 6: score(params)}))
    for params in ({**NONE, "edge0": "conv3x3"}, {**NONE, "edge2": "skip"}, {**NONE, "edge3": "skip"}):
        study.add_trial(create_trial(state=TrialState.PRUNED, params=params, distributions=EDGES,
                                     intermediate_values={1: score(params) - 5}))


def test_the_study_field_moves_learn_from_pruned_reaches_the_moves() -> None:
    """The study sampler makes a move in about half its trials: on every seed whose first trial
    after the six cells is a move, it is the edit the pruned cells point at."""
    definition = StudyDefinition(dataset="cifar10", pruner="none", moves_learn_from_pruned=True)
    first_moves = []
    for seed in range(12):
        study = optuna.create_study(direction="maximize", sampler=definition.make_sampler(seed_offset=seed))
        add_complete_and_pruned_cells(study)
        study.optimize(cell, n_trials=1)
        first_moves += [t.params for t in moves(study)]

    assert len(first_moves) >= 3
    assert first_moves == [{**START_UP[4], "edge0": "conv3x3"}] * len(first_moves)
    assert "learning from pruned trials too" in definition.describe()[1]


class RecordingSampler(optuna.samplers.RandomSampler):
    """Random sampling that records, per trial, which trials the study it is handed shows."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.shown: dict[int, tuple[set[int], set[int]]] = {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        self.shown[trial.number] = ({t.number for t in study._get_trials(deepcopy=False)},
                                    {t.number for t in study.get_trials(deepcopy=False)})
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_after_the_shared_trials_the_wrapped_sampler_models_only_trials_that_are_not_moves() -> None:
    recording = RecordingSampler()
    sampler = LocalSearchSampler(recording, local_ratio=0.5, n_startup_trials=5, n_shared_trials=15, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(cell, n_trials=40)

    move_numbers = {t.number for t in moves(study)}
    sampled_by_wrapped = sorted(recording.shown)
    assert sampled_by_wrapped == [n for n in range(40) if n not in move_numbers]
    assert any(n < 15 for n in move_numbers) and any(n >= 15 for n in sampled_by_wrapped)
    for number in sampled_by_wrapped:
        expected = set(range(number + 1))
        if number >= 15:
            expected -= move_numbers
        assert recording.shown[number] == (expected, expected), f"trial {number}"


def test_moves_climb_where_random_sampling_does_not() -> None:
    """Local search reaches the optimum of the 256-cell space in 40 trials from five random
    start-up cells; random sampling alone, from the same seed, does not."""
    local = optuna.create_study(direction="maximize", sampler=moves_only(seed=3))
    local.optimize(cell, n_trials=40)
    plain = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    plain.optimize(cell, n_trials=40)

    assert local.best_value == 12
    assert plain.best_value < 12


def test_without_untried_neighbours_the_base_sampler_samples() -> None:
    def two_edges(trial: optuna.Trial) -> float:
        return sum(OPS[:2].index(trial.suggest_categorical(f"edge{i}", OPS[:2])) for i in range(2))

    study = optuna.create_study(direction="maximize", sampler=moves_only())
    study.optimize(two_edges, n_trials=20)

    seen_all = next(t.number for t in study.trials if len({tuple(u.params.values()) for u in study.trials[:t.number + 1]}) == 4)
    assert all(t.number <= seen_all for t in moves(study))
    assert len(study.trials) == 20


def test_parameters_a_move_brings_in_come_from_the_base_sampler() -> None:
    """Changing the layer count adds layers the best trial never had: the base sampler draws
    their ops; the layers it had keep theirs."""

    def layers(trial: optuna.Trial) -> float:
        depth = trial.suggest_int("depth", 1, 4)
        ops = [trial.suggest_categorical(f"layer{i}", OPS) for i in range(depth)]
        return sum(OPS.index(op) for op in ops) - 0.5 * depth

    study = optuna.create_study(direction="maximize", sampler=moves_only(seed=1))
    study.enqueue_trial({"depth": 1, "layer0": "conv3x3"})
    for op in OPS[:-1]:
        study.enqueue_trial({"depth": 2, "layer0": op, "layer1": op})
    study.optimize(layers, n_trials=20)

    deeper = [t for t in moves(study) if t.system_attrs[LOCAL_SEARCH_ATTR]["param"] == "depth"
              and t.params["depth"] > study.trials[t.system_attrs[LOCAL_SEARCH_ATTR]["base"]].params["depth"]]
    assert deeper, "no move added a layer"
    for trial in deeper:
        base = study.trials[trial.system_attrs[LOCAL_SEARCH_ATTR]["base"]]
        kept = {k: v for k, v in trial.params.items() if k in base.params and k != "depth"}
        assert kept == {k: v for k, v in base.params.items() if k != "depth"}
        assert set(trial.params) - set(base.params) == {f"layer{i}" for i in range(base.params["depth"],
                                                                                     trial.params["depth"])}


def test_an_edit_that_brings_in_parameters_is_made_once_from_each_base() -> None:
    """Kind `b` brings in an `extra` op. From the four kind-`a` cells, once each op has been tried,
    the only edit left is kind `b`: it is made once from each, not again with every new sample of
    `extra` (such trials differ from all before them in a parameter the base never had)."""

    def conditional(trial: optuna.Trial) -> float:
        op = OPS.index(trial.suggest_categorical("op", OPS))
        if trial.suggest_categorical("kind", ["a", "b"]) == "b":
            trial.suggest_categorical("extra", OPS)
            return op - 10
        return op

    sampler = LocalSearchSampler(optuna.samplers.RandomSampler(seed=0), local_ratio=1.0, n_startup_trials=4, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for op in OPS:
        study.enqueue_trial({"op": op, "kind": "a"})
    study.optimize(conditional, n_trials=8)

    to_b = [t.system_attrs[LOCAL_SEARCH_ATTR] for t in study.trials[4:]]
    assert all(move["param"] == "kind" for move in to_b)
    assert sorted(move["base"] for move in to_b[:4]) == [0, 1, 2, 3]


def cell_and_lr(trial: optuna.Trial) -> float:
    return cell(trial) + lr_only(trial)


def test_a_move_keeps_the_base_trials_continuous_parameters() -> None:
    study = optuna.create_study(direction="maximize", sampler=moves_only())
    study.optimize(cell_and_lr, n_trials=30)

    trials = study.trials
    assert len(moves(study)) == 25
    for trial in moves(study):
        move = trial.system_attrs[LOCAL_SEARCH_ATTR]
        assert move["param"].startswith("edge")
        assert trial.params["lr"] == trials[move["base"]].params["lr"]


def test_a_space_of_continuous_parameters_only_gets_no_moves() -> None:
    study = optuna.create_study(direction="maximize", sampler=moves_only())
    study.optimize(lr_only, n_trials=20)

    assert moves(study) == []
    assert len({t.params["lr"] for t in study.trials}) == 20


def test_enqueued_trials_keep_their_parameters() -> None:
    study = optuna.create_study(direction="maximize", sampler=moves_only())
    study.optimize(cell, n_trials=10)
    study.enqueue_trial({f"edge{i}": "none" for i in range(4)})
    study.optimize(cell, n_trials=1)

    last = study.trials[-1]
    assert last.params == {f"edge{i}": "none" for i in range(4)}
    assert LOCAL_SEARCH_ATTR not in last.system_attrs


def test_with_two_objectives_moves_start_from_the_pareto_front() -> None:
    def accuracy_and_size(trial: optuna.Trial) -> tuple[float, float]:
        return cell(trial), sum(trial.params[f"edge{i}"] != "none" for i in range(4))

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=moves_only())
    study.optimize(accuracy_and_size, n_trials=30)

    for trial in moves(study):
        base = study.trials[trial.system_attrs[LOCAL_SEARCH_ATTR]["base"]]
        earlier = study.trials[:trial.number]
        assert not any(t.values[0] >= base.values[0] and t.values[1] <= base.values[1] and t.values != base.values
                       for t in earlier), f"trial {base.number} is dominated"


def test_moves_run_under_hyperband() -> None:
    """Hyperband hands samplers a view of the study limited to a bracket; moves work on it."""

    def epochs(trial: optuna.Trial) -> float:
        score = cell(trial)
        for step in range(1, 4):
            trial.report(score * step / 3, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return score

    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3, reduction_factor=3)
    study = optuna.create_study(direction="maximize", sampler=moves_only(), pruner=pruner)
    study.optimize(epochs, n_trials=30)

    assert moves(study)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def test_the_same_seed_samples_the_same_trials() -> None:
    def run() -> list[dict[str, str]]:
        sampler = StudyDefinition(dataset="cifar10", seed=7, pruner="none").make_sampler()
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(cell, n_trials=30)
        return [t.params for t in study.trials]

    assert run() == run()


@pytest.mark.parametrize(("name", "makes_moves"), [("tpe", True), ("random", False)])
def test_the_study_sampler_adds_local_search_to_tpe_only(name: str, makes_moves: bool) -> None:
    sampler = StudyDefinition(dataset="cifar10", sampler=name, seed=0, pruner="none").make_sampler()
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(cell, n_trials=30)

    assert bool(moves(study)) is makes_moves


def test_local_search_zero_leaves_tpe_alone() -> None:
    definition = StudyDefinition(dataset="cifar10", seed=0, pruner="none", local_search=0)
    study = optuna.create_study(direction="maximize", sampler=definition.make_sampler())
    study.optimize(cell, n_trials=30)

    assert moves(study) == []
    assert "local-search" not in definition.describe()[1]


def test_a_study_sampler_spends_about_half_its_trials_on_moves() -> None:
    counted = []
    for seed in range(3):
        sampler = StudyDefinition(dataset="cifar10", seed=seed, pruner="none").make_sampler()
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(cell_and_lr, n_trials=110)
        counted += moves(study)

    # 315 trials after the five start-up trials, each a move with probability 1/2: 157.5,
    # standard deviation 8.9.
    assert 130 <= len(counted) <= 185
    assert min(t.number for t in counted) >= 5
