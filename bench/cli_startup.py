"""How long the `hybridnas` command takes to start, against Optuna's own CLI (issue 11).

Each round runs every command once, interleaved, so load on this shared machine hits them all
alike; ratios are taken per round against `optuna --version` and reported as medians. The
study is a small SQLite one made here. `-X importtime` of `--help` and `status` says where the
remaining time goes (the largest cumulative imports).

    python bench/cli_startup.py --rounds 15        # writes bench/results/cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from harness import HYBRIDNAS, RESULTS

OPTUNA = str(Path(sys.executable).with_name("optuna"))
# Commands start as on a user's machine, where Python caches bytecode: some CI and sandbox images
# set PYTHONDONTWRITEBYTECODE, which makes every start compile hybridnas's own (editable) modules.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def make_study(directory: Path) -> str:
    """A 20-trial study with a config on every trial, as `status` and `export` find them."""
    url = f"sqlite:///{directory / 'startup.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="startup", storage=url)
    study.set_user_attr("hybridnas", {"trials": 20})
    config = {"stages": [{"block": "conv", "channels": 16}]}
    for _ in range(20):
        trial = study.ask()
        trial.set_user_attr("config", config)
        study.tell(trial, trial.suggest_float("x", 0, 1))
    return url


def commands(url: str, out: Path) -> dict[str, list[str]]:
    return {
        "optuna --version": [OPTUNA, "--version"],
        "optuna trials": [OPTUNA, "trials", "--study-name", "startup", "--storage", url, "-f", "json"],
        "hybridnas --help": [HYBRIDNAS, "--help"],
        "hybridnas status": [HYBRIDNAS, "status", "--study", "startup", "--storage", url],
        "hybridnas export": [HYBRIDNAS, "export", "--study", "startup", "--storage", url, "--trial", "3",
                             "-o", str(out)],
    }


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - start


def largest_imports(command: list[str], n: int = 8) -> list[tuple[str, float]]:
    """(module, cumulative ms) of the slowest top-level imports under `python -X importtime`."""
    done = subprocess.run([sys.executable, "-X", "importtime", *command], capture_output=True, text=True, env=ENV)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # top level: imported by the program itself
            rows.append((name.strip(), int(cumulative) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = make_study(Path(tmp))
        cmds = commands(url, Path(tmp) / "exported.yaml")
        for command in cmds.values():
            wall(command)  # warm the page cache and bytecode
        rounds = [{name: wall(command) for name, command in cmds.items()} for _ in range(args.rounds)]
        imports = {name: largest_imports(cmds[name]) for name in ("hybridnas --help", "hybridnas status")}
    base = "optuna --version"
    summary = {
        "command": " ".join(sys.argv),
        "rounds": rounds,
        "median_s": {name: round(statistics.median(r[name] for r in rounds), 3) for name in rounds[0]},
        "median_ratio_to_optuna_version": {
            name: round(statistics.median(r[name] / r[base] for r in rounds), 2) for name in rounds[0]
        },
        "largest_imports_ms": imports,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cli_startup.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("| command | median wall s | ratio to `optuna --version` (median of rounds) |")
    print("|---|---:|---:|")
    for name in rounds[0]:
        print(f"| `{name}` | {summary['median_s'][name]:.3f} | {summary['median_ratio_to_optuna_version'][name]:.2f} |")
    for name, rows in imports.items():
        print(f"\n`python -X importtime` of `{name}`, largest top-level imports (cumulative ms):")
        print(", ".join(f"{module} {ms:.0f}" for module, ms in rows))


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--rounds", type=int, default=15)

if __name__ == "__main__":
    args = parser.parse_args()
    main()
