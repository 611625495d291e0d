"""Orchestration benchmark (issue 5): what Optuna + PostgreSQL cost per trial, apart from training.

The objective sleeps SLEEP_S (the stand-in for training) after suggesting three parameters, so
everything else a trial costs -- sampling, suggest calls, storage round trips, heartbeats -- is
orchestration. Three measurements, all against a real database (default: the local PostgreSQL):

(i)   scaling: 1, 2, 4, 8 worker processes (spawned once, reused) run `study.optimize` on one
      shared study for a fixed time, with RandomSampler and the default TPESampler, directly on
      PostgreSQL and through `hybridnas storage-proxy`; throughput, utilisation (fraction of
      worker wall time spent in the objective's sleep), scaling efficiency
      throughput(N) / (N x throughput(1)), worker CPU per trial and how busy the machine was;
(ii)  growth: one study is filled to 100, 1k, 5k and 10k trials (batch-inserted random trials);
      at each size, ask+tell latency (and the client's CPU time) and the per-trial overhead of
      `study.optimize` (wall time per trial minus the sleep), with and without heartbeats, plus
      TPE's own cost per trial at that size;
(iii) the same through the gRPC proxy, side by side with (ii) in the same run.

    python bench/orchestration.py [--quick] [--storage URL] [--out bench/results/orchestration.json]

Every benchmark study is deleted at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import timeit
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from sqlalchemy import orm
from optuna.distributions import FloatDistribution, IntDistribution, distribution_to_json
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from rich import box
from rich.console import Console
from rich.table import Table

from hybridnas.storage import StorageError, open_storage

SLEEP_S = 0.05
WORKER_COUNTS = (1, 2, 4, 8)
SAMPLERS = ("random", "tpe")
TPE_K = 5  # TPE trials timed per study size (each costs up to seconds at 10k trials)
DISTRIBUTIONS = {
    "x": FloatDistribution(-5.0, 5.0),
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "width": IntDistribution(8, 512, step=8),
}
HYBRIDNAS = Path(sys.executable).with_name("hybridnas")
PROXY_STARTUP_LIMIT_S = 180
console = Console(width=160)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """RandomSampler (constant cost) or Optuna 5's default TPESampler (cost grows with trials)."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def suggest(trial: optuna.Trial) -> float:
    """The three parameters every benchmark trial asks for, and a value TPE can model."""
    x = trial.suggest_float("x", -5.0, 5.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    width = trial.suggest_int("width", 8, 512, step=8)
    return (x - 1.0) ** 2 + abs(np.log10(lr) + 3.0) + width / 512


def sleeping_objective(slept: list[float]) -> Callable[[optuna.Trial], float]:
    """An objective that stands in for training by sleeping; records each sleep it really took."""

    def objective(trial: optuna.Trial) -> float:
        value = suggest(trial)
        start = time.monotonic()
        time.sleep(SLEEP_S)
        slept.append(time.monotonic() - start)
        return value

    return objective


def _proc_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their reaped children (exited DB backends)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    """The database server's processes, when it runs on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class ServerCpu:
    """CPU seconds spent by PostgreSQL and the proxy process between two readings."""

    def __init__(self, proxy_pid: int) -> None:
        self.proxy_pid = proxy_pid
        self.before = self._read()

    def _read(self) -> tuple[float, float]:
        return _proc_cpu_s(_postgres_pids()), _proc_cpu_s([self.proxy_pid])

    def delta(self) -> tuple[float, float]:
        """(postgres, proxy) CPU seconds since the last call."""
        now = self._read()
        out = (now[0] - self.before[0], now[1] - self.before[1])
        self.before = now
        return out


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, to show how saturated it was during a run."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _worker_loop(tasks: Any, results: Any) -> None:
    """A long-lived worker process, as hybridnas workers are: it keeps its storage (and connection
    pool) across studies, and runs `study.optimize` for each task from `start_at` for `duration_s`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storages: dict[str, Any] = {}
    results.put("ready")
    while (task := tasks.get()) is not None:
        url, study_name, sampler, seed, duration_s, start_at = task
        storage = storages.setdefault(url, open_storage(url))
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=make_sampler(sampler, seed))
        slept: list[float] = []
        time.sleep(max(start_at - time.time(), 0.0))
        start, cpu = time.time(), time.process_time()
        study.optimize(sleeping_objective(slept), timeout=duration_s)
        results.put({"start": start, "end": time.time(), "trials": len(slept), "busy_s": sum(slept),
                     "cpu_s": time.process_time() - cpu})


