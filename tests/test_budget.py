"""`trials: N` means N distinct architectures trained: samples over a limit and repeats of an
earlier trial are recorded but never trained and use no budget; a space that produces nothing
else stops with its reason; two workers never train the same new architecture."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest
from helpers import CIFAR, SMALL_SPACE, TEST_WORKER
from optuna.trial import TrialState

from hybridnas.objectives import objective as objective_mod
from hybridnas.objectives.study.records import ARCH_KEY, DUPLICATE_OF, TrialRecord
from hybridnas.storage import open_storage

SMALL_ARGS = ["--dataset", CIFAR, "--train-subset", "256", "--val-subset", "128", "--epochs", "2",
              "--space", str(SMALL_SPACE), "--batch-size", "64", "--seed", "0"]
# 8 of the 24 architectures of the small space have more MACs than this
MAX_MACS = "3000000"


def _trained(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if TrialRecord(t).counts_toward_budget]


@pytest.fixture
def record_training(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The configs that really went through train_model, in this process."""
    trained: list[dict] = []
    real_train = objective_mod.train_model

    def recording_train(config, data, settings, on_epoch=None, **kwargs):
        trained.append(config.model_dump(mode="json"))
        return real_train(config, data, settings, on_epoch=on_epoch, **kwargs)

    monkeypatch.setattr(objective_mod, "train_model", recording_train)
    return trained


@pytest.mark.integration  # a real 10-architecture search
@pytest.mark.usefixtures("study_env")
def test_ten_trials_train_ten_distinct_architectures(hybridnas, tmp_path: Path, record_training: list[dict]) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "b", "--storage", url, *SMALL_ARGS, "--trials", "10",
                          "--max-macs", MAX_MACS, "--pruner", "none", "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", "b", "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out
    assert "stopped: budget reached" in out

    trials = optuna.load_study(study_name="b", storage=open_storage(url, heartbeat_interval=None)).get_trials()
    trained = _trained(trials)
    assert len(trained) == 10 == len(record_training)
    keys = [t.user_attrs[ARCH_KEY] for t in trained]
    assert len(set(keys)) == 10, "an architecture was trained twice"
    assert len(trials) > 10, "expected the sampler to repeat or break the limit at least once"
    by_key = {t.user_attrs[ARCH_KEY]: t for t in trained}
    for t in trials:
        if DUPLICATE_OF in t.user_attrs:
            original = by_key[t.user_attrs[ARCH_KEY]]
            assert t.user_attrs[DUPLICATE_OF] == original.number < t.number
            assert t.state == original.state and t.values == original.values
            assert "epochs_run" not in t.user_attrs
        elif "constraint_violation" in t.user_attrs:
            assert t.state == TrialState.PRUNED and t.user_attrs["macs"] > int(MAX_MACS)
            assert t.user_attrs[ARCH_KEY] not in by_key
        else:
            assert t in trained
    # every repeat of a trained architecture is marked, none is left unmarked
    counts = Counter(t.user_attrs[ARCH_KEY] for t in trials if "constraint_violation" not in t.user_attrs)
    assert sum(counts.values()) - len(counts) == sum(DUPLICATE_OF in t.user_attrs for t in trials)

    code, out = hybridnas("status", "--study", "b", "--storage", url, "--json")
    assert code == 0 and '"done": 10' in out, out


