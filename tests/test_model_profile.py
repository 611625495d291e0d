"""profile() gives exact counts from a weightless meta-device twin: the parameters of the real
model, and FlopCounterMode's MACs (total / 2, attention products included), counted at the
function level; it leaves a model it is handed as it was."""

import pytest
import torch
import yaml

from hybridnas.models import build, parse_config
from hybridnas.models.presets import preset
from hybridnas.models.profile import profile

# (params, trainable params, MACs).
PRESETS = {
    "zureick": (5_370_314, 5_370_314, 567_612_416),
    "group18": (8_250_378, 8_250_378, 446_632_960),
    "chae": (402_417, 402_417, 459_802_496),
    "samc": (1_228_234, 1_228_234, 82_166_304),
    "se_resnet50": (28_778_692, 28_778_692, 1_303_044_096),
    "se_r_resnet34": (26_144_836, 26_144_836, 1_164_986_880),
    "se_r_resnet101": (57_242_636, 57_242_636, 2_527_570_432),
}

SE_R_RESNET34_MODULES = [
    ("stem", 1_920, 1_769_472),
    ("stages.0", 225_624, 226_495_488),
    ("stages.1", 1_134_528, 285_229_056),
    ("stages.2", 6_944_960, 436_325_120),
    ("stages.3", 13_335_488, 209_931_008),
    ("aux_heads.0", 2_217_316, 2_461_696),
    ("aux_heads.1", 2_233_700, 2_723_840),
    ("head", 51_300, 51_200),
]

# Configs drawn from the union space, with every attention kind, SE fed by aux heads, the
# multiscale stem and all three heads; pinned here so that edits to the space do not move them.
SAMPLES = [
    # union sample 0 (seed 0), dropout left out
    ("""
stem: {kind: conv, channels: 96}
stages:
  - {block: conv, channels: 32, depth: 4, norm: end, activation: gelu, pool: {kind: avg, size: 4}, shortcut: avgpool}
  - {block: bottleneck, channels: 64, depth: 2, pool: {kind: max, size: 3}, se_reduction: 8}
  - {block: multiscale, channels: 384, kernel_sizes: [3, 5, 7], activation: gelu, pool: {kind: max},
      attention: {kind: mhsa, heads: 8}, shortcut: avgpool}
  - {block: basic, channels: 128, depth: 6, se_reduction: 16}
  - {block: basic, channels: 144, depth: 2, attention: {kind: conv_mhsa, heads: 4, depth: 2, mlp_ratio: 4.0}}
  - {block: residual, channels: 144, depth: 5, kernel_sizes: [5], norm: pre, activation: gelu, attention: {
        kind: luong}}
aux:
  - {after_stage: 2, loss_weight: 0.1}
""", (14_674_612, 14_674_612, 91_345_216)),
    # union sample 2 (seed 0), dropout left out
    ("""
stem: {kind: multiscale, channels: 192, kernel_sizes: [3, 5, 7]}
stages:
  - {block: multiscale, channels: 96, kernel_sizes: [3, 5, 7], pool: {kind: avg}, attention: {kind: luong,
        scope: rows}, shortcut: avgpool}
  - {block: conv, channels: 16, depth: 6, norm: pre, pool: {kind: max}, attention: {kind: conv_mhsa,
        heads: 4, depth: 3, mlp_ratio: 4.0, kv_stride: 2}}
  - {block: conv, channels: 384, depth: 3, kernel_sizes: [5], norm: pre, activation: gelu, attention: {
        kind: mhsa, heads: 8}}
  - {block: bottleneck, channels: 144, depth: 6, stride: 2, activation: gelu, pool: {kind: max, size: 4},
      se_reduction: 8, attention: {kind: transformer, heads: 2, mlp_ratio: 4.0}}
  - {block: conv, channels: 24, attention: {kind: transformer, heads: 2, mlp_ratio: 4.0}}
  - {block: basic, channels: 96, depth: 3, se_reduction: 16, attention: {kind: transformer, heads: 8}}
head: {}
aux:
  - {after_stage: 0, loss_weight: 0.2}
  - {after_stage: 2, loss_weight: 0.1}
  - {after_stage: 3, loss_weight: 0.6}
  - {after_stage: 4, loss_weight: 0.5, feeds_attention: false}
""", (25_045_456, 25_045_456, 1_152_048_276)),
    # union sample 10 (seed 0), dropout left out
    ("""
stem: {kind: multiscale, channels: 96, kernel_sizes: [3, 5], activation: gelu}
stages:
  - {block: multiscale, channels: 96, kernel_sizes: [3, 5], activation: gelu, pool: {kind: max}, attention: {
        kind: luong}}
  - {block: basic, channels: 192, depth: 6, stride: 2, activation: gelu, pool: {kind: avg}, se_reduction: 8,
      attention: {kind: transformer, heads: 4, depth: 2}, shortcut: avgpool}
head: {kind: cls, norm: layernorm, hidden_units: [512]}
aux:
  - {after_stage: 0, loss_weight: 0.7}
""", (6_902_948, 6_902_948, 436_403_360)),
    # union sample 15 (seed 0), dropout left out
    ("""
stem: {kind: conv, channels: 32, kernel_sizes: [5], activation: gelu}
stages:
  - {block: residual, channels: 32, depth: 2, norm: pre, pool: {kind: avg}, se_reduction: 8, attention: {
        kind: mhsa, heads: 4}}
  - {block: conv, channels: 48, depth: 5, norm: end, activation: gelu, attention: {kind: conv_mhsa,
        depth: 2}, shortcut: avgpool}
  - {block: bottleneck, channels: 48, depth: 2, stride: 2, pool: {kind: avg}, se_reduction: 4, attention: {
        kind: mhsa, heads: 2}, shortcut: avgpool}
  - {block: residual, channels: 192, depth: 3, kernel_sizes: [5], activation: gelu, se_reduction: 16,
      attention: {kind: luong, scope: rows}}
  - {block: bottleneck, channels: 16, depth: 2, activation: gelu, se_reduction: 4, attention: {kind: transformer,
        heads: 8, mlp_ratio: 4.0}, shortcut: avgpool}
  - {block: conv, channels: 256, kernel_sizes: [5], norm: end, activation: gelu}
head: {}
aux:
  - {after_stage: 0, loss_weight: 0.6}
  - {after_stage: 2, loss_weight: 0.3, feeds_attention: false}
  - {after_stage: 4, loss_weight: 0.5, feeds_attention: false}
""", (12_955_004, 12_955_004, 206_672_104)),
]


