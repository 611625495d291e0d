"""Who may change a study through `hybridnas dashboard`: the real command in a subprocess, the
real optuna-dashboard behind it, plain HTTP requests such as anyone on the network could send,
and headless Chromium for the token-then-cookie way in."""

from __future__ import annotations

import html
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import make_server

import optuna
import pytest
import yaml
from helpers import chromium
from optuna.artifacts import upload_artifact

from hybridnas.reports._dashboard import _Handler, _Server
from hybridnas.storage import artifact_store, open_storage

STARTUP_LIMIT_S = 90  # a hang guard on a busy 2-core machine, not a timing assertion
HYBRIDNAS = "from hybridnas.cli.main import main; main()"
TOKEN = "test-dashboard-token-7f3a9c"
ROOT = Path(__file__).resolve().parents[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; redirects are not followed."""
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with _OPENER.open(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@dataclass
class Dashboard:
    base: str
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def printed(self) -> str:
        """stdout and stderr of the stopped server (announcements and access log)."""
        return "".join(self.output)


@contextmanager
def _dashboard(storage: str, cwd: Path, *args: str, host: str = "127.0.0.1",
               env: dict[str, str] | None = None) -> Iterator[Dashboard]:
    """`hybridnas dashboard` on a free port, answering once its first stdout lines are out."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", HYBRIDNAS, "dashboard", "--storage", storage, "--host", host, "--port", str(port),
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    server = Dashboard(f"http://127.0.0.1:{port}", proc)
    try:
        server.output.append(_read_until(proc, "Ctrl-C stops it"))
        _wait_listening(port, proc)
        yield server
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
        server.output += [out, err]


def _read_until(proc: subprocess.Popen, marker: str) -> str:
    """stdout up to the line holding `marker` (the announcement ends with it), read from the pipe
    itself so that nothing waits in a Python buffer that select() cannot see."""
    deadline, seen = time.monotonic() + STARTUP_LIMIT_S, b""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hybridnas dashboard exited with {proc.returncode}: {proc.stderr.read()}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            seen += os.read(proc.stdout.fileno(), 65536)
            if marker.encode() in seen:
                return seen.decode()
    pytest.fail(f"hybridnas dashboard printed no {marker!r} within {STARTUP_LIMIT_S} s: {seen.decode()}")


def _wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"hybridnas dashboard exited with {proc.returncode}: {proc.stderr.read()}")
            time.sleep(0.2)
    pytest.fail(f"hybridnas dashboard did not listen on {port} within {STARTUP_LIMIT_S} s")


@pytest.fixture
def study_db(tmp_path: Path) -> str:
    """A study with three trials, and an artifact of trial 0 in the dashboard's default folder."""
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    (tmp_path / "trial-0.txt").write_text("trial 0's file")
    store = artifact_store(url)  # the dashboard's default: nas-artifacts/ beside the database

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 0:
            upload_artifact(artifact_store=store, file_path=str(tmp_path / "trial-0.txt"), study_or_trial=trial)
        return trial.suggest_float("x", -1, 1) ** 2

    study = optuna.create_study(study_name="guarded", storage=open_storage(url, heartbeat_interval=None))
    study.optimize(objective, n_trials=3)
    return url


def _study(url: str) -> tuple[int, list[int], set[str]]:
    """(study id, trial numbers, artifact files) read from the storage and folder directly."""
    study = optuna.load_study(study_name="guarded", storage=open_storage(url, heartbeat_interval=None))
    folder = Path(url.removeprefix("sqlite:///")).with_name("nas-artifacts")
    return study._study_id, [t.number for t in study.trials], {p.name for p in folder.iterdir()}


def _artifact_route(url: str) -> str:
    study = optuna.load_study(study_name="guarded", storage=open_storage(url, heartbeat_interval=None))
    trial = study.trials[0]
    (artifact_id,) = {json.loads(v)["artifact_id"] for k, v in trial.system_attrs.items() if k.startswith("artifacts:")}
    return f"/api/artifacts/{study._study_id}/{trial._trial_id}/{artifact_id}"


