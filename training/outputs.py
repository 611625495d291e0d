"""A training run on disk: checkpoint, config, metrics and curves, as `hybridnas train` writes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from hybridnas.models.config import ArchConfig
from hybridnas.training.documents import export_document, write_document
from hybridnas.training.loop import TrainResult
from hybridnas.training.settings import SEARCHABLE_FIELDS, TrainSettings

RUNS_DIR = Path("runs")


def default_run_dir(name: str | None) -> Path:
    """runs/SLUG for a config named `name`: a name is a label, never a path, so `../x`, `/etc`
    or `team/demo-trial3` all land under runs/ (as runs/x, runs/etc, runs/team-demo-trial3)."""
    slug = re.sub(r"[^\w.-]+", "-", name or "").strip(".-")[:100]
    return RUNS_DIR / (slug or "config")


def write_run(
    result: TrainResult, cfg: ArchConfig, settings: TrainSettings, dataset: str, out_dir: Path
) -> dict[str, object]:
    """model.pt (a state dict for torch.load(weights_only=True)), config.yaml (the architecture
    and its training settings, as export writes them), metrics.json, curves.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save(state, out_dir / "model.pt")
    training = settings.model_dump(include=set(SEARCHABLE_FIELDS), exclude_defaults=True)
    write_document(export_document(cfg, training), out_dir / "config.yaml")
    metrics = {"name": cfg.name, "dataset": dataset, "epochs": result.epochs_run,
               "training": settings.model_dump(mode="json"), **result.metrics()}
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
