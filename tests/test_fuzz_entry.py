"""Fuzzing the real entry points: whatever a user types, `hybridnas` answers with a result or one
named error, and never touches a study it was not asked to change.

Hypothesis builds whole command lines for `launch --workers 0`, `status [--json]`, `export`,
`retrain --workers 0`, `summary`, `sample`, `train` (one epoch on 64 real CIFAR-10 images; a
valid run trains), `dashboard` (its server loop returns at once), `worker` (on studies it cannot
run) and `report`, one test per command, and calls of the Python API (`hybridnas.search`:
launch, load, status, best_trial, export), from:

- study files and launch flags: every StudyDefinition field with values inside, at and beyond
  its bounds (inf, nan, 10**26, 0, negative), unknown keys, files that are not YAML;
- architecture configs: the tiny test config and the papers' presets, with odd names
  (`../../escaped`, markup) and input sizes;
- study names: rich markup (`[/x]`), control characters, unicode, slashes, empty, 300 and
  10,000 characters, the names of the studies already there and of a retrain companion;
- storage URLs (flag or `$HYBRIDNAS_STORAGE`): the example's SQLite file, SQLite paths that
  cannot be opened, PostgreSQL and gRPC addresses that do not answer, other schemes, junk;
  artifact URLs with credentials;
- datasets (cifar10 on the real JPEG export, cifar100, folder:PATH that exists, is missing or
  holds no images, nonsense) and devices (auto, cpu, cuda:N, junk).

Each example runs the CLI in this process (fast: no new interpreter, no torch import per call;
`--workers 0`, so Ray never starts), in a fresh working directory with a fresh copy of one
SQLite file holding a hybridnas study with finished trials and a plain two-objective Optuna
study. After every example:

- the exit code is 0, or 2 with exactly one `error: ...` line on stderr (Optuna's log lines
  aside); never a traceback, never a hang (a SIGALRM guard);
- an input known to be wrong (unknown or missing dataset, empty study name, infinite timeout, a
  seed no RNG takes, a device this machine lacks, a grace period shorter than the heartbeat, ...)
  is refused, not accepted for a worker to trip over later;
- the two studies that were there keep their trials (number, state, params, values,
  intermediate values, user attrs), directions and study user attrs; only `launch` onto the
  hybridnas study may change its budget (trials, timeout);
- the password planted in every URL (`S3CRETpw`) never appears in the output;
- nothing is written outside the working directory;
- what exit 0 promises holds: `status --json` prints strict JSON, an exported or sampled config
  loads, a launched study answers `status --json`.

Inputs that once broke the contract run exactly, as regression cases (`KNOWN`).

The default run is derandomized with a fixed number of examples (16 per command, fewer for
`train` and `report`, 30 API calls: about 30 s of CPU on 2 cores), so CI sees the same inputs
every time. For a longer, randomized hunt set HYBRIDNAS_FUZZ_EXAMPLES to the examples per test
(Hypothesis prints how to reproduce any failure):
`HYBRIDNAS_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_fuzz_entry.py --hypothesis-show-statistics`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socketserver
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from helpers import ARCHIVE, CIFAR, SMALL_SPACE, TINY_CONFIG, TINY_SPACE, no_hang
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hybridnas.common import HybridNASError
from hybridnas.models.config import load_config
from hybridnas.models.presets import PRESETS, preset

SECRET = "S3CRETpw"
HANG_LIMIT_S = 60  # a hang guard, not a timing assertion
REF, PLAIN = "ref", "plain"  # the studies every example's storage already holds
PROTECTED = (REF, PLAIN)
BUDGET_FIELDS = ("trials", "timeout")
LOG_LINE = ("[I ", "[W ", "[E ")  # Optuna's log lines on stderr, e.g. "[I 2026-...] A new study created"

_examples = os.environ.get("HYBRIDNAS_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_examples) if _examples else 16,
    derandomize=not _examples,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEWER = {"train": 8, "report": 6}  # a valid train trains (1-2 s), a report renders plotly (about 1 s)
API_FUZZ = settings(FUZZ, max_examples=int(_examples) if _examples else 30)


class Valid(Enum):
    """What an input value is: accepted, refused by every command, or either (legitimately)."""

    YES = "valid"
    NO = "invalid"
    EITHER = "either"


# --- the values the strategies draw from ---------------------------------------------------
# Placeholders filled per example: {db} the example's SQLite file, {work} its working directory,
# {root} the directory three levels above it, {archive} the CIFAR-10 JPEG export. Paths that
# cannot be created even by root live under /proc.

ODD_NAMES = st.one_of(
    st.sampled_from([
        REF, PLAIN, f"{REF}/retrain", "fresh", "", " ", "[/x]", "[bold]b[/bold]", "[link=x]y", "a\nb", "tab\there",
        "\x1b[31mred", "bell\x07", "../../escaped", "a/b", "{root}/abs", "ünïcödé-名前", "🙂", "-x", "--json", "%s{}%d",
        "'; DROP TABLE studies; --", "n" * 300, "n" * 10_000,
    ]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
)
NAMES = st.one_of(st.sampled_from([REF, PLAIN]), st.text("abcdefghij-_0123456789", min_size=1, max_size=12), ODD_NAMES)
EMPTY_NAMES = ("", " ")

STORAGES = [
    "sqlite:///{db}?password=" + SECRET,
    "sqlite:///{work}/missing-dir/x.db", "sqlite:///{work}", "sqlite://", "sqlite:///:memory:",
    "sqlite:////proc/hybridnas-fuzz/x.db",
    "sqlite:///{work}/{{x}}.db", "sqlite:///{work}/not-a-db", "{db}", "", "junk",
    "http://u:" + SECRET + "@127.0.0.1:1/db",
    "mysql://u:" + SECRET + "@127.0.0.1/db", "postgresql://u:" + SECRET + "@127.0.0.1:1/db",
    "postgresql://u:" + SECRET + "%21@127.0.0.1:1/db",
    "postgresql://postgres:" + SECRET + "@127.0.0.1:5432/no_such_db_fuzz",
    "postgresql://u:" + SECRET + "@[::1/db", "grpc://127.0.0.1:1", "grpc://127.0.0.1", "grpc://127.0.0.1:99999",
    "grpc://u:" + SECRET + "@127.0.0.1:1",
]
ARTIFACTS = [
    None, "{work}/artifacts", "file://{work}/artifacts", "s3://AK:" + SECRET + "@bucket/p", "s3://bucket/prefix",
    "s3://", "https://AK:" + SECRET + "@127.0.0.1:1/x", "/proc/hybridnas-fuzz/artifacts", "",
]
DATASETS = {  # dataset -> (for launch, for train): launch only records it; train reads it
    "cifar10": (Valid.YES, Valid.YES), "folder:{archive}": (Valid.YES, Valid.YES),
    "cifar100": (Valid.EITHER, Valid.EITHER),  # not here, downloaded where the network allows
    "folder:{work}": (Valid.EITHER, Valid.NO),  # exists, holds no images
    "imagenet": (Valid.NO, Valid.NO), "": (Valid.NO, Valid.NO), "CIFAR10 ": (Valid.NO, Valid.NO),
    "folder:": (Valid.NO, Valid.NO), "folder:{work}/missing": (Valid.NO, Valid.NO),
    "folder:/proc/hybridnas-fuzz/x.tar.gz": (Valid.NO, Valid.NO),
}
TRAIN_DATASETS = [d for d in DATASETS if d != "cifar100"]  # a download attempt would take seconds
DEVICES = {"auto": Valid.YES, "cpu": Valid.YES, "cpu:0": Valid.EITHER, "CPU": Valid.EITHER, "cuda": None,
           "cuda:0": None, "cuda:3": None, "cuda:-1": Valid.NO, "banana": Valid.NO, "": Valid.NO, "meta": Valid.NO,
           "mps": Valid.NO}  # None: valid where the GPU is there
SEEDS = {0: Valid.YES, 7: Valid.YES, -1: Valid.EITHER, 2**32: Valid.EITHER, 2**64: Valid.NO,
         99999999999999999999999999: Valid.NO}
# StudyDefinition fields (flag values as Python values) -> {value: validity}.
FIELD_VALUES: dict[str, dict[Any, Valid]] = {
    "epochs": {1: Valid.YES, 2: Valid.YES, 0: Valid.NO, -1: Valid.NO, 10**6: Valid.EITHER},
    "trials": {1: Valid.YES, 3: Valid.YES, 0: Valid.NO, -5: Valid.NO, 10**9: Valid.EITHER},
    "timeout": {60.0: Valid.YES, 0.5: Valid.YES, 0.0: Valid.NO, -1.0: Valid.NO, math.inf: Valid.NO,
                -math.inf: Valid.NO, math.nan: Valid.NO},
    "seed": SEEDS,
    "train_subset": {64: Valid.YES, 0: Valid.NO, -1: Valid.NO, 10**12: Valid.EITHER},
    "val_subset": {32: Valid.YES, 0: Valid.NO},
    "test_subset": {32: Valid.YES, 0: Valid.NO, 10**12: Valid.EITHER},
    "val_fraction": {0.1: Valid.YES, 0.0: Valid.NO, 1.0: Valid.NO, -0.5: Valid.NO, math.nan: Valid.NO},
    "space": {"demo": Valid.YES, "union": Valid.YES, str(TINY_SPACE): Valid.YES, str(SMALL_SPACE): Valid.YES,
              "nope": Valid.NO, "": Valid.NO, "{work}/missing.yaml": Valid.NO, "{work}/study.yaml": Valid.NO},
    "objective": {"accuracy": Valid.YES, "accuracy,params": Valid.EITHER, "accuracy,macs": Valid.EITHER,
                  "accuracy,latency": Valid.EITHER, "loss": Valid.NO, "": Valid.NO},
    "sampler": {"tpe": Valid.YES, "random": Valid.YES, "nsga2": Valid.EITHER, "bogo": Valid.NO},
    "pruner": {"hyperband": Valid.EITHER, "median": Valid.EITHER, "none": Valid.YES, "always": Valid.NO},
    "local_search": {0.0: Valid.YES, 0.5: Valid.YES, 1.5: Valid.NO, math.nan: Valid.NO},
    "moves_learn_from_pruned": {True: Valid.YES, False: Valid.YES},
    "max_params": {10**6: Valid.YES, 0: Valid.NO, -1: Valid.NO},
    "max_macs": {10**7: Valid.YES, 0: Valid.NO},
    "max_latency_ms": {5.0: Valid.YES, 0.0: Valid.NO, -1.0: Valid.NO, math.inf: Valid.NO, math.nan: Valid.NO},
    "enqueue_presets": {True: Valid.YES, False: Valid.YES},
}
TRAINING_VALUES: dict[str, dict[Any, Valid]] = {
    "lr": {0.01: Valid.YES, 0.0: Valid.NO, -1.0: Valid.NO, math.nan: Valid.NO, math.inf: Valid.NO},
    "optimizer": {"sgd": Valid.YES, "adamw": Valid.YES, "rmsprop": Valid.NO},
    "batch_size": {32: Valid.YES, 0: Valid.NO},
    "label_smoothing": {0.1: Valid.YES, 1.5: Valid.NO},
}
PRESET_DOCS = [preset(name).model_dump(mode="json") for name in PRESETS]
HEARTBEATS = {(None, None): Valid.YES, (10, 30): Valid.YES, (1, 2): Valid.YES, (60, 60): Valid.EITHER,
              (60, 1): Valid.NO, (0, None): Valid.NO}


# --- the example's world: a fresh copy of the reference storage in a fresh directory ------


@dataclass
class Case:
    """One generated input: what to run, the files it needs, and what it may and must do."""

    kind: str  # the command or API call
    argv: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text, written first
    env: dict[str, str] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)  # why the input must be refused (empty: may pass)
    study: str | None = None
    api: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    """Where one example runs: its working directory and storage, and the placeholders' values."""

    root: Path
    work: Path

    @property
    def db(self) -> Path:
        return self.work / "nas.db"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def fill(self, value: Any) -> Any:
        """`value` (a string, or lists and dicts of them) with the placeholders replaced."""
        if isinstance(value, str):
            for key, path in (("{db}", self.db), ("{work}", self.work), ("{root}", self.root), ("{archive}", ARCHIVE)):
                value = value.replace(key, str(path))
            return value
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value


