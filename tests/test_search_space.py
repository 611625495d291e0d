"""Every config a space samples is valid, builds, trains a step and survives save -> load."""

from pathlib import Path

import optuna
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridnas.models import ConfigError, HybridOutput, build, dump_config, load_config
from hybridnas.models.presets import preset
from hybridnas.search_space import BUILTIN_SPACES, load_space, sample_configs, same_architecture

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _forward_backward(cfg):
    model = build(cfg).train()
    x = torch.randn(2, cfg.input.channels, cfg.input.image_size, cfg.input.image_size)
    out = model(x)
    logits = out.logits if isinstance(out, HybridOutput) else out
    loss = logits.float().logsumexp(dim=1).mean()
    if isinstance(out, HybridOutput):
        loss = loss + sum(a.float().logsumexp(dim=1).mean() for a in out.aux_logits)
    loss.backward()
    assert torch.isfinite(loss)
    return model


def _check_sample(cfg, tmp_path: Path):
    model = _forward_backward(cfg)
    path = tmp_path / "sample.yaml"
    dump_config(cfg, path)
    rebuilt = build(load_config(path))
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.integration  # builds and trains union samples up to GMACs
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_union_samples_build_train_and_round_trip(tmp_path, seed):
    (cfg,) = sample_configs(load_space("union"), 1, seed=seed)
    _check_sample(cfg, tmp_path)


@pytest.mark.slow
def test_five_hundred_union_samples_all_build_and_run(tmp_path):
    for cfg in sample_configs(load_space("union"), 500, seed=2026):
        _check_sample(cfg, tmp_path)


@pytest.mark.parametrize("space", [s for s in BUILTIN_SPACES if s != "union"])
def test_family_space_samples_build_and_train(tmp_path, space):
    for cfg in sample_configs(load_space(space), 2, seed=7):
        _check_sample(cfg, tmp_path)


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ("zureick", ["zureick"]),
        ("samc", ["samc"]),
        ("chae", ["chae"]),
        ("group18", ["group18"]),
        ("demo", ["chae"]),
        ("se_r", ["se_a_resnet34", "se_r_resnet34"]),
        ("union", ["zureick", "group18", "chae", "samc", "se_resnet34", "se_resnet50",
                   "se_a_resnet34", "se_a_resnet50", "se_r_resnet34", "se_r_resnet50"]),
    ],
)
def test_warm_start_finds_the_presets_each_space_can_express(space, expected):
    assert [name for name, _ in load_space(space).warm_start(num_classes=10, image_size=32)] == expected


@pytest.mark.parametrize("space", BUILTIN_SPACES)
def test_enqueued_preset_params_rebuild_the_preset(space):
    loaded = load_space(space)
    study = optuna.create_study()
    for name, params in loaded.warm_start(num_classes=10, image_size=32):
        study.enqueue_trial(params)
        trial = study.ask()
        cfg = loaded.suggest(trial, num_classes=10, image_size=32)
        assert same_architecture(cfg, preset(name, num_classes=10, image_size=32)), name
        study.tell(trial, 0.0)


def test_union_program_uses_one_distribution_per_parameter_name():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    space = load_space("union")
    for _ in range(200):
        trial = study.ask()
        space.suggest(trial, num_classes=10, image_size=32)
        study.tell(trial, 0.0)  # Optuna raises if a name ever came with another distribution


def test_tpe_sampler_samples_valid_configs_from_union():
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    space = load_space("union")
    for i in range(15):
        trial = study.ask()
        cfg = space.suggest(trial, num_classes=10, image_size=32)
        study.tell(trial, float(len(cfg.stages) + i % 3))


def test_space_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: union\nname: x\nknobs:\n  widths: [10, 16]\n")
    with pytest.raises(ConfigError, match="knobs.widths"):
        load_space(bad)
    bad.write_text("kind: template\nname: t\ntemplate:\n  stages:\n    - {block: conv, channels: {int: [64, 16]}}\n")
    with pytest.raises(ConfigError, match="stages.0.channels: low 64 is above high 16"):
        load_space(bad)
    bad.write_text("kind: grid\nname: g\n")
    with pytest.raises(ConfigError, match="kind"):
        load_space(bad)


def test_user_copy_of_a_builtin_space_loads_by_path(tmp_path):
    from hybridnas.search_space import SPACES_DIR

    copy = tmp_path / "mine.yaml"
    text = (SPACES_DIR / "zureick.yaml").read_text()
    copy.write_text(text.replace("{low: 16, high: 512, step: 16, name: f1}", "{low: 32, high: 512, step: 32, name: f1}"))
    widths = [cfg.stages[0].channels for cfg in sample_configs(load_space(copy), 8, seed=1)]
    assert all(w % 32 == 0 for w in widths)
    assert any(w % 64 for w in widths)
