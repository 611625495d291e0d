"""Who may change a study through `hybridnas storage-proxy`: the real command in a subprocess in
front of a SQLite database, Optuna's own proxy client (which takes no credentials) and the
project's client, which sends the token."""

from __future__ import annotations

import os
import pickle
import select
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import optuna
import pytest
from optuna.exceptions import ExperimentalWarning
from optuna.storages import GrpcStorageProxy

from hybridnas.common import UsageError
from hybridnas.storage import StorageError, TokenGrpcStorageProxy, mask_url, open_storage, serve_proxy
from hybridnas.storage._urls import grpc_address, grpc_token

HYBRIDNAS = Path(sys.executable).with_name("hybridnas")
STARTUP_LIMIT_S = 180  # a hang guard on a busy 2-core machine, not a timing assertion
TOKEN = "test-proxy-token-4b8e21"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'proxied.db'}"
    optuna.create_study(study_name="kept", storage=open_storage(url, heartbeat_interval=None)).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    return url


@contextmanager
def _proxy(database: str, env: dict[str, str], output: list[str]) -> Iterator[int]:
    """`hybridnas storage-proxy` bound to 0.0.0.0 (beyond loopback) on a free port; yields the
    port once it announced itself; what it printed lands in `output` (the announcement at once)."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(HYBRIDNAS), "storage-proxy", "--storage", database, "--host", "0.0.0.0", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**env, "COLUMNS": "200"},
    )
    seen = b""
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while b"Ctrl-C stops it" not in seen:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"storage-proxy did not start: {seen.decode()}", pytrace=False)
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen += os.read(proc.stdout.fileno(), 65536)
        output.append(seen.decode())
        yield port
    finally:
        proc.terminate()
        try:
            rest = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[0]
        output.append(rest.decode())


def _without_tokens() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HYBRIDNAS_PROXY_TOKEN"}


def _optuna_client(port: int) -> GrpcStorageProxy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return GrpcStorageProxy(host="127.0.0.1", port=port)


@pytest.mark.integration  # the proxy command as a new process
def test_beyond_loopback_clients_without_the_token_are_refused(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYBRIDNAS_PROXY_TOKEN", raising=False)
    output: list[str] = []
    with _proxy(database, {**_without_tokens(), "HYBRIDNAS_PROXY_TOKEN": TOKEN}, output) as port:
        url = f"grpc://127.0.0.1:{port}"
        # Optuna's own client, as anyone who reaches the port could run it
        anyone = _optuna_client(port)
        for call in (anyone.get_all_studies, lambda: anyone.delete_study(1),
                     lambda: anyone.create_new_study([optuna.study.StudyDirection.MINIMIZE], "intruder")):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        anyone.close()
        # the project's client, without and with a wrong token: one line each
        with pytest.raises(StorageError, match=r"^the storage proxy at grpc://127.0.0.1:\d+ requires a token; set "
                                               r"\$HYBRIDNAS_PROXY_TOKEN"):
            open_storage(url)
        with pytest.raises(StorageError, match=r"\?token=\*\*\* refused the token it was given") as wrong:
            open_storage(f"{url}?token=wrong-token")
        assert "wrong-token" not in str(wrong.value)

        # with the token from the environment: create a study, read it back
        monkeypatch.setenv("HYBRIDNAS_PROXY_TOKEN", TOKEN)
        worker = open_storage(url)
        assert isinstance(worker, TokenGrpcStorageProxy)
        study = optuna.create_study(study_name="through-the-proxy", storage=worker)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        worker.close()
        # and from the URL, in a fresh client (the environment no longer has it)
        monkeypatch.delenv("HYBRIDNAS_PROXY_TOKEN")
        reader = open_storage(f"{url}?token={TOKEN}", heartbeat_interval=None)
        assert len(optuna.load_study(study_name="through-the-proxy", storage=reader).trials) == 3
        # a client shipped to a Ray worker (pickled) keeps its token
        shipped = pickle.loads(pickle.dumps(reader))
        assert sorted(s.study_name for s in shipped.get_all_studies()) == ["kept", "through-the-proxy"]
        shipped.close()
        reader.close()
    direct = open_storage(database, heartbeat_interval=None)
    assert sorted(s.study_name for s in direct.get_all_studies()) == ["kept", "through-the-proxy"]
    assert len(optuna.load_study(study_name="kept", storage=direct).trials) == 2
    assert TOKEN not in "".join(output)  # a token from the environment is never printed


@pytest.mark.integration  # the proxy command as a new process
def test_beyond_loopback_without_a_token_one_is_generated_and_shown(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYBRIDNAS_PROXY_TOKEN", raising=False)
    output: list[str] = []
    with _proxy(database, _without_tokens(), output) as port:
        (line,) = [line for line in output[0].splitlines() if line.startswith("clients need this token")]
        token = line.rsplit(" ", 1)[1]
        assert len(token) >= 32
        with pytest.raises(grpc.RpcError) as refused:
            _optuna_client(port).get_all_studies()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(StorageError, match="requires a token"):
            open_storage(f"grpc://127.0.0.1:{port}")
        client = open_storage(f"grpc://127.0.0.1:{port}?token={token}", heartbeat_interval=None)
        assert [s.study_name for s in client.get_all_studies()] == ["kept"]
        client.close()
    assert "".join(output).count(token) == 1


def test_serving_beyond_loopback_without_a_token_is_refused(database: str) -> None:
    with pytest.raises(UsageError, match="needs a token"):
        serve_proxy(database, "0.0.0.0", _free_port(), token=None)


@pytest.mark.parametrize(
    "text, masked",
    [
        ("grpc://10.0.0.5:13000?token=s3cr%2Ft", "grpc://10.0.0.5:13000?token=***"),
        ("s3://AKIAEXAMPLE:wJal/rXUt@bucket/prefix", "s3://AKIAEXAMPLE:***@bucket/prefix"),
        ("s3://bucket/p?X-Amz-Credential=AK&X-Amz-Signature=ab12&X-Amz-Date=1",
         "s3://bucket/p?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1"),
        ('"GET /dashboard?token=abc&x=1 HTTP/1.1" 303 0', '"GET /dashboard?token=***&x=1 HTTP/1.1" 303 0'),
        ("grpc://10.0.0.5:13000", "grpc://10.0.0.5:13000"),
    ],
)
def test_one_masking_function_hides_tokens_and_credentials(text: str, masked: str) -> None:
    assert mask_url(text) == masked


def test_proxy_token_in_the_url() -> None:
    assert grpc_address("grpc://[::1]:13000?token=a%2Fb") == ("[::1]", 13000)
    assert grpc_token("grpc://[::1]:13000?token=a%2Fb") == "a/b"
    assert grpc_token("grpc://host:13000") is None
    with pytest.raises(StorageError, match=r"grpc://host:port\[\?token=TOKEN\]"):
        grpc_address("grpc://host:13000?secret=x")