class WorkerPool:
    """`size` spawned worker processes (no forked SQLAlchemy pools or gRPC channels), started once
    so that interpreter start-up and imports stay out of the measured runs."""

    LEAD_S = 2.0

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.tasks = [ctx.Queue() for _ in range(size)]
        self.procs = [ctx.Process(target=_worker_loop, args=(q, self.results), daemon=True) for q in self.tasks]
        for proc in self.procs:
            proc.start()
        for _ in self.procs:
            self.results.get(timeout=300)

    def run(self, url: str, db_url: str, sampler: str, n_workers: int, duration_s: float, prefix: str,
            servers: ServerCpu) -> dict[str, Any]:
        """N workers on a fresh shared study, all starting at the same moment; counts come from the database."""
        name = f"{prefix}-scale-{sampler}-{n_workers}-{uuid.uuid4().hex[:6]}"
        optuna.create_study(study_name=name, storage=open_storage(db_url, heartbeat_interval=None))
        start_at = time.time() + self.LEAD_S
        for seed in range(n_workers):
            self.tasks[seed].put((url, name, sampler, seed, duration_s, start_at))
        cpu_before = _cpu_times()
        servers.delta()
        reports = [self.results.get(timeout=duration_s + 300) for _ in range(n_workers)]
        db_cpu, proxy_cpu = servers.delta()
        busy_jiffies, total_jiffies = (after - before for after, before in zip(_cpu_times(), cpu_before))
        start = min(r["start"] for r in reports)
        wall = max(r["end"] for r in reports) - start
        study = optuna.load_study(study_name=name, storage=open_storage(db_url, heartbeat_interval=None))
        complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        busy = sum(r["busy_s"] for r in reports)
        return {
            "study": name, "sampler": sampler, "workers": n_workers, "wall_s": round(wall, 3),
            "start_spread_s": round(max(r["start"] for r in reports) - start, 3),
            "trials": complete, "trials_per_s": round(complete / wall, 3),
            "utilisation": round(busy / (n_workers * wall), 4),
            "overhead_ms_per_trial": round((n_workers * wall - busy) / max(complete, 1) * 1000, 2),
            "worker_cpu_ms_per_trial": round(sum(r["cpu_s"] for r in reports) / max(complete, 1) * 1000, 2),
            "db_cpu_ms_per_trial": round(db_cpu / max(complete, 1) * 1000, 2),
            "proxy_cpu_ms_per_trial": round(proxy_cpu / max(complete, 1) * 1000, 2),
            "machine_cpu_busy": round(busy_jiffies / total_jiffies, 3),
        }

    def close(self) -> None:
        for queue in self.tasks:
            queue.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


def add_efficiency(rows: list[dict[str, Any]]) -> None:
    """scaling efficiency = throughput(N) / (N x throughput(1)), per sampler and path."""
    base = {(r["path"], r["sampler"]): r["trials_per_s"] for r in rows if r["workers"] == 1}
    for row in rows:
        row["efficiency"] = round(row["trials_per_s"] / (row["workers"] * base[row["path"], row["sampler"]]), 3)


