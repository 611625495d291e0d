"""`hybridnas dashboard`, `status` and `report`: looking at a study while and after it runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from hybridnas.cli._options import ArtifactsOpt, StorageOpt, StudyOpt
from hybridnas.cli._progress import duration

if TYPE_CHECKING:
    import optuna

console = Console()


def dashboard_cmd(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 0.0.0.0 exposes it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8080,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Serve optuna-dashboard over the study storage, with the artifact store wired in."""
    from hybridnas.reports import serve_dashboard
    from hybridnas.storage import artifacts_location, mask_url, resolve_url

    console.print(f"optuna-dashboard at [bold]http://{host}:{port}/[/bold]")
    console.print(f"storage {mask_url(resolve_url(storage))}, artifacts in {artifacts_location(storage, artifacts)}")
    console.print("Ctrl-C stops it")
    serve_dashboard(storage, host, port, artifacts)


def _print_status(status: dict[str, Any]) -> None:
    from rich.table import Table

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
    for w in status["workers"]:
        if w.get("state") == "died":
            console.print(f"worker {w['worker']} died on node {w.get('node', '?')} ({w.get('host', '?')}): "
                          f"{w.get('reason', 'unknown reason')}")
    rate = status["throughput_per_hour"]
    console.print(f"wall time {duration(status['wall_time_s'])}, "
                  f"{'unknown' if rate is None else f'{rate:g}'} finished trials/hour")
    if status["budget_trials"] or status["budget_timeout_s"]:
        console.print(f"budget: {status['budget_trials'] or '-'} trials, timeout "
                      f"{duration(status['budget_timeout_s']) if status['budget_timeout_s'] else '-'}; "
                      f"ETA {duration(status['eta_s'])}")


def _watch(study: optuna.Study, interval: float) -> dict[str, Any]:
    """Refresh a progress bar until the budget is reached or Ctrl-C; returns the last status."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hybridnas.objectives.study import budget_reached, study_status

    status = study_status(study)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(study.study_name, total=status["budget_trials"], detail="")
        try:
            while True:
                best = status.get("best_value", status.get("pareto_front_size"))
                detail = f"best {best:.6g}  ETA {duration(status['eta_s'])}" if best is not None else ""
                progress.update(task, completed=status["done"], detail=detail)
                if budget_reached(status):
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
    from hybridnas.common import UsageError
    from hybridnas.objectives.study import study_status
    from hybridnas.storage import load_study

    if watch and json_out:
        raise UsageError("--watch and --json do not combine; poll `status --json` instead")
    study = load_study(study_name, storage, heartbeat_interval=None)
    status = _watch(study, interval) if watch else study_status(study)
    if json_out:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)


def report_cmd(
    study_name: StudyOpt,
    out: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")] = Path("report.html"),
    storage: StorageOpt = None,
) -> None:
    """Write one self-contained HTML report: leaderboard, accuracy against size, importances, compute."""
    from hybridnas.reports import report_html
    from hybridnas.storage import load_study

    study = load_study(study_name, storage, heartbeat_interval=None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_html(study), encoding="utf-8")
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_cmd)
    app.command("status")(status_cmd)
    app.command("report")(report_cmd)
