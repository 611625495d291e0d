"""`hybridnas retrain`: the best distinct trials trained longer on Ray workers, scored on the
validation split and on images the search never saw, weights kept; a rerun resumes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from helpers import json_in, tiny_study_args
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.trial import TrialState

from hybridnas.cli._progress import LaunchProgress
from hybridnas.models import build
from hybridnas.objectives.retrain import SEED, SOURCE_TRIAL, companion_name
from hybridnas.objectives.results import trial_config
from hybridnas.storage import artifact_store, open_storage

TEST_IMAGES = 200


def _searched(hybridnas, url: str, name: str, *extra: str) -> optuna.Study:
    code, out = hybridnas("launch", "--study", name, "--storage", url, *tiny_study_args(6, epochs=2),
                          "--test-subset", str(TEST_IMAGES), "--pruner", "none", *extra, "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", name, "--storage", url, "--threads", "1")
    assert code == 0, out
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))


@pytest.mark.usefixtures("ray_cluster")
def test_interrupted_retrain_resumes_and_skips_finished_jobs(
    hybridnas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    study = _searched(hybridnas, url, "r")
    real_progress = LaunchProgress.__call__

    def ctrl_c_after_one_job(self: LaunchProgress) -> None:
        real_progress(self)
        if self.seen:
            raise KeyboardInterrupt

    monkeypatch.setattr(LaunchProgress, "__call__", ctrl_c_after_one_job)
    # 2,048 images, so a job runs for seconds and Ctrl-C lands while others are still to do
    args = ("retrain", "--study", "r", "--storage", url, "--top", "2", "--seeds", "2", "--epochs", "3", "--test",
            "--train-subset", "2048")
    code, out = hybridnas(*args, "--workers", "2")
    assert code == 130, out
    companion = optuna.load_study(study_name=companion_name("r"), storage=open_storage(url, heartbeat_interval=None))
    before = {t.number: t for t in companion.get_trials() if t.state == TrialState.COMPLETE}
    still_queued = [t for t in companion.get_trials() if t.state == TrialState.WAITING]
    assert 1 <= len(before) < 4
    assert not [t for t in companion.get_trials() if t.state == TrialState.RUNNING]

    monkeypatch.setattr(LaunchProgress, "__call__", real_progress)
    code, out = hybridnas(*args, "--workers", "2", "--json")
    assert code == 0, out
    # the interrupted jobs are queued again; the ones that never started are still queued
    assert f"{4 - len(before) - len(still_queued)} job(s) queued" in out
    done = [t for t in companion.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted((t.user_attrs[SOURCE_TRIAL], t.user_attrs[SEED]) for t in done) == sorted(
        {(t.user_attrs[SOURCE_TRIAL], t.user_attrs[SEED]) for t in done})  # each job once
    assert len(done) == 4
    for number, t in before.items():
        assert companion.get_trials()[number].values == t.values  # finished jobs were not rerun

    results = json_in(out)
    assert len(results) == 2 and {r["trial"] for r in results} < {t.number for t in study.trials}
    for r in results:
        assert r["epochs"] == 3 and r["seeds"] == [0, 1]
        assert 0.0 <= r["test_top1"] <= 1.0 and 0.0 <= r["val_top1"] <= 1.0
        assert r["params"] == study.trials[r["trial"]].user_attrs["params"]


@pytest.fixture
def pg_name(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HYBRIDNAS_ARTIFACTS", str(tmp_path / "artifacts"))
    name = f"test-retrain-{uuid.uuid4().hex[:8]}"
    yield name
    storage = open_storage(postgres_url, heartbeat_interval=None)
    for study in (name, companion_name(name)):
        try:
            optuna.delete_study(study_name=study, storage=storage)
        except KeyError:
            pass


@pytest.mark.usefixtures("ray_cluster")
def test_retrain_on_postgres_keeps_weights_that_rebuild(hybridnas, postgres_url: str, pg_name: str,
                                                        tmp_path: Path) -> None:
    study = _searched(hybridnas, postgres_url, pg_name)
    code, out = hybridnas("retrain", "--study", pg_name, "--storage", postgres_url, "--top", "2", "--epochs", "2",
                          "--workers", "2", "--json")
    assert code == 0, out
    results = json_in(out)
    best_two = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    assert results[0]["test_top1"] is None  # not asked for
    assert {r["trial"] for r in results} <= {t.number for t in best_two}
    storage = open_storage(postgres_url, heartbeat_interval=None)
    companion = optuna.load_study(study_name=companion_name(pg_name), storage=storage)
    for t in companion.get_trials(states=(TrialState.COMPLETE,)):
        (meta,) = get_all_artifact_meta(t, storage=storage)
        path = tmp_path / meta.filename
        download_artifact(artifact_store=artifact_store(postgres_url), artifact_id=meta.artifact_id, file_path=str(path))
        state = torch.load(path, weights_only=True)
        model = build(trial_config(study.trials[t.user_attrs[SOURCE_TRIAL]]))
        model.load_state_dict(state)


@pytest.mark.usefixtures("study_env")
def test_retrain_test_needs_images_the_search_never_saw(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "n", "--storage", url, *tiny_study_args(2), "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("retrain", "--study", "n", "--storage", url, "--test", "--workers", "0")
    assert code == 2 and "has no test split and the study held no images out (test_subset)" in out, out


@pytest.mark.usefixtures("study_env")
def test_retrain_rejects_an_unknown_preset_before_storing_anything(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "p", "--storage", url, *tiny_study_args(2), "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("retrain", "--study", "p", "--storage", url, "--presets", "chae,resnet9000", "--workers", "0")
    assert code == 2 and "--presets: no preset named resnet9000; choose from zureick, group18, chae" in out, out
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(url, heartbeat_interval=None))] == ["p"]


def test_top_k_takes_one_trial_per_architecture_whatever_its_training_settings() -> None:
    """Moves that only change the learning rate make distinct trials of one architecture: the
    top K still names K different models, each by its best-scoring trial."""
    from hybridnas.models.canonical import architecture_key, canonical_config
    from hybridnas.models.presets import preset
    from hybridnas.objectives.dedup import ARCH_KEY
    from hybridnas.objectives.retrain import pick_trials

    study = optuna.create_study(direction="maximize")
    models = {name: preset(name, num_classes=10, image_size=32) for name in ("chae", "samc", "group18")}
    runs = [("chae", 0.01, 0.61), ("chae", 0.003, 0.64), ("chae", 0.001, 0.62), ("samc", 0.01, 0.58),
            ("group18", 0.01, 0.55)]
    for name, lr, value in runs:
        cfg = models[name]
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={
            "config": canonical_config(cfg), "training": {"lr": lr},
            ARCH_KEY: architecture_key(cfg, {"lr": lr})}))

    picked = pick_trials(study, 3)

    assert [t.number for t in picked] == [1, 3, 4]
    assert [t.user_attrs["training"]["lr"] for t in picked] == [0.003, 0.01, 0.01]


@pytest.mark.usefixtures("study_env")
def test_a_trial_the_search_queued_as_a_preset_is_retrained_under_its_name(hybridnas, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """With `enqueue_presets` the search's best trial can be a paper's model; beside `--presets`
    of the same name its row says so, rather than showing one model as two unrelated rows."""
    from hybridnas.cli.study_cmds import _print_retrain
    from hybridnas.models.canonical import architecture_key, canonical_config
    from hybridnas.models.presets import preset
    from hybridnas.objectives.dedup import ARCH_KEY
    from hybridnas.objectives.retrain import PRESET, SOURCE_PRESET, plan_retrain, retrain_results

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "q", "--storage", url, *tiny_study_args(2), "--workers", "0")
    assert code == 0, out
    source = optuna.load_study(study_name="q", storage=open_storage(url, heartbeat_interval=None))
    chae = preset("chae", num_classes=10, image_size=32)
    source.add_trial(optuna.trial.create_trial(value=0.6, user_attrs={
        "config": canonical_config(chae), ARCH_KEY: architecture_key(chae, {}), PRESET: "chae"}))

    companion, _, queued = plan_retrain("q", url, top=1, epochs=1, test=False, seeds=1)

    (job,) = companion.get_trials()
    assert queued == 1 and job.user_attrs == {SOURCE_TRIAL: 0, SOURCE_PRESET: "chae", SEED: 0}
    companion.add_trial(optuna.trial.create_trial(value=0.55, user_attrs={
        **job.user_attrs, "params": 370_032, "macs": 6_928_128, "epochs_run": 1, "test_top1": None}))
    (row,) = retrain_results(companion)
    assert row["trial"] == 0 and row[SOURCE_PRESET] == "chae" and PRESET not in row
    _print_retrain([row])
    assert "0 (chae)" in capsys.readouterr().out