def fill(storage: RDBStorage, study_id: int, target: int, rng: np.random.Generator) -> float:
    """Fast path to a big study: insert COMPLETE random trials until the study holds `target`.

    One transaction through Optuna's own ORM models (what `Study.add_trials` writes, one trial
    per transaction there); only this set-up uses them, every measured path is public API.
    Returns the seconds taken.
    """
    start = time.monotonic()
    now = datetime.now()
    with orm.Session(storage.engine) as session, session.begin():
        count = session.query(models.TrialModel).filter(models.TrialModel.study_id == study_id).count()
        for number in range(count, target):
            params = {"x": float(rng.uniform(-5.0, 5.0)), "lr": float(10 ** rng.uniform(-5.0, -1.0)),
                      "width": int(rng.integers(1, 65)) * 8}
            value = (params["x"] - 1.0) ** 2 + abs(np.log10(params["lr"]) + 3.0) + params["width"] / 512
            trial = models.TrialModel(number=number, study_id=study_id, state=TrialState.COMPLETE)
            trial.datetime_start = trial.datetime_complete = now
            trial.params = [
                models.TrialParamModel(param_name=k, param_value=DISTRIBUTIONS[k].to_internal_repr(v),
                                       distribution_json=distribution_to_json(DISTRIBUTIONS[k]))
                for k, v in params.items()
            ]
            trial.values = [models.TrialValueModel(objective=0, value=value,
                                                   value_type=models.TrialValueModel.TrialValueType.FINITE)]
            session.add(trial)
    return time.monotonic() - start


def ask_tell_ms(study: optuna.Study, k: int) -> tuple[list[float], float]:
    """Latencies (ms) of ask + three suggests + tell, no objective work; and this process's CPU ms per trial."""
    out = []
    cpu = time.process_time()
    for _ in range(k):
        start = time.perf_counter()
        trial = study.ask()
        study.tell(trial, suggest(trial))
        out.append((time.perf_counter() - start) * 1000)
    return out, (time.process_time() - cpu) / k * 1000


def optimize_overhead_ms(study: optuna.Study, k: int) -> float:
    """Wall time per trial of `study.optimize` minus the objective's sleep, in ms."""
    slept: list[float] = []
    start = time.monotonic()
    study.optimize(sleeping_objective(slept), n_trials=k)
    return ((time.monotonic() - start) - sum(slept)) / k * 1000


def cold_load_s(url: str, name: str) -> float:
    """A fresh client reading the whole study (a worker or `hybridnas status` starting up)."""
    start = time.monotonic()
    optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None)).get_trials(deepcopy=False)
    return time.monotonic() - start


def growth(db_url: str, proxy_url: str, sizes: tuple[int, ...], k: int, prefix: str,
           servers: ServerCpu) -> list[dict[str, Any]]:
    """ask+tell latency, optimize overhead and TPE cost per trial as one study grows."""
    name = f"{prefix}-growth-{uuid.uuid4().hex[:6]}"
    filler = open_storage(db_url, heartbeat_interval=None)
    study_id = optuna.create_study(study_name=name, storage=filler)._study_id
    # Long-lived clients, as running workers are: their trial caches follow the study.
    paths = {
        "postgres": open_storage(db_url),
        "postgres-no-heartbeat": open_storage(db_url, heartbeat_interval=None),
        "proxy": open_storage(proxy_url),
    }
    studies = {p: optuna.load_study(study_name=name, storage=s, sampler=make_sampler("random", 1))
               for p, s in paths.items()}
    tpe = optuna.load_study(study_name=name, storage=paths["postgres"], sampler=make_sampler("tpe", 1))
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        fill_s = fill(filler, study_id, size, rng)
        for path, study in studies.items():
            study.get_trials(deepcopy=False)  # catch the cache up with the batch insert first
            servers.delta()
            latencies, cpu_ms = ask_tell_ms(study, k)
            db_cpu, proxy_cpu = servers.delta()
            rows.append({
                "trials": size, "path": path,
                "ask_tell_ms_median": round(statistics.median(latencies), 2),
                "ask_tell_ms_p90": round(float(np.percentile(latencies, 90)), 2),
                "ask_tell_client_cpu_ms": round(cpu_ms, 2),
                "ask_tell_db_cpu_ms": round(db_cpu / k * 1000, 2),
                "ask_tell_proxy_cpu_ms": round(proxy_cpu / k * 1000, 2),
                "overhead_ms_per_trial": round(optimize_overhead_ms(study, k), 2),
                "cold_load_s": round(cold_load_s(proxy_url if path == "proxy" else db_url, name), 3),
                "fill_s": round(fill_s, 2),
            })
        tpe.get_trials(deepcopy=False)
        servers.delta()
        tpe_ms, tpe_cpu_ms = ask_tell_ms(tpe, TPE_K)
        db_cpu, _ = servers.delta()
        rows.append({"trials": size, "path": "postgres+tpe", "ask_tell_ms_median": round(statistics.median(tpe_ms), 2),
                     "ask_tell_ms_p90": round(float(np.percentile(tpe_ms, 90)), 2),
                     "ask_tell_client_cpu_ms": round(tpe_cpu_ms, 2), "ask_tell_db_cpu_ms": round(db_cpu / TPE_K * 1000, 2)})
        console.print(f"growth: {size} trials measured")
    return rows


