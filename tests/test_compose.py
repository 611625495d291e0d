"""docker-compose.yml and Dockerfile, without a container engine: the file is checked as data, and
the commands its services run (the Ray head, a GPU node, the dashboard and the launch) are run as
plain processes on this machine against the local PostgreSQL: the cluster they form must finish a
study the dashboard then serves. tests/test_compose_stack.py (marked `compose`) starts the stack
for real, in containers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import click
import optuna
import pytest
import typer
import yaml
from helpers import CIFAR, TINY_SPACE

from hybridnas.cli.main import app
from hybridnas.objectives.study.records import WORKERS_ATTR, TrialRecord
from hybridnas.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"postgres", "dashboard", "ray-head", "gpu-node", "cpu-node", "launch"}
HYBRIDNAS_SERVICES = SERVICES - {"postgres"}
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _interpolate(text: str, values: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} and ${VAR:?error} against `values`; $$ escapes a literal $."""
    values = values or {}

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if name in values:
            return values[name]
        if kind and kind.endswith("?"):
            raise AssertionError(f"compose requires {name}: {rest}")
        return rest or ""

    return _VARIABLE.sub(one, text).replace("$$", "$")


def _argv(service: dict, values: dict[str, str] | None = None) -> list[str]:
    return [_interpolate(str(part), values) for part in service["command"]]


def test_services_present(services: dict) -> None:
    assert set(services) == SERVICES