@contextmanager
def inside(world: World, env: dict[str, str]) -> Iterator[None]:
    """The working directory and environment variables of one example, restored after."""
    before_dir, before_env = Path.cwd(), {k: os.environ.get(k) for k in env}
    os.chdir(world.work)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(before_dir)
        for key, value in before_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _open(url: str) -> Any:
    from hybridnas.storage import open_storage

    return open_storage(url, heartbeat_interval=None)


def snapshot(url: str) -> dict[str, Any]:
    """What must not change in the studies that were there: directions, study user attrs, trials."""
    storage = _open(url)
    try:
        out = {}
        for name in PROTECTED:
            study = optuna.load_study(study_name=name, storage=storage)
            out[name] = {
                "directions": [d.name for d in study.directions],
                "user_attrs": study.user_attrs,
                "trials": [(t.number, t.state.name, t.params, t.values, t.intermediate_values, t.user_attrs)
                           for t in study.get_trials(deepcopy=False)],
            }
        return out
    finally:
        storage.engine.dispose()


def _without_budget(snap: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(snap, default=str))
    definition = out[REF]["user_attrs"].get("hybridnas")
    if isinstance(definition, dict):
        for key in BUDGET_FIELDS:
            definition.pop(key, None)
    return out


def _build_template(path: Path) -> None:
    """The reference storage: `ref`, launched by the CLI with a COMPLETE, a PRUNED and a FAIL
    trial as a worker leaves them, and `plain`, a two-objective study plain Optuna made."""
    from hybridnas.cli.main import main
    from hybridnas.models.canonical import architecture_key, canonical_config
    from hybridnas.models.config import parse_config
    from hybridnas.objectives.study.records import ARCH_KEY

    url = f"sqlite:///{path}"
    try:
        main(["launch", "--study", REF, "--storage", url, "--workers", "0", "--dataset", CIFAR, "--space",
              str(TINY_SPACE), "--trials", "4", "--epochs", "2", "--train-subset", "64", "--val-subset", "32"])
    except SystemExit as exit_:
        assert not exit_.code, f"could not make the reference study (exit {exit_.code})"
    storage = _open(url)
    study = optuna.load_study(study_name=REF, storage=storage)
    cfg = parse_config(TINY_CONFIG)
    lr = FloatDistribution(1e-4, 1e-1, log=True)
    done = {"config": canonical_config(cfg), "training": {"lr": 0.01}, ARCH_KEY: architecture_key(cfg, {"lr": 0.01}),
            "params": 10_000, "macs": 1_000_000, "epochs_run": 2, "worker": "fuzz", "device": "cpu"}
    study.add_trial(optuna.trial.create_trial(value=0.4, params={"lr": 0.01}, distributions={"lr": lr},
                                              intermediate_values={1: 0.3, 2: 0.4}, user_attrs=done))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"lr": 0.002}, distributions={"lr": lr},
                                              intermediate_values={1: 0.1}, user_attrs={**done, "epochs_run": 1}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "fuzz"}))
    plain = optuna.create_study(study_name=PLAIN, storage=storage, directions=["minimize", "minimize"])
    plain.set_user_attr("owner", "someone else")
    plain.add_trial(optuna.trial.create_trial(values=[1.0, 2.0]))
    storage.engine.dispose()


