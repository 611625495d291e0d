"""Joining a cluster through its Ray client address (`ray://`, as the compose launch does) when
the head's session server dies as it starts, as ray-project/ray#63202's fork race makes it do
on a busy head: the launch connects again and joins; a head whose session servers always die
is an error naming what happened. The deaths are real: the head's Python runs a
`sitecustomize` that ends a session server's process at once, as often as a file says (the race
itself may add deaths of its own: a few percent of connections)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_nodes import RayCluster, free_port

from hybridnas.workers.ray_workers import CLIENT_SESSION_TRIES

SESSION_SERVER_DIES = """
import os, sys
if "--mode=specific-server" in sys.argv:
    left = int(open(os.environ["SESSION_DEATHS"]).read())
    if left:
        open(os.environ["SESSION_DEATHS"], "w").write(str(left - 1))
        os._exit(1)
"""

JOIN = """
import ray
from hybridnas.common import UsageError
from hybridnas.workers.ray_workers import start_ray
try:
    print(start_ray({address!r}))
except UsageError as err:
    print(f"error: {{err}}")
else:
    print("sum", ray.get(ray.remote(lambda xs: sum(xs)).remote([1, 2, 3])))
"""


@pytest.fixture
def head(tmp_path: Path) -> Iterator[tuple[RayCluster, str, Path]]:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SESSION_SERVER_DIES)
    deaths = tmp_path / "session-deaths"
    deaths.write_text("0")
    # the proxy gives up on a dead session server after 5 s instead of 30
    env = {**os.environ, "PYTHONPATH": str(hooks), "SESSION_DEATHS": str(deaths),
           "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "5"}
    cluster = RayCluster(env, tmp_path)
    client_port = free_port()
    try:
        cluster.start([str(Path(sys.executable).parent / "ray"), "start", "--block", "--head", "--port",
                       str(cluster.port), f"--ray-client-server-port={client_port}", "--num-cpus", "1",
                       "--include-dashboard", "false"])
        cluster.wait_for_nodes(1)
        yield cluster, f"ray://127.0.0.1:{client_port}", deaths
    finally:
        cluster.stop()


def _join(cluster: RayCluster, address: str) -> list[str]:
    env = {k: v for k, v in cluster.env.items() if k not in ("PYTHONPATH", "SESSION_DEATHS")}
    env["RAY_CLIENT_RECONNECT_GRACE_PERIOD"] = "5"  # a failed session is given up after 5 s, not 30
    done = subprocess.run([sys.executable, "-c", JOIN.format(address=address)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()


def test_a_session_server_that_dies_at_start_is_followed_by_a_new_connection(head) -> None:
    cluster, address, deaths = head
    deaths.write_text("1")
    lines = _join(cluster, address)
    assert lines[-2:] == [f"joined the Ray cluster at {address} (1 node(s))", "sum 6"], lines
    assert deaths.read_text() == "0"  # the death the file asked for happened


@pytest.mark.slow  # each dead session costs the client ~30 s of Ray's own retries: two minutes in all
def test_a_head_whose_session_servers_always_die_is_an_error_naming_it(head) -> None:
    cluster, address, deaths = head
    deaths.write_text("99")
    lines = _join(cluster, address)
    assert lines[-1].startswith(f"error: the Ray cluster at {address} answered but could not start a client "
                                f"session {CLIENT_SESSION_TRIES} times ("), lines
    assert lines[-1].endswith("its head's logs ray_client_server*.err say why"), lines
