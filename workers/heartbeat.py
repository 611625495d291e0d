"""How often a running trial beats, and how old its last beat may be before any worker of the
study fails it and queues it again: checked in one place, where the values come in (`launch`,
`retrain`, a worker), without torch or Ray.

A beat comes up to one interval after the previous one, later when the storage is slow, so a
grace period of one interval or less fails trials whose worker is alive and busy; each live
trial is then trained twice and the study's FAIL count grows. The grace period must be at least
twice the interval, Optuna's own default.
"""

from __future__ import annotations

from hybridnas.common import UsageError

HEARTBEAT_INTERVAL_S = 60
GRACE_FACTOR = 2
MAX_HEARTBEAT_INTERVAL_S = 3600
MAX_GRACE_PERIOD_S = 7 * 24 * 3600


def check_heartbeat(heartbeat_interval: int, grace_period: int | None) -> int:
    """The grace period to use (default GRACE_FACTOR intervals), or UsageError naming the field."""
    if isinstance(heartbeat_interval, bool) or not isinstance(heartbeat_interval, int) or not (
        1 <= heartbeat_interval <= MAX_HEARTBEAT_INTERVAL_S
    ):
        raise UsageError(f"heartbeat_interval: {heartbeat_interval!r} is not a whole number of seconds "
                         f"from 1 to {MAX_HEARTBEAT_INTERVAL_S}")
    if grace_period is None:
        return GRACE_FACTOR * heartbeat_interval
    least = GRACE_FACTOR * heartbeat_interval
    if isinstance(grace_period, bool) or not isinstance(grace_period, int) or grace_period > MAX_GRACE_PERIOD_S:
        raise UsageError(f"grace_period: {grace_period!r} is not a whole number of seconds up to {MAX_GRACE_PERIOD_S}")
    if grace_period < least:
        raise UsageError(f"grace_period: {grace_period} s is under {GRACE_FACTOR} x heartbeat_interval "
                         f"({heartbeat_interval} s), so workers would fail each other's live trials; use {least} or more")
    return grace_period