class Template:
    """The reference storage every example copies, and what its protected studies hold."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.studies = snapshot(f"sqlite:///{path}")

    def __repr__(self) -> str:  # Hypothesis prints it with every failing example
        return f"Template({self.path})"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, study_env: None) -> Iterator[Template]:
    """The reference storage, made once; cifar10 resolves to the real JPEG export; gRPC gives
    up after 1 s instead of 10 and boto3 asks a closed local port, so unreachable ends are quick;
    a server's loop (the dashboard's) returns at once."""
    path = tmp_path_factory.mktemp("fuzz-template") / "nas.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYBRIDNAS_DATA", str(ARCHIVE.parent))
        mp.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        for key in ("HYBRIDNAS_STORAGE", "HYBRIDNAS_ARTIFACTS"):
            mp.delenv(key, raising=False)
        mp.setattr("hybridnas.storage._proxy._READY_TIMEOUT_S", 1)
        mp.setattr(socketserver.BaseServer, "serve_forever", lambda self, poll_interval=0.5: None)
        _build_template(path)
        yield Template(path)


@contextmanager
def world(template: Template, case: Case) -> Iterator[World]:
    """A fresh directory three levels below a fresh root, holding a copy of the storage and the
    case's files; removed after."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    made = World(root, root / "a" / "b" / "work")
    try:
        made.work.mkdir(parents=True)
        shutil.copyfile(template.path, made.db)
        (made.work / "not-a-db").write_bytes(bytes(range(256)) * 8)
        for rel, text in case.files.items():
            (made.work / rel).write_text(made.fill(text), encoding="utf-8")
        yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- strategies -------------------------------------------------------------------------


