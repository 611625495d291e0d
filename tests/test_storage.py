"""hybridnas.storage against a real SQLite file and the local PostgreSQL (never skipped)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator

import optuna
import pytest
import sqlalchemy
from helpers import POSTGRES_URL
from optuna.trial import TrialState

from hybridnas.storage import (
    DEFAULT_STORAGE_URL,
    StorageError,
    artifact_store,
    artifacts_path,
    load_study,
    mask_url,
    open_storage,
    resolve_url,
    retried_from,
)
from hybridnas.storage._schema import schema_head


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def storage_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nas.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def study_name(storage_url: str) -> Iterator[str]:
    """A unique study name, deleted afterwards so reruns against Postgres stay fast."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    storage = open_storage(storage_url, heartbeat_interval=None)
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    storage.engine.dispose()


def test_write_and_read_back(storage_url: str, study_name: str) -> None:
    study = optuna.create_study(study_name=study_name, storage=open_storage(storage_url))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)

    loaded = load_study(study_name, storage_url)
    assert [t.state for t in loaded.trials] == [TrialState.COMPLETE] * 3
    assert loaded.best_value == min(t.value for t in study.trials)


@pytest.mark.integration  # waits out real heartbeats
def test_stale_trial_is_failed_and_rerun(storage_url: str, study_name: str) -> None:
    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2, max_retry=1)
    study = optuna.create_study(study_name=study_name, storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):
        victim = study.ask()
    victim.suggest_float("x", 0, 1)
    storage.record_heartbeat(victim._trial_id)  # a worker that beat once, then was killed
    time.sleep(3)

    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)

    failed, rerun = study.trials
    assert failed.state == TrialState.FAIL
    assert rerun.state == TrialState.COMPLETE
    assert retried_from(rerun) == failed.number
    assert rerun.params == failed.params
    assert retried_from(failed) is None


