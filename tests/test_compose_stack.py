"""docker-compose.yml started for real on a host without GPUs (its `cpu` profile): PostgreSQL, a
Ray head, two CPU nodes, the dashboard and the launch, each in its own container, running a
small study on the shared CIFAR-10 images mounted into them.

The test starts its own Docker engine (tests/docker_engine.py; installed with apt-get when
missing, so it fails rather than skips where it cannot run), builds the images from Debian's
packages and local wheels (deploy/build_local_images.sh: no image registry is reachable here),
and removes by id every container, network, volume and image it made, then the engine.
Marked `compose`: not in the default run; `pytest -m compose` runs it (6.5-16 minutes on 2
cores, more than half of it building the images)."""

from __future__ import annotations

import html
import json
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from docker_engine import Engine, EngineError
from helpers import ARCHIVE, REPO, SCREENS, TINY_SPACE, chromium
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from ray_nodes import free_port

from hybridnas.objectives.study.records import WORKERS_ATTR, TrialRecord
from hybridnas.storage import StorageError, open_storage, retried_from

pytestmark = pytest.mark.compose

STUDY = "compose-stack"
FIRST_BUDGET, SECOND_BUDGET = 6, 9
# Trials of a few seconds each (no pruning), so that a node can be killed while one runs.
TRIAL_FLAGS = ["--epochs", "3", "--train-subset", "4096", "--val-subset", "128", "--batch-size", "64",
               "--pruner", "none", "--seed", "0"]
NODES = 2
UP = ["up", "-d", "--scale", "gpu-node=0", "--scale", f"cpu-node={NODES}"]


class Stack:
    """One compose project on the test's engine: the CPU profile, the test's study flags in an
    override file (the launch's own command from docker-compose.yml, with TRIAL_FLAGS after it)."""

    def __init__(self, engine: Engine, images: dict[str, str], workdir: Path) -> None:
        self.engine = engine
        self.project = f"hnt{uuid.uuid4().hex[:8]}"
        self.password = secrets.token_hex(16)
        self.dashboard_token = secrets.token_urlsafe(24)
        self.postgres_port, self.dashboard_port = free_port(), free_port()
        self.override = workdir / "docker-compose.test.yml"
        launch = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["launch"]
        self.override.write_text(yaml.safe_dump({"services": {"launch": {
            "command": [*launch["command"], *TRIAL_FLAGS],
            "volumes": [f"{TINY_SPACE.parent}:/study:ro"],
        }}}))
        self.env = {
            **engine.env, **images,
            "COMPOSE_PROJECT_NAME": self.project, "POSTGRES_PASSWORD": self.password,
            "POSTGRES_PORT": str(self.postgres_port), "DASHBOARD_PORT": str(self.dashboard_port),
            "RAY_AUTH_TOKEN": secrets.token_hex(32), "HYBRIDNAS_DASHBOARD_TOKEN": self.dashboard_token,
            "HYBRIDNAS_DATA_DIR": str(ARCHIVE.parent), "DATASET": f"folder:/data/{ARCHIVE.name}",
            "SPACE": f"/study/{TINY_SPACE.name}", "STUDY": STUDY, "WORKERS": "2",
        }
        self.url = f"postgresql+psycopg://hybridnas:{self.password}@127.0.0.1:{self.postgres_port}/hybridnas"
        self._storage: RDBStorage | None = None

    def compose(self, *args: str, timeout: float = 600, **env: str) -> str:
        argv = ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "-f", str(self.override),
                "--profile", "cpu", *args]
        done = subprocess.run(argv, cwd=REPO, env={**self.env, **env}, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    def container(self, service: str) -> str:
        (cid,) = self.compose("ps", "-q", service).split()
        return cid

    def containers(self) -> list[str]:
        """Every container of the project, running or not."""
        return self.engine.docker("ps", "-aq", "--no-trunc", "--filter",
                                  f"label=com.docker.compose.project={self.project}").split()

    def study(self) -> optuna.Study:
        """The study through the published PostgreSQL port (one connection pool per stack start)."""
        if self._storage is None:
            storage = open_storage(self.url, heartbeat_interval=None)
            assert isinstance(storage, RDBStorage)
            self._storage = storage
        return optuna.load_study(study_name=STUDY, storage=self._storage)

    def down(self) -> None:
        """`docker-compose down`, volumes kept; our pool's connections end with PostgreSQL."""
        if self._storage is not None:
            self._storage.engine.dispose()
            self._storage = None
        self.compose("down")

    def wait_for_launch(self, timeout: float) -> None:
        """Until the launch container exits with 0 (restart: on-failure starts a failed launch
        again, and a relaunch resumes the study)."""
        cid = self.container("launch")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.engine.docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cid).split()
            if state == ["exited", "0"]:
                return
            time.sleep(2)
        raise AssertionError(f"the launch did not finish in {timeout:.0f} s:\n{self.logs('launch')}")

    def logs(self, service: str) -> str:
        done = subprocess.run(["docker", "logs", "--tail", "60", self.container(service)], env=self.env,
                              capture_output=True, text=True)
        return done.stdout + done.stderr

    def status(self) -> dict:
        """`hybridnas status --json` inside the dashboard's container (its storage URL from the env)."""
        out = self.engine.docker("exec", self.container("dashboard"), "hybridnas", "status", "--study", STUDY,
                                 "--json")
        return json.loads(out[out.index("{"):])

    def remove(self) -> None:
        """Containers, then networks and volumes of this project, each by id."""
        label = f"label=com.docker.compose.project={self.project}"
        if self._storage is not None:
            self._storage.engine.dispose()
        for cid in self.containers():
            self.engine.docker("rm", "-f", "-v", cid, check=False)
        for kind in ("network", "volume"):
            for oid in self.engine.docker(kind, "ls", "-q", "--filter", label, check=False).split():
                self.engine.docker(kind, "rm", oid, check=False)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = Engine()
    try:
        try:
            engine.start()
        except EngineError as err:
            pytest.fail(f"the compose tests need a Docker engine and could not start one: {err}")
        yield engine
    finally:
        engine.remove()


