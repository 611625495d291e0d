"""A Docker engine that a test run starts, owns and removes: its own dockerd (data, exec root,
pid file and socket under one temporary folder), installed with Debian's packages when missing.

It leaves the host's network settings alone (no iptables rules, no IP forwarding): containers
reach each other on compose's bridge network and the host through published ports on
127.0.0.1, which docker-proxy serves; nothing the stack runs needs the internet once its images
are built (deploy/build_local_images.sh installs from local wheels)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# Debian bookworm's engine (20.10) and compose (1.29, the Python one: Debian has no compose plugin).
PACKAGES = {"dockerd": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}


class EngineError(RuntimeError):
    """The engine could not be installed or started: the compose tests fail on it, never skip."""


def install_missing() -> None:
    """apt-get the engine, compose and debootstrap where absent (CI and the test command run as root)."""
    missing = sorted({package for program, package in PACKAGES.items() if shutil.which(program) is None})
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise EngineError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")


class Engine:
    """One dockerd under `root`; `env` points docker and docker-compose at it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hybridnas-dockerd-"))
        self.socket = self.root / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        self.process: subprocess.Popen[bytes] | None = None
        self.driver = ""
        self._had_bridge = Path("/sys/class/net/docker0").exists()

    def start(self, timeout: float = 90) -> None:
        """overlay2 where the kernel and file system allow it (one copy of each image), else vfs."""
        install_missing()
        errors = []
        for driver in ("overlay2", "vfs"):
            if self._try(driver, timeout):
                self.driver = driver
                return
            errors.append(f"--storage-driver {driver}: {self._log_tail()}")
            self.stop_daemon()
        raise EngineError("dockerd did not start:\n" + "\n".join(errors))

    def _try(self, driver: str, timeout: float) -> bool:
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "-H", f"unix://{self.socket}",
             "--storage-driver", driver, "--iptables=false", "--ip-forward=false", "--ip-masq=false"],
            stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            done = subprocess.run(["docker", "info", "--format", "{{.Driver}}"], env=self.env,
                                  capture_output=True, text=True)
            if done.returncode == 0:
                return done.stdout.strip() == driver
            time.sleep(0.5)
        return False

    def _log_tail(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else "(no log)"

    def disk_report(self) -> str:
        """The storage driver and the free space where the engine keeps its layers, for a failed
        build's message (a full disk reads there as an unrelated write error)."""
        usage = shutil.disk_usage(self.root)
        return (f"\n[engine: storage driver {self.driver}, {usage.free / 2**30:.1f} GiB free of "
                f"{usage.total / 2**30:.1f} GiB under {self.root}]")

    def docker(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.returncode}\n"
                                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout

    def stop_daemon(self) -> None:
        """SIGTERM (dockerd stops its containers and unmounts its layers), SIGKILL after 60 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        """The daemon, whatever it left mounted under its root, the root, and the default bridge it made."""
        self.stop_daemon()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.root))]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if not self._had_bridge and Path("/sys/class/net/docker0").exists():
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True)