def _mostly_valid(draw: st.DrawFn, valid: list[Any], others: list[Any]) -> Any:
    """One of `valid` four times in five (deeper paths run only when the early checks pass)."""
    return draw(st.sampled_from(others if others and draw(st.integers(0, 4)) == 4 else valid))


def _pick(draw: st.DrawFn, values: dict[Any, Valid]) -> tuple[Any, Valid]:
    value = _mostly_valid(draw, [v for v, ok in values.items() if ok is Valid.YES],
                          [v for v, ok in values.items() if ok is not Valid.YES])
    return value, values[value]


def _flag_text(value: Any) -> str:
    return str(value) if not isinstance(value, float) else repr(value)


@st.composite
def definitions(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """Some StudyDefinition fields (Python values) and why they must be refused, if they must."""
    fields: dict[str, Any] = {}
    invalid: list[str] = []
    dataset = _mostly_valid(draw, ["cifar10", "folder:{archive}"], [*DATASETS, None])
    if dataset is not None:
        fields["dataset"] = dataset
        if DATASETS[dataset][0] is Valid.NO:
            invalid.append(f"dataset {dataset!r}")
    for name in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=4, unique=True)):
        fields[name], valid = _pick(draw, FIELD_VALUES[name])
        if valid is Valid.NO:
            invalid.append(f"{name} {fields[name]!r}")
    for name in draw(st.lists(st.sampled_from(sorted(TRAINING_VALUES)), max_size=2, unique=True)):
        fields.setdefault("training", {})[name], valid = _pick(draw, TRAINING_VALUES[name])
        if valid is Valid.NO:
            invalid.append(f"training.{name} {fields['training'][name]!r}")
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from(["zz_unknown", "version", "training"]))
        fields[key] = draw(st.sampled_from(["x", 2, None, [1], {"momentum": 5}]))
        invalid = [reason for reason in invalid if not reason.startswith(f"{key}.")]  # the values it replaced
        invalid.append("an unknown key or a wrong type")
    return fields, invalid


def _storage(draw: st.DrawFn, case: Case) -> None:
    """--storage URL, or the same URL in $HYBRIDNAS_STORAGE."""
    url = _mostly_valid(draw, ["sqlite:///{db}"], STORAGES)
    if draw(st.integers(0, 4)) == 0 and url:
        case.env["HYBRIDNAS_STORAGE"] = url
    else:
        case.argv += ["--storage", url]


def _name(draw: st.DrawFn, case: Case, existing: bool = True) -> str:
    """--study NAME; with `existing`, mostly a study that is there (the commands that read one)."""
    name = draw(NAMES) if not existing or draw(st.integers(0, 2)) == 2 else draw(st.sampled_from([REF, PLAIN]))
    case.study = name
    case.argv.append(f"--study={name}")
    return name


