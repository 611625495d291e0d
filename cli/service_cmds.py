"""`hybridnas dashboard`, `status` and `report`: looking at a study while and after it runs."""

from __future__ import annotations

import errno
import html
import json
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import optuna
import typer
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hybridnas.cli.errors import UserError
from hybridnas.storage import artifact_store, artifacts_path, load_study, mask_url, open_storage, resolve_url

console = Console()

STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)
# Trials that count towards the budget, as optuna.study.MaxTrialsCallback counts them.
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)

StorageOpt = Annotated[
    Optional[str],
    typer.Option("--storage", help="Storage URL (default: $HYBRIDNAS_STORAGE, else sqlite:///hybridnas.db)."),
]
StudyOpt = Annotated[str, typer.Option("--study", help="Study name.")]


def dashboard_cmd(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Serve optuna-dashboard over the study storage, with the artifact store wired in."""
    import optuna_dashboard

    rdb = open_storage(storage, heartbeat_interval=None)
    store = artifact_store(storage)
    console.print(f"optuna-dashboard at [bold]http://{host}:{port}/[/bold]")
    console.print(f"storage {mask_url(resolve_url(storage))}, artifacts in {artifacts_path(storage)}/")
    console.print("Ctrl-C stops it")
    try:
        optuna_dashboard.run_server(rdb, host=host, port=port, artifact_store=store)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use; pick another with --port") from None
        raise


def _positive(value: Any) -> float | None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if is_number and value > 0 else None


def _budget(study: optuna.Study) -> tuple[int | None, float | None]:
    """The trial count and timeout (seconds) stored with the study by `hybridnas launch`, if any.

    Read defensively: studies created by plain Optuna, or by older hybridnas, have none.
    """
    definition = study.user_attrs.get("hybridnas")
    if not isinstance(definition, dict):
        return None, None
    trials = definition.get("trials")
    return (_positive(trials) if isinstance(trials, int) else None), _positive(definition.get("timeout"))


def _best(study: optuna.Study, complete: list[FrozenTrial]) -> dict[str, Any]:
    if not complete:
        return {}
    if len(study.directions) > 1:
        return {"pareto_front_size": len(study.best_trials)}
    best = study.best_trial
    return {"best_value": best.value, "best_trial": best.number}


def study_status(study: optuna.Study, now: datetime | None = None) -> dict[str, Any]:
    """Counts, best result, throughput and ETA of a study as one JSON-ready dict.

    Throughput is finished (COMPLETE, PRUNED, FAIL) trials per hour of the study's wall time;
    the ETA extrapolates the COMPLETE + PRUNED rate to the trial budget, capped by the
    timeout counted from the first trial's start (workers started with the launch).
    """
    now = now or datetime.now()
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(t.state == state for t in trials) for state in STATES}
    done = sum(counts[s.name] for s in DONE_STATES)
    finished = done + counts["FAIL"]
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    active = counts["RUNNING"] + counts["WAITING"] > 0
    end = now if active or not ends else max(ends)
    wall_s = (end - min(starts)).total_seconds() if starts else 0.0
    hours = wall_s / 3600
    budget_trials, budget_timeout = _budget(study)

    eta_s = None
    if budget_trials is not None and done and hours > 0:
        eta_s = max(budget_trials - done, 0) / (done / hours) * 3600
    if budget_timeout is not None and starts:
        left = max(budget_timeout - (now - min(starts)).total_seconds(), 0.0)
        eta_s = left if eta_s is None else min(eta_s, left)

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "trials": counts,
        "done": done,
        **_best(study, complete),
        "wall_time_s": round(wall_s, 1),
        "throughput_per_hour": round(finished / hours, 2) if hours > 0 else None,
        "budget_trials": budget_trials,
        "budget_timeout_s": budget_timeout,
        "eta_s": round(eta_s, 1) if eta_s is not None else None,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def _print_status(status: dict[str, Any]) -> None:
    table = Table(title=f"study {status['study']} ({', '.join(status['directions'])})")
    for state in status["trials"]:
        table.add_column(state, justify="right")
    table.add_row(*(str(n) for n in status["trials"].values()))
    console.print(table)
    if "best_value" in status:
        console.print(f"best value {status['best_value']:.6g} (trial {status['best_trial']})")
    elif "pareto_front_size" in status:
        console.print(f"Pareto front: {status['pareto_front_size']} trials")
    else:
        console.print("no completed trial yet")
    rate = status["throughput_per_hour"]
    console.print(f"wall time {_duration(status['wall_time_s'])}, "
                  f"{'unknown' if rate is None else f'{rate:g}'} finished trials/hour")
    if status["budget_trials"] or status["budget_timeout_s"]:
        console.print(f"budget: {status['budget_trials'] or '-'} trials, timeout "
                      f"{_duration(status['budget_timeout_s']) if status['budget_timeout_s'] else '-'}; "
                      f"ETA {_duration(status['eta_s'])}")


def _budget_reached(status: dict[str, Any]) -> bool:
    by_trials = status["budget_trials"] is not None and status["done"] >= status["budget_trials"]
    by_time = status["budget_timeout_s"] is not None and status["eta_s"] == 0 and not status["trials"]["RUNNING"]
    return by_trials or by_time


def _watch(study: optuna.Study, interval: float) -> dict[str, Any]:
    """Refresh a progress bar until the budget is reached or Ctrl-C; returns the last status."""
    status = study_status(study)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(study.study_name, total=status["budget_trials"], detail="")
        try:
            while True:
                best = status.get("best_value", status.get("pareto_front_size"))
                detail = f"best {best:.6g}  ETA {_duration(status['eta_s'])}" if best is not None else ""
                progress.update(task, completed=status["done"], detail=detail)
                if _budget_reached(status):
                    break
                time.sleep(interval)
                status = study_status(study)
        except KeyboardInterrupt:
            pass
    return status


def status_cmd(
    study_name: StudyOpt,
    storage: StorageOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="Live progress until the budget is reached or Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.5, help="Seconds between --watch refreshes.")] = 5.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Trial counts by state, best result, throughput and ETA of a study."""
    if watch and json_out:
        raise UserError("--watch and --json do not combine; poll `status --json` instead")
    study = load_study(study_name, storage, heartbeat_interval=None)
    status = _watch(study, interval) if watch else study_status(study)
    if json_out:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)


