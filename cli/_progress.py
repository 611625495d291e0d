"""What `launch` and `retrain` show while their workers run.

Every finished trial gets one line. On a terminal a live panel below them keeps one line per
worker (where it runs, its trial and epoch, how many it trained) and one for the study (trained
/ budget, best so far, ETA), redrawn every poll. When the output is not a terminal (CI logs, a
pipe) only the plain trial lines are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hybridnas.objectives.study.records import TrialRecord

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

_STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


def trial_line(t: FrozenTrial) -> Text:
    """One finished trial: state, result or reason, size, time and worker. The state is coloured
    by style, not markup, so a fail reason or worker name in brackets prints as it is."""
    record = TrialRecord(t)
    state = t.state.name
    parts: list[str] = []
    if record.is_duplicate:
        parts.append(f"same as trial {record.duplicate_of}")
    elif state == "COMPLETE":
        parts.append(f"val_top1 {t.values[0]:.4f}")
    elif record.is_infeasible:
        parts.append(str(record.constraint_violation))
    elif state == "PRUNED":
        parts.append(f"after epoch {max(t.intermediate_values, default=0)}")
    elif state == "FAIL":
        parts.append(str(record.fail_reason if record.fail_reason is not None else "heartbeat lost (worker gone)"))
    if record.params is not None:
        parts.append(f"params {record.params:,}  MACs {record.macs:,}")
    if record.preset is not None:
        parts.append(f"preset {record.preset}")
    parts.append(f"{record.wall_seconds or 0:.1f}s  {record.worker or ''}")
    return Text.assemble(f"trial {t.number:>3}  ", (f"{state:<8}", _STATE_STYLE.get(state, "white")),
                         "  ", "  ".join(parts))


def duration(seconds: float | None) -> str:
    """Seconds as 0h01m28s, the way status and progress print times."""
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


class LaunchProgress:
    """Call it every poll (launch_workers' `on_poll`); `close` it when the workers are done."""

    def __init__(self, study: optuna.Study, console: Console) -> None:
        self.study = study
        self.console = console
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        self.live = Live(console=console, auto_refresh=False, transient=True) if console.is_terminal else None

    def close(self) -> None:
        """Take the live panel down (the trial lines stay)."""
        if self.live is not None and self.live.is_started:
            self.live.stop()

    def __call__(self) -> None:
        if self.live is not None and not self.live.is_started:
            self.live.start()
        trials = self.study.get_trials(deepcopy=False)
        for t in trials:
            if t.state.is_finished() and t.number not in self.seen:
                self.seen.add(t.number)
                self.console.print(trial_line(t))
        if self.live is not None:
            self.live.update(self._panel(trials), refresh=True)

    def _panel(self, trials: list[FrozenTrial]) -> Group:
        from hybridnas.objectives.study.service import study_status

        status = study_status(self.study)
        running = {TrialRecord(t).worker: t for t in trials if t.state.name == "RUNNING"}
        trained: dict[Any, int] = {}
        for record in map(TrialRecord, trials):
            if record.counts_toward_budget:
                trained[record.worker] = trained.get(record.worker, 0) + 1
        table = Table.grid(padding=(0, 2))
        for w in status["workers"]:
            if w.get("state") not in ("starting", "running"):
                continue
            t = running.get(w["worker"])
            doing = (f"trial {t.number}, epoch {TrialRecord(t).epochs_run or 0}" if t is not None
                     else "between trials" if w["state"] == "running" else "waiting for room on the cluster")
            table.add_row(w["worker"], f"{w.get('host', '?')} node {w.get('node', '?')}", doing,
                          f"{trained.get(w['worker'], 0)} trained")
        best = (f"best {status['best_value']:.4f} (trial {status['best_trial']})" if "best_value" in status
                else f"Pareto front {status['pareto_front_size']}" if "pareto_front_size" in status else "no result yet")
        budget = status["budget_trials"] or "?"
        line = Text(f"{self.study.study_name}: {status['done']}/{budget} trained, {best}, ETA {duration(status['eta_s'])}",
                    style="bold")
        return Group(table, line)
