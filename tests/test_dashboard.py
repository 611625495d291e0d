"""`hybridnas dashboard` serves the real optuna-dashboard over a hybridnas storage."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from hybridnas.storage import open_storage

STARTUP_LIMIT_S = 60
HYBRIDNAS = "from hybridnas.cli.main import main; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _wait_for(url: str, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hybridnas dashboard exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            return _get(url)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    pytest.fail(f"hybridnas dashboard did not answer {url} within {STARTUP_LIMIT_S} s")


@pytest.fixture
def study_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(study_name="dash-study", storage=open_storage(url, heartbeat_interval=None))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1, 1)
        if trial.number == 3:
            raise optuna.TrialPruned
        return x * x

    study.optimize(objective, n_trials=4)
    study.enqueue_trial({"x": 0.5})
    return url


def test_dashboard_serves_the_study(study_db: str, tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", HYBRIDNAS, "dashboard", "--storage", study_db, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        meta = _wait_for(f"{base}/api/meta", proc)
        assert meta["artifact_is_available"] is True

        summaries = _get(f"{base}/api/studies")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == "dash-study"]
        detail = _get(f"{base}/api/studies/{summary['study_id']}")
        assert detail["name"] == "dash-study"
        assert [t["state"] for t in detail["trials"]] == ["Complete"] * 3 + ["Pruned", "Waiting"]
        assert len(detail["best_trials"]) == 1
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/" in out
    assert (tmp_path / "nas-artifacts").is_dir()


def test_port_in_use_is_one_line(study_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from hybridnas.cli.main import main

    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["dashboard", "--storage", study_db, "--port", str(port)])
    assert exit_info.value.code == 2
    assert f"error: port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