def _objective_names(study: optuna.Study) -> list[str]:
    return study.metric_names or [f"objective {i}" for i in range(len(study.directions))]


def _first_objective(sign: float = 1.0) -> Any:
    return lambda t: sign * t.values[0]


def _importances(study: optuna.Study, target_name: str) -> Any:
    """Importances of the first objective; PED-ANOVA ranks parameters by low target values."""
    import optuna.visualization as vis

    if len(study.directions) == 1:
        return vis.plot_param_importances(study, target_name=target_name)
    flip = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes", category=UserWarning)
        return vis.plot_param_importances(study, target=_first_objective(flip), target_name=target_name)


def report_figures(study: optuna.Study) -> list[tuple[str, Any]]:
    """(heading, figure or note) pairs; multi-objective studies plot their first objective."""
    import optuna.visualization as vis

    multi = len(study.directions) > 1
    names = _objective_names(study)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    history = {"target": _first_objective()} if multi else {}

    sections: list[tuple[str, Any]] = [
        ("Optimization history", vis.plot_optimization_history(study, target_name=names[0], **history))
    ]
    if any(t.intermediate_values for t in trials):
        sections.append(("Intermediate values", vis.plot_intermediate_values(study)))
    else:
        sections.append(("Intermediate values", "no trial reported intermediate values"))
    if len(complete) >= 2 and any(t.params for t in complete):
        sections.append(("Parameter importances", _importances(study, names[0])))
    else:
        sections.append(("Parameter importances", "needs at least two completed trials with parameters"))
    if multi:
        sections.append(("Pareto front", vis.plot_pareto_front(study, target_names=names)))
    return sections


def report_html(study: optuna.Study) -> str:
    """One self-contained HTML page (plotly.js inlined once) with the study's plots."""
    status = study_status(study)
    counts = ", ".join(f"{n} {state}" for state, n in status["trials"].items())
    parts = [f"<h1>hybridnas study {html.escape(study.study_name)}</h1>", f"<p>{html.escape(counts)}</p>"]
    include_js: bool | str = True
    for heading, content in report_figures(study):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, str):
            parts.append(f"<p><em>{html.escape(content)}</em></p>")
            continue
        parts.append(content.to_html(full_html=False, include_plotlyjs=include_js))
        include_js = False
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(study.study_name)}"
            f"</title></head>\n<body>\n{body}\n</body></html>\n")


def report_cmd(
    study_name: StudyOpt,
    out: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")] = Path("report.html"),
    storage: StorageOpt = None,
) -> None:
    """Write one self-contained HTML report: history, intermediate values, importances, Pareto front."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise UserError("the report needs plotly: pip install plotly") from None
    study = load_study(study_name, storage, heartbeat_interval=None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_html(study), encoding="utf-8")
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_cmd)
    app.command("status")(status_cmd)
    app.command("report")(report_cmd)