@contextmanager
def storage_proxy(db_url: str) -> Iterator[tuple[str, int]]:
    """`hybridnas storage-proxy` on a free local port, terminated on exit; yields its URL and pid."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(HYBRIDNAS), "storage-proxy", "--storage", db_url, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"grpc://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROXY_STARTUP_LIMIT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"storage-proxy exited: {proc.stderr.read().decode(errors='replace')}")
            try:
                open_storage(url).close()
                break
            except StorageError:
                if time.monotonic() > deadline:
                    raise
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def delete_studies(db_url: str, prefix: str) -> int:
    """Remove every study this run created."""
    storage = open_storage(db_url, heartbeat_interval=None)
    names = [s.study_name for s in storage.get_all_studies() if s.study_name.startswith(prefix)]
    for name in names:
        optuna.delete_study(study_name=name, storage=storage)
    return len(names)


def machine(db_url: str) -> dict[str, Any]:
    storage = open_storage(db_url, heartbeat_interval=None)
    with storage.engine.connect() as conn:
        server = conn.execute(sqlalchemy.text("SHOW server_version")).scalar()
    return {
        "cpus": os.cpu_count(), "gpu": None, "python": platform.python_version(), "optuna": optuna.__version__,
        "database": f"PostgreSQL {server} (local)" if storage.engine.dialect.name == "postgresql" else storage.engine.dialect.name,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        # Per-core speed under the current load: `python -m timeit "sum(range(10**6))"`, in ms.
        "sum_range_1e6_ms": round(min(timeit.repeat("sum(range(10**6))", number=1, repeat=5)) * 1000, 1),
    }


def print_tables(result: dict[str, Any]) -> None:
    scale = Table(title=f"(i)/(iii) scaling: {result['config']['duration_s']} s per run, objective sleeps "
                        f"{SLEEP_S * 1000:.0f} ms", box=box.SIMPLE)
    for col in ("sampler", "path", "N", "trials", "trials/s", "util.", "effic.", "ovh ms/tr",
                "worker cpu ms/tr", "db cpu ms/tr", "proxy cpu ms/tr", "machine busy"):
        scale.add_column(col, justify="right")
    for r in result["scaling"]:
        scale.add_row(r["sampler"], r["path"], str(r["workers"]), str(r["trials"]), f"{r['trials_per_s']:.1f}",
                      f"{r['utilisation']:.3f}", f"{r['efficiency']:.3f}", f"{r['overhead_ms_per_trial']:.1f}",
                      f"{r['worker_cpu_ms_per_trial']:.1f}", f"{r['db_cpu_ms_per_trial']:.1f}",
                      f"{r['proxy_cpu_ms_per_trial']:.1f}", f"{r['machine_cpu_busy']:.2f}")
    console.print(scale, soft_wrap=True)
    grow = Table(title=f"(ii)/(iii) one study growing: {result['config']['k']} trials measured per point",
                 box=box.SIMPLE)
    for col in ("trials", "path", "ask+tell ms p50", "p90", "client cpu ms", "db cpu ms", "proxy cpu ms",
                "optimize ovh ms/tr", "cold load s"):
        grow.add_column(col, justify="right")
    for r in result["growth"]:
        grow.add_row(str(r["trials"]), r["path"], f"{r['ask_tell_ms_median']:.1f}", f"{r['ask_tell_ms_p90']:.1f}",
                     f"{r['ask_tell_client_cpu_ms']:.1f}", f"{r.get('ask_tell_db_cpu_ms', 0):.1f}",
                     f"{r.get('ask_tell_proxy_cpu_ms', 0):.1f}",
                     f"{r['overhead_ms_per_trial']:.1f}" if "overhead_ms_per_trial" in r else "-",
                     f"{r['cold_load_s']:.2f}" if "cold_load_s" in r else "-")
    console.print(grow, soft_wrap=True)
    for target in result["targets"]:
        console.print(f"target {target['name']}: {target['measured']} -> {'met' if target['met'] else 'MISSED'}",
                      soft_wrap=True)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in result["scaling"]:
        if r["workers"] == max(WORKER_COUNTS):
            out.append({"name": f"efficiency >= 0.9 at 8 workers ({r['path']}, {r['sampler']})",
                        "measured": r["efficiency"], "met": r["efficiency"] >= 0.9})
    biggest = max(r["trials"] for r in result["growth"])
    for r in result["growth"]:
        if r["trials"] == biggest and "overhead_ms_per_trial" in r:
            out.append({"name": f"overhead < 50 ms/trial at {biggest} trials ({r['path']})",
                        "measured": r["overhead_ms_per_trial"], "met": r["overhead_ms_per_trial"] < 50})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test", help="database URL")
    parser.add_argument("--quick", action="store_true", help="3 s runs and 100/1k trials (a few minutes)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "orchestration.json")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # ask/tell on a heartbeat storage warns each time; that path is measured on purpose.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    config = {"duration_s": 3.0 if args.quick else 12.0, "k": 15 if args.quick else 30,
              "sizes": [100, 1000] if args.quick else [100, 1000, 5000, 10000], "sleep_s": SLEEP_S,
              "workers": list(WORKER_COUNTS), "samplers": list(SAMPLERS), "quick": args.quick}
    prefix = f"bench-orch-{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {"command": " ".join(["python", "bench/orchestration.py", *(argv or sys.argv[1:])]),
                              "machine": machine(args.storage), "config": config}
    started = time.monotonic()
    try:
        with storage_proxy(args.storage) as (proxy_url, proxy_pid):
            servers = ServerCpu(proxy_pid)
            pool = WorkerPool(max(WORKER_COUNTS))
            rows = []
            try:
                for sampler in SAMPLERS:
                    for n in WORKER_COUNTS:
                        for path, url in (("postgres", args.storage), ("proxy", proxy_url)):
                            rows.append({"path": path, **pool.run(url, args.storage, sampler, n, config["duration_s"], prefix, servers)})
                            console.print(f"scaling: {path} {sampler} {n} workers: {rows[-1]['trials_per_s']} trials/s")
            finally:
                pool.close()
            add_efficiency(rows)
            result["scaling"] = rows
            result["growth"] = growth(args.storage, proxy_url, tuple(config["sizes"]), config["k"], prefix, servers)
    finally:
        result["deleted_studies"] = delete_studies(args.storage, prefix)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_s"] = round(time.monotonic() - started, 1)
    result["targets"] = targets(result)
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out} ({result['total_s']} s, {result['deleted_studies']} studies deleted)")


if __name__ == "__main__":
    main()
