"""`hybridnas retrain`: the best distinct trials trained longer on Ray workers, scored on the
validation split and on images the search never saw, weights kept; a rerun resumes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from helpers import CIFAR, TEST_WORKER, ctrl_c_when, json_in, precision_flags, tiny_study_args
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.trial import TrialState

from hybridnas.models import build
from hybridnas.objectives.study.results import trial_config
from hybridnas.objectives.retrain import companion_name
from hybridnas.objectives.study.records import SEED, SOURCE_TRIAL
from hybridnas.storage import artifact_store, open_storage

TEST_IMAGES = 200


def _searched(hybridnas, url: str, name: str, *extra: str) -> optuna.Study:
    code, out = hybridnas("launch", "--study", name, "--storage", url, *tiny_study_args(6, epochs=2),
                          "--test-subset", str(TEST_IMAGES), "--pruner", "none", *extra, "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", name, "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))


@pytest.mark.usefixtures("ray_cluster")
def test_interrupted_retrain_resumes_and_skips_finished_jobs(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    study = _searched(hybridnas, url, "r")
    # 2,048 images, so a job runs for seconds and Ctrl-C lands while others are still to do
    args = ("retrain", "--study", "r", "--storage", url, "--top", "2", "--seeds", "2", "--epochs", "3", "--test",
            "--train-subset", "2048")
    with ctrl_c_when(lambda progress: progress.seen) as sent:
        code, out = hybridnas(*args, "--workers", "2")
    assert sent and code == 130, out
    companion = optuna.load_study(study_name=companion_name("r"), storage=open_storage(url, heartbeat_interval=None))
    before = {t.number: t for t in companion.get_trials() if t.state == TrialState.COMPLETE}
    still_queued = [t for t in companion.get_trials() if t.state == TrialState.WAITING]
    assert 1 <= len(before) < 4
    assert not [t for t in companion.get_trials() if t.state == TrialState.RUNNING]

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
        assert r["test_images"] == TEST_IMAGES
        low, high = r["test_top1_ci95"]
        assert low < r["test_top1"] < high and 0.09 < high - low < 0.15  # about ±6 points on 200 images


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

    # `hybridnas train` of the exported trial, with the study's splits and seed, the retrain's
    # epochs, the worker's thread count and the job's precision, is the retrain job again, to the last bit
    job = max(companion.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    code, out = hybridnas("export", "--study", pg_name, "--storage", postgres_url, "--trial",
                          job.user_attrs[SOURCE_TRIAL], "-o", tmp_path / "job.yaml")
    assert code == 0, out
    code, out = hybridnas("train", tmp_path / "job.yaml", "--dataset", CIFAR, "--train-subset", "256",
                          "--val-subset", "128", "--test-subset", TEST_IMAGES, "--seed", "0", "--epochs", "2",
                          "--threads", "1", *precision_flags(job.user_attrs["precision"]), "--out", tmp_path / "run", "--json")
    assert code == 0, out
    metrics = json_in(out)
    assert (metrics["val_top1"], metrics["device"]) == (job.value, job.user_attrs["device"]) == (job.value, "cpu (1 threads)")
    assert metrics["precision"] == job.user_attrs["precision"]


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


@pytest.mark.usefixtures("study_env")
def test_top_0_retrains_the_presets_alone_on_a_study_with_no_trial_finished(hybridnas, tmp_path: Path) -> None:
    """A baseline measured on a search's data and split need not wait for (or retrain) its trials."""
    from hybridnas.objectives.study.records import PRESET

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "b", "--storage", url, *tiny_study_args(2), "--workers", "0")
    assert code == 0, out

    def retrain(*flags: str) -> tuple[int, str]:
        return hybridnas("retrain", "--study", "b", "--storage", url, "--epochs", "1", "--json", *flags)

    code, out = retrain("--top", "0", "--workers", "0")
    assert code == 2 and "--top 0 retrains the --presets alone: name them" in out, out
    code, out = retrain("--top", "0", "--presets", "chae", "--pareto", "--workers", "0")
    assert code == 2 and "leave out --pareto" in out, out
    code, out = retrain("--top", "1", "--presets", "chae", "--workers", "0")
    assert code == 2 and "study 'b' has no completed trial to retrain yet" in out, out

    code, out = retrain("--top", "0", "--presets", "chae", "--workers", "0")
    assert code == 0 and "1 job(s) queued" in out, out
    code, out = hybridnas("worker", "--study", companion_name("b"), "--storage", url, "--threads", "1",
                          "--worker-id", TEST_WORKER)
    assert code == 0, out

    code, out = retrain("--top", "0", "--presets", "chae", "--workers", "0")

    assert code == 0, out
    (row,) = json_in(out)
    assert row["preset"] == "chae" and row["trial"] is None and row["params"] == 370_032
    assert row["epochs"] == 1 and 0.0 < row["val_top1"] < 1.0
    storage = open_storage(url, heartbeat_interval=None)
    (job,) = optuna.load_study(study_name=companion_name("b"), storage=storage).get_trials()
    assert job.state == TrialState.COMPLETE and job.user_attrs[PRESET] == "chae" and SOURCE_TRIAL not in job.user_attrs
    assert optuna.load_study(study_name="b", storage=storage).get_trials() == []  # the search is untouched


