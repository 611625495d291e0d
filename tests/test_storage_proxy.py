"""`hybridnas storage-proxy` in a real subprocess in front of the local PostgreSQL, and grpc:// URLs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import GrpcStorageProxy
from optuna.trial import TrialState

from hybridnas.common import UsageError
from hybridnas.storage import HeartbeatGrpcStorageProxy, StorageError, artifacts_path, open_storage, retried_from
from hybridnas.storage import _proxy as proxy_module
from hybridnas.storage._proxy import _check_port_free

HYBRIDNAS = Path(sys.executable).with_name("hybridnas")
# A hang guard, not a timing assertion: the CLI imports torch, slow on a busy 2-core machine.
STARTUP_LIMIT_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def proxy_url(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `hybridnas storage-proxy` on a free port for the module; always terminated."""
    port = _free_port()
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(HYBRIDNAS), "storage-proxy", "--storage", "postgresql://postgres@127.0.0.1:5432/test",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"grpc://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"storage-proxy exited with {proc.returncode}: {log.read_text()}", pytrace=False)
            try:
                open_storage(url).close()
                break
            except StorageError:
                if time.monotonic() > deadline:
                    pytest.fail(f"storage-proxy did not answer: {log.read_text()}", pytrace=False)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_study_through_the_proxy_lands_in_postgres(proxy_url: str, postgres_url: str) -> None:
    name = f"test-proxy-{uuid.uuid4().hex[:12]}"
    proxy = open_storage(proxy_url)
    assert isinstance(proxy, GrpcStorageProxy)
    try:
        study = optuna.create_study(study_name=name, storage=proxy)
        study.set_user_attr("via", "proxy")
        study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + t.suggest_int("n", 1, 4), n_trials=8)
        sent = {t.number: (t.params, t.value) for t in study.trials}

        direct = optuna.load_study(study_name=name, storage=open_storage(postgres_url, heartbeat_interval=None))
        assert direct.user_attrs == {"via": "proxy"}
        assert [t.state for t in direct.trials] == [TrialState.COMPLETE] * 8
        assert {t.number: (t.params, t.value) for t in direct.trials} == sent
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(postgres_url, heartbeat_interval=None))
        proxy.close()


def test_two_clients_share_one_study(proxy_url: str, postgres_url: str) -> None:
    """A second client (another worker) sees and continues the first one's study."""
    name = f"test-proxy-{uuid.uuid4().hex[:12]}"
    first, second = open_storage(proxy_url), open_storage(proxy_url)
    try:
        optuna.create_study(study_name=name, storage=first).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        study = optuna.load_study(study_name=name, storage=second)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        direct = optuna.load_study(study_name=name, storage=open_storage(postgres_url, heartbeat_interval=None))
        assert [t.number for t in direct.trials] == [0, 1, 2, 3, 4]
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(postgres_url, heartbeat_interval=None))
        first.close()
        second.close()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_trial_whose_beats_stopped_is_failed_and_retried(proxy_url: str, postgres_url: str) -> None:
    """One client beats (a worker), another judges (a surviving worker): no clock is compared."""
    name = f"test-proxy-{uuid.uuid4().hex[:12]}"
    grace_s = 1
    worker = open_storage(proxy_url, heartbeat_interval=1)
    judge = open_storage(proxy_url, heartbeat_interval=1, grace_period=grace_s)
    read_only = open_storage(proxy_url, heartbeat_interval=None)
    assert isinstance(judge, HeartbeatGrpcStorageProxy) and not isinstance(read_only, HeartbeatGrpcStorageProxy)
    read_only.close()
    try:
        study = optuna.create_study(study_name=name, storage=worker)
        space = {"x": FloatDistribution(0, 1)}
        alive, dead, unbeaten = (study.ask(space) for _ in range(3))
        worker.record_heartbeat(alive._trial_id)
        worker.record_heartbeat(dead._trial_id)  # its last beat: the worker is killed here
        judged = optuna.load_study(study_name=name, storage=judge)
        assert judge._get_stale_trial_ids(judged._study_id) == []  # a judge first watches a grace period
        watched_from = time.monotonic()
        while time.monotonic() - watched_from < grace_s * 1.5:
            worker.record_heartbeat(alive._trial_id)
            time.sleep(0.2)
        assert sorted(judge._get_stale_trial_ids(judged._study_id)) == sorted([dead._trial_id, unbeaten._trial_id])

        optuna.storages.fail_stale_trials(judged)
        trials = {t.number: t for t in judged.get_trials()}
        assert trials[alive.number].state == TrialState.RUNNING
        assert trials[dead.number].state == trials[unbeaten.number].state == TrialState.FAIL
        retries = {retried_from(t): t for t in trials.values() if retried_from(t) is not None}
        assert sorted(retries) == [dead.number, unbeaten.number]
        for number, retry in retries.items():
            assert retry.state == TrialState.WAITING and retry.params == trials[number].params
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(postgres_url, heartbeat_interval=None))
        worker.close()
        judge.close()


@pytest.mark.parametrize("url", ["grpc://127.0.0.1", "grpc://127.0.0.1:99999", "grpc://host:12/x", "grpc://:13000"])
def test_malformed_proxy_urls(url: str) -> None:
    with pytest.raises(StorageError, match=r"grpc://host:port"):
        open_storage(url)


def test_no_proxy_listening_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "_READY_TIMEOUT_S", 1)
    with pytest.raises(StorageError, match="no storage proxy answers") as info:
        open_storage(f"grpc://127.0.0.1:{_free_port()}")
    assert "\n" not in str(info.value)


def test_proxy_url_uses_the_default_artifact_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYBRIDNAS_ARTIFACTS", raising=False)
    assert artifacts_path("grpc://127.0.0.1:13000") == Path("hybridnas-artifacts")


def test_busy_port_is_a_user_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UsageError, match="choose another port"):
            _check_port_free("127.0.0.1", busy.getsockname()[1])