@st.composite
def launch_cases(draw: st.DrawFn) -> Case:
    case = Case("launch", ["launch", "--workers", "0"])
    name = _name(draw, case, existing=False)
    if name in EMPTY_NAMES:
        case.invalid.append(f"study name {name!r}")
    _storage(draw, case)
    fields, reasons = draw(definitions())
    case.invalid += reasons
    if draw(st.booleans()):  # a study file, flags override it
        if draw(st.integers(0, 5)) == 0:
            case.files["study.yaml"] = draw(st.sampled_from(["{", "- a list", "dataset: [", "\x00", "", "42"]))
            case.invalid.append("a study file that is not a mapping of fields")
        else:
            case.files["study.yaml"] = yaml.safe_dump(fields, allow_unicode=True)
        config = _mostly_valid(draw, ["study.yaml", "{work}/study.yaml"], ["missing.yaml", "{work}", "not-a-db"])
        case.argv += ["--config", config]
        if config in ("missing.yaml", "{work}", "not-a-db"):
            case.invalid.append(f"--config {config}")
    else:
        for key, value in fields.items():
            if isinstance(value, bool):
                case.argv.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
            elif key == "training" and isinstance(value, dict):
                case.argv += [a for k, v in value.items() for a in (f"--{k.replace('_', '-')}", _flag_text(v))]
            elif key not in ("zz_unknown", "version", "training"):
                case.argv.append(f"--{key.replace('_', '-')}={_flag_text(value)}")
        case.invalid = [r for r in case.invalid if r != "an unknown key or a wrong type"]
    (interval, grace), valid = _pick(draw, HEARTBEATS)
    case.argv += [a for flag, v in (("--heartbeat-interval", interval), ("--grace-period", grace)) if v is not None
                  for a in (flag, str(v))]
    if valid is Valid.NO:
        case.invalid.append(f"heartbeat interval {interval} with grace period {grace}")
    artifacts = _mostly_valid(draw, [None], ARTIFACTS)
    if artifacts is not None:
        case.argv += ["--artifacts", artifacts]
    if draw(st.integers(0, 3)) == 0:
        export = _mostly_valid(draw, ["best.yaml"], [".", "/proc/hybridnas-fuzz/best.yaml", "a/b.json"])
        case.argv += ["--export", export]
    return case


@st.composite
def status_cases(draw: st.DrawFn) -> Case:
    case = Case("status", ["status"])
    _name(draw, case)
    _storage(draw, case)
    case.argv += draw(st.sampled_from([[], ["--json"], ["--json", "--watch"]]))
    return case


@st.composite
def export_cases(draw: st.DrawFn) -> Case:
    case = Case("export", ["export"])
    _name(draw, case)
    _storage(draw, case)
    case.argv += draw(st.sampled_from([["--best"], ["--pareto"], ["--trial", "0"], ["--trial", "1"], ["--trial", "2"],
                                       ["--trial", "99"], ["--trial", "-1"], [], ["--best", "--trial", "0"],
                                       ["--best", "--max-params", "1"], ["--best", "--max-macs", "0"]]))
    case.argv += ["-o", draw(st.sampled_from(["best.yaml", "best.json", "deep/er/best.yaml", "{work}/x.yml", ".",
                                               "best.txt", "/proc/hybridnas-fuzz/best.yaml"]))]
    return case


@st.composite
def retrain_cases(draw: st.DrawFn) -> Case:
    case = Case("retrain", ["retrain", "--workers", "0"])
    _name(draw, case)
    _storage(draw, case)
    case.argv += ["--top", draw(st.sampled_from(["1", "3", "0"])), "--epochs", draw(st.sampled_from(["1", "0"]))]
    case.argv += draw(st.sampled_from([[], ["--presets", "zureick"], ["--presets", "nope,,"], ["--test"],
                                       ["--seeds", "2"], ["--pareto"], ["--json"]]))
    return case


def _config_case(draw: st.DrawFn, case: Case, presets: list[str], documents: list[dict[str, Any]]) -> None:
    """A config file (one of `documents` with an odd name or input) or one of `presets` by name."""
    source = _mostly_valid(draw, ["file", "preset"], ["both", "neither"])
    if source in ("preset", "both"):
        case.argv += ["--preset", draw(st.sampled_from(presets))]
    if source in ("file", "both"):
        document = dict(draw(st.sampled_from(documents)))
        document["name"] = draw(st.one_of(NAMES, st.sampled_from([None, "../../escaped", "a/../../b", "{root}/abs"])))
        if draw(st.integers(0, 3)) == 0:
            document["input"] = {**document["input"], draw(st.sampled_from(["image_size", "num_classes"])):
                                 draw(st.sampled_from([0, 1, 7, 31, 1025, -3, "32", None, 2.5]))}
        case.files["config.yaml"] = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
        path = _mostly_valid(draw, ["config.yaml", "{work}/config.yaml"], ["missing.yaml", "{work}"])
        case.argv.append(path)
        if path in ("missing.yaml", "{work}"):
            case.invalid.append(f"config file {path}")
    if source in ("both", "neither"):
        case.invalid.append("not exactly one of CONFIG and --preset")


@st.composite
def summary_cases(draw: st.DrawFn) -> Case:
    case = Case("summary", ["summary"])
    _config_case(draw, case, [*PRESETS, "nope", ""], [TINY_CONFIG, *PRESET_DOCS])
    for flag in ("--num-classes", "--image-size"):
        if draw(st.integers(0, 3)) == 0:
            case.argv += [flag, draw(st.sampled_from(["0", "10", "64", "-1", "1000000", "x"]))]
    if draw(st.booleans()):
        case.argv.append("--json")
    return case


