"""What a sample over a MAC limit costs before it is rejected (issue 9).

A search profiles every sample (parameters and MACs) before it decides to train it. Before,
`profile` built the full model with real weights and ran it under FlopCounterMode on the CPU:
3-21 s per sample over an 8M-MAC limit on the union space. Now it counts on a weightless copy
(the meta device). Both are timed here, interleaved sample by sample, on union-space samples
over the limit. Then whole infeasible trials in a real SQLite study, which also pay for the
sampler and the storage writes: with the study sampler, which reads the study's trials once per
trial, against the same sampler reading them once per parameter, as TPE does by itself. Last,
where an infeasible trial of the study sampler spends its time, call by call (timers wrapped
around the storage's methods, TPE's sampling and `profile`; nested calls overlap).

    python bench/infeasible_cost.py --samples 40      # writes bench/results/infeasible_cost.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import optuna
import torch
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage
from torch.utils.flop_counter import FlopCounterMode

from harness import RESULTS

from hybridnas import search
from hybridnas.models import ArchConfig, build
from hybridnas.models.profile import profile
from hybridnas.objectives import objective as objective_module
from hybridnas.objectives.samplers.local_search import LocalSearchSampler
from hybridnas.objectives.objective import Objective, TrialFailed, WorkerContext
from hybridnas.objectives.study.records import TrialRecord
from hybridnas.search_space import load_space, sample_configs
from hybridnas.storage import open_storage
from hybridnas.training.data import DataSplits


def profile_with_real_weights(cfg: ArchConfig) -> tuple[int, int]:
    """What profiling did before: a real model, a real forward pass of one zero image."""
    model = build(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, cfg.input.channels, cfg.input.image_size, cfg.input.image_size))
    return params, counter.get_total_flops() // 2


def seconds(fn, *args) -> float:  # noqa: ANN001 - any callable
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def infeasible_trial_seconds(limit: int, n: int) -> dict[str, list[float]]:
    """Wall seconds of infeasible trials, all that a worker spends on one (ask, sampling, the count,
    storage writes, tell), in real SQLite studies opened as a worker opens them: with the study's
    sampler, and with the same sampler reading the study live (without `TrialSnapshotSampler`).
    The two take turns trial by trial, and sample the same configs."""
    definition = _union_definition(limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        tpe = optuna.samplers.TPESampler(seed=definition.seed, multivariate=True, group=True)
    samplers = {"study_sampler": definition.make_sampler(), "live_reads": LocalSearchSampler(tpe, seed=definition.seed)}
    rejected: dict[str, list[float]] = {arm: [] for arm in samplers}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'cost.db'}"
        runs = [(arm, *_worker_study(definition, url, arm, sampler)) for arm, sampler in samplers.items()]
        while min(len(seconds) for seconds in rejected.values()) < n:
            for arm, study, objective in runs:
                seconds, number = _one_trial(study, objective)
                if TrialRecord(study.trials[number]).is_infeasible:
                    rejected[arm].append(seconds)
    return {arm: seconds[:n] for arm, seconds in rejected.items()}


def where_the_time_goes(limit: int, n: int) -> dict[str, Any]:
    """Mean milliseconds per infeasible trial of the study sampler in each storage call, in TPE's
    sampling and in `profile`, with timers wrapped around them for this run only."""
    seconds_in: Counter[str] = Counter()
    calls: Counter[str] = Counter()

    def timed(owner: object, name: str) -> Any:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds_in[name] += time.perf_counter() - start
                calls[name] += 1
        return mock.patch.object(owner, name, wrapper)

    targets = [(RDBStorage, name) for name in ("_set_trial_param", "set_trial_user_attr", "set_trial_system_attr",
                                               "create_new_trial", "set_trial_state_values", "_get_trials")]
    targets += [(optuna.samplers.TPESampler, "sample_relative"), (optuna.samplers.TPESampler, "sample_independent"),
                (objective_module, "profile")]
    definition = _union_definition(limit)
    per_trial: list[tuple[Counter[str], Counter[str]]] = []  # (seconds, calls) of each infeasible trial
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as patches:
        study, objective = _worker_study(definition, f"sqlite:///{Path(tmp) / 'breakdown.db'}", "breakdown",
                                         definition.make_sampler())
        for owner, name in targets:
            patches.enter_context(timed(owner, name))
        while len(per_trial) < n:
            seconds_before, calls_before = seconds_in.copy(), calls.copy()
            seconds, number = _one_trial(study, objective)
            if TrialRecord(study.trials[number]).is_infeasible:
                per_trial.append((Counter(trial=seconds) + seconds_in - seconds_before,
                                  Counter(trial=1) + calls - calls_before))

    def mean(name: str, index: int) -> float:
        return statistics.mean(row[index][name] for row in per_trial)

    names = sorted({name for row in per_trial for name in row[0]}, key=lambda name: -mean(name, 0))
    return {name: {"ms_per_trial": round(1000 * mean(name, 0), 1), "calls_per_trial": round(mean(name, 1), 1)}
            for name in names}


def _union_definition(limit: int) -> search.StudyDefinition:
    return search.StudyDefinition(dataset="cifar10", space="union", trials=1, max_macs=limit, epochs=1)


def _worker_study(definition: search.StudyDefinition, url: str, name: str,
                  sampler: optuna.samplers.BaseSampler) -> tuple[optuna.Study, Objective]:
    """A study launched into `url` and opened as a worker opens it (its storage, `sampler`, the
    study's pruner), and a worker's objective on stand-in data: feasible samples are not trained
    here (the data has no images, so they fail)."""
    search.launch(definition, study=name, storage=url, workers=0)
    study = optuna.load_study(study_name=name, storage=open_storage(url), sampler=sampler,
                              pruner=definition.make_pruner())
    return study, Objective(definition, _shape_only_data(), WorkerContext("cpu", name, "cpu"))


def _one_trial(study: optuna.Study, objective: Callable[[optuna.Trial], object]) -> tuple[float, int]:
    start = time.perf_counter()
    trial = study.ask()
    try:
        objective(trial)
        state = optuna.trial.TrialState.COMPLETE
    except optuna.TrialPruned:
        state = optuna.trial.TrialState.PRUNED
    except TrialFailed:
        state = optuna.trial.TrialState.FAIL
    study.tell(trial, state=state)
    return time.perf_counter() - start, trial.number


def _shape_only_data() -> DataSplits:
    """Stand-in data: rejected samples never touch images."""
    empty = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    labels = torch.zeros(0, dtype=torch.int64)
    return DataSplits(empty, labels, empty, labels, None, None, 10, 32, 3, (0.5,) * 3, (0.25,) * 3,
                      [str(c) for c in range(10)])


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": round(1000 * statistics.median(ordered), 1),
            "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 1),
            "max_ms": round(1000 * ordered[-1], 1)}


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # feasible samples fail on the stand-in data, and the objective logs each failure
    logging.getLogger("hybridnas.objectives.objective").setLevel(logging.CRITICAL)
    torch.set_num_threads(1)
    # a worker asks and tells by itself, with heartbeats; Optuna warns that it expects optimize()
    warnings.filterwarnings("ignore", message="Heartbeat of storage")
    over = [c for c in sample_configs(load_space("union"), args.samples * 4, seed=args.seed)
            if profile(c).macs > args.max_macs][: args.samples]
    before, after = [], []
    for cfg in over:  # interleaved, so load hits both alike
        before.append(seconds(profile_with_real_weights, cfg))
        after.append(seconds(profile, cfg))
        assert profile(cfg).params == profile_with_real_weights(cfg)[0]
    trials = infeasible_trial_seconds(args.max_macs, args.samples)
    breakdown = where_the_time_goes(args.max_macs, args.samples)
    pairs = list(zip(trials["live_reads"], trials["study_sampler"]))
    result = {
        "command": f"python bench/infeasible_cost.py --samples {args.samples} --seed {args.seed}",
        "samples": len(over), "max_macs": args.max_macs,
        "macs_of_samples": {"min": min(profile(c).macs for c in over), "max": max(profile(c).macs for c in over)},
        "profile_with_real_weights": summary(before), "profile_meta_device": summary(after),
        "median_speedup": round(statistics.median(b / a for b, a in zip(before, after)), 1),
        "infeasible_trial_in_a_sqlite_study": {
            "study_sampler": summary(trials["study_sampler"]), "live_reads": summary(trials["live_reads"]),
            "median_speedup": round(statistics.median(live / snap for live, snap in pairs), 1),
            "study_sampler_by_call": breakdown,
        },
        "raw_seconds": {"before": before, "after": after, "trials": trials},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "infeasible_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "raw_seconds"}, indent=2))


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--samples", type=int, default=40)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--max-macs", type=int, default=8_000_000)

if __name__ == "__main__":
    args = parser.parse_args()
    main()
