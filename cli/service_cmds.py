"""`hybridnas dashboard`, `status` and `report`: looking at a study while and after it runs."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from hybridnas.cli._console import make_console
from hybridnas.cli._options import ArtifactsOpt, StorageOpt, StudyOpt, output_file
from hybridnas.cli._progress import duration

if TYPE_CHECKING:
    import optuna

console = make_console()


def dashboard_cmd(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(
        "--host", help="Interface to bind; beyond loopback every request needs the token "
        "($HYBRIDNAS_DASHBOARD_TOKEN, else one generated and shown once).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8080,
    artifacts: ArtifactsOpt = None,
    allow_writes: Annotated[bool, typer.Option(
        "--allow-writes", help="Let the dashboard delete, rename and change studies, trials, notes and artifacts "
        "(read-only without it).")] = False,
) -> None:
    """Serve optuna-dashboard over the study storage, with the artifact store wired in; read-only
    unless --allow-writes, and behind a token when bound beyond loopback."""
    from hybridnas.reports import DASHBOARD_TOKEN_ENV, serve_dashboard
    from hybridnas.storage import server_token

    token, generated = server_token(DASHBOARD_TOKEN_ENV, host)

    def announce(masked_storage: str, masked_artifacts: str) -> None:
        mode = "writes allowed" if allow_writes else "read-only; --allow-writes allows changes"
        console.print(Text.assemble("optuna-dashboard at ", (f"http://{host}:{port}/", "bold"), f" ({mode})"),
                      soft_wrap=True)
        console.print(f"storage {masked_storage}, artifacts in {masked_artifacts}", soft_wrap=True)
        if generated:
            console.print(f"access token (shown once; set ${DASHBOARD_TOKEN_ENV} to choose it): {token}",
                          soft_wrap=True, highlight=False)
        if token is not None:
            console.print("open it once as /?token=TOKEN in a browser, or send 'Authorization: Bearer TOKEN'",
                          soft_wrap=True)
        console.print("Ctrl-C stops it")

    serve_dashboard(storage, host, port, artifacts, allow_writes=allow_writes, token=token, on_ready=announce)


def _print_status(status: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"study {status['study']} ({', '.join(status['directions'])})")
    for state in status["trials"]:
        table.add_column(state, justify="right")
    table.add_row(*(str(n) for n in status["trials"].values()))
    console.print(table)
    if "best_value" in status:
        best = "not finite" if status["best_value"] is None else f"{status['best_value']:.6g}"
        console.print(f"best value {best} (trial {status['best_trial']})")
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


def _finite(value: Any) -> Any:
    """`value` with every inf or nan float replaced by None (unknown): a study stored by an older
    version or by plain Optuna may hold them, and JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _status(study: optuna.Study) -> dict[str, Any]:
    """`search.status` with only finite numbers, so both printers and `--json` take any stored study."""
    from hybridnas import search

    return _finite(search.status(study))


def _watch(study: optuna.Study, interval: float) -> dict[str, Any]:
    """Refresh a progress bar until the budget is reached or Ctrl-C; returns the last status."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hybridnas.objectives.study.service import budget_reached

    status = _status(study)
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[detail]}", markup=False))
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
                status = _status(study)
        except KeyboardInterrupt:
            pass
    return status


def status_cmd(
    study_name: StudyOpt,
    storage: StorageOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="Live progress until the budget is reached or Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.5, max=3600,
                                            help="Seconds between --watch refreshes.")] = 5.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Trial counts by state, best result, throughput and ETA of a study."""
    from hybridnas import search
    from hybridnas.common import UsageError

    if watch and json_out:
        raise UsageError("--watch and --json do not combine; poll `status --json` instead")
    study = search.load(study_name, storage)
    status = _watch(study, interval) if watch else _status(study)
    if json_out:
        print(json.dumps(status, indent=2, allow_nan=False))
    else:
        _print_status(status)


def report_cmd(
    study_name: StudyOpt,
    out: Annotated[Path, typer.Option("-o", "--output", callback=output_file, help="HTML file to write.")] = Path("report.html"),
    storage: StorageOpt = None,
) -> None:
    """Write one self-contained HTML report: leaderboard, accuracy against size, importances, compute."""
    from hybridnas import search
    from hybridnas.reports import report_html

    study = search.load(study_name, storage)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_html(study), encoding="utf-8")
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_cmd)
    app.command("status")(status_cmd)
    app.command("report")(report_cmd)