def counts(cfg):
    prof = profile(cfg)
    return prof.params, prof.trainable_params, prof.macs


@pytest.mark.parametrize(("name", "expected"), list(PRESETS.items()))
def test_preset_counts_are_exact(name, expected):
    assert counts(preset(name)) == expected


def test_samc_on_cifar100_counts_are_exact():
    assert counts(preset("samc", num_classes=100)) == (1_241_284, 1_241_284, 82_179_264)


def test_per_module_breakdown_is_exact():
    modules = profile(preset("se_r_resnet34")).modules
    assert [(m["module"], m["params"], m["macs"]) for m in modules] == SE_R_RESNET34_MODULES


@pytest.mark.parametrize(("text", "expected"), SAMPLES)
def test_sampled_config_counts_are_exact(text, expected):
    cfg = parse_config(yaml.safe_load(text))
    prof = profile(cfg)
    assert (prof.params, prof.trainable_params, prof.macs) == expected
    assert sum(m["macs"] for m in prof.modules) == prof.macs
    assert sum(m["params"] for m in prof.modules) == prof.params


def test_counting_a_real_model_leaves_it_and_the_rng_as_they_were():
    cfg = preset("samc")
    torch.manual_seed(0)
    model = build(cfg).train()
    frozen = model.head.mlp[-1].weight.requires_grad_(False).numel()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    rng = torch.get_rng_state()

    prof = profile(cfg, model)
    alone = profile(cfg)

    assert torch.equal(rng, torch.get_rng_state())
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert (prof.params, prof.macs, prof.modules) == (alone.params, alone.macs, alone.modules)
    assert prof.trainable_params == alone.trainable_params - frozen


def _flop_counter_macs(cfg) -> int:
    """The definition: FlopCounterMode's total / 2 for one image, on a meta-device model."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build(cfg).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.empty(1, cfg.input.channels, cfg.input.image_size, cfg.input.image_size, device="meta"))
    return counter.get_total_flops() // 2


@pytest.mark.integration  # runs every preset under the FLOP counter
def test_macs_equal_flop_counter_modes_on_presets_and_union_samples():
    import optuna

    from hybridnas.models.presets import PRESETS as ALL_PRESETS
    from hybridnas.search_space import load_space, sample_configs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configs = [preset(n) for n in ALL_PRESETS if "101" not in n] + sample_configs(load_space("union"), 25, seed=11)
    for cfg in configs:
        assert profile(cfg).macs == _flop_counter_macs(cfg), cfg.name
