"""`hybridnas train`: train one architecture on a dataset and write checkpoint, metrics and curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hybridnas.cli.errors import UserError
from hybridnas.cli.models_cmds import ClassesOpt, ConfigArg, PresetOpt, SizeOpt, resolve_config
from hybridnas.models.config import ArchConfig, dump_config
from hybridnas.training.data import DataError, DataSplits, load_data
from hybridnas.training.engine import EpochReport, TrainResult, TrainSettings, train_model

console = Console(stderr=True)


def train_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help="cifar10, cifar100 or folder:PATH (tree or .tar[.gz]).")],
    config_file: ConfigArg = None,
    preset_name: PresetOpt = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where cifar10/cifar100 live (or go).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 128,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Default: sgd 0.1*B/128, adam/adamw 1e-3.")] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd (Nesterov), adam or adamw.")] = "sgd",
    schedule: Annotated[str, typer.Option("--schedule", help="cosine, step, onecycle or constant.")] = "cosine",
    train_subset: Annotated[Optional[int], typer.Option("--train-subset", min=1)] = None,
    val_subset: Annotated[Optional[int], typer.Option("--val-subset", min=1)] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=1.0)] = 0.1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    amp: Annotated[str, typer.Option("--amp", help="auto, off, bf16 or fp16.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    test: Annotated[bool, typer.Option("--test", help="Also report accuracy on the test split.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (default runs/NAME).")] = None,
    num_classes: ClassesOpt = None,
    image_size: SizeOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")] = False,
) -> None:
    """Train a config or preset; write model.pt, config.yaml, metrics.json and curves.png to --out."""
    resolve_config(config_file, preset_name, num_classes, image_size)
    try:
        settings = TrainSettings(
            epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule,
            amp=amp, compile=compile_model, seed=seed, device=device,
        )
        data = load_data(
            dataset, data_dir=data_dir, val_fraction=val_fraction, train_subset=train_subset,
            val_subset=val_subset, with_test=test, seed=seed, device=settings.device,
        )
    except (DataError, ValueError) as err:
        raise UserError(str(err)) from None
    if preset_name is not None:
        cfg = resolve_config(None, preset_name, num_classes or data.num_classes, image_size or data.image_size)
    else:
        cfg = resolve_config(config_file, None, num_classes, image_size)
    result = _train_with_progress(cfg, data, settings, quiet=json_out)
    out_dir = out or Path("runs") / (cfg.name or "config")
    metrics = write_outputs(result, cfg, dataset, out_dir)
    if json_out:
        print(json.dumps(metrics, indent=2))
    else:
        _print_summary(result, out_dir)
    if result.status != "ok":
        console.print(f"[red]training stopped: {result.reason}[/red]")
        raise typer.Exit(1)


def _train_with_progress(cfg: ArchConfig, data: DataSplits, settings: TrainSettings, quiet: bool) -> TrainResult:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
        task = progress.add_task(f"training {cfg.name or 'config'}", total=None)

        def on_step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        def on_epoch(r: EpochReport) -> None:
            progress.update(task, description=f"epoch {r.epoch}: val top-1 {r.val_top1:.3f}, loss {r.val_loss:.3f}")

        return train_model(cfg, data, settings, on_epoch, on_step=on_step)


def write_outputs(result: TrainResult, cfg: ArchConfig, dataset: str, out_dir: Path) -> dict[str, object]:
    """model.pt (a state dict for torch.load(weights_only=True)), config.yaml, metrics.json, curves.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save(state, out_dir / "model.pt")
    dump_config(cfg, out_dir / "config.yaml")
    metrics = {"name": cfg.name, "dataset": dataset, "epochs": result.epochs_run, **result.metrics()}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_curves(result, out_dir / "curves.png")
    return metrics


def plot_curves(result: TrainResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in result.history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r.train_loss for r in result.history], marker="o", label="train")
    ax_loss.plot(epochs, [r.val_loss for r in result.history], marker="o", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r.val_top1 for r in result.history], marker="o", label="val top-1")
    ax_acc.plot(epochs, [r.val_top5 for r in result.history], marker="o", label="val top-5")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy", ylim=(0, 1))
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
