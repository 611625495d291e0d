"""Train each architecture once: a sample that repeats an earlier trial reuses its result.

Every trial declares the key of what it will train (`architecture_key`: the canonical config
and the training settings) as a user attr before anything else. The trials table is the lock:
trial numbers are handed out atomically, and the lowest-numbered trial that declared a key and
did not fail owns it. A trial decides only once every earlier trial still RUNNING has declared
its key, so two workers that sample the same new architecture at the same moment cannot both
train it: the later one waits for the earlier one and takes its result. Optuna's constant liar
(TPE's default) makes such collisions rare; this makes them harmless.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from optuna.trial import TrialState

from hybridnas.objectives.study.records import ARCH_KEY, DUPLICATE_OF, TrialRecord

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

# How long a trial waits for earlier trials in flight to declare their key. They declare right
# after sampling, so only a trial whose worker died before declaring can run this out.
DECLARE_WAIT_S = 30.0

V = TypeVar("V")


class Stopped(Exception):
    """The worker was told to stop while this trial waited."""


def _wait(stop: threading.Event | None, seconds: float) -> None:
    if stop is not None and stop.wait(seconds):
        raise Stopped
    if stop is None:
        time.sleep(seconds)


def find_original(
    study: optuna.Study, number: int, key: str, *, stop: threading.Event | None = None, poll_s: float = 0.2
) -> FrozenTrial | None:
    """The earlier trial that trains or trained `key`, or None if trial `number` should train it.

    Waits (up to DECLARE_WAIT_S) until every earlier RUNNING trial has declared its key.
    """
    deadline = time.monotonic() + DECLARE_WAIT_S
    while True:
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < number]
        undeclared = [t for t in earlier if t.state == TrialState.RUNNING and TrialRecord(t).arch_key is None]
        if not undeclared or time.monotonic() > deadline:
            owners = [t for t in earlier if TrialRecord(t).owns(key)]
            return min(owners, key=lambda t: t.number) if owners else None
        _wait(stop, poll_s)


def await_original(
    study: optuna.Study, number: int, key: str, *, stop: threading.Event | None = None, poll_s: float = 1.0
) -> FrozenTrial | None:
    """The finished (COMPLETE or PRUNED) trial whose result trial `number` reuses, or None to train.

    An original still running is waited for; one that fails hands the key to the next owner,
    which may be this trial.
    """
    while True:
        original = find_original(study, number, key, stop=stop)
        if original is None or original.state.is_finished():
            return original
        while not original.state.is_finished():
            _wait(stop, poll_s)
            original = study.get_trials(deepcopy=False)[original.number]
        if original.state != TrialState.FAIL:
            return original


def reuse_or_train(
    trial: optuna.Trial, key: str, train: Callable[[], V], *, stop: threading.Event | None = None
) -> V | float | tuple[float, ...]:
    """The result for `key`: an earlier trial's (reported as this trial's, marked `duplicate_of`)
    or, when this trial owns the key, what `train()` returns. The key must be declared first."""
    import optuna

    original = await_original(trial.study, trial.number, key, stop=stop)
    if original is None:
        return train()
    trial.set_user_attr(DUPLICATE_OF, original.number)
    if original.state == TrialState.COMPLETE:
        return original.value if len(original.values) == 1 else tuple(original.values)
    for step, value in sorted(original.intermediate_values.items()):
        trial.report(value, step)
    raise optuna.TrialPruned(f"same architecture as trial {original.number}, which was pruned")


def declare(trial: optuna.Trial, key: str) -> None:
    """Say what this trial will train, before anything else, so later trials can wait for it."""
    trial.set_user_attr(ARCH_KEY, key)
