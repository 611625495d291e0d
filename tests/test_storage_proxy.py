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
from optuna.storages import GrpcStorageProxy
from optuna.trial import TrialState

from hybridnas.cli.errors import UserError
from hybridnas.cli.proxy_cmds import _check_port_free
from hybridnas.storage import StorageError, artifacts_path, open_storage

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


@pytest.mark.parametrize("url", ["grpc://127.0.0.1", "grpc://127.0.0.1:99999", "grpc://host:12/x", "grpc://:13000"])
def test_malformed_proxy_urls(url: str) -> None:
    with pytest.raises(StorageError, match=r"grpc://host:port"):
        open_storage(url)


def test_no_proxy_listening_is_one_line() -> None:
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
        with pytest.raises(UserError, match="pick another with --port"):
            _check_port_free("127.0.0.1", busy.getsockname()[1])