def test_top_k_takes_one_trial_per_architecture_whatever_its_training_settings() -> None:
    """Moves that only change the learning rate make distinct trials of one architecture: the
    top K still names K different models, each by its best-scoring trial."""
    from hybridnas.models.canonical import architecture_key, canonical_config
    from hybridnas.models.presets import preset
    from hybridnas.objectives.retrain import pick_trials
    from hybridnas.objectives.study.records import ARCH_KEY

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
    from hybridnas.objectives.retrain import plan_retrain, retrain_results
    from hybridnas.objectives.study.records import ARCH_KEY, PRESET, SOURCE_PRESET

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "q", "--storage", url, *tiny_study_args(2), "--workers", "0")
    assert code == 0, out
    source = optuna.load_study(study_name="q", storage=open_storage(url, heartbeat_interval=None))
    chae = preset("chae", num_classes=10, image_size=32)
    source.add_trial(optuna.trial.create_trial(value=0.6, user_attrs={
        "config": canonical_config(chae), ARCH_KEY: architecture_key(chae, {}), PRESET: "chae"}))

    companion, _, queued, _ = plan_retrain(source, top=1, epochs=1, test=False, seeds=1)

    (job,) = companion.get_trials()
    assert queued == 1 and job.user_attrs == {SOURCE_TRIAL: 0, SOURCE_PRESET: "chae", SEED: 0}
    companion.add_trial(optuna.trial.create_trial(value=0.55, user_attrs={
        **job.user_attrs, "params": 370_032, "macs": 6_928_128, "epochs_run": 1, "test_top1": None}))
    (row,) = retrain_results(companion)
    assert row["trial"] == 0 and row["source_preset"] == "chae" and "preset" not in row
    _print_retrain([row])
    assert "0 (chae)" in capsys.readouterr().out


