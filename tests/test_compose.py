"""docker-compose.yml and Dockerfile, checked as data: no Docker engine runs on CI machines."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer
import yaml

from hybridnas.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"postgres", "dashboard", "ray-head", "worker", "launch"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _interpolate(text: str) -> str:
    """Compose's ${VAR:-default} with every variable unset; $$ escapes a literal $."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", text).replace("$$", "$")


def _hybridnas_argv(service: dict) -> list[str]:
    """The `hybridnas ...` arguments a service runs, from a list or from its `sh -c` line."""
    command = [_interpolate(part) for part in service["command"]]
    if command[:2] == ["sh", "-c"]:
        command = shlex.split(command[2].split("exec ")[-1])
    assert command[0] == "hybridnas", command
    return command[1:]


def test_services_present(services: dict) -> None:
    assert set(services) == SERVICES


def test_postgres_healthcheck_and_volume(services: dict) -> None:
    postgres = services["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in postgres["volumes"])


def test_named_volumes_declared(compose: dict, services: dict) -> None:
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith((".", "/"))}
    assert used and used <= set(compose["volumes"])


def test_nothing_published_beyond_localhost(services: dict) -> None:
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published
    assert all(str(p).startswith("127.0.0.1:") for p in published)


def test_dashboard_binds_inside_the_network(services: dict) -> None:
    argv = _hybridnas_argv(services["dashboard"])
    assert argv[0] == "dashboard"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert "127.0.0.1:8080:8080" in services["dashboard"]["ports"]


def test_worker_reserves_one_nvidia_gpu_and_joins_ray(services: dict) -> None:
    worker = services["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert "--address=ray-head:6379" in worker["command"][-1]
    assert _hybridnas_argv(worker)[0] == "worker"


def test_depends_on_conditions(services: dict) -> None:
    for name in ("dashboard", "launch", "worker"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["launch"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["ray-head"]["condition"] == "service_started"


def test_launch_is_one_shot(services: dict) -> None:
    assert services["launch"]["restart"] == "no"
    assert _hybridnas_argv(services["launch"])[0] == "launch"


def test_passwords_come_from_the_environment(services: dict) -> None:
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:-")
    for name in ("dashboard", "launch", "worker", "ray-head"):
        url = services[name]["environment"]["HYBRIDNAS_STORAGE"]
        assert url.startswith("postgresql+psycopg://") and "${POSTGRES_PASSWORD:-" in url
        assert "--storage" not in " ".join(services[name]["command"])  # no password in `ps`


@pytest.mark.parametrize("name", ["dashboard", "launch", "worker"])
def test_commands_parse_with_the_real_cli(services: dict, name: str) -> None:
    argv = _hybridnas_argv(services[name])
    group = typer.main.get_command(app)
    command = group.get_command(click.Context(group), argv[0])
    assert command is not None, f"hybridnas has no command {argv[0]!r}"
    command.make_context(argv[0], argv[1:])


def test_services_build_the_dockerfile(services: dict) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip install ." in dockerfile
    assert all(services[name]["build"] == "." for name in SERVICES - {"postgres"})
