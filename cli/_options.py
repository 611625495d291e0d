"""Options several commands share, and options derived from a pydantic model's fields.

Deriving `launch`'s flags from `StudyDefinition` keeps each field declared once: its type,
choices and help text live on the model, and a new field is a new flag without CLI edits.
"""

from __future__ import annotations

import inspect
import tempfile
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import typer
from pydantic import BaseModel

from hybridnas.objectives.study.definition import STUDY_NAME_MAX, check_study_name
from hybridnas.workers.placement import MAX_GPUS_PER_WORKER, MAX_THREADS, MAX_WORKERS

StorageOpt = Annotated[
    Optional[str],
    typer.Option("--storage", help="Storage URL (default: $HYBRIDNAS_STORAGE, else sqlite:///hybridnas.db)."),
]

# --study is checked as it is parsed, before any command opens the storage.
StudyOpt = Annotated[str, typer.Option("--study", help=f"Study name (1 to {STUDY_NAME_MAX} printable characters).",
                                       callback=check_study_name)]
MaxParamsOpt = Annotated[Optional[int], typer.Option("--max-params", min=1, help="Parameter limit.")]
MaxMacsOpt = Annotated[Optional[int], typer.Option("--max-macs", min=1, help="MAC limit (one image).")]
OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="File to write.")]


def _writable(path: Path, want_dir: bool) -> Path:
    """`path` if a file (or with `want_dir`, a directory) can be written there, else BadParameter.

    Checked as the flag is parsed, creating nothing that stays (an unnamed temporary file is
    opened in the folder: `os.access` says yes to root even where nothing can be written, such
    as /proc): a file in the way, or a folder that cannot be written, is one error line before
    the work, not a traceback after it.
    """
    if path.exists():
        if path.is_dir() != want_dir:
            raise typer.BadParameter(f"{path} is {'a file, not a directory' if want_dir else 'a directory'}")
        target = path
    else:
        target = next(parent for parent in path.absolute().parents if parent.exists())
        if not target.is_dir():
            raise typer.BadParameter(f"{target} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as err:
        raise typer.BadParameter(f"cannot write {target} ({err.strerror})") from None
    return path


def output_file(path: Path | None) -> Path | None:
    """Callback of an option naming a file to write."""
    return None if path is None else _writable(path, want_dir=False)


def output_dir(path: Path | None) -> Path | None:
    """Callback of an option naming a directory to write into (made if missing)."""
    return None if path is None else _writable(path, want_dir=True)



# How a command runs its Ray workers (launch, retrain).
WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", min=0, max=MAX_WORKERS, help="Ray workers to start (default: one per GPU of the cluster, or one per --threads CPUs "
    "on a CPU-only one; 0: only queue the work).")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", min=1, max=MAX_THREADS, help="torch CPU threads per worker, and its CPU share on a CPU-only cluster (default 1).")]
GpusPerWorkerOpt = Annotated[float, typer.Option(
    "--gpus-per-worker", min=0.01, max=MAX_GPUS_PER_WORKER, help="GPUs each worker takes; 0.5 packs two on one GPU (Ray does not split its memory).")]
CpusPerWorkerOpt = Annotated[Optional[int], typer.Option(
    "--cpus-per-worker", min=1, max=MAX_THREADS, help="CPUs each worker reserves (default: 1 with GPUs, --threads without).")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="A running Ray cluster, HOST:PORT (default $RAY_ADDRESS, else a new local Ray).")]
ArtifactsOpt = Annotated[Optional[str], typer.Option(
    "--artifacts", help="Where trial files go: a directory every node sees, or s3://bucket/prefix "
    "(default $HYBRIDNAS_ARTIFACTS, else beside the storage).")]
HeartbeatOpt = Annotated[int, typer.Option(
    "--heartbeat-interval", min=1, help="Seconds between heartbeats of a running trial.")]
GraceOpt = Annotated[Optional[int], typer.Option(
    "--grace-period", min=1, help="Fail and re-queue a trial whose last heartbeat is older than this "
    "(at least twice the interval, the default).")]


def _flag_type(annotation: Any) -> Any:
    """The plain type a flag parses into: Optional and pydantic's Annotated constraints removed
    (the model validates the value and names the field when it is out of range)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _flag_type(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return _flag_type(inner[0])
    if origin is Literal or annotation in (str, int, float, bool):
        return annotation
    raise TypeError(f"no flag type for {annotation!r}; give the field a flag type explicitly")


def model_options(
    model: type[BaseModel], fields: list[str], flag_types: dict[str, Any] | None = None
) -> list[inspect.Parameter]:
    """Keyword parameters (typer options, default None = not given) for `fields` of `model`.

    The flag is the field name with dashes; booleans get `--x/--no-x`; the help is the field's
    description. `flag_types` overrides the parsed type of fields whose model type is richer
    than what a flag can hold (a space given by name or path that the model turns into a document).
    """
    params = []
    for name in fields:
        field = model.model_fields[name]
        kind = (flag_types or {}).get(name) or _flag_type(field.annotation)
        flag = "--" + name.replace("_", "-")
        decl = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
        option = typer.Option(decl, help=field.description or "", show_default=False)
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=Annotated[Optional[kind], option])
        )
    return params


def keyword(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    """One option of a command whose signature `with_parameters` sets (no default: required)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_parameters(func: Any, params: list[inspect.Parameter]) -> Any:
    """`func` (taking **options) with an explicit signature typer reads as its options."""
    func.__signature__ = inspect.Signature(params)
    return func