@pytest.mark.integration  # the real dashboard command as a new process
def test_every_change_is_refused_by_default(study_db: str, tmp_path: Path) -> None:
    study_id, numbers, files = _study(study_db)
    trial_id = optuna.load_study(study_name="guarded", storage=study_db).trials[1]._trial_id
    changes = [
        ("DELETE", f"/api/studies/{study_id}", b"{}"),
        ("POST", f"/api/studies/{study_id}/rename", json.dumps({"study_name": "renamed"}).encode()),
        ("DELETE", _artifact_route(study_db), None),
        ("PUT", f"/api/studies/{study_id}/note", json.dumps({"version": 0, "body": "defaced"}).encode()),
        ("PUT", f"/api/studies/{study_id}/{trial_id}/note", json.dumps({"version": 0, "body": "defaced"}).encode()),
        ("POST", f"/api/trials/{trial_id}/user-attrs", json.dumps({"user_attrs": {"k": "v"}}).encode()),
        ("POST", "/api/studies", json.dumps({"study_name": "new", "directions": ["minimize"]}).encode()),
    ]
    with _dashboard(study_db, tmp_path) as server:
        assert _request(f"{server.base}/api/studies")[0] == 200
        for method, route, body in changes:
            status, headers, reply = _request(server.base + route, method, {"Content-Type": "application/json"}, body)
            assert (method, route, status) == (method, route, 403)
            assert headers["Content-Type"] == "application/json"
            assert "--allow-writes" in json.loads(reply)["reason"]
        detail = json.loads(_request(f"{server.base}/api/studies/{study_id}")[2])
        assert detail["name"] == "guarded" and len(detail["trials"]) == 3
    assert _study(study_db) == (study_id, numbers, files)  # the study, its trials and its artifact file
    storage = open_storage(study_db, heartbeat_interval=None)
    assert [s.study_name for s in storage.get_all_studies()] == ["guarded"]
    assert storage.get_trial(trial_id).user_attrs == {}
    assert "read-only; --allow-writes allows changes" in server.printed()


@pytest.mark.integration  # the real dashboard command as a new process
def test_allow_writes_lets_a_delete_through(study_db: str, tmp_path: Path) -> None:
    study_id, _, files = _study(study_db)
    assert files
    with _dashboard(study_db, tmp_path, "--allow-writes") as server:
        status, _, _ = _request(f"{server.base}/api/studies/{study_id}", "DELETE",
                                {"Content-Type": "application/json"}, b"{}")
        assert status == 204
        # a page of another site may not use the dashboard's writes
        cross = _request(f"{server.base}/api/studies", "POST",
                         {"Content-Type": "application/json", "Origin": "http://elsewhere.example"},
                         json.dumps({"study_name": "x", "directions": ["minimize"]}).encode())
        assert cross[0] == 403
    assert open_storage(study_db, heartbeat_interval=None).get_all_studies() == []
    assert list((tmp_path / "nas-artifacts").iterdir()) == []
    assert "writes allowed" in server.printed()


