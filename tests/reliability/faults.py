"""Helpers of the fault tests: real `hybridnas` processes on a throwaway PostgreSQL study
(the `pg_study` fixture is in this folder's conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from hybridnas.common import StorageError
from hybridnas.objectives.study.records import TrialRecord
from hybridnas.storage import open_storage, retried_from

HYBRIDNAS = Path(sys.executable).with_name("hybridnas")
HANG_GUARD_S = 120.0
# A hang guard for a CLI server to answer: it imports torch, slow on a busy 2-core machine.
STARTUP_GUARD_S = 180.0
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
        """Trials that used up budget: distinct architectures trained."""
        return sum(TrialRecord(t).counts_toward_budget for t in self.trials())

    def spawn(
        self, *args: str, log: str, new_session: bool = False, sigint_ignored: bool = False
    ) -> subprocess.Popen[bytes]:
        """`sigint_ignored`: start it as a non-interactive shell starts a background job (CI
        runners do), with SIGINT ignored, which Python then leaves ignored unless told otherwise."""
        out = open(self.logs / f"{log}.log", "wb")  # noqa: SIM115 -- closed with the process
        proc = subprocess.Popen(
            [str(HYBRIDNAS), *args], stdout=out, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=new_session, preexec_fn=_ignore_sigint if sigint_ignored else None,
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

    def storage_proxy(self) -> str:
        """A `hybridnas storage-proxy` in front of the study's database, one of this study's
        processes (so cleanup kills it); its grpc:// URL once it answers."""
        port = free_port()
        proc = self.spawn("storage-proxy", "--storage", self.url, "--port", str(port), log="storage-proxy")
        url = f"grpc://127.0.0.1:{port}"

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"storage-proxy exited with {proc.returncode}:\n{self.log(proc)}")
            try:
                open_storage(url, heartbeat_interval=None).close()
            except StorageError:
                return False
            return True

        wait_for(answers, "the storage proxy to answer", timeout=STARTUP_GUARD_S)
        return url

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


def free_port() -> int:
    """A local TCP port nothing listens on, for a server the test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_mid_trial_and_check_retry(s: PgStudy, workers: dict[str, subprocess.Popen[bytes]], budget: int,
                                   grace_s: int) -> None:
    """SIGKILL the worker whose trial has reported its first epoch (of 3, no pruner: still
    training), then check what its heartbeats promise: the survivors fail that trial, one of
    them re-runs it once with the same params, and the study ends at its budget with nothing
    RUNNING and the finished trials untouched. ``workers`` are this study's processes by id."""

    def victim_mid_training() -> FrozenTrial | None:
        running = [t for t in s.by_state(TrialState.RUNNING) if t.user_attrs.get("worker") in workers]
        return next((t for t in running if t.intermediate_values), None)

    victim = wait_for(victim_mid_training, "a worker's trial to report its first epoch")
    killed = workers[victim.user_attrs["worker"]]
    survivors = {name: proc for name, proc in workers.items() if proc is not killed}
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    before = {n: v for n, v in snapshot(s.trials()).items() if v[0] == TrialState.COMPLETE}
    assert [t.state for t in s.trials() if t.number == victim.number] == [TrialState.RUNNING]  # killed mid-trial

    wait_for(
        lambda: [t for t in s.by_state(TrialState.FAIL) if t.number == victim.number],
        f"trial {victim.number} of the killed worker to be failed by the heartbeat check",
        # a hang guard: survivors check at their trial starts and while they wait for the budget
        timeout=grace_s + 90,
    )
    for proc in survivors.values():
        assert s.wait(proc) == 0, s.log(proc)

    trials = s.trials()
    retries = [t for t in trials if retried_from(t) == victim.number]
    table = [(t.number, t.state.name, t.user_attrs.get("worker"), retried_from(t)) for t in trials]
    assert len(retries) == 1, table
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED), table
    assert retries[0].params == victim.params  # the same architecture, run again
    assert retries[0].user_attrs["worker"] in survivors
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert s.done() == budget
    # Besides the victim, a survivor may end FAIL "not started" a trial it asked for as the budget
    # filled (objectives/objective.py): refused before sampling, nothing of it trained.
    failed = [t for t in trials if t.state == TrialState.FAIL]
    not_started = [t for t in failed if t.user_attrs.get("fail_reason", "").startswith("not started:")]
    assert all(not t.params and not t.intermediate_values for t in not_started), table
    assert [t.number for t in failed if t not in not_started] == [victim.number]
    after = snapshot(trials)
    for number, was in before.items():
        assert after[number] == was, number
    assert sorted(after) == list(range(len(trials)))


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def snapshot(trials: list[FrozenTrial]) -> dict[int, Any]:
    return {t.number: (t.state, t.values, t.params, t.user_attrs.get("worker")) for t in trials}


def sigint(proc: subprocess.Popen[bytes]) -> None:
    """What Ctrl-C in a terminal does: SIGINT to the whole foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)