@st.composite
def sample_cases(draw: st.DrawFn) -> Case:
    case = Case("sample", ["sample"])
    case.argv += ["--space", draw(st.sampled_from([*FIELD_VALUES["space"], "{work}/config.yaml"]))]
    case.files["config.yaml"] = yaml.safe_dump(TINY_CONFIG)
    case.argv += ["--n", draw(st.sampled_from(["1", "2", "0", "-1"]))]
    case.argv += ["--seed", str(draw(st.sampled_from(list(SEEDS))))]
    case.argv += ["--out", draw(st.sampled_from(["samples", "{work}/s", "config.yaml", "/proc/hybridnas-fuzz/s"]))]
    if draw(st.integers(0, 3)) == 0:
        case.argv += [draw(st.sampled_from(["--num-classes", "--image-size"])),
                      draw(st.sampled_from(["0", "100", "1025"]))]
    return case


@st.composite
def train_cases(draw: st.DrawFn) -> Case:
    """`train` on 64 CIFAR-10 images for one epoch, on the tiny config: valid input trains."""
    case = Case("train", ["train", "--train-subset", "64", "--val-subset", "32", "--batch-size", "32", "--amp", "off"])
    _config_case(draw, case, ["nope", "", "../zureick"], [TINY_CONFIG])
    dataset = _mostly_valid(draw, ["cifar10", "folder:{archive}"], TRAIN_DATASETS)
    case.argv += ["--dataset", dataset]
    if DATASETS[dataset][1] is Valid.NO:
        case.invalid.append(f"dataset {dataset!r}")
    device = _mostly_valid(draw, ["auto", "cpu"], list(DEVICES))
    case.argv += ["--device", device]
    if _device_validity(device) is Valid.NO:
        case.invalid.append(f"device {device!r}")
    seed, valid = _pick(draw, SEEDS)
    case.argv += ["--seed", str(seed)]
    if valid is Valid.NO:
        case.invalid.append(f"seed {seed}")
    epochs, valid = _pick(draw, {1: Valid.YES, 0: Valid.NO})
    case.argv += ["--epochs", str(epochs)]
    if valid is Valid.NO:
        case.invalid.append("epochs 0")
    case.argv += _mostly_valid(draw, [[], ["--out", "run"], ["--out", "{work}/o/p"], ["--json"]],
                               [["--val-fraction", "0"], ["--lr", "nan"], ["--lr", "-1"],
                                ["--out", "/proc/hybridnas-fuzz/o"]])
    if case.argv[-2:] in (["--val-fraction", "0"], ["--lr", "nan"], ["--lr", "-1"]):
        case.invalid.append(" ".join(case.argv[-2:]))
    return case


def _device_validity(device: str) -> Valid:
    if DEVICES[device] is not None:
        return DEVICES[device]
    import torch

    index = int(device.partition(":")[2] or 0)
    return Valid.YES if index < torch.cuda.device_count() else Valid.NO


@st.composite
def dashboard_cases(draw: st.DrawFn) -> Case:
    case = Case("dashboard", ["dashboard"])
    _storage(draw, case)
    artifacts = draw(st.sampled_from(ARTIFACTS))
    if artifacts is not None:
        if draw(st.integers(0, 3)) == 0:
            case.env["HYBRIDNAS_ARTIFACTS"] = artifacts
        else:
            case.argv += ["--artifacts", artifacts]
    case.argv += ["--port", _mostly_valid(draw, ["18731"], ["0", "70000", "x"])]
    case.argv += ["--host", _mostly_valid(draw, ["127.0.0.1"], ["0.0.0.0", "::1", "[::1]", "no such host", ""])]
    return case


@st.composite
def worker_cases(draw: st.DrawFn) -> Case:
    """`worker` on a study it cannot run (the plain one, a missing one): it must say so, not train."""
    case = Case("worker", ["worker", "--worker-id", "fuzz"])
    name = draw(NAMES.filter(lambda n: n != REF))
    case.study = name
    case.argv.append(f"--study={name}")
    _storage(draw, case)
    device = _mostly_valid(draw, ["cpu"], list(DEVICES))
    case.argv += ["--device", device]
    return case


@st.composite
def report_cases(draw: st.DrawFn) -> Case:
    case = Case("report", ["report"])
    _name(draw, case)
    _storage(draw, case)
    case.argv += ["-o", _mostly_valid(draw, ["report.html"], ["deep/r.html", ".", "/proc/hybridnas-fuzz/r.html"])]
    return case


COMMANDS = {"launch": launch_cases(), "status": status_cases(), "export": export_cases(), "retrain": retrain_cases(),
            "summary": summary_cases(), "sample": sample_cases(), "train": train_cases(),
            "dashboard": dashboard_cases(), "worker": worker_cases(), "report": report_cases()}


# --- running one example and checking the contract ------------------------------------------


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str, str, str]:
    """(exit code or the escaped exception's traceback, stdout, stderr) of `hybridnas ARGV`."""
    from hybridnas.cli.main import main

    capsys.readouterr()
    try:
        with no_hang(HANG_LIMIT_S):
            main(argv)
        code: int | str = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever escapes is the finding
        code = traceback.format_exc()
    out = capsys.readouterr()
    return code, out.out, out.err


def _shown(argv: list[str]) -> str:
    return " ".join(repr(a) if not a or any(c in a for c in " \n\t'\"[]{};") else a for a in argv)[:3000]


