"""The trial engine on real CIFAR-10 JPEGs: learning, determinism, checkpoints, guards and schedules."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from helpers import CIFAR, PRECISION_SETTINGS, TINY_CONFIG
import torch
from torch import nn

from hybridnas.models import ArchConfig, ConfigError, build, parse_config
from hybridnas.models.presets import preset
from hybridnas.training import loop as loop_mod
from hybridnas.training.data import DataSplits, load_data
from hybridnas.training.loop import EpochReport, evaluate, train_model
from hybridnas.training.optim import make_scheduler
from hybridnas.training.precision import amp_dtype, cpu_precision
from hybridnas.training.settings import TrainSettings, parse_settings

TINY = TINY_CONFIG
TINY_SE_AUX = {
    "name": "tiny_se_r",
    "input": {"image_size": 32, "num_classes": 10},
    "stem": {"kind": "conv", "channels": 16},
    "stages": [
        {"block": "basic", "channels": 16, "se_reduction": 4},
        {"block": "basic", "channels": 32, "stride": 2, "se_reduction": 4},
        {"block": "basic", "channels": 32, "stride": 2, "se_reduction": 4},
    ],
    "aux": [{"after_stage": 0, "loss_weight": 5.0, "conv_channels": 16, "hidden_units": 32, "pool_size": 2},
            {"after_stage": 1, "loss_weight": 5.0, "conv_channels": 16, "hidden_units": 32, "pool_size": 2}],
}


@pytest.fixture(scope="module")
def cifar(study_env: None) -> DataSplits:
    """2,000 training images and a disjoint 1,000-image held-out slice of the real archive."""
    return load_data(CIFAR, train_subset=2000, val_subset=1000, seed=0)


def small(data: DataSplits, n_train: int, n_val: int) -> DataSplits:
    return DataSplits(**{**data.__dict__, "train_x": data.train_x[:n_train], "train_y": data.train_y[:n_train],
                         "val_x": data.val_x[:n_val], "val_y": data.val_y[:n_val]})


def quick(**overrides: object) -> TrainSettings:
    base = {"epochs": 1, "batch_size": 64, "device": "cpu", "measure_latency": False, "optimizer": "adam"}
    return TrainSettings(**{**base, **overrides})


@pytest.mark.integration  # trains a paper preset for real
def test_short_training_of_chae_beats_chance_on_held_out_slice(cifar: DataSplits) -> None:
    """Measured 0.45 val top-1 after 5 epochs (lr 1e-3, batch 64); chance is 0.10."""
    reports: list[EpochReport] = []
    result = train_model(preset("chae", num_classes=10, image_size=32), cifar,
                         quick(epochs=5, measure_latency=True), on_epoch=reports.append)
    assert result.status == "ok" and result.epochs_run == 5
    assert [r.epoch for r in reports] == [1, 2, 3, 4, 5] and reports == result.history
    assert result.val_top1 > 0.30 and result.val_top5 > 0.75
    assert reports[-1].train_loss < reports[0].train_loss
    assert result.params == 370_032 and result.macs == 6_928_128
    assert result.images_per_s > 0 and result.peak_memory_bytes > 0
    assert result.latency_ms_batch1 > 0 and result.latency_ms_batch256 > result.latency_ms_batch1
    assert not result.model.training


def test_same_seed_gives_same_val_accuracy_on_cpu(cifar: DataSplits) -> None:
    data = small(cifar, 512, 256)
    cfg = parse_config(TINY)
    first, second = (train_model(cfg, data, quick(seed=7, rotation=15, cutout=8)) for _ in range(2))
    other = train_model(cfg, data, quick(seed=8, rotation=15, cutout=8))
    assert first.val_top1 == second.val_top1 and first.history[0].val_loss == second.history[0].val_loss
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    assert first.history[0].val_loss != other.history[0].val_loss


def test_checkpoint_reload_gives_identical_eval_accuracy(cifar: DataSplits, tmp_path: Path) -> None:
    data = small(cifar, 512, 500)
    cfg = parse_config(TINY)
    settings = quick()
    result = train_model(cfg, data, settings)
    torch.save(result.model.state_dict(), tmp_path / "model.pt")
    model = build(cfg)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    precision = cpu_precision(model, cfg, settings.batch_size)  # cached: the training run's choice
    model = model.to(memory_format=precision.memory_format)
    _, top1, top5 = evaluate(model, data.val_x, data.val_y, data, settings, torch.device("cpu"), precision)
    assert (top1, top5) == (result.val_top1, result.val_top5)


def test_non_finite_loss_returns_status_instead_of_raising(cifar: DataSplits) -> None:
    result = train_model(parse_config(TINY), small(cifar, 512, 64),
                         quick(optimizer="sgd", lr=1e12, schedule="constant", epochs=3))
    assert result.status == "non_finite_loss"
    assert re.fullmatch(r"non-finite loss at epoch 1 step \d+", result.reason)
    assert result.history == [] and result.val_top1 is None and result.epochs_run == 0


def test_on_epoch_exception_propagates_unchanged(cifar: DataSplits) -> None:
    class Pruned(Exception):
        pass

    seen: list[int] = []

    def prune_after_first(report: EpochReport) -> None:
        seen.append(report.epoch)
        raise Pruned("stop")

    with pytest.raises(Pruned, match="stop"):
        train_model(parse_config(TINY), small(cifar, 128, 64), quick(epochs=3), on_epoch=prune_after_first)
    assert seen == [1]


def test_out_of_memory_propagates_without_pinning_the_model(cifar: DataSplits, monkeypatch: pytest.MonkeyPatch) -> None:
    models: list[weakref.ref] = []

    class Exploding(nn.Module):
        def __init__(self, cfg: ArchConfig) -> None:
            super().__init__()
            self.inner = build(cfg)
            models.append(weakref.ref(self))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(loop_mod, "build", Exploding)
    with pytest.raises(torch.OutOfMemoryError, match="Tried to allocate") as info:
        train_model(parse_config(TINY), small(cifar, 128, 64), quick())
    gc.collect()
    assert info.value is not None and models and models[0]() is None


def test_aux_losses_are_added_with_their_weights(cifar: DataSplits) -> None:
    data = small(cifar, 256, 64)
    with_aux = parse_config(TINY_SE_AUX)
    without = parse_config({**TINY_SE_AUX, "aux": [{**a, "loss_weight": 0.0} for a in TINY_SE_AUX["aux"]]})
    loss_with = train_model(with_aux, data, quick()).history[0].train_loss
    loss_without = train_model(without, data, quick()).history[0].train_loss
    assert loss_with > loss_without + 2 * 5.0 * 1.0


def test_every_optimizer_schedule_and_option_trains(cifar: DataSplits) -> None:
    data = small(cifar, 256, 64)
    cfg = parse_config(TINY)
    for optimizer, schedule in [("sgd", "step"), ("adamw", "onecycle"), ("adam", "constant")]:
        result = train_model(cfg, data, quick(optimizer=optimizer, schedule=schedule, warmup_epochs=0.5,
                                              label_smoothing=0.1, grad_clip=1.0, amp="off", channels_last=False))
        assert result.status == "ok" and 0.0 <= result.val_top1 <= 1.0


def test_config_that_does_not_match_the_data_is_rejected(cifar: DataSplits) -> None:
    with pytest.raises(ConfigError, match="config expects 100 classes.*the data has 10 classes"):
        train_model(parse_config(TINY).with_input(num_classes=100), cifar, quick())
    with pytest.raises(ConfigError, match="64x64x3 input"):
        train_model(parse_config(TINY).with_input(image_size=64), cifar, quick())


def test_step_schedule_warms_up_then_divides_by_five() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make_scheduler(opt, TrainSettings(epochs=10, schedule="step", warmup_epochs=1), steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 / 11) and lrs[5] < lrs[9] < 0.1
    assert lrs[10] == pytest.approx(0.1) and lrs[29] == pytest.approx(0.1)
    assert lrs[30] == pytest.approx(0.02) and lrs[60] == pytest.approx(0.004) and lrs[80] == pytest.approx(0.0008)


def test_default_lr_scales_with_batch_for_sgd_only() -> None:
    assert TrainSettings(batch_size=256).resolved_lr == pytest.approx(0.2)
    assert TrainSettings(optimizer="adamw", batch_size=256).resolved_lr == pytest.approx(1e-3)
    assert TrainSettings(lr=0.05).resolved_lr == 0.05
    with pytest.raises(ValueError, match="optimizer"):
        TrainSettings(optimizer="lion")


def test_settings_load_without_torch_and_name_a_bad_field_in_one_line() -> None:
    code = "import sys, hybridnas.training.settings, hybridnas.training; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    one_line = r"^TrainSettings\(epochs=0\): epochs: Input should be greater than or equal to 1$"
    with pytest.raises(ConfigError, match=one_line):
        parse_settings({"epochs": 0})


def test_amp_dtype_follows_setting_and_device() -> None:
    cpu = torch.device("cpu")
    assert amp_dtype("off", cpu) is None
    assert amp_dtype("bf16", cpu) is torch.bfloat16 and amp_dtype("fp16", cpu) is torch.float16
    assert amp_dtype("auto", cpu) is None  # the CPU's "auto" is measured per model by cpu_precision


def test_cpu_precision_measures_once_per_architecture_and_leaves_the_model_untouched() -> None:
    cfg = parse_config(TINY)
    model = build(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    choice = cpu_precision(model, cfg, 64)
    assert choice in [(None, torch.contiguous_format), (torch.bfloat16, torch.channels_last)]
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert cpu_precision(build(cfg), cfg, 64) == choice


def test_amp_auto_on_the_cpu_trains_as_its_choice_set_explicitly(cifar: DataSplits) -> None:
    """Measuring the precision draws nothing from the global random stream, so dropout masks, and
    with them the weights, are those of `amp` and `channels_last` set to what auto chose."""
    data = small(cifar, 256, 128)
    cfg = parse_config({**TINY, "name": "tiny_dropout", "head": {"kind": "avgpool", "hidden_units": [32], "dropout": 0.5}})
    auto = train_model(cfg, data, quick(amp="auto", batch_size=32))
    explicit = train_model(cfg, data, quick(**PRECISION_SETTINGS[auto.precision], batch_size=32))
    assert explicit.precision == auto.precision
    assert explicit.val_top1 == auto.val_top1
    assert all(torch.equal(a, b) for a, b in zip(auto.model.state_dict().values(), explicit.model.state_dict().values()))
