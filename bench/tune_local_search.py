"""Tuning `LocalSearchSampler` on NAS-Bench-201 (issue 9): `n_shared_trials` and the move model.

Runs `search_quality`'s hybridnas arm with the study sampler built with one setting of the
knobs, or plain TPE, over a range of seeds in two processes, and prints the median (mean) best
accuracy at 25/50/100/200 evaluations and how many runs reached the optimum. `--shared all`
is the moves shown to TPE throughout; `--ridge` sets the move model's ridge penalty, and
`--ridge random` makes every move a random edit (the version before the model). Seeds 800-999
and 1400-1599 stay out of tuning: they are the fresh seeds of docs/benchmarks.md.

    python bench/tune_local_search.py --shared 30 --first-seed 1000 --seeds 200 [--out FILE]
    python bench/tune_local_search.py --shared 30 --ridge random --first-seed 1000 --seeds 200
    python bench/tune_local_search.py --tpe --first-seed 1000 --seeds 200
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import Pool
from typing import Any
from unittest import mock

import numpy as np
import optuna

import search_quality

from hybridnas.objectives.samplers import local_search

SHARE_ALL = sys.maxsize
RANDOM_EDIT = None


@contextmanager
def shared_trials(n_shared_trials: int) -> Iterator[None]:
    """`StudyDefinition.make_sampler` builds its `LocalSearchSampler` with this setting while inside."""
    tuned = functools.partial(local_search.LocalSearchSampler, n_shared_trials=n_shared_trials)
    with mock.patch.object(local_search, "LocalSearchSampler", tuned):
        yield


@contextmanager
def move_model(ridge: float | None) -> Iterator[None]:
    """Moves pick their edit with this ridge penalty while inside; with `RANDOM_EDIT` every edit
    is predicted to gain the same, so a move makes a random one."""
    if ridge is RANDOM_EDIT:
        patch = mock.patch.object(local_search, "_predicted_gains", lambda edits, *_: np.zeros(len(edits)))
    else:
        patch = mock.patch.object(local_search, "_RIDGE", ridge)
    with patch:
        yield


def run(job: tuple[int, int | None, float | None, int]) -> dict[str, Any]:
    seed, n_shared_trials, ridge, evaluations = job
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if n_shared_trials is None:
        result = search_quality.run_arm("tpe", seed, evaluations)
    else:
        with shared_trials(n_shared_trials), move_model(ridge):
            result = search_quality.run_hybridnas(seed, evaluations)
    return {"seed": seed, "best": {n: row["best"] for n, row in result["at"].items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arm = p.add_mutually_exclusive_group(required=True)
    arm.add_argument("--shared", help="n_shared_trials, or 'all' (the moves shown to TPE throughout).")
    arm.add_argument("--tpe", action="store_true", help="Plain TPE (search_quality's tpe arm).")
    p.add_argument("--ridge", default=str(local_search._RIDGE),
                   help="The move model's ridge penalty, or 'random' (random edits).")
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=200)
    p.add_argument("--evaluations", type=int, default=200)
    p.add_argument("--out", help="Write the per-seed best accuracies here (JSON).")
    args = p.parse_args()

    shared = None if args.tpe else SHARE_ALL if args.shared == "all" else int(args.shared)
    ridge = RANDOM_EDIT if args.ridge == "random" else float(args.ridge)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with Pool(2) as pool:
        runs = pool.map(run, [(seed, shared, ridge, args.evaluations) for seed in seeds])
    optimum = search_quality.optimum()
    summary = {}
    for n in search_quality.checkpoints_up_to(args.evaluations):
        best = [r["best"][str(n)] for r in runs]
        summary[n] = {"median": statistics.median(best), "mean": statistics.mean(best),
                      "at_optimum": sum(b >= optimum for b in best)}
    name = "tpe" if args.tpe else f"n_shared_trials={args.shared}, ridge={args.ridge}"
    print(f"{name}, seeds {seeds.start}-{seeds.stop - 1}: " + " | ".join(
        f"{n}: {s['median']:.3f} ({s['mean']:.3f}), {s['at_optimum']} at the optimum" for n, s in summary.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"arm": name, "seeds": [seeds.start, seeds.stop - 1], "summary": summary, "runs": runs}, f)


if __name__ == "__main__":
    main()
