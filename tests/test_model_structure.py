"""The model package's structure: kind registries, one block and one attention interface, and
state dicts that checkpoints and exported configs rely on."""

import hashlib
import subprocess
import sys
from typing import Literal, get_args

import pytest
import torch

from hybridnas.models import build
from hybridnas.models.attention import ATTENTIONS, Attention, NoAttention, build_attention
from hybridnas.models.blocks import BLOCKS, STEMS
from hybridnas.models.config import AttentionConfig, AttentionKind, BlockKind, StageConfig, StemKind
from hybridnas.models.presets import PRESETS, preset
from hybridnas.models.registry import Registry

# sha256 (first 16 hex digits) of the sorted "key (shape)" lines of each preset's state dict, its
# key count and its parameter count, as the models were before the registries: checkpoints and
# exported configs rebuild these exact modules.
STATE_DICTS = {
    "zureick": ("aa3a52900f2df468", 22, 5370314),
    "group18": ("2be8a829c4e6a5cf", 74, 8250378),
    "chae": ("5ec20e1452ee8f70", 58, 402417),
    "samc": ("668646bf71aebfa1", 245, 1228234),
    "se_resnet34": ("327f6cdae55e5e37", 318, 21655420),
    "se_resnet50": ("7f1500070ba7f0b0", 437, 28778692),
    "se_resnet101": ("aff07f30565beb52", 862, 52272964),
    "se_a_resnet34": ("07ddbdaf8c289f68", 338, 26106436),
    "se_a_resnet50": ("ad1ec06ec81a1e74", 457, 33377164),
    "se_a_resnet101": ("0d795c9f7fe074af", 882, 56871436),
    "se_r_resnet34": ("d2db420ff2b05ffe", 338, 26144836),
    "se_r_resnet50": ("0fd3fbafa9bc4c0f", 457, 33530764),
    "se_r_resnet101": ("f93f03f700502c59", 882, 57242636),
}

ZUREICK_KEYS = [
    "stages.0.blocks.0.0.0.weight", "stages.0.blocks.0.0.0.bias",
    "stages.0.blocks.0.1.0.weight", "stages.0.blocks.0.1.0.bias",
    "stages.0.blocks.0.2.weight", "stages.0.blocks.0.2.bias", "stages.0.blocks.0.2.running_mean",
    "stages.0.blocks.0.2.running_var", "stages.0.blocks.0.2.num_batches_tracked",
    "stages.1.blocks.0.0.0.weight", "stages.1.blocks.0.0.0.bias",
    "stages.1.blocks.0.1.0.weight", "stages.1.blocks.0.1.0.bias",
    "stages.1.blocks.0.2.weight", "stages.1.blocks.0.2.bias", "stages.1.blocks.0.2.running_mean",
    "stages.1.blocks.0.2.running_var", "stages.1.blocks.0.2.num_batches_tracked",
    "head.mlp.0.weight", "head.mlp.0.bias", "head.mlp.3.weight", "head.mlp.3.bias",
]


def test_every_preset_is_pinned():
    assert set(STATE_DICTS) == set(PRESETS)


@pytest.mark.parametrize("name", list(STATE_DICTS))
def test_state_dict_keys_shapes_and_parameter_count_are_unchanged(name):
    with torch.device("meta"):
        model = build(preset(name))
    state = model.state_dict()
    text = "\n".join(f"{key} {tuple(value.shape)}" for key, value in sorted(state.items()))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert (digest, len(state), sum(p.numel() for p in model.parameters())) == STATE_DICTS[name]


def test_zureick_state_dict_keys_in_order():
    with torch.device("meta"):
        assert list(build(preset("zureick")).state_dict()) == ZUREICK_KEYS


@pytest.mark.parametrize(
    ("registry", "kinds"), [(STEMS, StemKind), (BLOCKS, BlockKind), (ATTENTIONS, AttentionKind)]
)
def test_every_kind_the_config_accepts_has_a_builder(registry, kinds):
    assert registry.kinds == get_args(kinds)
    assert set(registry) == set(get_args(kinds))


def test_registry_refuses_unknown_kinds_second_builders_and_gaps():
    registry: Registry = Registry("thing", Literal["a", "b"])
    registry.register("a")(len)
    with pytest.raises(RuntimeError, match="'c' is not one of"):
        registry.register("c")(len)
    with pytest.raises(RuntimeError, match="'a' has two builders"):
        registry.register("a")(repr)
    with pytest.raises(RuntimeError, match="thing kinds without a builder: b"):
        registry.check()


@pytest.mark.parametrize("kind", get_args(BlockKind))
def test_every_block_takes_x_and_extra(kind):
    se = kind in ("basic", "bottleneck", "residual")
    stage = StageConfig(block=kind, channels=8, se_reduction=2 if se else None)
    x = torch.randn(2, 8, 6, 6)
    (block,) = BLOCKS[kind](stage, 8, 0)
    assert block(x).shape == block(x, None).shape == (2, stage.out_channels, 6, 6)
    if se:  # SE-R: the aux logits join the squeeze vector
        (fed,) = BLOCKS[kind](stage, 8, 3)
        assert fed(x, torch.randn(2, 3)).shape == (2, stage.out_channels, 6, 6)


@pytest.mark.parametrize("kind", get_args(AttentionKind))
def test_every_attention_encodes_a_map_and_only_chae_a_cls_token(kind):
    attention = build_attention(AttentionConfig(kind=kind, heads=2), 8, 4)
    assert isinstance(attention, Attention)
    out, cls = attention.encode(torch.randn(2, 8, 4, 4))
    assert out.shape == (2, 8, 4, 4)
    assert (cls is not None) == (kind == "transformer")
    if cls is not None:
        assert cls.shape == (2, 8)


def test_no_attention_is_the_identity_of_the_interface():
    attention = build_attention(None, 8, 4)
    x = torch.randn(2, 8, 4, 4)
    assert isinstance(attention, NoAttention) and not list(attention.parameters())
    out, cls = attention.encode(x)
    assert out is x and cls is None


def test_importing_the_package_config_presets_and_papers_does_not_import_torch():
    code = (
        "import sys, hybridnas.models, hybridnas.models.config, hybridnas.models.presets, hybridnas.models.papers\n"
        "hybridnas.models.presets.preset('se_r_resnet101')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "hybridnas.models.build\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