@pytest.fixture(scope="module")
def images(engine: Engine) -> Iterator[dict[str, str]]:
    """The base images from Debian's packages and the project's image on them through compose's
    build (deploy/build_local_images.sh); yields the variables that select them. Every image made
    is removed by id afterwards."""
    tag = uuid.uuid4().hex[:8]
    wanted = {"PYTHON_IMAGE": f"hybridnas-test-python:{tag}", "POSTGRES_IMAGE": f"hybridnas-test-postgres:{tag}",
              "HYBRIDNAS_IMAGE": f"hybridnas-test:{tag}"}
    before = set(engine.docker("images", "-aq", "--no-trunc").split())
    try:
        done = subprocess.run(["bash", str(REPO / "deploy" / "build_local_images.sh")],
                              env={**engine.env, **wanted, "PYTHON": sys.executable}, capture_output=True, text=True,
                              timeout=2400)
        assert done.returncode == 0, done.stderr[-6000:] + engine.disk_report()
        exported = dict(word.split("=", 1) for word in done.stdout.split() if "=" in word)
        assert exported == wanted
        engine.docker("image", "inspect", wanted["HYBRIDNAS_IMAGE"])
        yield exported
    finally:
        for image in set(engine.docker("images", "-aq", "--no-trunc", check=False).split()) - before:
            engine.docker("image", "rm", "-f", image, check=False)


