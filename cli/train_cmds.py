"""`hybridnas train`: train one architecture on a dataset and write checkpoint, metrics and curves.

A config exported by a search carries the training settings its trial used; they are the
defaults here, and any training flag given overrides them (flags are TrainSettings' fields).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from hybridnas.cli._console import make_console
from hybridnas.cli._options import keyword, model_options, output_dir, with_parameters
from hybridnas.cli.models_cmds import ClassesOpt, ConfigArg, PresetOpt, SizeOpt
from hybridnas.training.settings import TrainSettings
from hybridnas.workers.placement import MAX_THREADS

if TYPE_CHECKING:
    from hybridnas.models.config import ArchConfig
    from hybridnas.training import DataSplits, TrainResult

console = make_console(stderr=True)

TRAIN_FLAGS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "label_smoothing", "schedule", "amp",
               "channels_last", "compile", "device")


def train_cmd(**options: Any) -> None:
    """Train a config or preset; write model.pt, config.yaml, metrics.json and curves.png to --out."""
    from hybridnas.cli.models_cmds import resolve_config
    from hybridnas.training.data import load_data, resolve_device
    from hybridnas.training.loop import check_compatible
    from hybridnas.training.documents import read_document
    from hybridnas.training.outputs import default_run_dir, write_run
    from hybridnas.training.settings import parse_settings

    config_file, preset_name = options["config_file"], options["preset_name"]
    num_classes, image_size = options["num_classes"], options["image_size"]
    resolve_config(config_file, preset_name, None, None)
    saved = read_document(config_file)[1] if config_file is not None else {}
    given = {k: v for k, v in options.items() if k in TRAIN_FLAGS and v is not None}
    settings = parse_settings({**saved, **given, "seed": options["seed"]})
    resolve_device(settings.device)
    if options["threads"]:
        import torch

        torch.set_num_threads(options["threads"])
    data = load_data(
        options["dataset"], data_dir=options["data_dir"], val_fraction=options["val_fraction"],
        train_subset=options["train_subset"], val_subset=options["val_subset"], test_subset=options["test_subset"],
        with_test=options["test"], seed=options["seed"], device=settings.device, exact_subsets=True,
    )
    if preset_name is not None:
        cfg = resolve_config(None, preset_name, num_classes or data.num_classes, image_size or data.image_size)
    else:
        cfg = resolve_config(config_file, None, num_classes, image_size)
    check_compatible(cfg, data)  # before the progress bar starts, so a mismatch is the only line shown
    result = _train_with_progress(cfg, data, settings, quiet=options["json_out"])
    out_dir = options["out"] or default_run_dir(cfg.name)
    metrics = write_run(result, cfg, settings, options["dataset"], out_dir)
    if options["json_out"]:
        print(json.dumps(metrics, indent=2))
    else:
        _print_summary(result, out_dir)
    if result.status != "ok":
        console.print(f"training stopped: {result.reason}", style="red")
        raise typer.Exit(1)


with_parameters(train_cmd, [
    inspect.Parameter("config_file", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=ConfigArg),
    keyword("dataset", Annotated[str, typer.Option("--dataset", help="cifar10, cifar100 or folder:PATH (tree or .tar[.gz]).")]),
    keyword("preset_name", PresetOpt, None),
    keyword("data_dir", Annotated[Optional[Path], typer.Option("--data-dir", help="Where cifar10/cifar100 live (or go).")], None),
    *model_options(TrainSettings, list(TRAIN_FLAGS)),
    keyword("train_subset", Annotated[Optional[int], typer.Option("--train-subset", min=1, help="Train on the first N training images.")], None),
    keyword("val_subset", Annotated[Optional[int], typer.Option("--val-subset", min=1, help="Validate on the first N validation images.")], None),
    keyword("val_fraction", Annotated[float, typer.Option("--val-fraction", min=0.0, max=1.0, help="Share of the training split held out for validation.")], 0.1),
    keyword("test_subset", Annotated[Optional[int], typer.Option("--test-subset", min=1, help="Test on the first N test images; for a dataset without a test split, N training images held out first (as a study's test_subset).")], None),
    keyword("seed", Annotated[int, typer.Option("--seed", help="Seed of the split and of training.")], 0),
    keyword("threads", Annotated[Optional[int], typer.Option("--threads", min=1, max=MAX_THREADS, help="torch CPU threads; a CPU run is bit-identical only at the thread count it ran with.")], None),
    keyword("test", Annotated[bool, typer.Option("--test", help="Also report accuracy on the test split.")], False),
    keyword("out", Annotated[Optional[Path], typer.Option("--out", callback=output_dir, help="Output directory (default runs/NAME, the config's name made a file name).")], None),
    keyword("num_classes", ClassesOpt, None),
    keyword("image_size", SizeOpt, None),
    keyword("json_out", Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")], False),
])


def _train_with_progress(cfg: ArchConfig, data: DataSplits, settings: TrainSettings, quiet: bool) -> TrainResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from hybridnas.training.loop import EpochReport, train_model

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
        task = progress.add_task(f"training {cfg.name or 'config'}", total=None)

        def on_step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        def on_epoch(r: EpochReport) -> None:
            progress.update(task, description=f"epoch {r.epoch}: val top-1 {r.val_top1:.3f}, loss {r.val_loss:.3f}")

        return train_model(cfg, data, settings, on_epoch, on_step=on_step)


def _print_summary(result: TrainResult, out_dir: Path) -> None:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    console.print(
        f"val top-1 {pct(result.val_top1)}, top-5 {pct(result.val_top5)}; test top-1 {pct(result.test_top1)}; "
        f"{result.params:,} params, {result.macs / 1e6:.1f}M MACs; {result.images_per_s:.0f} img/s on {result.device}"
    )
    console.print(f"wrote {out_dir}/model.pt, config.yaml, metrics.json, curves.png")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