def check_outcome(case: Case, code: int | str, out: str, err: str, argv: list[str]) -> None:
    """Exit 0, or exit 2 with one `error:` line; refused if known invalid; no secret shown."""
    where = f"hybridnas {_shown(argv)}\n--- env {case.env}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    assert isinstance(code, int), f"an exception escaped:\n{code}\n{where}"
    assert "Traceback" not in out + err, f"a traceback was printed:\n{where}"
    assert code in (0, 2), f"exit {code}, expected 0 or 2:\n{where}"
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith(LOG_LINE)]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one `error:` line on stderr:\n{where}"
    else:
        assert not case.invalid, f"accepted {'; '.join(case.invalid)}:\n{where}"
    assert SECRET not in out + err, f"the URL's password was shown:\n{where}"


def check_world(world: World, case: Case, reference: dict[str, Any], succeeded: bool) -> None:
    """The protected studies are as they were, and nothing was written outside the work dir."""
    outside = [str(p) for p in world.root.rglob("*") if p != world.work and world.work not in p.parents
               and p not in world.work.parents]
    assert not outside, f"{case.kind} wrote outside its working directory: {outside[:5]} ({case.argv})"
    after = snapshot(world.url)
    may_change_budget = case.kind in ("launch", "api-launch") and case.study == REF and succeeded
    if may_change_budget:
        after, reference = _without_budget(after), _without_budget(reference)
    changed = [name for name in PROTECTED if json.dumps(after[name], default=str, sort_keys=True)
               != json.dumps(reference[name], default=str, sort_keys=True)]
    assert not changed, (f"{case.kind} changed the existing studies {changed} ({_shown(case.argv) or case.api}):\n"
                         f"before {reference[changed[0]]}\nafter  {after[changed[0]]}")