def test_each_waiting_trial_is_claimed_by_one_worker(storage_url: str, study_name: str) -> None:
    """Workers racing for the same WAITING trial (retrain jobs, re-queued trials): exactly one
    gets it. On SQLite, Optuna's own read-then-write claim let two workers both win."""
    study = optuna.create_study(study_name=study_name, storage=open_storage(storage_url, heartbeat_interval=None))
    for x in range(25):
        study.enqueue_trial({"x": x})
    trial_ids = [t._trial_id for t in study.get_trials(states=(TrialState.WAITING,))]
    workers = 4
    at_once = threading.Barrier(workers)
    wins: list[list[int]] = [[] for _ in range(workers)]

    def claim(worker: int) -> None:
        storage = open_storage(storage_url, heartbeat_interval=None)  # a connection of its own
        for trial_id in trial_ids:
            at_once.wait()
            if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                wins[worker].append(trial_id)
        storage.engine.dispose()

    threads = [threading.Thread(target=claim, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sorted(sum(wins, [])) == sorted(trial_ids)
    assert all(t.state == TrialState.RUNNING for t in study.get_trials())


def test_load_missing_study_names_the_existing_ones(storage_url: str, study_name: str) -> None:
    optuna.create_study(study_name=study_name, storage=open_storage(storage_url))
    with pytest.raises(StorageError, match=f"no study named 'nope-.*studies there: .*{study_name}"):
        load_study(f"nope-{uuid.uuid4().hex}", storage_url)


def test_password_never_logged(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Trust auth accepts any password, so a real connection can carry a secret to look for."""
    secret = f"s3cr3t-{uuid.uuid4().hex[:8]}"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    optuna.logging.enable_propagation()
    try:
        storage = open_storage(url)
        name = f"test-{uuid.uuid4().hex[:12]}"
        optuna.create_study(study_name=name, storage=storage).optimize(lambda t: 1.0, n_trials=1)
        optuna.delete_study(study_name=name, storage=storage)
    finally:
        optuna.logging.disable_propagation()
    assert caplog.records
    assert secret not in caplog.text
    assert secret not in repr(storage.engine)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("mysql://root:{pw}@127.0.0.1/db", "unsupported storage URL scheme 'mysql'"),
        ("postgresql+psycopg2://postgres:{pw}@127.0.0.1/test", "unsupported storage URL scheme"),
        ("postgresql://postgres:{pw}@127.0.0.1:1/test", "Connection refused"),
        ("postgresql+psycopg://postgres:{pw}@127.0.0.1:5432/no_such_db_hybridnas", 'database "no_such_db_hybridnas"'),
        ("postgresql://postgres:{pw}@127.0.0.1:notaport/test", "not a database URL"),
        ("postgresql://postgres:{pw}{{x}}@127.0.0.1/test", "percent-encode braces"),
    ],
)
def test_bad_urls_give_one_masked_line(postgres_url: str, url: str, reason: str) -> None:
    secret = "hunter2-" + uuid.uuid4().hex[:6]
    with pytest.raises(StorageError) as info:
        open_storage(url.format(pw=secret))
    message = str(info.value)
    assert reason in message
    assert "\n" not in message
    assert secret not in message
    assert "postgres:***@" in message or "root:***@" in message


@pytest.mark.parametrize("secret", ["pw-plain", "pw%2Fencoded"])
def test_password_scrubbed_from_driver_text(secret: str) -> None:
    """SQLAlchemy quotes the URL it cannot load; the password must not ride along, encoded or not."""
    with pytest.raises(StorageError) as info:
        open_storage(f"sqlite://user:{secret}@/x.db")
    assert "Invalid SQLite URL" in str(info.value)
    assert secret not in str(info.value) and "pw/encoded" not in str(info.value)


def test_old_schema_names_the_upgrade_command(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    storage = open_storage(url)
    versions = storage._version_manager.get_all_versions()
    with storage.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = :v"), {"v": versions[1]})
    storage.engine.dispose()

    with pytest.raises(StorageError, match="optuna storage upgrade --storage"):
        open_storage(url)


def test_schema_head_read_from_the_scripts_is_alembics_head(tmp_path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'new.db'}")  # a new database takes Optuna's own path
    assert schema_head() == storage._version_manager.get_head_version()


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgresql+psycopg://user:secret@host:5432/db", "postgresql+psycopg://user:***@host:5432/db"),
        ("postgresql://u:p@ss/w:rd@host/db", "postgresql://u:***@host/db"),
        ("postgresql+psycopg://user@host/db", "postgresql+psycopg://user@host/db"),
        ("postgresql+psycopg://host:5432/db", "postgresql+psycopg://host:5432/db"),
        ("sqlite:///hybridnas.db", "sqlite:///hybridnas.db"),
        ("postgresql+psycopg://u@h/db?sslmode=require&password=pw", "postgresql+psycopg://u@h/db?sslmode=require&password=***"),
        ("sqlite:////abs/path/with:colon@at.db", "sqlite:////abs/path/with:colon@at.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYBRIDNAS_STORAGE", raising=False)
    assert resolve_url(None) == DEFAULT_STORAGE_URL
    assert resolve_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    monkeypatch.setenv("HYBRIDNAS_STORAGE", "postgresql://u@h/db")
    assert resolve_url(None) == "postgresql+psycopg://u@h/db"


def test_artifact_store_beside_the_storage(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYBRIDNAS_ARTIFACTS", raising=False)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'runs' / 'nas.db'}"
    assert artifacts_path(url) == tmp_path / "runs" / "nas-artifacts"
    assert artifacts_path(POSTGRES_URL) == type(tmp_path)("hybridnas-artifacts")
    monkeypatch.setenv("HYBRIDNAS_ARTIFACTS", str(tmp_path / "shared"))
    assert artifacts_path(url) == tmp_path / "shared"

    (tmp_path / "runs").mkdir()
    study = optuna.create_study(storage=open_storage(url, heartbeat_interval=None))
    trial = study.ask()
    (tmp_path / "config.yaml").write_text("name: x\n")
    artifact_id = optuna.artifacts.upload_artifact(
        artifact_store=artifact_store(url), file_path=str(tmp_path / "config.yaml"), study_or_trial=trial
    )
    assert (tmp_path / "shared" / artifact_id).read_text() == "name: x\n"
