"""A real multi-node Ray cluster on this machine: `ray start --head` and `ray start --address`
processes, each a node with its own CPUs, sharing one token (Ray 2.60's token authentication).

Every node runs `ray start --block` in its own process group, so the test owns it by handle:
losing a node is a SIGKILL of every process under the one the test started for it (its raylet
and its workers), and cleanup ends each group it started, nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Descendant pids of `pid`, read from /proc (no psutil here)."""
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        by_parent.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = by_parent.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


class RayCluster:
    """Nodes of one Ray cluster, started and stopped by the test."""

    def __init__(self, env: dict[str, str], logs: Path, *, token: str | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray's unix sockets live under the temp dir, whose path must stay short.
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.env = {
            **env,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token or secrets.token_hex(32),
            "RAY_TMPDIR": self.temp_dir,
            # notice a lost node in seconds, not the default half minute
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            # workers at normal priority, as the embedded Ray runs them (workers/ray_workers.start_ray)
            "RAY_worker_niceness": "0",
        }
        self.logs = logs
        self.nodes: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """Run a node's `ray start ... --block` command on this machine, on loopback; a head also
        gets this cluster's short temp dir."""
        extra = ["--node-ip-address", "127.0.0.1"] + (["--temp-dir", self.temp_dir] if "--head" in argv else [])
        log = open(self.logs / f"ray-node-{len(self.nodes)}.log", "wb")  # noqa: SIM115 -- closed with the process
        proc = subprocess.Popen([*argv, *extra], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)
        log.close()
        self.nodes.append(proc)
        return proc

    def start_head(self, num_cpus: int = 1) -> subprocess.Popen[bytes]:
        return self.start([str(RAY), "start", "--block", "--head", "--port", str(self.port), "--num-cpus",
                           str(num_cpus), "--include-dashboard", "false"])

    def add_node(self, num_cpus: int = 1) -> subprocess.Popen[bytes]:
        return self.start([str(RAY), "start", "--block", "--address", self.address, "--num-cpus", str(num_cpus)])

    def alive_nodes(self) -> int:
        done = subprocess.run([str(RAY), "status", "--address", self.address], capture_output=True, text=True,
                              env=self.env, timeout=60)
        active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return len(re.findall(r"\bnode_[0-9a-f]+", active)) if done.returncode == 0 else 0

    def wait_for_nodes(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_nodes() != n:
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not reach {n} node(s) in {timeout:.0f}s")
            time.sleep(1.0)

    def kill_node(self, node: subprocess.Popen[bytes]) -> None:
        """Lose a node as a crashed or preempted machine would: SIGKILL its raylet and every
        process under it at once. Killing the raylet alone left its workers running for the
        seconds they take to notice, and one of them once finished its trial in that time."""
        for pid in children(node.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for node in self.nodes:
            try:
                os.killpg(node.pid, signal.SIGKILL)  # the group this test started, nothing else
            except ProcessLookupError:
                pass
            node.wait()
