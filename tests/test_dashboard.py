"""`hybridnas dashboard` serves the real optuna-dashboard over a hybridnas storage, where each
searched trial shows its architecture note and diagram."""

from __future__ import annotations

import html
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

import optuna
import pytest
from helpers import SCREENS, chromium
from test_export import searched  # noqa: F401 (the fixture: a tiny study run by one worker in this process)

from hybridnas.models.config import parse_config
from hybridnas.reports import architecture_summary
from hybridnas.storage import open_storage

STARTUP_LIMIT_S = 60
HYBRIDNAS = "from hybridnas.cli.main import main; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> dict:
    return json.loads(_get_bytes(url)[1])


def _get_bytes(url: str) -> tuple[str, bytes]:
    """(content type, body)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers["Content-Type"], response.read()


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


@contextmanager
def _dashboard(storage: str, cwd: Path, output: list[str]) -> Iterator[str]:
    """`hybridnas dashboard` on a free loopback port: yields its base URL; what it printed
    lands in `output` once it is stopped."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", HYBRIDNAS, "dashboard", "--storage", storage, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        meta = _wait_for(f"{base}/api/meta", proc)
        assert meta["artifact_is_available"] is True
        yield base
    finally:
        proc.terminate()
        output.append(proc.communicate(timeout=10)[0])


def _study_id(base: str, name: str) -> int:
    (summary,) = [s for s in _get(f"{base}/api/studies")["study_summaries"] if s["study_name"] == name]
    return summary["study_id"]


@pytest.mark.integration  # the real optuna-dashboard server
def test_dashboard_serves_the_study(study_db: str, tmp_path: Path) -> None:
    output: list[str] = []
    with _dashboard(study_db, tmp_path, output) as base:
        detail = _get(f"{base}/api/studies/{_study_id(base, 'dash-study')}")
        assert detail["name"] == "dash-study"
        assert [t["state"] for t in detail["trials"]] == ["Complete"] * 3 + ["Pruned", "Waiting"]
        assert len(detail["best_trials"]) == 1
    assert f"{base}/" in output[0]
    assert (tmp_path / "nas-artifacts").is_dir()


@pytest.mark.integration  # a real search worker, the real optuna-dashboard server and headless Chromium
@pytest.mark.usefixtures("study_env")
def test_trial_page_shows_the_architecture(searched: str, tmp_path: Path) -> None:
    trial = optuna.load_study(study_name="e", storage=open_storage(searched, heartbeat_interval=None)).trials[0]
    summary = architecture_summary(parse_config(trial.user_attrs["config"]))

    output: list[str] = []
    with _dashboard(searched, tmp_path, output) as base:
        study_id = _study_id(base, "e")
        shown = _get(f"{base}/api/studies/{study_id}")["trials"][0]
        assert shown["note"]["body"].startswith("**" + summary.replace("|", "\\|") + "**")
        assert "| stage 1 | conv |" in shown["note"]["body"]
        artifacts = {a["filename"]: a for a in shown["artifacts"]}
        assert set(artifacts) == {"trial-0-config.yaml", "trial-0-architecture.svg"}
        svg = artifacts["trial-0-architecture.svg"]
        kind, body = _get_bytes(f"{base}/artifacts/{study_id}/{shown['trial_id']}/{svg['artifact_id']}")
        assert kind == "image/svg+xml"
        assert ElementTree.fromstring(body).find("{http://www.w3.org/2000/svg}title").text == "e · trial 0"

        page = f"{base}/dashboard/studies/{study_id}/trials?numbers=0"
        settle = "--virtual-time-budget=15000"  # the page fetches the study after it loads
        dom = html.unescape(re.sub(r"<[^>]+>", "", chromium(settle, "--dump-dom", page)))
        assert summary in dom
        screenshot = tmp_path / "dashboard-trial.png"
        chromium(settle, f"--screenshot={screenshot}", "--window-size=1400,1800", page)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, SCREENS / "dashboard-trial.png")


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
