"""Each block kind's spec (hybridnas.models.block_specs) says what the built module does and
what validation, the canonical form and the reports do with the kind: checked here kind by kind
against real modules, so a spec and its block cannot drift apart."""

from __future__ import annotations

from typing import Any, get_args

import pytest
import torch
from torch import nn

from hybridnas.models import ConfigError, parse_config
from hybridnas.models.block_specs import BLOCK_SPECS, STAGE_FIELDS, BlockKind, BlockSpec
from hybridnas.models.blocks import BLOCKS, SqueezeExcite
from hybridnas.models.canonical import canonical_config
from hybridnas.models.config import StageConfig
from hybridnas.reports._architecture import architecture_summary

KINDS = get_args(BlockKind)


def _config(stage: dict[str, Any], width: int = 12) -> dict[str, Any]:
    """A one-stage config whose stage input is `width` wide (a conv stem), so any kind fits."""
    return {"stem": {"kind": "conv", "channels": width}, "stages": [stage]}


def _stage_modules(stage: StageConfig, in_ch: int) -> nn.Sequential:
    return nn.Sequential(*BLOCKS[stage.block](stage, in_ch, 0))


def _forward(stage: StageConfig, in_ch: int = 8) -> torch.Tensor:
    with torch.no_grad():
        return _stage_modules(stage, in_ch)(torch.randn(2, in_ch, 6, 6))


def _conv_kernels(module: nn.Module) -> list[int]:
    """The kernel sizes of a block's convs, its projection shortcut left out."""
    return [m.kernel_size[0] for name, m in module.named_modules()
            if isinstance(m, nn.Conv2d) and not name.startswith("shortcut")]


