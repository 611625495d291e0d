"""What a sample over a MAC limit costs before it is rejected (issue 9).

A search profiles every sample (parameters and MACs) before it decides to train it. Before,
`profile` built the full model with real weights and ran it under FlopCounterMode on the CPU:
3-21 s per sample over an 8M-MAC limit on the union space. Now it counts on a weightless copy
(the meta device). Both are timed here, interleaved sample by sample, on union-space samples
over the limit, together with the storage writes an infeasible trial makes in a real study.

    python bench/infeasible_cost.py --samples 40      # writes bench/results/infeasible_cost.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
from torch.utils.flop_counter import FlopCounterMode

from common import RESULTS

from hybridnas.models import ArchConfig, build
from hybridnas.models.profile import profile
from hybridnas.search_space import load_space, sample_configs


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


def infeasible_trial_seconds(limit: int, n: int) -> list[float]:
    """Wall seconds of infeasible trials in a real study (objective + storage writes), SQLite."""
    from hybridnas import search
    from hybridnas.objectives.dedup import is_infeasible

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'cost.db'}"
        definition = search.StudyDefinition(dataset="cifar10", space="union", trials=1, max_macs=limit, epochs=1)
        study = search.launch(definition, study="cost", storage=url, workers=0)
        from hybridnas.objectives.objective import Objective, TrialFailed, WorkerContext
        from hybridnas.objectives.study_definition import stored_definition

        # feasible samples are not trained here: the stand-in data has no images, so they fail
        objective = Objective(stored_definition(study), _shape_only_data(), WorkerContext("cpu", "bench", "cpu"))
        rejected = []
        while len(rejected) < n:
            trial = study.ask()
            start = time.perf_counter()
            try:
                objective(trial)
            except optuna.TrialPruned:
                elapsed = time.perf_counter() - start
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                if is_infeasible(study.trials[trial.number]):
                    rejected.append(elapsed)
                continue
            except TrialFailed:
                pass
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return rejected


def _shape_only_data():  # noqa: ANN202 - a stand-in DataSplits: rejected samples never touch images
    from hybridnas.training.data import DataSplits

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
    over = [c for c in sample_configs(load_space("union"), args.samples * 4, seed=args.seed)
            if profile(c).macs > args.max_macs][: args.samples]
    before, after = [], []
    for cfg in over:  # interleaved, so load hits both alike
        before.append(seconds(profile_with_real_weights, cfg))
        after.append(seconds(profile, cfg))
        assert profile(cfg).params == profile_with_real_weights(cfg)[0]
    trials = infeasible_trial_seconds(args.max_macs, args.samples)
    result = {
        "command": f"python bench/infeasible_cost.py --samples {args.samples} --seed {args.seed}",
        "samples": len(over), "max_macs": args.max_macs,
        "macs_of_samples": {"min": min(profile(c).macs for c in over), "max": max(profile(c).macs for c in over)},
        "profile_with_real_weights": summary(before), "profile_meta_device": summary(after),
        "median_speedup": round(statistics.median(b / a for b, a in zip(before, after)), 1),
        "infeasible_trial_in_a_sqlite_study": summary(trials),
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