@pytest.mark.integration  # 50 samples in a row before it may stop
@pytest.mark.usefixtures("study_env")
def test_a_space_with_nothing_new_stops_with_its_reason(hybridnas, tmp_path: Path) -> None:
    space = tmp_path / "two.yaml"
    space.write_text(SMALL_SPACE.read_text().replace("{choices: [8, 16, 32], name: c1}", "8")
                     .replace("{choices: [16, 32], name: c2}", "16").replace("{choices: [3, 5], name: k2}", "3"))
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    args = [a if a != str(SMALL_SPACE) else str(space) for a in SMALL_ARGS]
    code, out = hybridnas("launch", "--study", "x", "--storage", url, *args, "--trials", "5", "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", "x", "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out
    assert "stopped: space exhausted: 2 distinct architectures in the space; the last 50 samples were repeats" in out
    trials = optuna.load_study(study_name="x", storage=open_storage(url, heartbeat_interval=None)).get_trials()
    assert len(_trained(trials)) == 2


@pytest.mark.integration  # two worker processes
@pytest.mark.usefixtures("study_env")
def test_two_workers_sampling_the_same_new_architecture_train_it_once(hybridnas, tmp_path: Path) -> None:
    """Both workers pick up one of two queued copies of the same architecture at the same moment."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "c", "--storage", url, *SMALL_ARGS, "--trials", "3",
                          "--pruner", "none", "--workers", "0")
    assert code == 0, out
    study = optuna.load_study(study_name="c", storage=open_storage(url, heartbeat_interval=None))
    same = {"c1": 32, "c2": 32, "k2": 5, "attention": None}
    study.enqueue_trial(same)
    study.enqueue_trial(same)
    hybridnas_cli = str(Path(sys.executable).with_name("hybridnas"))
    workers = [subprocess.Popen([hybridnas_cli, "worker", "--study", "c", "--storage", url, "--threads", "1",
                                 "--worker-id", f"w{i}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for i in range(2)]
    logs = [w.communicate(timeout=300)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs

    trials = study.get_trials()
    first, second = trials[0], trials[1]
    assert first.params == second.params == same
    assert DUPLICATE_OF not in first.user_attrs and first.state == TrialState.COMPLETE
    assert second.user_attrs[DUPLICATE_OF] == 0 and second.value == first.value
    trained = _trained(trials)
    assert len(trained) == 3 and len({t.user_attrs[ARCH_KEY] for t in trained}) == 3
    assert {t.user_attrs["worker"] for t in trials} == {"w0", "w1"}


def _racing_study(budget_left: int) -> tuple[optuna.Study, list[optuna.Trial]]:
    """A study with one COMPLETE trial and two trials started at the same moment by two workers
    that both saw `budget_left` places in the budget."""
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    return study, [study.ask(), study.ask()]


def _admit_later(gate, number: int) -> tuple[threading.Thread, list]:
    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(gate.admit(number)))
    thread.start()
    return thread, answer


def test_of_two_trials_racing_for_the_last_place_the_later_one_does_not_start() -> None:
    from hybridnas.workers.worker import BudgetGate

    study, (first, second) = _racing_study(budget_left=1)
    gate = BudgetGate(study, budget=2, poll_s=0.01)
    assert gate.admit(first.number) is None
    thread, answer = _admit_later(gate, second.number)
    thread.join(0.3)
    assert thread.is_alive(), "the later trial must wait while the earlier one is in flight"

    study.tell(first, 0.6)
    thread.join(5)

    assert answer == ["not started: budget reached while it waited for trials in flight on other workers"]


def test_a_trial_waiting_for_the_last_place_starts_when_the_earlier_one_fails() -> None:
    from hybridnas.workers.worker import BudgetGate

    study, (first, second) = _racing_study(budget_left=1)
    gate = BudgetGate(study, budget=2, poll_s=0.01)
    thread, answer = _admit_later(gate, second.number)

    first.set_user_attr("fail_reason", "out of memory on cpu")
    study.tell(first, state=TrialState.FAIL)
    thread.join(5)

    assert answer == [None]


def test_trials_racing_for_places_that_are_there_both_start() -> None:
    from hybridnas.workers.worker import BudgetGate

    study, (first, second) = _racing_study(budget_left=2)
    gate = BudgetGate(study, budget=3, poll_s=0.01)

    assert [gate.admit(first.number), gate.admit(second.number)] == [None, None]


def test_a_trial_that_did_not_wait_starts_even_if_the_deadline_just_passed() -> None:
    """The worker asked the deadline before the trial began; a trial with nothing in flight
    before it is not turned away by the moment between that question and its start."""
    from hybridnas.workers.worker import BudgetGate

    study, (first, _) = _racing_study(budget_left=2)
    gate = BudgetGate(study, budget=3, timeout=1e-6, poll_s=0.01)

    assert gate.verdict(study.get_trials()) == "timeout"
    assert gate.admit(first.number) is None