@pytest.fixture(scope="module")
def stack(engine: Engine, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(engine, images, tmp_path_factory.mktemp("compose"))
    try:
        stack.compose(*UP, TRIALS=str(FIRST_BUDGET))
        yield stack
    finally:
        stack.remove()


def _counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(TrialRecord(t).counts_toward_budget for t in trials)


def _running_trial_and_its_host(stack: Stack, timeout: float = 600) -> tuple[int, str]:
    """A RUNNING trial and the host name (its container's short id) of the worker running it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            study = stack.study()
        except (KeyError, StorageError):  # PostgreSQL or the study not there yet
            time.sleep(1)
            continue
        placed = study.user_attrs.get(WORKERS_ATTR) or {}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            host = placed.get(trial.user_attrs.get("worker"), {}).get("host")
            if host:
                return trial.number, host
        time.sleep(0.3)
    raise AssertionError(f"no trial ran on a node in {timeout:.0f} s:\n{stack.logs('launch')}")


def test_a_node_killed_mid_trial_loses_nothing_and_the_study_reaches_its_count(stack: Stack) -> None:
    _, host = _running_trial_and_its_host(stack)
    (node,) = [cid for cid in stack.compose("ps", "-q", "cpu-node").split() if cid.startswith(host)]
    stack.engine.docker("kill", node)

    stack.wait_for_launch(timeout=600)
    study = stack.study()
    trials = study.trials
    on_node = {worker for worker, where in study.user_attrs[WORKERS_ATTR].items() if where.get("host") == host}
    # The trial it ran then (or, had that one just ended, the next it had started) failed with it.
    killed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs["worker"] in on_node]
    assert killed and all("died" in t.user_attrs["fail_reason"] for t in killed)
    for trial in killed:
        (retry,) = [t for t in trials if retried_from(t) == trial.number]
        assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert retry.user_attrs["worker"] not in on_node
    assert _counted(trials) == FIRST_BUDGET
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert f"its trial(s) {killed[0].number} failed and re-queued" in stack.logs("launch")


def test_no_password_on_a_command_line(stack: Stack) -> None:
    command_lines = "{{json .Path}} {{json .Args}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}"
    for cid in stack.containers():
        assert stack.password not in stack.engine.docker("inspect", "--format", command_lines, cid)
    # It is there, in the environment only.
    assert stack.password in stack.engine.docker("inspect", "--format", "{{json .Config.Env}}",
                                                 stack.container("dashboard"))
    processes = subprocess.run(["ps", "-e", "-ww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    assert "hybridnas dashboard --host 0.0.0.0" in processes  # the containers' processes are in this list
    assert stack.password not in processes


def test_the_dashboard_answers_on_loopback_and_shows_a_trial_s_note_and_diagram(stack: Stack,
                                                                               tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{stack.dashboard_port}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/api/studies", timeout=10)
    assert refused.value.code == 401
    request = urllib.request.Request(f"{base}/api/studies",
                                     headers={"Authorization": f"Bearer {stack.dashboard_token}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        (summary,) = [s for s in json.load(reply)["study_summaries"] if s["study_name"] == STUDY]
    study_id = summary["study_id"]
    detail_request = urllib.request.Request(f"{base}/api/studies/{study_id}",
                                            headers={"Authorization": f"Bearer {stack.dashboard_token}"})
    with urllib.request.urlopen(detail_request, timeout=30) as reply:
        trial = next(t for t in json.load(reply)["trials"] if t["state"] == "Complete")
    note = trial["note"]["body"]
    assert "| stage 1 | conv |" in note
    artifacts = {a["filename"]: a for a in trial["artifacts"]}
    svg = artifacts[f"trial-{trial['number']}-architecture.svg"]
    diagram = urllib.request.Request(f"{base}/artifacts/{study_id}/{trial['trial_id']}/{svg['artifact_id']}",
                                     headers={"Authorization": f"Bearer {stack.dashboard_token}"})
    with urllib.request.urlopen(diagram, timeout=30) as reply:
        assert reply.headers.get_content_type() == "image/svg+xml"
        assert b"<svg" in reply.read()

    page = f"{base}/dashboard/studies/{study_id}/trials?numbers={trial['number']}&token={stack.dashboard_token}"
    settle = "--virtual-time-budget=15000"  # the page fetches the study after it loads
    dom = html.unescape(re.sub(r"<[^>]+>", "", chromium(settle, "--dump-dom", page)))
    assert note.splitlines()[0].strip("*").replace("\\|", "|") in dom
    screenshot = tmp_path / "compose-dashboard-trial.png"
    chromium(settle, f"--screenshot={screenshot}", "--window-size=1400,1800", page)
    assert screenshot.stat().st_size > 10_000
    SCREENS.mkdir(parents=True, exist_ok=True)
    (SCREENS / screenshot.name).write_bytes(screenshot.read_bytes())


def test_down_and_up_with_a_larger_budget_keeps_every_trial_and_resumes(stack: Stack) -> None:
    before = {t.number: (t.state.name, t.datetime_start) for t in stack.study().trials}
    states = Counter(state for state, _ in before.values())
    stack.down()
    assert not stack.containers()
    stack.compose(*UP, TRIALS=str(SECOND_BUDGET))

    shown = stack.status()["trials"]  # right after `up`: the earlier trials, read back from PostgreSQL
    assert all(shown[state] >= count for state, count in states.items()), (states, shown)
    stack.wait_for_launch(timeout=600)
    trials = stack.study().trials
    assert {t.number: (t.state.name, t.datetime_start) for t in trials if t.number in before} == before
    assert _counted(trials) == SECOND_BUDGET
    assert stack.status()["done"] == SECOND_BUDGET
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
