"""Helpers of the fault tests: real `hybridnas` processes on a throwaway PostgreSQL study.

(Not named conftest.py: tests/conftest.py is imported as `conftest` by the test modules.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from hybridnas.storage import open_storage

HYBRIDNAS = Path(sys.executable).with_name("hybridnas")
HANG_GUARD_S = 120.0
PG_CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect"]
T = TypeVar("T")


def pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def pg_cluster(action: str) -> None:
    subprocess.run([*PG_CLUSTER, pg_version(), "main", action], check=True, capture_output=True, timeout=120)


def pg_running() -> bool:
    done = subprocess.run([*PG_CLUSTER, pg_version(), "main", "status"], capture_output=True)
    return done.returncode == 0


def wait_for(condition: Callable[[], T], what: str, timeout: float = HANG_GUARD_S, every: float = 0.2) -> T:
    """Poll until `condition()` is truthy (its value is returned); a database error counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except sqlalchemy.exc.OperationalError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class PgStudy:
    """One study name in the test database, its environment and its processes."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.name = f"fault-{uuid.uuid4().hex[:8]}"
        self.storage = open_storage(url, heartbeat_interval=None)
        self.env = {**os.environ, "HYBRIDNAS_ARTIFACTS": str(tmp_path / "artifacts"), "PYTHONUNBUFFERED": "1"}
        self.logs = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def trials(self) -> list[FrozenTrial]:
        try:
            study = optuna.load_study(study_name=self.name, storage=self.storage)
        except KeyError:  # not created yet
            return []
        return study.get_trials(deepcopy=False)

    def by_state(self, *states: TrialState) -> list[FrozenTrial]:
        return [t for t in self.trials() if t.state in states]

    def done(self) -> int:
        return len(self.by_state(TrialState.COMPLETE, TrialState.PRUNED))

    def spawn(self, *args: str, log: str, new_session: bool = False) -> subprocess.Popen[bytes]:
        out = open(self.logs / f"{log}.log", "wb")  # noqa: SIM115 -- closed with the process
        proc = subprocess.Popen(
            [str(HYBRIDNAS), *args], stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=new_session
        )
        proc.log_path = self.logs / f"{log}.log"  # type: ignore[attr-defined]
        out.close()
        self.procs.append(proc)
        return proc

    def worker(self, worker_id: str, *extra: str) -> subprocess.Popen[bytes]:
        return self.spawn(
            "worker", "--study", self.name, "--storage", self.url, "--worker-id", worker_id,
            "--device", "cpu", "--threads", "1", *extra, log=worker_id,
        )

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]

    def wait(self, proc: subprocess.Popen[bytes], timeout: float = HANG_GUARD_S) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{proc.args} still running after {timeout:.0f}s:\n{self.log(proc)[-3000:]}") from None

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # only processes this test started, by their own handle
                proc.wait()
        try:
            optuna.delete_study(study_name=self.name, storage=self.storage)
        except KeyError:
            pass
        self.storage.engine.dispose()


@pytest.fixture
def pg_study(postgres_url: str, study_env: None, tmp_path: Path) -> Iterator[PgStudy]:
    study = PgStudy(postgres_url, tmp_path)
    yield study
    study.cleanup()


def snapshot(trials: list[FrozenTrial]) -> dict[int, Any]:
    return {t.number: (t.state, t.values, t.params, t.user_attrs.get("worker")) for t in trials}


def sigint(proc: subprocess.Popen[bytes]) -> None:
    """What Ctrl-C in a terminal does: SIGINT to the whole foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)
