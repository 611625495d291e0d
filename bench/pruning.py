"""Hyperband against no pruning under one compute budget (issue 5, part 4).

Both arms search the same space with the same sampler seed on the same CIFAR-10 subset from
../shared/data, each as one `hybridnas worker` process with one torch thread and the same
timeout (the compute budget). The arms run one after the other; the machine is 2 cores, so
each worker gets a core of its own. Reported per arm: the best val top-1 reached, CPU-hours
used, best val top-1 per CPU-hour, trials finished, epochs trained, and the epochs pruning
saved (what the same trials would have cost trained to the end, minus what they cost).

    python bench/pruning.py --budget-s 300        # writes bench/results/pruning.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from harness import CIFAR, HYBRIDNAS, RESULTS, require_archive



def run_arm(pruner: str, workdir: Path) -> dict[str, object]:
    """Define the study, run one worker on it until the timeout, and read what it reached."""
    storage = f"sqlite:///{workdir / f'{pruner}.db'}"
    study = f"pruning-{pruner}"
    subprocess.run(
        [HYBRIDNAS, "launch", "--study", study, "--storage", storage, "--workers", "0",
         "--dataset", CIFAR, "--train-subset", str(args.train_subset),
         "--val-subset", str(args.val_subset), "--epochs", str(args.epochs), "--space", args.space,
         "--pruner", pruner, "--sampler", "tpe", "--seed", str(args.seed), "--trials", "100000",
         "--timeout", str(args.budget_s), "--max-macs", str(args.max_macs), "--optimizer", "adamw",
         "--batch-size", "64"],
        check=True, capture_output=True, text=True,
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([HYBRIDNAS, "worker", "--study", study, "--storage", storage, "--threads", "1", "--device", "cpu"],
                   check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    trained = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               and "constraint_violation" not in t.user_attrs]
    epochs_trained = sum(len(t.intermediate_values) for t in trained)
    best = max((max(t.intermediate_values.values()) for t in trained if t.intermediate_values), default=0.0)
    best_complete = max((t.value for t in trials if t.state == TrialState.COMPLETE), default=None)
    return {
        "pruner": pruner,
        "wall_s": round(wall, 1),
        "cpu_hours": round(cpu_s / 3600, 4),
        "best_val_top1_any_epoch": round(best, 4),
        "best_val_top1_complete": None if best_complete is None else round(best_complete, 4),
        "best_val_top1_per_cpu_hour": round(best / (cpu_s / 3600), 3),
        "states": {s.name: sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)},
        "trials_trained": len(trained),
        "epochs_trained": epochs_trained,
        "epochs_saved": len(trained) * args.epochs - epochs_trained,
    }


def main() -> None:
    require_archive()
    with tempfile.TemporaryDirectory() as tmp:
        arms = [run_arm(pruner, Path(tmp)) for pruner in ("hyperband", "none")]
    hb, flat = arms
    summary = {
        "command": " ".join(sys.argv),
        "settings": vars(args),
        "arms": arms,
        "ratio_best_per_cpu_hour_hyperband_over_none": round(
            hb["best_val_top1_per_cpu_hour"] / flat["best_val_top1_per_cpu_hour"], 3),
        "ratio_trials_trained_hyperband_over_none": round(hb["trials_trained"] / max(flat["trials_trained"], 1), 3),
    }
    out = RESULTS / "pruning.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print("| pruner | CPU-hours | trials trained | epochs trained | epochs saved | best val top-1 | best / CPU-hour |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for a in arms:
        print(f"| {a['pruner']} | {a['cpu_hours']:.3f} | {a['trials_trained']} | {a['epochs_trained']} | "
              f"{a['epochs_saved']} | {a['best_val_top1_any_epoch']:.4f} | {a['best_val_top1_per_cpu_hour']:.2f} |")
    print(json.dumps({k: v for k, v in summary.items() if k.startswith("ratio")}, indent=2))


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--budget-s", type=int, default=300, help="the compute budget: timeout of each arm")
parser.add_argument("--space", default="demo")
parser.add_argument("--epochs", type=int, default=6, help="max epochs per trial (Hyperband's max resource)")
parser.add_argument("--train-subset", type=int, default=2000)
parser.add_argument("--val-subset", type=int, default=500)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--max-macs", type=int, default=20_000_000, help="as the README's main job")

if __name__ == "__main__":
    args = parser.parse_args()
    main()