def test_postgres_healthcheck_and_volume(services: dict) -> None:
    postgres = services["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in postgres["volumes"])


def test_named_volumes_declared(compose: dict, services: dict) -> None:
    used = {_interpolate(v).split(":")[0] for s in services.values() for v in s.get("volumes", [])
            if not v.startswith((".", "/"))}
    assert used and used <= set(compose["volumes"])


def test_nothing_published_beyond_localhost(services: dict) -> None:
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published
    assert all(str(p).startswith("127.0.0.1:") for p in published)


def test_dashboard_binds_inside_the_network(services: dict) -> None:
    argv = _argv(services["dashboard"])
    assert argv[:2] == ["hybridnas", "dashboard"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert [_interpolate(p) for p in services["dashboard"]["ports"]] == ["127.0.0.1:8080:8080"]


def test_gpu_node_reserves_one_nvidia_gpu_and_joins_the_head(services: dict) -> None:
    node = services["gpu-node"]
    (device,) = node["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["count"], device["capabilities"]) == ("nvidia", 1, ["gpu"])
    assert _argv(node) == ["ray", "start", "--address=ray-head:6379", "--num-gpus=1", "--block"]
    head = _argv(services["ray-head"])
    assert head[:5] == ["ray", "start", "--head", "--port=6379", "--ray-client-server-port=10001"]


def test_the_cpu_profile_runs_nodes_without_gpus(services: dict) -> None:
    node = services["cpu-node"]
    assert node["profiles"] == ["cpu"] and "deploy" not in node
    assert _argv(node) == ["ray", "start", "--address=ray-head:6379", "--num-gpus=0", "--block"]
    assert "profiles" not in services["gpu-node"]  # a GPU box runs the file as it is


def test_the_launch_drives_the_cluster(services: dict) -> None:
    launch = services["launch"]
    argv = _argv(launch)
    assert argv[:2] == ["hybridnas", "launch"] and argv[argv.index("--ray-address") + 1] == "ray://ray-head:10001"
    assert launch["restart"] == "on-failure"  # a relaunch resumes the study


def test_depends_on_conditions(services: dict) -> None:
    for name in ("dashboard", "launch"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("launch", "gpu-node", "cpu-node"):
        assert services[name]["depends_on"]["ray-head"]["condition"] == "service_started"


def test_every_ray_process_shares_one_required_token(services: dict) -> None:
    for name in HYBRIDNAS_SERVICES:
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?")
    with pytest.raises(AssertionError, match="compose requires RAY_AUTH_TOKEN"):
        _interpolate(services["launch"]["environment"]["RAY_AUTH_TOKEN"])


def test_passwords_come_from_the_environment(services: dict) -> None:
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:-")
    for name in HYBRIDNAS_SERVICES:
        url = services[name]["environment"]["HYBRIDNAS_STORAGE"]
        assert url.startswith("postgresql+psycopg://") and "${POSTGRES_PASSWORD:-" in url
        assert "--storage" not in " ".join(map(str, services[name]["command"]))  # no password in `ps`


@pytest.mark.parametrize("name", ["dashboard", "launch"])
def test_commands_parse_with_the_real_cli(services: dict, name: str) -> None:
    argv = _argv(services[name])[1:]
    group = typer.main.get_command(app)
    command = group.get_command(click.Context(group), argv[0])
    assert command is not None, f"hybridnas has no command {argv[0]!r}"
    command.make_context(argv[0], argv[1:])


def test_services_build_the_dockerfile_from_public_images_by_default(services: dict) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert re.findall(r"^FROM (.*)$", dockerfile, re.MULTILINE) == ["${PYTHON_IMAGE}"]
    # Several GB of local wheels reach the build through a server, never through the context.
    assert "deploy/wheels" in (ROOT / ".dockerignore").read_text().splitlines()
    for name in HYBRIDNAS_SERVICES:
        build = services[name]["build"]
        assert build["context"] == "."
        assert _interpolate(build["network"]) == "default"
        assert {k: _interpolate(v) for k, v in build["args"].items()} == {"PYTHON_IMAGE": "python:3.11-slim",
                                                                          "PIP_INSTALL_OPTIONS": ""}
        assert _interpolate(services[name]["image"]) == "hybridnas:latest"
    assert _interpolate(services["postgres"]["image"]) == "postgres:16"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration  # a Ray cluster, a dashboard server and a launch, as plain processes
def test_the_services_commands_run_a_study_as_plain_processes(
    services: dict, postgres_url: str, study_env: None, tmp_path: Path
) -> None:
    from ray_nodes import RayCluster

    head_port, client_port, dashboard_port = _free_port(), _free_port(), _free_port()
    study = f"compose-{uuid.uuid4().hex[:8]}"
    values = {"STUDY": study, "DATASET": CIFAR, "SPACE": str(TINY_SPACE), "TRIALS": "4", "WORKERS": "2",
              "GPUS_PER_WORKER": "0.5", "HYBRIDNAS_ARTIFACTS": str(tmp_path / "artifacts"),
              "RAY_AUTH_TOKEN": uuid.uuid4().hex * 2}
    env = {**os.environ, **{k: _interpolate(str(v), values)
                            for k, v in services["launch"]["environment"].items()},
           "HYBRIDNAS_STORAGE": postgres_url, "PYTHONUNBUFFERED": "1"}
    cluster = RayCluster(env, tmp_path, token=env["RAY_AUTH_TOKEN"], port=head_port)
    bin_dir = Path(sys.executable).parent

    def local(argv: list[str]) -> list[str]:
        """The container's command on this machine: our venv's programs, the head on loopback."""
        argv = [str(bin_dir / argv[0]), *argv[1:]]
        return [a.replace("ray://ray-head:10001", f"ray://127.0.0.1:{client_port}")
                .replace("ray-head:6379", cluster.address).replace("--port=6379", f"--port={head_port}")
                .replace("--ray-client-server-port=10001", f"--ray-client-server-port={client_port}")
                for a in argv]

    procs = []
    try:
        cluster.start(local(_argv(services["ray-head"], values)))
        cluster.wait_for_nodes(1)
        cluster.start([*local(_argv(services["gpu-node"], values)), "--num-cpus", "2"])
        cluster.wait_for_nodes(2)
        dashboard = [a if a != "8080" else str(dashboard_port) for a in local(_argv(services["dashboard"], values))]
        dashboard = [a if a != "0.0.0.0" else "127.0.0.1" for a in dashboard]
        procs.append(subprocess.Popen(dashboard, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        launch = subprocess.run([*local(_argv(services["launch"], values)), "--epochs", "2", "--train-subset", "256",
                                 "--val-subset", "128"],
                                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert launch.returncode == 0, launch.stdout[-4000:] + launch.stderr[-4000:]
        assert "running 2 worker(s), as asked (0.5 GPU each, 1 GPU(s) in the cluster" in launch.stdout

        stored = optuna.load_study(study_name=study, storage=open_storage(postgres_url, heartbeat_interval=None))
        assert sum(TrialRecord(t).counts_toward_budget for t in stored.trials) == 4
        # two workers packed on the one GPU (under load one of them may find the study over and run no trial)
        workers = stored.user_attrs[WORKERS_ATTR].values()
        assert [(w["state"], w["gpu_ids"]) for w in workers] == [("stopped", ["0"])] * 2
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/api/studies", timeout=5) as reply:
                    names = [s["study_name"] for s in json.load(reply)["study_summaries"]]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        assert study in names
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        cluster.stop()
        try:
            optuna.delete_study(study_name=study, storage=open_storage(postgres_url, heartbeat_interval=None))
        except KeyError:
            pass