def test_every_kind_has_one_spec_and_one_builder():
    assert BLOCK_SPECS.kinds == KINDS
    assert set(BLOCK_SPECS) == set(BLOCKS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_stage_is_made_of_the_spec_module_class(kind):
    spec = BLOCK_SPECS[kind]
    stage = StageConfig(block=kind, channels=8, depth=2 if "depth" in spec.reads else 1)
    blocks = _stage_modules(stage, 8)
    assert blocks and all(type(block) is spec.module_class for block in blocks)


@pytest.mark.parametrize("kind", KINDS)
def test_output_width_is_channels_times_expansion_on_a_forward_pass(kind):
    stage = StageConfig(block=kind, channels=8)
    expected = 8 * BLOCK_SPECS[kind].expansion
    assert _forward(stage).shape == (2, expected, 6, 6)
    assert stage.out_channels == expected


@pytest.mark.parametrize("kind", KINDS)
def test_a_stride_is_taken_by_the_block_and_by_validation_exactly_where_the_spec_says(kind):
    # A StageConfig alone is not shape-checked: a block that ignores its stride shows here.
    size = _forward(StageConfig(block=kind, channels=8, stride=2)).shape[-1]
    assert size == (3 if BLOCK_SPECS[kind].takes_stride else 6)
    data = _config({"block": kind, "channels": 12, "stride": 2})
    if BLOCK_SPECS[kind].takes_stride:
        assert parse_config(data).feature_shapes()[0][1] == 16
    else:
        with pytest.raises(ConfigError, match=r"stages\.0\.stride: only conv/basic/bottleneck blocks take a stride"):
            parse_config(data)


@pytest.mark.parametrize("kind", KINDS)
def test_se_is_built_and_validated_exactly_where_the_spec_says(kind):
    built = _stage_modules(StageConfig(block=kind, channels=12, se_reduction=2), 12)
    assert any(isinstance(m, SqueezeExcite) for m in built.modules()) == BLOCK_SPECS[kind].takes_se
    data = _config({"block": kind, "channels": 12, "se_reduction": 2})
    if BLOCK_SPECS[kind].takes_se:
        assert parse_config(data).stages[0].se_reduction == 2
    else:
        with pytest.raises(ConfigError, match=r"stages\.0\.se_reduction: SE needs a residual block"):
            parse_config(data)


@pytest.mark.parametrize("kind", KINDS)
def test_a_width_keeping_kind_refuses_another_width(kind):
    data = _config({"block": kind, "channels": 24})
    if BLOCK_SPECS[kind].keeps_width:
        with pytest.raises(ConfigError, match=r"stages\.0\.channels: a residual module keeps its input width \(12\)"):
            parse_config(data)
    else:
        assert parse_config(data).stages[0].channels == 24


# For each field a kind may read, a value that builds another module than the default does.
CHANGED = {"depth": 2, "kernel_sizes": [5], "stride": 2, "norm": "none", "se_reduction": 2}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("field", list(CHANGED))
def test_the_block_reads_a_field_exactly_when_the_spec_lists_it(kind, field):
    default = _stage_modules(StageConfig(block=kind, channels=8), 8)
    changed = _stage_modules(StageConfig(block=kind, channels=8, **{field: CHANGED[field]}), 8)
    assert (str(changed) != str(default)) == (field in BLOCK_SPECS[kind].reads)


@pytest.mark.parametrize("kind", KINDS)
def test_the_canonical_form_drops_exactly_the_fields_the_kind_does_not_read(kind):
    spec = BLOCK_SPECS[kind]
    stage = {"block": kind, "channels": 12, "kernel_sizes": [3, 5], "norm": "pre", "activation": "gelu",
             "pool": {"kind": "max", "size": 2}, "dropout": 0.1, "spatial_dropout": True,
             "attention": {"kind": "luong"}, "shortcut": "avgpool"}
    stage |= {"depth": 2} if "depth" in spec.reads else {}
    stage |= {"stride": 2} if spec.takes_stride else {}
    stage |= {"se_reduction": 2} if spec.takes_se else {}
    (canonical,) = canonical_config(parse_config(_config(stage)))["stages"]
    assert set(canonical) == {*STAGE_FIELDS, *spec.reads}


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_sizes_are_used_as_the_spec_says(kind):
    spec = BLOCK_SPECS[kind]
    stage = parse_config(_config({"block": kind, "channels": 12, "kernel_sizes": [5, 3],
                                  "depth": 2 if "depth" in spec.reads else 1})).stages[0]
    kernels = _conv_kernels(_stage_modules(stage, 12)[0])
    if spec.kernels == "fixed":  # shown as the report shows kernels: one size when all are equal
        assert (str(kernels[0]) if len(set(kernels)) == 1 else "/".join(map(str, kernels))) == spec.fixed_kernels
    else:
        assert kernels == {"per_layer": [5, 3], "first": [5, 5], "parallel": [5, 3]}[spec.kernels]


@pytest.mark.parametrize("kind", KINDS)
def test_the_summary_shows_the_label_and_fixed_kernels(kind):
    spec = BLOCK_SPECS[kind]
    summary = architecture_summary(parse_config(_config({"block": kind, "channels": 12})))
    assert f"[{spec.label} 12" in summary
    assert "(" not in summary  # a single 3x3 and fixed kernels are not spelled out


@pytest.mark.parametrize("kind", [k for k in KINDS if "norm" in BLOCK_SPECS[k].reads])
def test_a_norm_the_block_does_not_list_builds_as_post_or_is_refused(kind):
    spec = BLOCK_SPECS[kind]
    post = str(_stage_modules(StageConfig(block=kind, channels=12, norm="post"), 12))
    for norm in ("pre", "end", "none"):
        data = _config({"block": kind, "channels": 12, "norm": norm})
        if norm == "end" and norm not in spec.norms:
            with pytest.raises(ConfigError, match=r"stages\.0\.norm: 'end' applies to conv blocks only"):
                parse_config(data)
            continue
        built = str(_stage_modules(parse_config(data).stages[0], 12))
        assert (built == post) == (norm not in spec.norms), norm


def test_contradictory_facts_are_refused_at_import_time():
    with pytest.raises(ValueError, match="fixed kernels"):
        BlockSpec(label="x", noun="x", module="ConvStack", reads=("kernel_sizes",), kernels="fixed", fixed_kernels="3")
    with pytest.raises(ValueError, match="norms"):
        BlockSpec(label="x", noun="x", module="ConvStack", reads=("kernel_sizes", "norm"), kernels="per_layer")