def check_promise(case: Case, world: World, out: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """What exit 0 promises for each command."""
    if case.kind == "status" and "--json" in argv:
        json.loads(out[out.index("{"):], parse_constant=_reject_constant)
    if case.kind in ("export", "sample"):
        target = Path(argv[argv.index("-o" if case.kind == "export" else "--out") + 1])
        files = sorted(target.iterdir()) if target.is_dir() else [target]
        assert files and all(load_config(f) for f in files), f"{_shown(argv)} wrote {files}, not configs"
    if case.kind == "launch":
        storage = argv[argv.index("--storage") + 1] if "--storage" in argv else case.env.get("HYBRIDNAS_STORAGE")
        again = ["status", f"--study={world.fill(case.study)}", "--json",
                 *(["--storage", world.fill(storage)] if storage is not None else [])]
        code, status_out, status_err = run_cli(again, capsys)
        assert code == 0, f"{_shown(argv)} succeeded, then {_shown(again)} exited {code}:\n{status_out}{status_err}"
        json.loads(status_out[status_out.index("{"):], parse_constant=_reject_constant)


def _reject_constant(name: str) -> None:
    raise AssertionError(f"not strict JSON: {name}")


def run_case(template: Template, capsys: pytest.CaptureFixture[str], case: Case) -> None:
    """Run one generated command line in its own world and check the whole contract."""
    with world(template, case) as here, inside(here, here.fill(case.env)):
        argv = here.fill(case.argv)
        code, out, err = run_cli(argv, capsys)
        if currently_in_test_context():  # the statistics (--hypothesis-show-statistics) count outcomes
            event(f"exit {code if isinstance(code, int) else 'exception'}")
        check_outcome(case, code, out, err, argv)
        if code == 0:
            check_promise(case, here, out, argv, capsys)
        check_world(here, case, template.studies, succeeded=code == 0)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_any_command_line_ends_in_a_result_or_one_error_and_leaves_existing_studies_alone(
    template: Template, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    examples = FUZZ.max_examples if _examples else FEWER.get(command, FUZZ.max_examples)

    @settings(FUZZ, max_examples=examples)
    @given(case=COMMANDS[command])
    def each(case: Case) -> None:
        run_case(template, capsys, case)

    each()


def _tiny_train(*flags: str, name: str = "tiny", image_size: int = 32, invalid: tuple[str, ...] = ()) -> Case:
    config = {**TINY_CONFIG, "name": name, "input": {"image_size": image_size, "num_classes": 10}}
    return Case("train", ["train", "config.yaml", "--dataset", "cifar10", "--train-subset", "64", "--val-subset", "32",
                          "--batch-size", "32", "--amp", "off", "--epochs", "1", *flags],
                files={"config.yaml": yaml.safe_dump(config)}, invalid=list(invalid))


def _launch(*flags: str, study: str = "x", invalid: tuple[str, ...] = ()) -> Case:
    return Case("launch", ["launch", "--workers", "0", f"--study={study}", "--storage", "sqlite:///{db}", *flags],
                study=study, invalid=list(invalid))


# Inputs that broke the contract when this file was written (found by the fuzzing above, or the
# defects it was written to catch), and a valid training run, which the few derandomized train
# examples may miss; each runs exactly.
KNOWN = {
    "launch-markup-name": _launch("--dataset", "cifar10", study="[/x]"),
    "launch-empty-name": _launch("--dataset", "cifar10", study="", invalid=("empty study name",)),
    "launch-infinite-timeout": _launch("--dataset", "cifar10", "--timeout", "inf", invalid=("timeout inf",)),
    "launch-26-digit-seed": _launch("--dataset", "cifar10", "--seed", "9" * 26, invalid=("seed 10**26",)),
    "launch-unknown-dataset": _launch("--dataset", "imagenet", invalid=("dataset imagenet",)),
    "dashboard-s3-credentials": Case("dashboard", ["dashboard", "--storage", "sqlite:///{db}", "--port", "18731",
                                                   "--artifacts", f"s3://AK:{SECRET}@bucket/p"]),
    "train-device-banana": _tiny_train("--device", "banana", invalid=("device banana",)),
    "train-trains": _tiny_train("--device", "cpu"),
    "train-name-escapes-runs": _tiny_train(name="../../escaped"),
    "train-size-mismatch-progress-line": _tiny_train(image_size=31),
    "train-out-unwritable": _tiny_train("--out", "/proc/hybridnas-fuzz/o"),
    "launch-in-memory-sqlite": Case("launch", ["launch", "--workers", "0", "--study=x", "--storage", "sqlite://",
                                               "--dataset", "cifar10"], study="x"),
    "launch-empty-folder-path": _launch("--dataset", "folder:", invalid=("dataset 'folder:'",)),
    "export-unwritable": Case("export", ["export", "--study=ref", "--storage", "sqlite:///{db}", "--best",
                                         "-o", "/proc/hybridnas-fuzz/best.yaml"], study=REF),
    "report-unwritable": Case("report", ["report", "--study=ref", "--storage", "sqlite:///{db}",
                                         "-o", "/proc/hybridnas-fuzz/r.html"], study=REF),
    "sample-unwritable": Case("sample", ["sample", "--space", "demo", "--n", "1", "--out", "/proc/hybridnas-fuzz/s"]),
}


@pytest.mark.parametrize("label", sorted(KNOWN))
def test_inputs_that_once_broke_the_contract(
    template: Template, capsys: pytest.CaptureFixture[str], label: str
) -> None:
    run_case(template, capsys, KNOWN[label])


# --- the Python API ---------------------------------------------------------------------


@st.composite
def api_cases(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["api-launch", "api-launch", "api-read"]))
    case = Case(kind, study="with\x00nul" if draw(st.integers(0, 9)) == 9 else draw(NAMES))
    case.api["storage"] = _mostly_valid(draw, ["sqlite:///{db}"], STORAGES)
    if kind == "api-launch":
        fields, case.invalid = draw(definitions())
        if case.study in EMPTY_NAMES:
            case.invalid.append(f"study name {case.study!r}")
        (interval, grace), valid = _pick(draw, HEARTBEATS)
        if valid is Valid.NO:
            case.invalid.append(f"heartbeat interval {interval} with grace period {grace}")
        case.api.update(definition=fields, heartbeat_interval=60 if interval is None else interval, grace_period=grace)
    else:
        case.api["export_to"] = draw(st.sampled_from(["best.yaml", "deep/best.json", "best.txt"]))
    return case


def call_api(case: Case, here: World) -> str | None:
    """Run the case's API calls; None if they returned, else the HybridNASError's message."""
    from hybridnas import search

    api, name = here.fill(case.api), here.fill(case.study)
    try:
        with no_hang(HANG_LIMIT_S):
            if case.kind == "api-launch":
                search.launch(api["definition"], study=name, storage=api["storage"], workers=0,
                              heartbeat_interval=api["heartbeat_interval"], grace_period=api["grace_period"])
                search.status(search.load(name, api["storage"]))
            else:
                study = search.load(name, api["storage"])
                json.dumps(search.status(study), allow_nan=False)
                search.export(study, api["export_to"], search.best_trial(study))
                load_config(api["export_to"])
    except HybridNASError as err:
        return str(err)
    return None


@API_FUZZ
@given(case=api_cases())
def test_any_api_call_returns_or_raises_one_named_error_and_leaves_existing_studies_alone(
    template: Template, case: Case
) -> None:
    with world(template, case) as here, inside(here, {}):
        try:
            message = call_api(case, here)
            event(f"{case.kind}: {'returned' if message is None else 'HybridNASError'}")
        except BaseException:  # noqa: BLE001 - whatever escapes is the finding
            pytest.fail(f"{case.kind} {case.study!r} {case.api}: not a HybridNASError:\n{traceback.format_exc()}")
        where = f"{case.kind} study={case.study!r} {here.fill(case.api)}"
        if message is None:
            assert not case.invalid, f"accepted {'; '.join(case.invalid)}: {where}"
        else:
            assert message and "\n" not in message, f"not one line: {message!r}: {where}"
        assert SECRET not in (message or ""), f"the URL's password was shown: {message}: {where}"
        check_world(here, case, template.studies, succeeded=message is None)


def test_the_reference_studies_hold_what_the_fuzzing_protects(template: Template) -> None:
    """A guard on the harness: the snapshot sees trials, params and attrs, or it would guard nothing."""
    ref = template.studies[REF]
    assert [t[1] for t in ref["trials"]] == ["COMPLETE", "PRUNED", "FAIL"]
    assert ref["trials"][0][2] == {"lr": 0.01} and ref["user_attrs"]["hybridnas"]["trials"] == 4
    assert template.studies[PLAIN]["directions"] == ["MINIMIZE", "MINIMIZE"]