@pytest.mark.usefixtures("study_env")
def test_a_preset_the_search_trained_the_same_way_is_retrained_once(hybridnas, tmp_path: Path) -> None:
    """`--presets chae` beside a top trial that is CHAE with the study's own settings would train
    one model twice with one seed; a CHAE trial whose sampled lr differs is a different job.
    `enqueue_presets` records the optimizer's defaults as values (sgd at batch 64: lr 0.05,
    weight decay 5e-4) where the preset's own job leaves them unset: the same training."""
    from hybridnas.models.canonical import architecture_key, canonical_config
    from hybridnas.models.presets import preset
    from hybridnas.objectives.retrain import plan_retrain
    from hybridnas.objectives.study.records import ARCH_KEY, PRESET, SOURCE_PRESET

    chae = preset("chae", num_classes=10, image_size=32)
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    same = {"batch_size": 64, "lr": 0.05, "weight_decay": 0.0005, "label_smoothing": 0.0}
    for name, training in (("same", same), ("other-lr", {**same, "lr": 0.01})):
        code, out = hybridnas("launch", "--study", name, "--storage", url, *tiny_study_args(2), "--workers", "0")
        assert code == 0, out
        source = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))
        source.add_trial(optuna.trial.create_trial(value=0.6, user_attrs={
            "config": canonical_config(chae), "training": training, ARCH_KEY: architecture_key(chae, training),
            PRESET: "chae"}))

    def searched(name: str) -> optuna.Study:
        return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))

    companion, _, queued, as_trials = plan_retrain(searched("same"), top=1, epochs=1, test=False, seeds=2,
                                                   presets=("chae", "samc"))
    assert as_trials == {"chae": 0} and queued == 4
    assert {(t.user_attrs.get(SOURCE_TRIAL), t.user_attrs.get(SOURCE_PRESET), t.user_attrs.get(PRESET))
            for t in companion.get_trials()} == {(0, "chae", None), (None, None, "samc")}

    companion, _, queued, as_trials = plan_retrain(searched("other-lr"), top=1, epochs=1, test=False, seeds=1,
                                                   presets=("chae",))
    assert as_trials == {} and queued == 2
    assert {t.user_attrs.get(PRESET) for t in companion.get_trials()} == {None, "chae"}


def test_the_test_interval_is_newcombes_wilson_interval() -> None:
    from hybridnas.objectives.retrain import wilson_interval

    # Newcombe (1998), Stat. Med. 17:857, Table I: Wilson score intervals
    for correct, images, expected in ((81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)),
                                      (0, 20, (0.0, 0.1611))):
        assert tuple(round(x, 4) for x in wilson_interval(correct / images, images)) == expected


def test_the_retrained_table_shows_how_far_the_test_images_let_each_score_move(
        capsys: pytest.CaptureFixture) -> None:
    from hybridnas.cli.study_cmds import _print_retrain
    from hybridnas.objectives.retrain import wilson_interval

    row = {"trial": 22, "params": 370_090, "macs": 6_928_186, "epochs": 15, "seeds": [0], "val_top1": 0.48,
           "test_top1": 0.546, "test_images": 1000, "test_top1_ci95": wilson_interval(0.546, 1000)}
    _print_retrain([row, {**row, "trial": None, "preset": "chae", "test_top1": 0.549,
                          "test_top1_ci95": wilson_interval(0.549, 1000)}])
    out = capsys.readouterr().out
    assert "54.6% ±3.1" in out and "54.9% ±3.1" in out  # Wilson: 51.5-57.7 and 51.8-58.0
    assert "half its 95% interval over the 1,000 test images" in out


@pytest.mark.usefixtures("study_env")
def test_a_study_seeded_at_the_top_of_the_range_retrains_with_seeds_that_wrap_to_zero(hybridnas,
                                                                                     tmp_path: Path) -> None:
    """Seeds run from the study's seed; past 2**32 - 1 (the trainer's last seed) they wrap to 0
    instead of queueing a job no worker can train."""
    from hybridnas.models.canonical import architecture_key, canonical_config
    from hybridnas.models.presets import preset
    from hybridnas.objectives.retrain import plan_retrain
    from hybridnas.objectives.study.records import ARCH_KEY

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "top", "--storage", url, *tiny_study_args(2), "--seed",
                          str(2**32 - 1), "--workers", "0")
    assert code == 0, out
    source = optuna.load_study(study_name="top", storage=open_storage(url, heartbeat_interval=None))
    chae = preset("chae", num_classes=10, image_size=32)
    source.add_trial(optuna.trial.create_trial(value=0.6, user_attrs={
        "config": canonical_config(chae), ARCH_KEY: architecture_key(chae, {})}))

    companion, _, queued, _ = plan_retrain(source, top=1, epochs=1, test=False, seeds=3)
    assert queued == 3
    assert [t.user_attrs[SEED] for t in companion.get_trials()] == [2**32 - 1, 0, 1]