@pytest.mark.integration  # the real dashboard command as a new process
def test_a_connection_that_sends_nothing_holds_up_no_one(study_db: str, tmp_path: Path) -> None:
    """A browser's speculative preconnect, or anyone who can reach the port, may open a connection
    and send nothing, or half a request line: everyone else is answered meanwhile."""
    with _dashboard(study_db, tmp_path) as server:
        address = ("127.0.0.1", int(server.base.rsplit(":", 1)[1]))
        with socket.create_connection(address) as silent, socket.create_connection(address) as halfway:
            halfway.sendall(b"GET /api/stud")
            status, _, body = _request(f"{server.base}/api/studies")
            assert status == 200 and [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["guarded"]


def test_a_silent_connection_is_dropped_after_the_idle_limit(monkeypatch: pytest.MonkeyPatch,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    """Each open connection holds a thread, so one that stays silent is closed, without a traceback."""
    monkeypatch.setattr(_Handler, "timeout", 0.5)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "0")])
        return []

    server = make_server("127.0.0.1", 0, app, _Server, _Handler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        with socket.create_connection(server.server_address, timeout=30) as silent:
            assert silent.recv(1) == b""  # the server closed it; a hang would raise TimeoutError
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.integration  # the real dashboard command as a new process
def test_beyond_loopback_every_request_needs_the_token(study_db: str, tmp_path: Path) -> None:
    """Bound to 0.0.0.0 the token is asked for even from loopback; it is never printed."""
    with _dashboard(study_db, tmp_path, host="0.0.0.0", env={"HYBRIDNAS_DASHBOARD_TOKEN": TOKEN}) as server:
        api = f"{server.base}/api/studies"
        status, headers, body = _request(api)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert "HYBRIDNAS_DASHBOARD_TOKEN" in json.loads(body)["reason"]
        assert _request(f"{server.base}/dashboard")[0] == 401
        assert _request(api, headers={"Authorization": "Bearer wrong-token"})[0] == 401
        assert _request(f"{api}?token=wrong-token")[0] == 401
        status, _, body = _request(api, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["guarded"]

        # a browser: the first load carries ?token=, gets a cookie and the same page without the token
        status, headers, _ = _request(f"{server.base}/dashboard/studies/1?token={TOKEN}")
        assert status == 303 and headers["Location"] == "/dashboard/studies/1"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert TOKEN not in cookie and "HttpOnly" in headers["Set-Cookie"]
        assert _request(f"{server.base}/dashboard/studies/1", headers={"Cookie": cookie})[0] == 200
        assert _request(api, headers={"Cookie": cookie})[0] == 200
        assert _request(api, headers={"Cookie": cookie.split("=")[0] + "=forged"})[0] == 401

        # the token lets reads in, not writes
        study_id = _study(study_db)[0]
        assert _request(f"{server.base}/api/studies/{study_id}", "DELETE", {"Authorization": f"Bearer {TOKEN}"},
                        b"{}")[0] == 403
    assert _study(study_db)[1] == [0, 1, 2]
    printed = server.printed()
    assert "?token=***" in printed  # the access log's line of the browser's first load
    assert TOKEN not in printed


@pytest.mark.integration  # the real dashboard command and headless Chromium
def test_a_browser_gets_in_with_the_token_once(study_db: str, tmp_path: Path) -> None:
    """The link with ?token= leads to the study page, whose own API calls the cookie lets in;
    without the token the browser sees the refusal."""
    settle = "--virtual-time-budget=15000"  # the page fetches the studies after it loads
    with _dashboard(study_db, tmp_path, host="0.0.0.0", env={"HYBRIDNAS_DASHBOARD_TOKEN": TOKEN}) as server:
        refused = chromium(settle, "--dump-dom", f"{server.base}/dashboard")
        assert "HYBRIDNAS_DASHBOARD_TOKEN" in refused and "guarded" not in refused
        dom = chromium(settle, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                       f"{server.base}/dashboard?token={TOKEN}")
        assert "guarded" in html.unescape(re.sub(r"<[^>]+>", " ", dom))
    log = server.printed()
    assert "GET /api/studies HTTP/1.1\" 200" in log  # the page's own call, let in by the cookie
    assert TOKEN not in log


@pytest.mark.integration  # the real dashboard command as a new process
def test_beyond_loopback_without_a_token_one_is_generated_and_shown(study_db: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYBRIDNAS_DASHBOARD_TOKEN"}
    with _dashboard(study_db, tmp_path, host="0.0.0.0", env=env) as server:
        (line,) = [line for line in server.output[0].splitlines() if line.startswith("access token")]
        token = line.rsplit(" ", 1)[1]
        assert len(token) >= 32
        assert _request(f"{server.base}/api/studies")[0] == 401
        assert _request(f"{server.base}/api/studies", headers={"Authorization": f"Bearer {token}"})[0] == 200
    assert server.printed().count(token) == 1


@pytest.mark.integration  # the real dashboard command as a new process
def test_s3_credentials_in_the_artifact_url_are_never_printed(study_db: str, tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-SECRET"
    done = subprocess.run(
        [sys.executable, "-c", HYBRIDNAS, "dashboard", "--storage", study_db, "--port", str(_free_port()),
         "--artifacts", f"s3://AKIAEXAMPLE:{secret}@bucket/prefix"],
        capture_output=True, text=True, cwd=tmp_path, timeout=STARTUP_LIMIT_S,
    )
    assert done.returncode == 2
    assert secret not in done.stdout + done.stderr
    assert "error: an S3 artifact location takes its credentials from the AWS_* variables" in done.stderr
    assert "s3://AKIAEXAMPLE:***@bucket/prefix" in done.stderr


def test_compose_dashboard_is_read_only_behind_a_required_token() -> None:
    dashboard = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["dashboard"]
    assert "--allow-writes" not in dashboard["command"]
    assert dashboard["command"][dashboard["command"].index("--host") + 1] == "0.0.0.0"
    assert dashboard["environment"]["HYBRIDNAS_DASHBOARD_TOKEN"].startswith("${HYBRIDNAS_DASHBOARD_TOKEN:?")
    assert dashboard["environment"]["RAY_AUTH_MODE"] == "token"  # the shared environment is kept
