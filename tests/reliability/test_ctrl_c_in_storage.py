"""Ctrl-C that lands inside a database call of the launcher or a worker.

Python runs a signal handler between two bytecodes of the main thread, so a SIGINT can arrive
while SQLAlchemy is in the middle of a statement on the study's PostgreSQL connection. A
KeyboardInterrupt raised there once left psycopg mid-transaction; the cleanup that fails the
interrupted trials then failed itself and `launch` exited 1. These tests send SIGINT from
inside a seeded choice of the main thread's statements and check the outcome a user relies on:
exit 130, nothing RUNNING, the interrupted trials FAIL "interrupted"."""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from faults import PgStudy
from helpers import TEST_WORKER, tiny_study_args
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import Engine


class _SigintInStatement:
    """Once armed, sends SIGINT to this process from inside the main thread's `nth` statement."""

    def __init__(self, nth: int) -> None:
        self.left = nth
        self.armed = False
        self.sent_in = ""

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not self.armed or threading.current_thread() is not threading.main_thread() or self.sent_in:
            return
        self.left -= 1
        if self.left == 0:
            self.sent_in = statement.split()[0]
            signal.raise_signal(signal.SIGINT)


@pytest.fixture
def sigint_in_statement(request: pytest.FixtureRequest) -> Iterator[_SigintInStatement]:
    hook = _SigintInStatement(random.Random(request.param).randint(1, 40))
    event.listen(Engine, "before_cursor_execute", hook)
    yield hook
    event.remove(Engine, "before_cursor_execute", hook)


def _check_interrupted(s: PgStudy, code: int, out: str, hook: _SigintInStatement) -> None:
    assert hook.sent_in, "the SIGINT was never sent"
    assert code == 130, (hook.sent_in, out)
    trials = s.trials()
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == [], hook.sent_in
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get("fail_reason") == "interrupted", (t.number, t.user_attrs)


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("sigint_in_statement", [0, 1, 2], indirect=True)
def test_ctrl_c_inside_a_launch_database_call_exits_130(
    hybridnas, pg_study: PgStudy, sigint_in_statement: _SigintInStatement
) -> None:
    s = pg_study
    from hybridnas.cli._progress import LaunchProgress

    real_progress = LaunchProgress.__call__

    def arm_after_first_trial(self: LaunchProgress) -> None:
        real_progress(self)
        if self.seen:
            sigint_in_statement.armed = True

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LaunchProgress, "__call__", arm_after_first_trial)
        code, out = hybridnas("launch", "--study", s.name, "--storage", s.url,
                              *tiny_study_args(30, epochs=10, train_subset=1024), "--pruner", "none", "--workers", "2")
    _check_interrupted(s, code, out, sigint_in_statement)
    assert "interrupted: workers stopped" in out, out


@pytest.mark.parametrize("sigint_in_statement", [0, 1, 2], indirect=True)
def test_ctrl_c_inside_a_worker_database_call_exits_130(
    hybridnas, pg_study: PgStudy, sigint_in_statement: _SigintInStatement
) -> None:
    s = pg_study
    code, out = hybridnas("launch", "--study", s.name, "--storage", s.url,
                          *tiny_study_args(30, epochs=10, train_subset=1024), "--pruner", "none", "--workers", "0")
    assert code == 0, out
    sigint_in_statement.armed = True
    code, out = hybridnas("worker", "--study", s.name, "--storage", s.url, "--worker-id", TEST_WORKER,
                          "--device", "cpu", "--threads", "1")
    _check_interrupted(s, code, out, sigint_in_statement)
